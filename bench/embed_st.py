"""Peer for the embeddings benchmark: sentence-transformers `encode(batch_size=32)` in-process (torch CPU).

A worker driven over stdin/stdout so bench.py can interleave its runs with sconce-server's (the
machine is shared: alternating runs exposes both to the same background load). It loads the model,
encodes the sentences once (warm-up; the embeddings go to --ref-out as the reference), prints one
JSON line, then answers each `run SECONDS` line with one JSON line; EOF ends it.
Usage: python embed_st.py --model-dir DIR --sentences FILE.json --ref-out REF.npy
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def cpu_seconds() -> float:
    # Process CPU (all threads); torch's intra-op pool lives in this process.
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--ref-out", required=True)
    args = ap.parse_args()

    t0 = time.monotonic()
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu")
    load_s = time.monotonic() - t0
    with open(args.sentences) as f:
        sentences = json.load(f)

    def encode():
        return model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)

    np.save(args.ref_out, encode().astype(np.float32))  # warm-up + reference
    say({
        "load_s": load_s,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu": torch.backends.cpu.get_cpu_capability(),
    })

    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "run":
            continue
        seconds = float(cmd[1])
        n = 0
        c0, w0 = cpu_seconds(), time.monotonic()
        while time.monotonic() - w0 < seconds:
            encode()
            n += len(sentences)
        wall, cpu = time.monotonic() - w0, cpu_seconds() - c0
        say({
            "sentences": n,
            "wall_s": wall,
            "sent_per_s": n / wall,
            "cpu_ms_per_sent": cpu * 1e3 / n,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })


if __name__ == "__main__":
    main()
