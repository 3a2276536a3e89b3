"""Every error leaves as ``{"error": "<message>"}`` with the status from the one hierarchy; never a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.http.wire import validation_message
from service.errors import InternalError, SlimServeError

log = logging.getLogger(__name__)


def error_response(error: SlimServeError) -> JSONResponse:
    return JSONResponse({"error": error.message}, status_code=error.http_status, headers=error.headers())


async def _slimserve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SlimServeError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=400)


async def _pydantic_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return JSONResponse({"error": validation_message(exc)}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalError())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SlimServeError, _slimserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _pydantic_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
