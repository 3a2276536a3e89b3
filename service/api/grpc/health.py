"""``grpc.health.v1.Health`` answered from the DataPlane's readiness at the moment of asking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.dataplane import DataPlane

SERVICE_NAME = "inference.GRPCInferenceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health_pb2_grpc.HealthServicer):
    """SERVING for the server ("") and the OIP service once every variant is ready; stops on shutdown."""

    def __init__(self, dataplane: DataPlane, watch_interval_s: float = 0.5) -> None:
        self._dataplane = dataplane
        self._interval = watch_interval_s
        self.shutting_down = False

    def _status(self) -> Any:
        return SERVING if self._dataplane.ready() and not self.shutting_down else NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE_NAME):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service[:64]}'")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        if request.service not in ("", SERVICE_NAME):
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        last = None
        while True:
            status = self._status()
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self._interval)
