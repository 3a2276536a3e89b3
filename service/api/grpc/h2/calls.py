"""gRPC over one HTTP/2 stream (the gRPC HTTP/2 protocol spec): length-prefixed messages in, the method
handler run as a task, response headers, messages and the status trailers out.

Method handlers are grpc's own ``RpcMethodHandler`` values, registered by the generated
``add_*Servicer_to_server`` functions, and they receive a ``CallContext`` offering the part of
``grpc.aio.ServicerContext`` a servicer uses, so the same servicer runs on this transport and on grpc.aio.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc

from service.api.grpc.h2.connection import Http2Connection, Stream
from service.api.grpc.h2.frames import header_block, literal

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str | bytes], ...]
RESPONSE_HEADERS = header_block(
    [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", b"identity,deflate,gzip")]
)
STATUS_OK = literal(b"grpc-status", b"0")
QUEUED_MESSAGES = 32  # a streaming call's messages read but not yet taken by its handler, before flow control
QUEUED_BYTES = 1 << 20  # ... and their bytes
SEND_BUFFER = 1 << 20  # a streaming response waits for the client to read past this many unsent bytes
WINDOW_BITS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}  # grpc's "deflate" is zlib's format
TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
RESERVED = (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")


class Aborted(Exception):
    """Raised by ``CallContext.abort``: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def percent_encoded(text: str) -> bytes:
    """grpc-message encoding: printable ASCII except '%' as is, every other byte of its UTF-8 as %XX."""
    return b"".join(
        bytes((byte,)) if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte
        for byte in text.encode()
    )


def status_fields(code: grpc.StatusCode, details: str, metadata: Sequence[tuple[str, str | bytes]]) -> bytes:
    fields = literal(b"grpc-status", b"%d" % code.value[0])
    if details:
        fields += literal(b"grpc-message", percent_encoded(details))
    for key, value in metadata:
        if isinstance(value, bytes):
            fields += literal(key.lower().encode(), base64.b64encode(value).rstrip(b"="))
        else:
            fields += literal(key.lower().encode(), value.encode() if value.isascii() and value.isprintable()
                              else printable(value))  # fmt: skip
    return fields


def printable(value: str) -> bytes:
    """A metadata value as HTTP/2 may carry it: printable ASCII only (a CR or LF would break the trailers)."""
    return bytes(byte for byte in value.encode() if 0x20 <= byte <= 0x7E)


def request_metadata(headers: Iterable[tuple[bytes, bytes]]) -> Metadata:
    """Custom metadata as grpc.aio presents it: binary (``-bin``) values decoded, no pseudo or reserved keys."""
    pairs: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name.startswith(b":") or name in RESERVED:
            continue
        if name.endswith(b"-bin"):
            pairs.append((name.decode(), base64.b64decode(value + b"=" * (-len(value) % 4))))
        else:
            try:
                pairs.append((name.decode(), value.decode()))
            except UnicodeDecodeError:
                pairs.append((name.decode(), value.decode("latin-1")))
    return tuple(pairs)


def deadline_of(value: bytes | None, now: float) -> float | None:
    if value is None:
        return None
    match = TIMEOUT.fullmatch(value)
    return now + int(match.group(1)) * TIMEOUT_UNITS[match.group(2)] if match else None


class CallContext:
    """What a servicer may ask of its call; the names and meanings of ``grpc.aio.ServicerContext``."""

    __slots__ = ("_call",)

    def __init__(self, call: GrpcCall) -> None:
        self._call = call

    def invocation_metadata(self) -> Metadata:
        return self._call.metadata

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        if trailing_metadata:
            self._call.trailing_metadata = trailing_metadata
        raise Aborted(code, details)

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._call.trailing_metadata = tuple(trailing_metadata)

    def time_remaining(self) -> float | None:
        deadline = self._call.deadline
        return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())

    def peer(self) -> str:
        return self._call.connection.peer()


