"""What the routes share, built by the lifespan and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from service.config import Settings
from service.dataplane import DataPlane
from service.metrics import ServiceMetrics


@dataclass(frozen=True, slots=True)
class ServiceContext:
    settings: Settings
    dataplane: DataPlane
    metrics: ServiceMetrics
    grpc_port: int | None


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.slimserve
    return ctx
