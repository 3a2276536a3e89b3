"""HTTP and gRPC are peers on one assembled stack: neither needs the other, both obey what guards the app."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as triton_grpc_aio
import uvloop
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.assembly import serving_stack
from tests.harness import make_settings, run_service
from tests.service.conftest import assert_close
from tests.service.test_oip_grpc import grpc_input


class RequireApiKey:
    """A guard a deployment might add in front of every POST: no ``x-api-key: k``, no inference."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        posted = scope["type"] == "http" and scope["method"] == "POST"
        if posted and dict(scope["headers"]).get(b"x-api-key") != b"k":
            await JSONResponse({"error": "no api key"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_guard(app: FastAPI) -> None:
    app.add_middleware(RequireApiKey)


def test_a_middleware_added_to_the_app_guards_the_inference_fast_path(
    tiny_registry: Path, digits: np.ndarray
) -> None:
    request = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                           "data": digits[0].ravel().tolist()}]}  # fmt: skip
    settings = make_settings(tiny_registry)
    with run_service(settings, customize_app=add_guard) as running, running.client() as client:
        for path in ("/v2/models/mnist/infer", "/v2/models/mnist-student-fp32/versions/1/infer"):
            refused = client.post(path, json=request)
            assert (refused.status_code, refused.json()) == (401, {"error": "no api key"}), path
            assert client.post(path, json=request, headers={"x-api-key": "k"}).status_code == 200, path


def test_grpc_serves_from_the_assembled_stack_with_no_http_front(
    tiny_registry: Path, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    async def infer_over_grpc() -> np.ndarray:
        async with serving_stack(make_settings(tiny_registry)) as context:
            client = triton_grpc_aio.InferenceServerClient(f"127.0.0.1:{context.grpc_port}")
            try:
                for _ in range(1200):  # variants load in the background: ready within a minute
                    if await client.is_server_ready():
                        break
                    await asyncio.sleep(0.05)
                result = await client.infer("mnist-student-fp32", [grpc_input(digits[:4])])
            finally:
                await client.close()
        logits = result.as_numpy("OUTPUT__0")
        assert logits is not None
        return logits

    assert_close(uvloop.run(infer_over_grpc()), references["mnist-student-fp32"][:4])
