"""Peer: an MLServer (PyPI `mlserver`) custom runtime doing the numpy forward.

bench.py writes settings.json + model-settings.json next to a copy of this file and runs
`mlserver start DIR`; `implementation` is `mlserver_runtime.MLPRuntime` and `parameters.uri` is the
model directory. MLServer defaults are kept (one parallel inference worker process, debug on).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

# bench/ holds mlp_numpy.py; bench.py passes its path in BENCH_DIR (also set as PYTHONPATH).
sys.path.insert(0, os.environ.get("BENCH_DIR", os.path.dirname(os.path.abspath(__file__))))
from mlp_numpy import SequentialMLP  # noqa: E402


class MLPRuntime(MLModel):
    async def load(self) -> bool:
        self._mlp = SequentialMLP.load(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self._mlp.forward(np.asarray(x, dtype=np.float32))
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("output", y)],
        )
