"""Run the service: bind, assemble the stack, put the HTTP front on it, serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.api.http.app import create_app
from service.api.http.front import HttpFront
from service.api.http.guards import ClientLimits, guarded_protocol
from service.assembly import serving_stack
from service.config import Settings
from service.dataplane import DataPlane
from service.sockets import bind

log = logging.getLogger("service")


def example_curl(host: str, port: int) -> list[str]:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    return [
        f"slimserve is ready on {base}; try:",
        f"  curl -s {base}/v2/models/mnist/infer -H 'content-type: application/json' "
        "-d @examples/infer-digit-7.json",
    ]


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain step on SIGTERM for load balancers.

    At SIGTERM the service reports not-ready at once (HTTP readiness and gRPC health) but keeps serving for
    ``drain_delay_s``, so endpoints are removed before connections are refused; then uvicorn shuts down as
    usual: stop accepting, let in-flight requests finish within the grace period; the stack stops after.
    """

    def __init__(self, config: uvicorn.Config, dataplane: DataPlane, drain_delay_s: float) -> None:
        super().__init__(config)
        self._dataplane = dataplane
        self._drain_delay_s = drain_delay_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining or self._loop is None or self._drain_delay_s <= 0:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._dataplane.draining = True
        log.info(
            "SIGTERM: not ready now, serving %.1f s more for load balancers, then draining",
            self._drain_delay_s,
        )
        stop = super().handle_exit
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain_delay_s, stop, sig, frame)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How uvicorn runs the app, here and in the tests: one place, so they cannot drift apart."""
    server = settings.server
    options: dict[str, Any] = {
        "http": guarded_protocol(ClientLimits.of(server)),
        "log_level": server.log_level,
        "access_log": server.access_log,
        # X-Forwarded-For only changes the client address, which only the access log shows
        "proxy_headers": server.access_log,
        "lifespan": "off",  # the stack is assembled around the app (service.assembly), not inside it
        "timeout_graceful_shutdown": max(1, round(server.shutdown_grace_s)),
    }
    return uvicorn.Config(HttpFront(app, app.state.slimserve), **(options | overrides))


async def serve(settings: Settings) -> None:
    sock = bind(settings.server.host, settings.server.http_port)
    host, port = sock.getsockname()[:2]
    log.info("slimserve listening on http://%s:%d (registry %s)", host, port, settings.registry.path)
    async with serving_stack(settings, on_ready=example_curl(host, port)) as context:
        config = uvicorn_config(create_app(context), settings)
        await DrainingServer(config, context.dataplane, settings.server.drain_delay_s).serve(sockets=[sock])
