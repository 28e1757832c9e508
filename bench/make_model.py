"""Write the benchmark MLP in the `sequential` format (config.json + model.safetensors).

1000 -> Dense 64 relu -> Dense 64 relu -> Dense 10 softmax, He-initialised from a fixed seed, so
every run and every server gets the same weights. Usage: python make_model.py OUT_DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

INPUT_SIZE = 1000
LAYERS = [
    {"name": "dense_0", "units": 64, "activation": "relu"},
    {"name": "dense_1", "units": 64, "activation": "relu"},
    {"name": "dense_2", "units": 10, "activation": "softmax"},
]


def make_model(out_dir: str | Path, seed: int = 1234) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    fan_in = INPUT_SIZE
    for layer in LAYERS:
        units = layer["units"]
        tensors[f"{layer['name']}.weight"] = (
            rng.standard_normal((units, fan_in)) * np.sqrt(2.0 / fan_in)
        ).astype("<f4")
        tensors[f"{layer['name']}.bias"] = (rng.standard_normal(units) * 0.1).astype("<f4")
        fan_in = units
    config = {
        "format": "sequential",
        "input_size": INPUT_SIZE,
        "layers": LAYERS,
        "standardize": False,
        "labels": None,
        "version": "bench-1",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(out / "model.safetensors"))
    return out


def make_inputs(rows: int, seed: int = 99) -> np.ndarray:
    """Request inputs; rounded to 6 decimals so JSON carries them exactly as float32 would."""
    rng = np.random.default_rng(seed)
    return np.round(rng.standard_normal((rows, INPUT_SIZE)), 6).astype(np.float32)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    print(make_model(args.out_dir, args.seed))
