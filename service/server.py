"""Run the service: bind, build the app, serve until told to stop."""

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
from service.api.http.coalescing import CoalescingHttpToolsProtocol
from service.config import Settings

log = logging.getLogger("service")


def bind(host: str, port: int) -> socket.socket:
    """Bind before building the app, so port 0 works and the real port can be announced.

    TCP_NODELAY is set here because accepted sockets inherit it (Linux) and uvicorn's uvloop transports
    do not set it: without it a response's header and body writes wait on the client's delayed ACK, 40 ms
    for every small request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.set_inheritable(True)
    return sock


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
    usual: stop accepting, let in-flight requests finish within the grace period, run the lifespan's exit.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_delay_s: float) -> None:
        super().__init__(config)
        self._app = app
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
        context = getattr(self._app.state, "slimserve", None)
        if context is not None:
            context.dataplane.draining = True
        log.info(
            "SIGTERM: not ready now, serving %.1f s more for load balancers, then draining",
            self._drain_delay_s,
        )
        stop = super().handle_exit
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain_delay_s, stop, sig, frame)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How uvicorn runs the app, here and in the tests: one place, so they cannot drift apart."""
    options: dict[str, Any] = {
        "http": CoalescingHttpToolsProtocol,
        "log_level": settings.server.log_level,
        "access_log": settings.server.access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": max(1, round(settings.server.shutdown_grace_s)),
    }
    return uvicorn.Config(app, **(options | overrides))


async def serve(settings: Settings) -> None:
    sock = bind(settings.server.host, settings.server.http_port)
    host, port = sock.getsockname()[:2]
    log.info("slimserve listening on http://%s:%d (registry %s)", host, port, settings.registry.path)
    app = create_app(settings, on_ready=example_curl(host, port))
    config = uvicorn_config(app, settings)
    await DrainingServer(config, app, settings.server.drain_delay_s).serve(sockets=[sock])
