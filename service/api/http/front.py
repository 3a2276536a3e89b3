"""What uvicorn runs: inference straight to its endpoint (inside the app's middlewares), the rest to FastAPI.

Profiled at 64 connections on one core, the layers FastAPI and Starlette put around every request (the
server-error and exception middlewares, telemetry, body limit, the router, dependency resolution, Request
and Response objects) took as long as decoding and the DataPlane together on a one-digit inference. The hot
route, ``POST /v2/models/{model}[/versions/{v}]/infer``, is matched here with one regex and served by a
plain ASGI endpoint. It is still wrapped in every middleware added to the app (CORS, or a deployment's own
guard), in the same order, built once when the first request arrives, as Starlette builds its own stack.
The FastAPI route stays registered for the OpenAPI document and for direct calls to the app.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.http.errors import error_response
from service.api.http.oip import infer_http
from service.assembly import ServiceContext
from service.errors import InternalError, SlimServeError

log = logging.getLogger(__name__)

INFER_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


class InferEndpoint:
    """``POST …/infer`` as a plain ASGI app: decode, call the DataPlane, encode; errors as everywhere else."""

    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model, version = scope["path_params"]["model"], scope["path_params"]["version"]
        try:
            content, headers = await infer_http(self._context, model, version, Headers(scope=scope), receive)
        except SlimServeError as error:
            await error_response(error)(scope, receive, send)
            return
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            await error_response(InternalError())(scope, receive, send)
            return
        raw_headers = [(b"content-length", b"%d" % len(content))]
        raw_headers += [(key.encode(), value.encode("latin-1")) for key, value in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})


class HttpFront:
    """The ASGI app uvicorn serves: ``app`` for everything but inference."""

    def __init__(self, app: FastAPI, context: ServiceContext) -> None:
        self.app = app
        self._endpoint = InferEndpoint(context)
        self._infer_stack: ASGIApp | None = None

    def _build_infer_stack(self) -> ASGIApp:
        stack: ASGIApp = self._endpoint
        for cls, args, kwargs in reversed(self.app.user_middleware):
            stack = cls(stack, *args, **kwargs)
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.fullmatch(scope["path"], len(scope.get("root_path", "")))
            if match is not None:
                if self._infer_stack is None:
                    self._infer_stack = self._build_infer_stack()
                scope["app"] = self.app
                scope["path_params"] = {"model": match["model"], "version": match["version"]}
                await self._infer_stack(scope, receive, send)
                return
        await self.app(scope, receive, send)
