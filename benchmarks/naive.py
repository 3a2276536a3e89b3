"""The naive baseline of the serving benchmark: one FastAPI handler, no batching, the model on the event loop.

``python -m benchmarks.naive REGISTRY MODEL PORT`` serves ``POST /v2/models/{model}/infer`` (OIP JSON, one
input) with the variant's own runner, the way a first version of a model server is usually written. Its
latency at concurrency 1 is what slimserve's must not exceed: batching, routing and metrics may cost
throughput nothing and latency nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request

from contract import layout
from contract.runners import RunnerOptions, open_runner
from service.sockets import bind


def create_naive_app(registry: Path, model: str) -> FastAPI:
    runner = open_runner(layout.latest(registry, model), RunnerOptions())
    app = FastAPI()

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> dict[str, Any]:
        tensor = (await request.json())["inputs"][0]
        batch = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        outputs = [
            {"name": name, "datatype": "FP32", "shape": list(array.shape), "data": array.ravel().tolist()}
            for name, array in runner(batch).items()
        ]
        return {"model_name": model, "model_version": "1", "outputs": outputs}

    return app


def main(argv: list[str]) -> None:
    registry, model, port = Path(argv[0]), argv[1], int(argv[2])
    torch.set_num_threads(1)
    config = uvicorn.Config(create_naive_app(registry, model), log_level="warning")
    uvicorn.Server(config).run(sockets=[bind("127.0.0.1", port)])


if __name__ == "__main__":
    main(sys.argv[1:])
