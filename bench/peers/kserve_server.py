"""Peer: KServe's Python model server (PyPI `kserve`) with a custom `kserve.Model` doing numpy forward.

This is what the KServe docs tell a user to write for a custom model. ModelServer defaults are kept
(one worker, latency logging on, as `python model.py` gives you); only gRPC is switched off and the
HTTP socket is bound to loopback (kserve hard-codes 0.0.0.0, so uvicorn.Config is wrapped).
Usage: python kserve_server.py --model-dir DIR --model-name NAME --host 127.0.0.1 --port P
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlp_numpy import SequentialMLP  # noqa: E402


def _bind_loopback(host: str) -> None:
    base = uvicorn.Config

    class LoopbackConfig(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = LoopbackConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--model-name", default="mlp")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    _bind_loopback(args.host)

    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    class MLPModel(kserve.Model):
        def __init__(self, name: str, model_dir: str):
            super().__init__(name)
            self.model_dir = model_dir
            self.mlp: Optional[SequentialMLP] = None

        def load(self) -> bool:
            self.mlp = SequentialMLP.load(self.model_dir)
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers: Dict[str, str] = None) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            y = self.mlp.forward(x)
            out = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=False)
            return InferResponse(
                response_id=payload.id, model_name=self.name, infer_outputs=[out]
            )

    model = MLPModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer(http_port=args.port, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
