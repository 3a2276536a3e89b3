"""A gRPC server on the service's event loop: grpc.aio's registration API over ``Http2Connection``.

The generated ``add_*Servicer_to_server`` functions register their methods here as they do on
``grpc.aio.server()``; ``stop`` drains as grpc.aio's does (GOAWAY, in-flight calls get the grace, then the
connections close).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

import grpc

from service.api.grpc.h2.calls import GrpcCall, deadline_of, not_grpc, refuse, request_metadata
from service.api.grpc.h2.connection import Headers, Http2Connection, Limits, Stream, StreamHandler
from service.sockets import bind

log = logging.getLogger(__name__)


class HandlerCallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class Http2GrpcServer:
    def __init__(self, max_message_bytes: int, limits: Limits | None = None) -> None:
        self._max_message = max_message_bytes
        self._limits = limits or Limits()
        self._methods: dict[bytes, Any] = {}
        self._generic: list[Any] = []
        self._connections: set[Http2Connection] = set()
        self._server: asyncio.Server | None = None

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for name, handler in handlers.items():
            self._methods[f"/{service}/{name}".encode()] = handler

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._generic.extend(handlers)

    def _method(self, path: bytes) -> Any | None:
        handler = self._methods.get(path)
        if handler is None:
            details = HandlerCallDetails(path.decode("latin-1"), ())
            handler = next((h for g in self._generic if (h := g.service(details)) is not None), None)
        return handler

    def _open(self, connection: Http2Connection, stream: Stream, headers: Headers) -> StreamHandler:
        fields = dict(headers)
        if fields.get(b":method") != b"POST" or not fields.get(b"content-type", b"").startswith(
            b"application/grpc"
        ):
            return not_grpc(connection, stream)
        size = sum(len(name) + len(value) + 32 for name, value in headers)  # as RFC 9113 counts it
        if size > self._limits.max_header_list:
            return refuse(connection, stream, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"header list of {size} bytes, more than {self._limits.max_header_list}")  # fmt: skip
        path = fields.get(b":path", b"")
        handler = self._method(path)
        if handler is None:
            shown = path.decode("latin-1")[:200]
            return refuse(connection, stream, grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {shown}")
        try:
            metadata = request_metadata(headers)
        except ValueError:
            return refuse(connection, stream, grpc.StatusCode.INTERNAL, "malformed binary metadata")
        deadline = deadline_of(fields.get(b"grpc-timeout"), asyncio.get_running_loop().time())
        encoding = fields.get(b"grpc-encoding")
        return GrpcCall(connection, stream, handler, metadata, deadline, self._max_message, encoding)

    def _connection(self) -> Http2Connection:
        if len(self._connections) >= self._limits.max_connections:
            log.warning("refused a gRPC connection: %d open is the limit", self._limits.max_connections)
            return Http2Connection(self._open, self._limits, self._connections.discard, refuse=True)
        connection = Http2Connection(self._open, self._limits, self._connections.discard)
        self._connections.add(connection)
        return connection

    async def start(self, host: str, port: int) -> int:
        sock = bind(host, port)
        self._server = await asyncio.get_running_loop().create_server(self._connection, sock=sock)
        return int(sock.getsockname()[1])

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        if self._connections:  # each closes once its last call is answered
            await asyncio.wait([c.closed for c in self._connections], timeout=grace)
        for connection in list(self._connections):
            connection.abort()
        await self._server.wait_closed()
