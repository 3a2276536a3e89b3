"""What uvicorn runs: inference straight to its endpoint (inside the app's middlewares), the rest to FastAPI.

Profiled at 64 connections on one core, the layers FastAPI and Starlette put around every request (the
server-error and exception middlewares, telemetry, body limit, the router, dependency resolution, Request
and Response objects) took as long as decoding and the DataPlane together on a one-digit inference. The hot
route, ``POST /v2/models/{model}[/versions/{v}]/infer``, is matched here with one regex and served by a
plain ASGI endpoint. It is still wrapped in every middleware added to the app (CORS, or a deployment's own
guard), in the same order, built once when the first request arrives, as Starlette builds its own stack.
The FastAPI route stays registered for the OpenAPI document and for direct calls to the app. While no
middleware is added, a plain inference request does not even become an ASGI call: the protocol answers it
through the same endpoint (``service.api.http.direct``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.http.errors import error_response
from service.api.http.oip import infer_body, infer_http
from service.assembly import ServiceContext
from service.errors import InternalError, SlimServeError

log = logging.getLogger(__name__)

INFER_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class InferEndpoint:
    """``POST …/infer`` as a plain ASGI app: decode, call the DataPlane, encode; errors as everywhere else.

    ``answer`` is the same request without ASGI, for the protocol's direct path (``service.api.http.direct``).
    """

    def __init__(self, context: ServiceContext) -> None:
        self._context = context
        self.max_request_bytes = context.settings.limits.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model, version = scope["path_params"]["model"], scope["path_params"]["version"]
        status, headers, content = await self.answer(model, version, Headers(scope=scope), receive=receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def answer(
        self,
        model: str,
        version: str | None,
        headers: Mapping[str, str],
        *,
        receive: Receive | None = None,
        body: bytes = b"",
    ) -> Answer:
        """The response to one inference whose body is ``body``, or is read from ``receive``."""
        try:
            if receive is not None:
                content, extra = await infer_http(self._context, model, version, headers, receive)
            else:
                content, extra = await infer_body(self._context, model, version, headers, body)
        except SlimServeError as error:
            return rendered(error_response(error))
        except Exception:
            log.exception("unhandled error on POST %s", infer_path(model, version))
            return rendered(error_response(InternalError()))
        raw_headers = [(b"content-length", b"%d" % len(content))]
        raw_headers += [(header_name(key), value.encode("latin-1")) for key, value in extra.items()]
        return 200, raw_headers, content

    @staticmethod
    def target(path: str) -> tuple[str, str | None] | None:
        """(model, version) when ``path`` is this endpoint's, else None."""
        match = INFER_PATH.fullmatch(path)
        return None if match is None else (match["model"], match["version"])


@functools.cache
def header_name(key: str) -> bytes:
    """A response header's name on the wire; the names are a handful of constants, encoded once."""
    return key.lower().encode("latin-1")


def rendered(response: Response) -> Answer:
    return response.status_code, list(response.raw_headers), bytes(response.body)


def infer_path(model: str, version: str | None) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"


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

    def direct_route(self) -> InferEndpoint | None:
        """The endpoint while no middleware wraps it: the protocol may then answer it without ASGI."""
        return None if self.app.user_middleware else self._endpoint

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
