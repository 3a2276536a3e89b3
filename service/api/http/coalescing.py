"""uvicorn's httptools protocol, with a response's head and body leaving in one write.

uvicorn writes the status line and headers on ``http.response.start`` and the body on
``http.response.body``: two ``send`` calls and, with TCP_NODELAY, two packets per response. Profiled at 64
connections, those writes were a quarter of the event loop's time. Here the head is held back until the
body arrives (in the same task step for every response this service builds) and both go out as one; a
head whose body has not come by the end of the loop iteration is written on its own, so nothing waits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps a transport: a write is held until the next one or the end of the loop iteration."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def write_now(self, data: bytes) -> None:
        """A whole response: out at once, after anything held."""
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped transport's
        return getattr(self._transport, name)


def write_whole(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Write a complete response without holding it for the end of the loop iteration."""
    if isinstance(transport, CoalescingTransport):
        transport.write_now(data)
    else:
        transport.write(data)  # type: ignore[attr-defined]


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are not asyncio.Transport subclasses, so this wraps whatever the loop made
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
