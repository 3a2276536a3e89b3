"""One place assembles a process: the serving stack, then the gRPC front beside it; HTTP is the other peer.

Neither transport builds the stack or starts the other: ``serving_stack`` yields what both serve from, and
``service.server`` runs the HTTP front on it (the tests' harness does the same, on an ephemeral port).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from service.api.grpc.server import GrpcServer
from service.config import Settings
from service.dataplane import DataPlane
from service.metrics import ServiceMetrics
from service.runtime import BackendWrapper, Runtime


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What the fronts share: the settings, the one DataPlane, the metrics, and where gRPC listens."""

    settings: Settings
    dataplane: DataPlane
    metrics: ServiceMetrics
    grpc_port: int | None


@contextlib.asynccontextmanager
async def serving_stack(
    settings: Settings,
    *,
    backend_wrapper: BackendWrapper | None = None,
    metrics_registry: CollectorRegistry | None = None,
    on_ready: list[str] | None = None,
) -> AsyncIterator[ServiceContext]:
    """Start the Runtime (variants load in the background) and the gRPC server; stop both on exit.

    ``backend_wrapper`` wraps each backend by composition (tests inject faults with it).
    """
    metrics = ServiceMetrics(metrics_registry or CollectorRegistry())
    runtime = Runtime(settings, metrics, backend_wrapper=backend_wrapper, on_ready=on_ready)
    grpc_server = GrpcServer(settings, runtime.dataplane) if settings.server.grpc_enabled else None
    grpc_port = await grpc_server.start() if grpc_server else None
    try:
        await runtime.start()
        yield ServiceContext(settings, runtime.dataplane, metrics, grpc_port)
    finally:
        if grpc_server:
            await grpc_server.stop()
        await runtime.stop()
