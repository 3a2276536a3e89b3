"""The gRPC server: OIP servicer plus standard health checking, on its own port, over either transport
(``server.grpc_transport``): our HTTP/2 protocol (``h2``) or grpc.aio. Both take the same servicers."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from service.api.grpc.h2.connection import Limits
from service.api.grpc.h2.server import Http2GrpcServer
from service.api.grpc.health import HealthServicer
from service.api.grpc.servicer import InferenceServicer
from service.config import Settings
from service.dataplane import DataPlane

log = logging.getLogger(__name__)


class GrpcServer:
    """A peer of the HTTP front: service.assembly starts it beside the Runtime, and stops it."""

    def __init__(self, settings: Settings, dataplane: DataPlane) -> None:
        self._settings = settings
        limit = settings.server.grpc_max_message_bytes
        self._server: Http2GrpcServer | grpc.aio.Server
        if settings.server.grpc_transport == "h2":
            server = settings.server
            limits = Limits(max_connections=server.max_connections, preface_timeout_s=server.head_timeout_s)
            self._server = Http2GrpcServer(limit, limits)
        else:
            self._server = grpc.aio.server(
                options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
            )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(
                dataplane,
                settings.admin.token,
                settings.limits.max_tensor_elements,
                max_stream_in_flight=settings.batching.max_queue_size,
            ),
            self._server,
        )
        self._health = HealthServicer(dataplane)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = 0

    async def start(self) -> int:
        host, port = self._settings.server.host, self._settings.server.grpc_port
        if isinstance(self._server, Http2GrpcServer):
            self.port = await self._server.start(host, port)
        else:
            address = f"[{host}]" if ":" in host else host
            self.port = self._server.add_insecure_port(f"{address}:{port}")
            await self._server.start()
        log.info("gRPC listening on %s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        self._health.shutting_down = True
        await self._server.stop(self._settings.server.shutdown_grace_s)
