"""Peer: a hand-written FastAPI + orjson + numpy KServe V2 server, as a careful engineer would write it.

Raw body -> orjson -> numpy -> forward -> orjson; uvloop + httptools; no access log; one process.
Usage: python fastapi_server.py --model-dir DIR --model-name NAME --host 127.0.0.1 --port P
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlp_numpy import SequentialMLP  # noqa: E402

JSON = "application/json"


def build_app(model_dir: str, model_name: str) -> FastAPI:
    mlp = SequentialMLP.load(model_dir)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, msg: str) -> Response:
        return Response(orjson.dumps({"error": msg}), status_code=status, media_type=JSON)

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> Response:
        return Response(b"", status_code=200)

    @app.get(f"/v2/models/{model_name}/ready")
    async def model_ready() -> Response:
        return Response(b"", status_code=200)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        if name != model_name:
            return error(404, f"unknown model {name}")
        try:
            req = orjson.loads(await request.body())
            inp = req["inputs"][0]
            x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
            return error(400, f"bad request: {e}")
        y = mlp.forward(x)
        body = {
            "model_name": model_name,
            "outputs": [
                {"name": "output", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel()}
            ],
        }
        if "id" in req:
            body["id"] = req["id"]
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--model-name", default="mlp")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    app = build_app(args.model_dir, args.model_name)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
