"""How a route reaches the service it belongs to: the context the app was created with."""

from __future__ import annotations

from fastapi import Request

from service.assembly import ServiceContext


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.slimserve
    return ctx
