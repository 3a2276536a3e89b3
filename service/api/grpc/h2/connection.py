"""One HTTP/2 connection as an asyncio protocol: frames, flow control and the lifetime of its streams.

gRPC lives in ``calls``: for each new stream the connection asks its opener for a ``StreamHandler`` and feeds
it the stream's bytes; the handler answers through ``send``. Everything here runs on the event loop, without
locks or threads, which is what makes it cheaper per call than grpc.aio's hand-off to its C core
(benchmarks/serving.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from hpack import HPACKError

from service.api.grpc.h2.frames import (
    ACK,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    MAX_WINDOW,
    PREFACE,
    PRIORITY_FLAG,
    ErrorCode,
    FrameType,
    ProtocolViolation,
    Setting,
    frame,
    goaway,
    parse_settings,
    rst_stream,
    settings_frame,
    unpadded,
    window_update,
)
from service.api.grpc.h2.headers import HeaderBlockDecoder, Headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_concurrent_streams: int = 1024
    max_connections: int = 1024
    stream_window: int = 1 << 20  # what a client may send on one stream before its handler reads it
    connection_window: int = 1 << 24
    max_frame: int = 1 << 20
    max_header_list: int = 16 << 10  # advertised: a call with more metadata fails, its connection stays
    max_header_block: int = 64 << 10  # encoded bytes of one header block; past this the connection ends
    max_buffered: int = 64 << 20  # request bytes held for handlers on one connection; past this a call fails
    preface_timeout_s: float = 10.0  # a connection that has not said it speaks HTTP/2 by then is closed


class StreamHandler(Protocol):
    def received(self, data: bytes) -> None: ...
    def input_ended(self) -> None: ...
    def cancelled(self) -> None: ...  # the client reset the stream or the connection went away
    def closed(self) -> None: ...  # the stream is gone, answered or not


Opener = Callable[["Http2Connection", "Stream", Headers], StreamHandler]


class Stream:
    __slots__ = (
        "drained",
        "handler",
        "id",
        "outbound",
        "recv_window",
        "remote_closed",
        "send_window",
        "trailers",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = recv_window
        self.outbound = bytearray()
        self.trailers: bytes | None = None
        self.remote_closed = False
        self.handler: StreamHandler | None = None
        self.drained: asyncio.Future[None] | None = None


class Http2Connection(asyncio.Protocol):
    def __init__(
        self,
        opener: Opener,
        limits: Limits,
        on_close: Callable[[Http2Connection], None],
        refuse: bool = False,
    ) -> None:
        self._refuse = refuse  # one connection too many: GOAWAY at once
        self._open = opener
        self._limits = limits
        self._on_close = on_close
        self._buffer = bytearray()
        self._preface_seen = False
        self._decoder = HeaderBlockDecoder(4 * limits.max_header_block)
        self._streams: dict[int, Stream] = {}
        self._blocked: set[Stream] = set()
        self._last_stream_id = 0
        self._headers_in_progress: tuple[int, int, bytearray] | None = None
        self._peer_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._send_window = DEFAULT_WINDOW
        self._recv_window = limits.connection_window
        self._pending: list[bytes] = []
        self._closing = False
        self._writing_paused = False
        self.buffered = 0  # request bytes read but not yet taken by handlers (``calls`` keeps the count)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._preface_timer: asyncio.TimerHandle | None = None

    # --- the asyncio protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if self._refuse:
            self._fail(ErrorCode.ENHANCE_YOUR_CALM, "too many connections")
            return
        self._preface_timer = self._loop.call_later(self._limits.preface_timeout_s, self._preface_late)
        limits = self._limits
        self.write(settings_frame({
            Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            Setting.INITIAL_WINDOW_SIZE: limits.stream_window,
            Setting.MAX_FRAME_SIZE: limits.max_frame,
            Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list,
            Setting.ENABLE_PUSH: 0,
        }) + window_update(0, limits.connection_window - DEFAULT_WINDOW))  # fmt: skip

    def _preface_late(self) -> None:
        if not self._preface_seen:
            self._fail(ErrorCode.PROTOCOL_ERROR, "no HTTP/2 connection preface in time")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._preface_timer is not None:
            self._preface_timer.cancel()
        self._transport = None
        for stream in list(self._streams.values()):
            self._forget(stream, cancel=True)
        self._on_close(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        """The socket's send buffer is full (the client reads slowly): stop reading it and sending DATA."""
        self._writing_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        for stream in list(self._blocked):
            self._pump(stream)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            if not self._preface_seen:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buffer)):
                        raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                if buffer[: len(PREFACE)] != PREFACE:
                    raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                del buffer[: len(PREFACE)]
                self._preface_seen = True
                if self._preface_timer is not None:
                    self._preface_timer.cancel()
            position, size, max_frame = 0, len(buffer), self._limits.max_frame
            while size - position >= 9:
                length = int.from_bytes(buffer[position : position + 3], "big")
                if length > max_frame:
                    raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, f"a frame of {length} bytes")
                end = position + 9 + length
                if end > size:
                    break
                kind, flags = buffer[position + 3], buffer[position + 4]
                stream_id = int.from_bytes(buffer[position + 5 : position + 9], "big") & 0x7FFFFFFF
                payload = bytes(buffer[position + 9 : end])
                position = end
                self._frame(kind, flags, stream_id, payload)
                if self._transport is None:
                    return
            del buffer[:position]
        except ProtocolViolation as violation:
            self._fail(violation.code, str(violation))

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._headers_in_progress is not None and kind != FrameType.CONTINUATION:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a header block was interrupted")
        if kind == FrameType.DATA:
            self._data(flags, stream_id, payload)
        elif kind == FrameType.HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == FrameType.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == FrameType.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == FrameType.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == FrameType.PING:
            if len(payload) != 8 or stream_id:
                raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "a PING must carry 8 bytes on stream 0")
            if not flags & ACK:
                self.write(frame(FrameType.PING, ACK, 0, payload))
        elif kind == FrameType.RST_STREAM:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._forget(stream, cancel=True)
        elif kind == FrameType.GOAWAY:
            self._closing = True
            self._close_when_idle()
        elif kind == FrameType.PUSH_PROMISE:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "clients cannot push")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 allows

    # --- frames in -------------------------------------------------------------------------------------------
    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._recv_window -= len(payload)
        if self._recv_window < 0:
            raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "data past the connection window")
        if self._recv_window < self._limits.connection_window // 2:
            self.write(window_update(0, self._limits.connection_window - self._recv_window))
            self._recv_window = self._limits.connection_window
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # a stream we reset or answered: its data was in flight
        stream.recv_window -= len(payload)
        if stream.recv_window < 0:
            raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, f"data past stream {stream_id}'s window")
        data = unpadded(flags, payload)
        padding = len(payload) - len(data)
        if padding and not flags & END_STREAM:
            self.credit(stream, padding)
        assert stream.handler is not None
        stream.remote_closed = bool(flags & END_STREAM)  # known before the handler reads: no credit to return
        if data:
            stream.handler.received(data)
        if flags & END_STREAM and stream.id in self._streams:
            self._remote_closed(stream)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id % 2:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a client stream id must be odd")
        block = unpadded(flags, payload)
        if flags & PRIORITY_FLAG:
            block = block[5:]
        if len(block) > self._limits.max_header_block:
            raise ProtocolViolation(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            self._header_block(flags, stream_id, block)
        else:
            self._headers_in_progress = (stream_id, flags, bytearray(block))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._headers_in_progress is None or self._headers_in_progress[0] != stream_id:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        _, first_flags, block = self._headers_in_progress
        block += payload
        if len(block) > self._limits.max_header_block:
            raise ProtocolViolation(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            self._headers_in_progress = None
            self._header_block(first_flags, stream_id, bytes(block))

    def _header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except HPACKError as error:
            raise ProtocolViolation(ErrorCode.COMPRESSION_ERROR, f"header block: {error}") from error
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client end its input
            if flags & END_STREAM:
                self._remote_closed(stream)
            return
        if stream_id <= self._last_stream_id:
            return  # a stream already closed (reset or answered): HPACK state is kept, the block dropped
        self._last_stream_id = stream_id
        if self._closing or len(self._streams) >= self._limits.max_concurrent_streams:
            self.write(rst_stream(stream_id, ErrorCode.REFUSED_STREAM))
            return
        stream = Stream(stream_id, self._peer_window, self._limits.stream_window)
        self._streams[stream_id] = stream
        stream.remote_closed = bool(flags & END_STREAM)  # so an answer given at once sends no RST_STREAM
        stream.handler = self._open(self, stream, headers)
        if flags & END_STREAM and stream.id in self._streams:
            self._remote_closed(stream)

    def _remote_closed(self, stream: Stream) -> None:
        stream.remote_closed = True
        assert stream.handler is not None
        stream.handler.input_ended()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE must carry 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not increment:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        if not stream_id:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            for blocked in list(self._blocked):
                self._pump(blocked)
            return
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, f"stream {stream_id}'s window overflow")
            self._pump(stream)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        values = parse_settings(payload)
        if Setting.INITIAL_WINDOW_SIZE in values:
            window = values[Setting.INITIAL_WINDOW_SIZE]
            if window > MAX_WINDOW:
                raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "initial window too large")
            delta, self._peer_window = window - self._peer_window, window
            for stream in self._streams.values():
                stream.send_window += delta
        if Setting.MAX_FRAME_SIZE in values:
            size = values[Setting.MAX_FRAME_SIZE]
            if not DEFAULT_MAX_FRAME <= size < 1 << 24:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {size}")
            self._peer_max_frame = size
        self.write(frame(FrameType.SETTINGS, ACK, 0))
        for stream in list(self._streams.values()):
            self._pump(stream)

    # --- what handlers call ----------------------------------------------------------------------------------
    def send(
        self, stream: Stream, headers: bytes = b"", data: bytes = b"", trailers: bytes | None = None
    ) -> None:
        """Queue a stream's response headers, DATA (sent as the peer's windows allow) and, last, its trailers."""
        if stream.id not in self._streams:
            return  # reset by the client meanwhile
        if headers:
            self.write(self._header_frames(stream.id, headers, 0))
        if data:
            stream.outbound += data
        if trailers is not None:
            stream.trailers = trailers
        self._pump(stream)

    def credit(self, stream: Stream, size: int) -> None:
        """The handler consumed ``size`` bytes of the stream: the client may send that many more."""
        if size and not stream.remote_closed and stream.id in self._streams:
            stream.recv_window += size
            self.write(window_update(stream.id, size))

    async def drained(self, stream: Stream, below: int) -> None:
        """Wait until the stream's unsent DATA is under ``below`` bytes (or the stream is gone)."""
        while len(stream.outbound) >= below and stream.id in self._streams:
            stream.drained = self._loop.create_future()
            await stream.drained

    def peer(self) -> str:
        address = self._transport.get_extra_info("peername") if self._transport else None
        return f"ipv4:{address[0]}:{address[1]}" if address else "unknown"

    @property
    def limits(self) -> Limits:
        return self._limits

    # --- shutdown --------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """GOAWAY: streams already opened finish, new ones are refused; the connection closes once idle."""
        if self._transport is not None and not self._closing:
            self._closing = True
            self.write(goaway(self._last_stream_id, ErrorCode.NO_ERROR))
            self._close_when_idle()

    def abort(self) -> None:
        """End every call now and drop the connection, without waiting for the client to read."""
        for stream in list(self._streams.values()):
            self._forget(stream, cancel=True)
        if self._transport is not None:
            self._transport.abort()

    def expire(self, stream: Stream) -> None:
        """The call's deadline passed while its answer waited for the client's window: give up on it."""
        if stream.id in self._streams:
            self.write(rst_stream(stream.id, ErrorCode.CANCEL))
            self._forget(stream, cancel=True)

    # --- internals -------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def _header_frames(self, stream_id: int, block: bytes, flags: int) -> bytes:
        limit = self._peer_max_frame
        if len(block) <= limit:
            return frame(FrameType.HEADERS, flags | END_HEADERS, stream_id, block)
        chunks = [block[i : i + limit] for i in range(0, len(block), limit)]
        frames = [frame(FrameType.HEADERS, flags, stream_id, chunks[0])]
        frames += [frame(FrameType.CONTINUATION, 0, stream_id, chunk) for chunk in chunks[1:-1]]
        frames.append(frame(FrameType.CONTINUATION, END_HEADERS, stream_id, chunks[-1]))
        return b"".join(frames)

    def _pump(self, stream: Stream) -> None:
        outbound = stream.outbound
        while outbound:
            if self._writing_paused:
                self._blocked.add(stream)
                return
            size = min(len(outbound), stream.send_window, self._send_window, self._peer_max_frame)
            if size <= 0:
                self._blocked.add(stream)
                return
            self.write(frame(FrameType.DATA, 0, stream.id, bytes(outbound[:size])))
            del outbound[:size]
            stream.send_window -= size
            self._send_window -= size
        self._blocked.discard(stream)
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if stream.trailers is not None:
            self.write(self._header_frames(stream.id, stream.trailers, END_STREAM))
            if not stream.remote_closed:  # answered before the client finished sending: stop its upload
                self.write(rst_stream(stream.id, ErrorCode.NO_ERROR))
            self._forget(stream, cancel=False)

    def _forget(self, stream: Stream, cancel: bool) -> None:
        self._streams.pop(stream.id, None)
        self._blocked.discard(stream)
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if stream.handler is not None:
            if cancel:
                stream.handler.cancelled()
            stream.handler.closed()
        if self._closing:
            self._close_when_idle()

    def _close_when_idle(self) -> None:
        if not self._streams and self._transport is not None:
            self._flush()
            self._transport.close()

    def _fail(self, code: ErrorCode, reason: str) -> None:
        log.info("closing an HTTP/2 connection from %s: %s", self.peer(), reason)
        self.write(goaway(self._last_stream_id, code, reason))
        self._flush()
        if self._transport is not None:
            self._transport.close()
        for stream in list(self._streams.values()):
            self._forget(stream, cancel=True)
