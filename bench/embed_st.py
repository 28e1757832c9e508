"""Peer for the embeddings benchmark: sentence-transformers `encode(batch_size=32)` in-process (torch CPU).

Encodes the same batch of sentences over and over for --seconds, --repeats times, and writes a JSON
summary (median sentences/s, CPU-ms per sentence) plus the embeddings it produced (.npy) so bench.py
can check sconce-server's answers against them.
Usage: python embed_st.py --model-dir DIR --sentences FILE.json --seconds S --repeats R --out OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import numpy as np


def cpu_seconds() -> float:
    # Process CPU (all threads); torch's intra-op pool lives in this process.
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    t0 = time.monotonic()
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu")
    load_s = time.monotonic() - t0
    sentences = json.loads(open(args.sentences).read())

    emb = model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)  # warm-up
    np.save(os.path.splitext(args.out)[0] + ".npy", emb.astype(np.float32))

    runs = []
    for _ in range(args.repeats):
        n = 0
        c0, w0 = cpu_seconds(), time.monotonic()
        while time.monotonic() - w0 < args.seconds:
            model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
            n += len(sentences)
        wall, cpu = time.monotonic() - w0, cpu_seconds() - c0
        runs.append({"sentences": n, "wall_s": wall, "sent_per_s": n / wall, "cpu_ms_per_sent": cpu * 1e3 / n})

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "runs": runs,
        "sent_per_s": statistics.median(r["sent_per_s"] for r in runs),
        "cpu_ms_per_sent": statistics.median(r["cpu_ms_per_sent"] for r in runs),
        "load_s": load_s,
        "max_rss_mb": rss_kb / 1024,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu": torch.backends.cpu.get_cpu_capability(),
        "dim": int(emb.shape[1]),
    }
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
