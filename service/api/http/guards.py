"""What one HTTP client may hold: a deadline for a request's head and body, and a cap on open connections.

uvicorn bounds only the idle time between requests on a kept-alive connection. A client that opens a
connection and never finishes its headers (or its body) holds a socket, a parser and, once the headers are
in, an ASGI task for as long as it likes: a probe kept 1,500 such requests open with nothing timing out.
These guards answer 408 to a request that does not arrive in time and 503 to a connection beyond the cap,
then close, the way nginx's ``client_header_timeout``/``client_body_timeout`` and a listener's connection
limit do.

They hook uvicorn's httptools protocol (its parser callbacks and ``connections`` set), so pyproject bounds
uvicorn to the versions this was written against; tests/service/test_slow_clients.py pins the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from service.api.http.coalescing import CoalescingHttpToolsProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    head_timeout_s: float  # from a connection's opening, or a request's first byte, to its last header
    body_timeout_s: float  # from the last header to the body's last byte
    max_connections: int  # open connections; one more is answered 503 and closed


def plain_response(status: bytes, message: str, *extra: bytes) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, written before any ASGI cycle exists."""
    body = message.encode()
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: text/plain; charset=utf-8",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """One connection: the read deadline is armed while a request is being received, never while it is served."""

    limits: ClientLimits  # set on the subclass ``guarded_protocol`` makes

    _deadline: asyncio.TimerHandle | None = None
    _in_body = False  # between a request's last header and its last body byte

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d open is the limit", self.limits.max_connections)
            self._refuse(b"503 Service Unavailable", "too many open connections", b"retry-after: 1")
            return
        self._arm(self.limits.head_timeout_s)  # a connection that sends nothing is a head that never came

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_body = False
        self._arm(self.limits.head_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_body = True
        self._arm(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # not the client's slowness: we stopped reading (pipelining, a full buffer)
            self._arm(self.limits.body_timeout_s)
            return
        if self._in_body and self.cycle.response_started:
            self.transport.close()  # the app answered before the body came (a 413, say): nothing to add
            return
        self._refuse(b"408 Request Timeout", "the request did not arrive in time")

    def _refuse(self, status: bytes, message: str, *extra: bytes) -> None:
        self.transport.write(plain_response(status, message, *extra))
        self.transport.close()


def guarded_protocol(limits: ClientLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
