"""Triton's model repository extension over HTTP: index, load, unload (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from service.api.http.context import context
from service.assembly import ServiceContext
from service.auth import require_admin

router = APIRouter(prefix="/v2/repository", tags=["Model repository (admin)"])


def admin(request: Request) -> ServiceContext:
    ctx = context(request)
    require_admin(ctx.settings.admin.token, request.headers.get("authorization"))
    return ctx


@router.post("/index", summary="Every model version in the registry and its state")
async def index(request: Request) -> list[dict[str, Any]]:
    return admin(request).dataplane.repository_index()


@router.post(
    "/models/{model}/load", summary="Load or reload a model: warm, swap, then unload the old version"
)
async def load(request: Request, model: str) -> Response:
    await admin(request).dataplane.load_model(model)
    return JSONResponse({})


@router.post("/models/{model}/unload", summary="Stop serving a model once its requests have finished")
async def unload(request: Request, model: str) -> Response:
    await admin(request).dataplane.unload_model(model)
    return JSONResponse({})
