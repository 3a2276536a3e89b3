"""Open Inference Protocol (KServe v2) REST routes: decode, call the DataPlane, encode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from contract.triton_config import config_as_json
from service.api.http.context import context
from service.api.http.wire import HEADER_LENGTH, decode_infer_request, encode_infer_response, read_body
from service.assembly import ServiceContext
from service.errors import ModelNotReady, SlimServeError
from service.protocol import WireInferRequest
from service.served import served_metadata

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

INFER_SCHEMA = WireInferRequest.model_json_schema(ref_template="#/$defs/{model}")
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        # a Media Type Object may not have a description (OpenAPI 3.1): the body's says it for both
        "description": "JSON; or binary: a JSON header of Inference-Header-Content-Length bytes, then raw tensors.",
        "content": {
            "application/json": {"schema": INFER_SCHEMA},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return context(request).dataplane.server_metadata()


@router.get("/health/live", summary="Liveness")
async def live(request: Request) -> dict[str, bool]:
    return {"live": context(request).dataplane.live()}


@router.get(
    "/health/ready", summary="Readiness: every routed family can answer (directly or by its fallback)"
)
async def ready(request: Request) -> Response:
    reasons = context(request).dataplane.not_ready_reasons()
    if reasons:
        raise ModelNotReady(f"server is not ready: {'; '.join(reasons)}")
    return JSONResponse({"ready": True})


@router.get("/models", summary="Every model version in the repository with its state")
async def models(request: Request) -> dict[str, Any]:
    return {"models": context(request).dataplane.repository_index()}


@router.get("/models/stats", summary="Statistics of every model version (Triton extension)")
async def all_statistics(request: Request) -> dict[str, Any]:
    return {"model_stats": context(request).dataplane.statistics(None, None)}


@router.get("/models/{model}", summary="Model metadata")
@router.get("/models/{model}/versions/{version}", summary="Model metadata of one version")
async def model_metadata(request: Request, model: str, version: str | None = None) -> dict[str, Any]:
    return context(request).dataplane.model_metadata(model, version)


@router.get("/models/{model}/stats", summary="Statistics of a model (Triton extension)")
@router.get("/models/{model}/versions/{version}/stats", summary="Statistics of a model version")
async def model_statistics(request: Request, model: str, version: str | None = None) -> dict[str, Any]:
    return {"model_stats": context(request).dataplane.statistics(model, version)}


@router.get("/models/{model}/config", summary="Triton model configuration (Triton extension)")
@router.get("/models/{model}/versions/{version}/config", summary="Triton model configuration of a version")
async def model_config(request: Request, model: str, version: str | None = None) -> dict[str, Any]:
    return config_as_json(context(request).dataplane.model_config(model, version))


@router.get("/models/{model}/ready", summary="Model readiness")
@router.get("/models/{model}/versions/{version}/ready", summary="Model version readiness")
async def model_ready(request: Request, model: str, version: str | None = None) -> Response:
    if not context(request).dataplane.model_ready(model, version):
        raise ModelNotReady(f"model '{model}' is not ready")
    return JSONResponse({"name": model, "ready": True})


@router.post("/models/{model}/infer", summary="Inference", openapi_extra=INFER_BODY)
@router.post(
    "/models/{model}/versions/{version}/infer", summary="Inference on one version", openapi_extra=INFER_BODY
)
async def infer(request: Request, model: str, version: str | None = None) -> Response:
    """Served by ``front.InferEndpoint`` under uvicorn; this route documents it and serves direct calls."""
    content, headers = await infer_http(context(request), model, version, request.headers, request.receive)
    return Response(content, headers=headers)


async def infer_http(
    ctx: ServiceContext, model: str, version: str | None, headers: Mapping[str, str], receive: Receive
) -> tuple[bytes, dict[str, str]]:
    """One inference over HTTP: the response body and its headers (the wire format's and what served it)."""
    try:
        body = await read_body(receive, headers, ctx.settings.limits.max_request_bytes)
    except SlimServeError as error:
        ctx.dataplane.count_rejected(model, "http", error)
        raise
    return await infer_body(ctx, model, version, headers, body)


async def infer_body(
    ctx: ServiceContext, model: str, version: str | None, headers: Mapping[str, str], body: bytes
) -> tuple[bytes, dict[str, str]]:
    """``infer_http`` once the body is in, uncompressed and within the size limit."""
    try:
        decoded = decode_infer_request(
            body, headers.get(HEADER_LENGTH), ctx.settings.limits.max_tensor_elements
        )
    except SlimServeError as error:
        ctx.dataplane.count_rejected(model, "http", error)
        raise
    outcome = await ctx.dataplane.infer(model, version, decoded, protocol="http", headers=headers)
    content, wire_headers = encode_infer_response(outcome.response)
    return content, wire_headers | served_metadata(outcome)