class GrpcCall:
    """One call: created when the stream's headers arrive, fed its DATA by the connection."""

    __slots__ = (
        "_buffer",
        "_done",
        "_headers_sent",
        "_held",
        "_input_done",
        "_max_message",
        "_queue",
        "_queued_bytes",
        "_task",
        "_timer",
        "_waiter",
        "_withheld",
        "connection",
        "deadline",
        "encoding",
        "handler",
        "metadata",
        "stream",
        "trailing_metadata",
    )  # fmt: skip

    def __init__(
        self,
        connection: Http2Connection,
        stream: Stream,
        handler: Any,
        metadata: Metadata,
        deadline: float | None,
        max_message: int,
        encoding: bytes | None = None,
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.handler = handler
        self.metadata = metadata
        self.deadline = deadline
        self.encoding = encoding
        self.trailing_metadata: Metadata = ()
        self._max_message = max_message
        self._buffer = bytearray()
        self._queue: deque[tuple[bytes, int]] = deque()  # messages and their framed sizes
        self._queued_bytes = 0
        self._held = 0  # bytes of this call in the connection's ``buffered``
        self._waiter: asyncio.Future[None] | None = None
        self._input_done = False
        self._withheld = 0
        self._task: asyncio.Task[None] | None = None
        self._headers_sent = False
        self._done = False
        # the deadline covers the whole call (a slow upload, a blocked answer), as grpc's own servers do
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(deadline, self._expire) if deadline is not None else None
        if handler.request_streaming:
            self._task = asyncio.ensure_future(self._run(None))

    # --- from the connection ---------------------------------------------------------------------------------
    def received(self, data: bytes) -> None:
        if self._done:
            return
        connection = self.connection
        connection.buffered += len(data)
        self._held += len(data)
        if connection.buffered > connection.limits.max_buffered:
            return self.fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"more than {connection.limits.max_buffered} request bytes buffered on this connection")  # fmt: skip
        buffer = self._buffer
        buffer += data
        start, end = 0, len(buffer)  # messages are cut at offsets; the buffer shifts once, not once each
        while end - start >= 5:
            size = int.from_bytes(buffer[start + 1 : start + 5], "big")
            if size > self._max_message:
                return self.fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"Received message larger than max ({size} vs. {self._max_message})")  # fmt: skip
            if end - start < 5 + size:
                break
            compressed, message = buffer[start], bytes(buffer[start + 5 : start + 5 + size])
            start += 5 + size
            if compressed:
                try:
                    message = inflated(message, self.encoding, self._max_message)
                except Aborted as refused:
                    return self.fail(refused.code, refused.details)
            self._deliver(message, 5 + size)
        del buffer[:start]
        if self.handler.request_streaming:
            self._withheld += len(data)
            self._release_credit()
        else:  # one message, bounded by the size limit: its window reopens as it arrives
            self.connection.credit(self.stream, len(data))

    def input_ended(self) -> None:
        self._input_done = True
        if self._buffer and not self._done:
            self.fail(grpc.StatusCode.INTERNAL, "the request ended inside a message")
        elif self._task is None and not self._done:
            self.fail(grpc.StatusCode.INTERNAL, "the request carried no message")
        self._wake()

    def cancelled(self) -> None:
        self._done = True
        if self._task is not None:
            self._task.cancel()

    def closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._release(self._held)
        self._queue.clear()

    def _expire(self) -> None:
        if not self._done:
            self.fail(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self.connection.expire(self.stream)  # an answer still waiting for the client's window is dropped

    def _release(self, size: int) -> None:
        self._held -= size
        self.connection.buffered -= size

    # --- messages in -----------------------------------------------------------------------------------------
    def _deliver(self, message: bytes, size: int) -> None:
        if self.handler.request_streaming:
            self._queue.append((message, size))
            self._queued_bytes += size
            self._wake()
        else:
            self._release(size)
            if self._task is None:
                self._task = asyncio.ensure_future(self._run(message))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _release_credit(self) -> None:
        if self._withheld and len(self._queue) < QUEUED_MESSAGES and self._queued_bytes < QUEUED_BYTES:
            self.connection.credit(self.stream, self._withheld)
            self._withheld = 0

    async def requests(self) -> AsyncIterator[Any]:
        deserialize = self.handler.request_deserializer
        while True:
            while not self._queue:
                if self._input_done:
                    return
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            message, size = self._queue.popleft()
            self._queued_bytes -= size
            self._release(size)
            self._release_credit()
            yield parsed(deserialize, message)

    # --- the handler -----------------------------------------------------------------------------------------
    async def _run(self, message: bytes | None) -> None:
        handler, context = self.handler, CallContext(self)
        try:
            if message is not None:
                request = parsed(handler.request_deserializer, message)
                if handler.response_streaming:
                    await self._send_all(handler.unary_stream(request, context))
                else:
                    await self._answer(await handler.unary_unary(request, context))
            elif handler.response_streaming:
                await self._send_all(handler.stream_stream(self.requests(), context))
            else:
                await self._answer(await handler.stream_unary(self.requests(), context))
            self.finish(grpc.StatusCode.OK, "")
        except Aborted as aborted:
            self.finish(aborted.code, aborted.details)
        except asyncio.CancelledError:
            pass  # answered already (deadline, a refused message), or the client reset the stream or left
        except Exception:
            log.exception("gRPC method handler failed")
            self.finish(grpc.StatusCode.UNKNOWN, "Unexpected error in the method handler")

    def _framed(self, response: Any) -> bytes:
        body = self.handler.response_serializer(response)
        if len(body) > self._max_message:
            raise Aborted(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"Sent message larger than max ({len(body)} vs. {self._max_message})")  # fmt: skip
        return b"\0" + len(body).to_bytes(4, "big") + body

    async def _answer(self, response: Any) -> None:
        message = self._framed(response)
        metadata = self.trailing_metadata
        trailers = status_fields(grpc.StatusCode.OK, "", metadata) if metadata else STATUS_OK
        self._done = True
        self.connection.send(self.stream, RESPONSE_HEADERS, message, trailers)

    async def _send_all(self, responses: AsyncIterator[Any]) -> None:
        async for response in responses:
            message = self._framed(response)
            headers = b"" if self._headers_sent else RESPONSE_HEADERS
            self._headers_sent = True
            self.connection.send(self.stream, headers, message)
            if len(self.stream.outbound) >= SEND_BUFFER:
                await self.connection.drained(self.stream, SEND_BUFFER)

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        """End the call with an error now; a running handler is cancelled."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self.finish(code, details)

    def finish(self, code: grpc.StatusCode, details: str) -> None:
        if self._done:
            return
        self._done = True
        fields = status_fields(code, details, self.trailing_metadata)
        if self._headers_sent:
            self.connection.send(self.stream, trailers=fields)
        else:  # Trailers-Only: one HEADERS frame with the status
            self.connection.send(self.stream, trailers=RESPONSE_HEADERS + fields)


def inflated(message: bytes, encoding: bytes | None, limit: int) -> bytes:
    window_bits = WINDOW_BITS.get(encoding or b"")
    if window_bits is None:
        shown = (encoding or b"").decode("latin-1")[:40]
        raise Aborted(
            grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding '{shown}' is not one of identity, deflate, gzip"
        )
    inflater = zlib.decompressobj(window_bits)
    try:
        data = inflater.decompress(message, limit + 1)
    except zlib.error as error:
        raise Aborted(grpc.StatusCode.INTERNAL, "a compressed message could not be decompressed") from error
    if len(data) > limit:
        raise Aborted(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max (over {limit})")
    if not inflater.eof:
        raise Aborted(grpc.StatusCode.INTERNAL, "a compressed message ended early")
    return data


def parsed(deserialize: Any, message: bytes) -> Any:
    try:
        return deserialize(message)
    except Exception as error:
        raise Aborted(grpc.StatusCode.INTERNAL, "the request message could not be parsed") from error


class Answered:
    """A stream answered as soon as its headers arrived (no such method, not gRPC, refused): the rest of what
    the client sends on it is dropped."""

    __slots__ = ()

    def received(self, data: bytes) -> None:
        pass

    def input_ended(self) -> None:
        pass

    def cancelled(self) -> None:
        pass

    def closed(self) -> None:
        pass


def refuse(connection: Http2Connection, stream: Stream, code: grpc.StatusCode, details: str) -> Answered:
    connection.send(stream, trailers=RESPONSE_HEADERS + status_fields(code, details, ()))
    return Answered()


def not_grpc(connection: Http2Connection, stream: Stream) -> Answered:
    """A request that is not gRPC (wrong method or content type): HTTP 415, as grpc's own servers answer."""
    connection.send(stream, trailers=header_block([(b":status", b"415")], status_200=False))
    return Answered()
