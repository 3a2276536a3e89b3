"""Bare transports: what HTTP/1.1 (uvicorn) and gRPC (grpc.aio) cost per call with no model behind them.

``python -m benchmarks.ceilings http|grpc|grpcio PORT`` serves OIP inference with a canned answer: the HTTP
server decodes the JSON tensor as the service does, on uvicorn's httptools protocol as the service runs it:
the direct path for inference (``service.api.http.direct``) and the client guards with their default limits
(``service.api.http.guards``); the gRPC servers parse the protobuf request (unary and
streaming), ``grpc`` on the service's own HTTP/2 transport (``service.api.grpc.h2``), ``grpcio`` on grpc.aio. Measured under the same load generators as the service, they bound what any Python service on
these libraries can serve here, so they tell a missed ratio that the transports themselves rule out from
one that better code would reach.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
import uvicorn
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.api.grpc.h2.server import Http2GrpcServer
from service.api.http.guards import ClientLimits, guarded_protocol
from service.codecs import decode_json
from service.config import ServerSettings
from service.sockets import bind

LOGITS = b"\0" * 40  # ten FP32 zeros
JSON_TYPE = (b"content-type", b"application/json")
JSON_ANSWER = orjson.dumps(
    {"model_name": "m", "model_version": "1", "outputs": [
        {"name": "OUTPUT__0", "datatype": "FP32", "shape": [1, 10], "data": [0.0] * 10}]}
)  # fmt: skip


def decode_like_the_service(body: bytes) -> None:
    tensor = orjson.loads(body)["inputs"][0]
    decode_json(tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"], 1 << 20)


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    decode_like_the_service(b"".join(chunks))
    await send({"type": "http.response.start", "status": 200, "headers": [JSON_TYPE]})
    await send({"type": "http.response.body", "body": JSON_ANSWER})


class CannedInference:
    """What the service's direct HTTP path calls for inference (``HttpFront.direct_route``), answering the
    canned reply after decoding the JSON tensor: the bare ceiling goes through the same transport code."""

    max_request_bytes = 1 << 26

    @staticmethod
    def target(path: str) -> tuple[str, str | None] | None:
        return ("m", None) if path.endswith("/infer") else None

    async def answer(
        self, model: str, version: str | None, headers: Any, *, receive: Any = None, body: bytes = b""
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        decode_like_the_service(body)
        return 200, [(b"content-length", b"%d" % len(JSON_ANSWER)), JSON_TYPE], JSON_ANSWER


class BareHttp:
    """The bare HTTP server's app: inference by the direct path, anything else by ``http_app``."""

    def __init__(self) -> None:
        self._inference = CannedInference()

    def direct_route(self) -> CannedInference:
        return self._inference

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await http_app(scope, receive, send)


def answer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
    response.outputs.add(name="OUTPUT__0", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(LOGITS)
    return response


class BareServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return answer(request)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for request in request_iterator:
            yield pb.ModelStreamInferResponse(infer_response=answer(request))


async def serve_grpcio(port: int) -> None:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_grpc(port: int) -> None:
    server = Http2GrpcServer(1 << 26)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(), server)
    await server.start("127.0.0.1", port)
    await asyncio.Event().wait()  # until the process is stopped


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "grpc":
        uvloop.run(serve_grpc(port))
    elif kind == "grpcio":
        uvloop.run(serve_grpcio(port))
    else:
        config = uvicorn.Config(
            BareHttp(), http=guarded_protocol(ClientLimits.of(ServerSettings())), log_level="warning", lifespan="off",
            access_log=False,
            proxy_headers=False,  # as the service runs by default: its wrapper would hide the direct route
        )  # fmt: skip
        uvloop.run(uvicorn.Server(config).serve(sockets=[bind("127.0.0.1", port)]))


if __name__ == "__main__":
    main(sys.argv[1:])
