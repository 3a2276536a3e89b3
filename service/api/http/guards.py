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

from service.api.http.direct import DirectInferProtocol
from service.config import ServerSettings
from service.timers import EarliestTimer, reached

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    head_timeout_s: float  # from a connection's opening, or a request's first byte, to its last header
    body_timeout_s: float  # from the last header to the body's last byte
    keep_alive_timeout_s: float  # from a response to the next request's first byte
    max_connections: int  # open connections; one more is answered 503 and closed

    @classmethod
    def of(cls, server: ServerSettings) -> ClientLimits:
        return cls(
            server.head_timeout_s, server.body_timeout_s, server.keep_alive_timeout_s, server.max_connections
        )


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


class GuardedHttpToolsProtocol(DirectInferProtocol):
    """One connection: a request's head and body each have a deadline, and so has the idle time between
    requests (in place of uvicorn's ``timeout_keep_alive``); a request being served has none.

    A request only stamps when its phase began (two attribute writes): the one timer a connection holds
    is armed when none is pending and, when it fires, compares the phase's age with its limit, re-arming
    for the rest if the phase began later. uvicorn arms and cancels a keep-alive timer of its own for every
    response; that and two more per request cost more than the rest of the guard on a one-digit inference,
    so the idle time between requests is this timer's third phase instead.
    """

    limits: ClientLimits  # set on the subclass ``guarded_protocol`` makes
    phase_limits: dict[str, float]  # seconds each phase may last, by phase; from ``limits``

    _timer: EarliestTimer
    _phase: str | None = None  # "head", "body" or "idle"; None while a request is being served
    _phase_started = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer = EarliestTimer(self._check)
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d open is the limit", self.limits.max_connections)
            self._refuse(b"503 Service Unavailable", "too many open connections", b"retry-after: 1")
            return
        self._enter("head")  # a connection that sends nothing is a head that never came

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = None
        self._timer.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._enter("head")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = None
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.pipeline:
            self._enter("idle")  # answered before its body was in (a 413, say): the wait for the next begins

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait as the ``idle`` phase instead of a timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase is None:  # not already receiving the next request
            self._enter("idle")

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._phase_started = now = self.loop.time()
        # a shorter phase (idle after a long head) moves the one timer earlier
        self._timer.arm(self.loop, now + self.phase_limits[phase])

    def _check(self) -> None:
        phase = self._phase
        if phase is None or self.transport.is_closing():
            return  # a request being served, or gone: the next phase re-arms
        due = self._phase_started + self.phase_limits[phase]
        if not reached(self.loop, due):
            self._timer.arm(self.loop, due)
            return
        if phase == "idle":
            self.timeout_keep_alive_handler()
            return
        if self.flow.read_paused:  # not the client's slowness: we stopped reading (pipelining, a full buffer)
            self._enter("body")
            return
        if phase == "body" and self.cycle.response_started:
            self.transport.close()  # the app answered before the body came (a 413, say): nothing to add
            return
        self._refuse(b"408 Request Timeout", "the request did not arrive in time")

    def _refuse(self, status: bytes, message: str, *extra: bytes) -> None:
        self.transport.write(plain_response(status, message, *extra))
        self.transport.close()


def guarded_protocol(limits: ClientLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying these limits."""
    phase_limits = {
        "head": limits.head_timeout_s, "body": limits.body_timeout_s, "idle": limits.keep_alive_timeout_s
    }  # fmt: skip
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "phase_limits": phase_limits},
    )
