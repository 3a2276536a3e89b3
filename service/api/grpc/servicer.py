"""``inference.GRPCInferenceService`` on the stubs that ship in tritonclient, so tritonclient.grpc works as-is.

Each method decodes, calls the DataPlane and encodes; errors map through the one exception hierarchy.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from pydantic import SecretStr
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.api.grpc.stream import answer_stream
from service.api.grpc.tensors import decode_request, encode_response
from service.auth import require_admin
from service.dataplane import DataPlane
from service.errors import InternalError, SlimServeError, Unimplemented
from service.served import InferOutcome, served_metadata

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def reports_errors(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Turn service errors into their gRPC status; anything else into INTERNAL without internals."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except SlimServeError as error:
            await context.abort(error.grpc_code, error.message)
        except Exception:
            log.exception("gRPC %s failed", handler.__name__)
            await context.abort(InternalError.grpc_code, InternalError().message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def unsupported(what: str) -> Handler[Any, Any]:
    """A method of the Triton service this server does not offer: UNIMPLEMENTED, saying what, no traceback
    (the generated default raises NotImplementedError, which grpc logs as an ERROR with its stack)."""

    @reports_errors
    async def method(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise Unimplemented(f"{what} is not supported by this server")

    return method


def version_of(text: str) -> str | None:
    return text or None


def metadata_headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def authorization(context: grpc.aio.ServicerContext) -> str | None:
    return next((value for key, value in context.invocation_metadata() or () if key == "authorization"), None)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        dataplane: DataPlane,
        admin_token: SecretStr | None,
        max_elements: int,
        max_stream_in_flight: int,
    ) -> None:
        self._dataplane = dataplane
        self._admin_token = admin_token
        self._max_elements = max_elements
        self._max_stream_in_flight = max_stream_in_flight

    SystemSharedMemoryStatus = unsupported("system shared memory")
    SystemSharedMemoryRegister = unsupported("system shared memory")
    SystemSharedMemoryUnregister = unsupported("system shared memory")
    CudaSharedMemoryStatus = unsupported("CUDA shared memory")
    CudaSharedMemoryRegister = unsupported("CUDA shared memory")
    CudaSharedMemoryUnregister = unsupported("CUDA shared memory")
    TraceSetting = unsupported("trace settings")
    LogSettings = unsupported("log settings")

    @reports_errors
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    @reports_errors
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    @reports_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=self._dataplane.model_ready(request.name, version_of(request.version))
        )

    @reports_errors
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self._dataplane.server_metadata())

    @reports_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        metadata = self._dataplane.model_metadata(request.name, version_of(request.version))
        metadata.pop("parameters")
        return json_format.ParseDict(metadata, pb.ModelMetadataResponse())

    @reports_errors
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        config = self._dataplane.model_config(request.name, version_of(request.version))
        return pb.ModelConfigResponse(config=config)

    @reports_errors
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        stats = self._dataplane.statistics(request.name or None, version_of(request.version))
        return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

    @reports_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        require_admin(self._admin_token, authorization(context))
        entries = self._dataplane.repository_index()
        if request.ready:
            entries = [entry for entry in entries if entry["state"] == "READY"]
        return json_format.ParseDict({"models": entries}, pb.RepositoryIndexResponse())

    @reports_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        require_admin(self._admin_token, authorization(context))
        await self._dataplane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @reports_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        require_admin(self._admin_token, authorization(context))
        await self._dataplane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @reports_errors
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        headers = metadata_headers(context)
        outcome = await self._infer(request, headers, context.time_remaining())
        # trailing metadata travels with the status: no extra send that could fail if the client left
        context.set_trailing_metadata(tuple(served_metadata(outcome).items()))
        return encode_response(outcome.response)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        headers = metadata_headers(context)  # the stream's metadata routes every request on it

        async def answer(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            outcome = await self._infer(request, headers, context.time_remaining())
            streamed = pb.ModelStreamInferResponse()
            encode_response(outcome.response, into=streamed.infer_response)
            return streamed

        async for response in answer_stream(request_iterator, answer, self._max_stream_in_flight):
            yield response

    async def _infer(
        self, request: pb.ModelInferRequest, headers: dict[str, str], deadline_s: float | None
    ) -> InferOutcome:
        try:
            decoded = decode_request(request, self._max_elements)
        except SlimServeError as error:
            self._dataplane.count_rejected(request.model_name, "grpc", error)
            raise
        return await self._dataplane.infer(
            request.model_name,
            version_of(request.model_version),
            decoded,
            protocol="grpc",
            headers=headers,
            deadline_s=deadline_s,
        )
