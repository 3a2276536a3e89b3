"""``create_app(settings)``: the HTTP application. Nothing happens at import time.

The lifespan builds the serving stack (a Runtime), starts the gRPC server beside it, and loads and warms
the variants in the background: liveness answers at once, readiness only when every variant is warm.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from service import __version__
from service.api.grpc.server import GrpcServer
from service.api.http import errors, experiments, oip, openapi, predict, repository, tradeoff, ui
from service.api.http.context import ServiceContext
from service.api.http.fastpath import InferFastPath
from service.config import Settings
from service.metrics import ServiceMetrics
from service.runtime import BackendWrapper, Runtime


def create_app(
    settings: Settings,
    *,
    backend_wrapper: BackendWrapper | None = None,
    metrics_registry: CollectorRegistry | None = None,
    on_ready: list[str] | None = None,
) -> FastAPI:
    """Build the app. ``backend_wrapper`` wraps each backend by composition (tests inject faults with it)."""
    registry = metrics_registry or CollectorRegistry()
    metrics = ServiceMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, metrics, backend_wrapper=backend_wrapper, on_ready=on_ready)
        grpc_server = GrpcServer(settings, runtime.dataplane) if settings.server.grpc_enabled else None
        grpc_port = await grpc_server.start() if grpc_server else None
        app.state.slimserve = ServiceContext(settings, runtime.dataplane, metrics, grpc_port)
        await runtime.start()
        try:
            yield
        finally:
            if grpc_server:
                await grpc_server.stop()
            await runtime.stop()

    app = FastAPI(
        title="slimserve",
        version=__version__,
        description="Open Inference Protocol server for a model family's compressed variants.",
        lifespan=lifespan,
    )
    # added first, so it sits innermost among the middlewares: CORS, when configured, wraps it too
    app.add_middleware(InferFastPath, state=app.state)
    if settings.server.cors_origins:  # off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["*"],
        )
    errors.install_error_handlers(app)
    app.include_router(oip.router)
    app.include_router(predict.router)
    app.include_router(experiments.router)
    app.include_router(repository.router)
    app.include_router(tradeoff.router)
    app.include_router(ui.router)
    openapi.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
