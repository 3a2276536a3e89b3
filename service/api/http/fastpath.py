"""``POST /v2/models/{model}[/versions/{v}]/infer`` served straight from ASGI, ahead of FastAPI's router.

Profiled at 64 connections, FastAPI's middleware layers, route matching and dependency resolution took
about a third of the event loop's time on an inference request, as much as decoding and the DataPlane
together. The hot route is matched here with one regex and answered by the same function as the FastAPI
route, which stays registered for the OpenAPI document and for anything this does not match. Errors take
the same path as everywhere else: the one hierarchy, ``{"error": ...}``, never a trace.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.http.errors import error_response
from service.api.http.oip import infer_response
from service.assembly import ServiceContext
from service.errors import InternalError, SlimServeError

log = logging.getLogger(__name__)

INFER_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


class InferFastPath:
    """ASGI middleware: inference requests are served here, everything else passes through to ``app``."""

    def __init__(self, app: ASGIApp, context: ServiceContext) -> None:
        self.app = app
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            match = INFER_PATH.fullmatch(path, len(scope.get("root_path", "")))
            if match is not None:
                request = Request(scope, receive)
                try:
                    response = await infer_response(self._context, request, match["model"], match["version"])
                except SlimServeError as error:
                    response = error_response(error)
                except Exception:
                    log.exception("unhandled error on POST %s", path)
                    response = error_response(InternalError())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
