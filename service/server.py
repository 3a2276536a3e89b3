"""Run the service: bind, build the app, serve until told to stop."""

from __future__ import annotations

import logging
import socket

import uvicorn

from service.api.http.app import create_app
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


async def serve(settings: Settings) -> None:
    sock = bind(settings.server.host, settings.server.http_port)
    host, port = sock.getsockname()[:2]
    log.info("slimserve listening on http://%s:%d (registry %s)", host, port, settings.registry.path)
    app = create_app(settings, on_ready=example_curl(host, port))
    config = uvicorn.Config(
        app,
        log_level=settings.server.log_level,
        access_log=settings.server.access_log,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    await uvicorn.Server(config).serve(sockets=[sock])
