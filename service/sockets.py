"""Listening sockets, shared by the HTTP and gRPC fronts."""

from __future__ import annotations

import socket


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
