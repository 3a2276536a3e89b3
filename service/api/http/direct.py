"""Inference answered by the HTTP protocol itself, without an ASGI cycle, when nothing could tell.

uvicorn serves every request through ASGI: a scope dict, a request-response cycle with an event, ``receive``
and ``send`` message dicts, header checks on the way out. On one pinned core a bare uvicorn answering a
canned reply to the OIP JSON body served about 12,700 calls/s; the same parser (httptools) on the same loop
answering from the protocol with a task per request served about 20,000: some 30 µs a request, more than
any one part of our own path costs now.

So a plain inference request is answered here: ``POST …/infer`` over HTTP/1.1 with keep-alive, a declared
``Content-Length`` within the limit and no ``Content-Encoding``, ``Expect`` or upgrade, when the app has no
middleware (``HttpFront.direct_route``) and no root path, and no earlier request of the connection is still
being answered. Anything else takes uvicorn's ASGI path unchanged. The response is the one the ASGI path
sends (the endpoint's ``answer`` builds both), after uvicorn's default headers; an access log, when uvicorn
keeps one, gets uvicorn's line.

This hooks uvicorn's httptools protocol and the cycle attributes it reads, so pyproject bounds uvicorn to
the versions it was written against; tests/service/test_direct_http.py pins the behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from service.api.http.coalescing import CoalescingHttpToolsProtocol, write_whole

if TYPE_CHECKING:
    from service.api.http.front import InferEndpoint


class _NoWaiter:
    """uvicorn sets a cycle's event when the client leaves; nobody waits on a direct cycle's."""

    def set(self) -> None:
        pass


NO_WAITER = _NoWaiter()


class DirectCycle:
    """What uvicorn's protocol reads and writes of a request cycle, for a request answered directly."""

    __slots__ = (
        "chunks",
        "disconnected",
        "endpoint",
        "headers",
        "keep_alive",
        "message_event",
        "model",
        "path",
        "response_complete",
        "response_started",
        "version",
    )  # fmt: skip

    def __init__(
        self, endpoint: InferEndpoint, path: str, model: str, version: str | None, headers: dict[str, str]
    ) -> None:
        self.endpoint = endpoint
        self.path = path
        self.model = model
        self.version = version
        self.headers = headers
        self.chunks: list[bytes] = []
        self.keep_alive = True  # uvicorn's shutdown turns it off: the connection closes after the answer
        self.response_started = False
        self.response_complete = False
        self.disconnected = False  # set by uvicorn's connection_lost
        self.message_event = NO_WAITER


class DirectInferProtocol(CoalescingHttpToolsProtocol):
    _defaults: list[tuple[bytes, bytes]] | None = None  # uvicorn's default headers, replaced once a second
    _defaults_head = b""

    def on_message_begin(self) -> None:
        """uvicorn's, but the ASGI scope is built only for a request that takes the ASGI path."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        cycle = self._direct_cycle()
        if cycle is None:
            self._begin_scope()
            super().on_headers_complete()
            return
        self.cycle = cycle  # type: ignore[assignment]

    def _begin_scope(self) -> None:
        """The scope uvicorn's ``on_message_begin`` starts (its ``on_headers_complete`` adds the rest)."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is DirectCycle:
            cycle.chunks.append(body)  # bounded: the declared length is within the limit
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not DirectCycle:
            super().on_message_complete()
            return
        task = self.loop.create_task(self._answer(cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)  # uvicorn's graceful shutdown waits for these

    def _direct_cycle(self) -> DirectCycle | None:
        route = getattr(self.app, "direct_route", None)  # HttpFront's, unless uvicorn wrapped the app
        if route is None or self.root_path or self.limit_concurrency is not None:
            return None
        previous = self.cycle
        if previous is not None and not previous.response_complete:
            return None  # pipelined behind an unanswered request: uvicorn queues it
        parser = self.parser
        if (
            parser.get_method() != b"POST"
            or self.expect_100_continue
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or b"?" in self.url
            or b"%" in self.url
        ):
            return None
        endpoint: InferEndpoint | None = route()
        if endpoint is None:
            return None
        path = self.url.decode("ascii", "replace")
        target = endpoint.target(path)
        if target is None:
            return None
        # the first of a repeated header counts, as Starlette's Headers.get reads it
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(self.headers)}
        declared = headers.get("content-length")
        if (
            declared is None
            or not (declared.isascii() and declared.isdigit())
            or int(declared) > endpoint.max_request_bytes
            or "content-encoding" in headers
            or "transfer-encoding" in headers
        ):
            return None  # the ASGI path reads, limits and decompresses bodies, and says what is wrong
        return DirectCycle(endpoint, path, *target, headers)

    def _default_head(self) -> bytes:
        """uvicorn's default headers (date, server) as they open every response, joined once per change."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:
            self._defaults = defaults
            self._defaults_head = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
        return self._defaults_head

    async def _answer(self, cycle: DirectCycle) -> None:
        chunks = cycle.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status, headers, content = await cycle.endpoint.answer(
            cycle.model, cycle.version, cycle.headers, body=body
        )
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if cycle.disconnected:
            return
        if self.access_log:  # uvicorn's line, as its ASGI path logs it
            client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
            self.access_logger.info('%s - "POST %s HTTP/1.1" %d', client, cycle.path, status)
        head = [STATUS_LINE[status], self._default_head()]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        cycle.response_started = True
        write_whole(self.transport, b"".join(head) + content)
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
