"""The `sequential` model format (docs/model-format.md) in plain numpy.

Shared by the Python peers and by the reference check, so every peer runs exactly the same forward
pass on exactly the same weights. Only numpy and safetensors are needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


_ACTIVATIONS = {
    "relu": _relu,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softmax": _softmax,
    "linear": lambda x: x,
}


class SequentialMLP:
    """h = act(h @ W.T + b) per layer; W stored [units, in] (out x in) as in the format spec."""

    def __init__(self, config: dict, tensors: dict[str, np.ndarray]):
        if config.get("format") != "sequential":
            raise ValueError(f"not a sequential model: format={config.get('format')!r}")
        self.input_size = int(config["input_size"])
        self.mean = self.std = None
        if config.get("standardize"):
            self.mean = tensors["standardize.mean"].astype(np.float32)
            self.std = tensors["standardize.std"].astype(np.float32)
        self.layers = []
        fan_in = self.input_size
        for layer in config["layers"]:
            w = tensors[f"{layer['name']}.weight"].astype(np.float32)
            b = tensors[f"{layer['name']}.bias"].astype(np.float32)
            if w.shape != (layer["units"], fan_in) or b.shape != (layer["units"],):
                raise ValueError(f"layer {layer['name']}: weight {w.shape}, bias {b.shape}")
            # Pre-transpose once so the hot path is a plain row-major matmul.
            self.layers.append((np.ascontiguousarray(w.T), b, _ACTIVATIONS[layer["activation"]]))
            fan_in = layer["units"]
        self.output_size = fan_in

    @classmethod
    def load(cls, model_dir: str | Path) -> "SequentialMLP":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        return cls(config, load_file(str(model_dir / "model.safetensors")))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.input_size)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        for w_t, b, act in self.layers:
            x = act(x @ w_t + b)
        return x
