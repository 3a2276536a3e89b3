"""``create_app(settings)``: the HTTP application. Nothing happens at import time.

The lifespan builds the serving stack, then loads and warms the variants in the background so liveness
answers at once and readiness turns true only when every variant is warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from service import __version__
from service.api.http import errors, oip, predict
from service.api.http.context import ServiceContext
from service.backends.base import Backend
from service.backends.torch_backend import QuantizedEngineGuard, TorchScriptBackend, configure_torch
from service.config import Settings
from service.dataplane import DataPlane, Limits
from service.metrics import ServiceMetrics
from service.registry.artifacts import ModelVersion
from service.registry.store import ModelStore, State
from service.routing import DefaultVariantRouter

log = logging.getLogger(__name__)


def _publish_states(store: ModelStore, metrics: ServiceMetrics) -> None:
    for served in store.all():
        card = served.model.card
        metrics.ready.labels(card.family, card.variant, str(card.version), served.backend.kind).set(
            1 if served.state is State.READY else 0
        )


def create_app(
    settings: Settings,
    *,
    backend_wrapper: Callable[[Backend, ModelVersion], Backend] | None = None,
    metrics_registry: CollectorRegistry | None = None,
    on_ready: list[str] | None = None,
) -> FastAPI:
    """Build the app. ``backend_wrapper`` wraps each backend by composition (tests inject faults with it)."""
    registry = metrics_registry or CollectorRegistry()
    metrics = ServiceMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_torch(settings.runtime.torch_threads)
        executor = ThreadPoolExecutor(settings.runtime.worker_threads, thread_name_prefix="inference")
        guard = QuantizedEngineGuard()

        def make_backend(model: ModelVersion) -> Backend:
            backend = TorchScriptBackend(model, executor, guard, settings.runtime.warmup_iterations)
            return backend_wrapper(backend, model) if backend_wrapper else backend

        store = ModelStore(settings, make_backend)
        limits = Limits(
            settings.limits.max_batch_per_request,
            settings.limits.request_timeout_s,
            settings.limits.allow_non_finite,
        )
        dataplane = DataPlane(store, DefaultVariantRouter(settings), metrics, limits)
        app.state.slimserve = ServiceContext(settings, dataplane, metrics)

        async def load() -> None:
            await store.load_all()
            _publish_states(store, metrics)
            states = {f"{s.name}:{s.version}": str(s.state) for s in store.all()}
            log.info("variants: %s; server ready: %s", states, store.ready())
            for line in on_ready or []:
                log.info("%s", line)

        loading = asyncio.create_task(load(), name="load-variants")
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await store.unload_all()
            executor.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(
        title="slimserve",
        version=__version__,
        description="Open Inference Protocol server for a model family's compressed variants.",
        lifespan=lifespan,
    )
    errors.install_error_handlers(app)
    app.include_router(oip.router)
    app.include_router(predict.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
