"""``create_app(context)``: the HTTP front on a serving stack someone else assembled (``service.assembly``).

It has no lifespan: the stack is started before the app exists and stopped after it is gone, so the gRPC
front never depends on this one's lifecycle.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from service import __version__
from service.api.http import errors, experiments, oip, openapi, predict, repository, tradeoff, ui
from service.assembly import ServiceContext


def create_app(context: ServiceContext) -> FastAPI:
    """Build the app. A middleware added to it wraps every route; under uvicorn (``front.HttpFront``) the
    inference endpoint too."""
    settings = context.settings
    app = FastAPI(
        title="slimserve",
        version=__version__,
        description="Open Inference Protocol server for a model family's compressed variants.",
    )
    app.state.slimserve = context
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
        return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
