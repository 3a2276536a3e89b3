"""A variant served by a Triton Inference Server, through tritonclient's asyncio clients.

Binary tensors over gRPC or HTTP. A background health check (server and model readiness) drives the
variant's readiness; connection failures open a circuit breaker so callers fall back instead of waiting
on a dead server; the breaker half-opens after a pause and closes on the first success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import numpy as np
import tritonclient.grpc.aio as triton_grpc
import tritonclient.http.aio as triton_http
from tritonclient.utils import InferenceServerException

from contract.layout import ModelVersion
from service.backends.breaker import CircuitBreaker
from service.config import BackendSettings
from service.errors import BackendUnavailable, InternalError, RequestTimeout

log = logging.getLogger(__name__)


class TritonBackend:
    kind = "triton"

    def __init__(self, model: ModelVersion, config: BackendSettings) -> None:
        self._card = model.card
        self._config = config
        self._model_name = config.model_name or model.card.name
        self._input = model.card.signature.inputs[0]
        self._outputs = [spec.name for spec in model.card.signature.outputs]
        self.breaker = CircuitBreaker(config.failure_threshold, config.reset_after_s)
        self._client: Any = None
        self._healthy = False
        self._health: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._client is not None and self._healthy and self.breaker.allows_calls()

    @property
    def _module(self) -> Any:
        return triton_grpc if self._config.protocol == "grpc" else triton_http

    async def load(self) -> None:
        """Connect and start health checks; Triton may be down now and come back later."""
        if self._config.protocol == "grpc":
            # gRPC backs off reconnecting for up to 2 minutes by default; a restarted Triton must be seen
            # within a health interval or two, not minutes later
            backoff_ms = max(100, int(self._config.health_interval_s * 1000))
            reconnect = [
                ("grpc.initial_reconnect_backoff_ms", backoff_ms),
                ("grpc.min_reconnect_backoff_ms", backoff_ms),
                ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ]
            self._client = triton_grpc.InferenceServerClient(self._config.url, channel_args=reconnect)
        else:
            self._client = triton_http.InferenceServerClient(self._config.url)
        await self._check()
        self._health = asyncio.create_task(self._watch(), name=f"triton-health-{self._card.name}")

    async def _check(self) -> None:
        try:
            async with asyncio.timeout(self._config.health_timeout_s):
                ready = await self._client.is_server_ready() and await self._client.is_model_ready(
                    self._model_name, self._config.model_version
                )
        except (InferenceServerException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            ready = False
            log.debug("health check of %s on %s failed: %s", self._model_name, self._config.url, exc)
        if ready != self._healthy:
            log.warning(
                "Triton %s for %s: %s", self._config.url, self._card.name, "ready" if ready else "NOT ready"
            )
        self._healthy = ready
        if ready:
            self.breaker.record_success()
        elif self.breaker.allows_calls():
            self.breaker.record_failure()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._config.health_interval_s)
            await self._check()

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self.breaker.allows_calls():
            raise BackendUnavailable(f"{self._card.name}: Triton at {self._config.url} is unavailable")
        module = self._module
        tensor = module.InferInput(self._input.name, list(batch.shape), self._input.datatype)
        if self._config.protocol == "grpc":
            tensor.set_data_from_numpy(batch)
            outputs = [module.InferRequestedOutput(name) for name in self._outputs]
        else:
            tensor.set_data_from_numpy(batch, binary_data=True)
            outputs = [module.InferRequestedOutput(name, binary_data=True) for name in self._outputs]
        try:
            async with asyncio.timeout(self._config.timeout_s):
                result = await self._client.infer(
                    self._model_name, [tensor], model_version=self._config.model_version, outputs=outputs
                )
        except TimeoutError:
            raise RequestTimeout(
                f"{self._card.name}: Triton did not answer within {self._config.timeout_s} s"
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            self._connection_failed(exc)
        except InferenceServerException as exc:
            if exc.status() in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"):
                self._connection_failed(exc)
            if exc.status() == "StatusCode.DEADLINE_EXCEEDED":
                raise RequestTimeout(f"{self._card.name}: Triton did not answer in time") from None
            log.error("Triton refused %s: %s", self._model_name, exc)
            raise InternalError(f"the Triton backend of '{self._card.name}' failed") from None
        self.breaker.record_success()
        return {name: result.as_numpy(name) for name in self._outputs}

    def _connection_failed(self, exc: BaseException) -> None:
        self.breaker.record_failure()
        self._healthy = self._healthy and self.breaker.allows_calls()
        log.warning("Triton %s for %s: connection failed (%s)", self._config.url, self._card.name, exc)
        raise BackendUnavailable(f"{self._card.name}: Triton at {self._config.url} is unavailable") from None

    async def unload(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        if self._client is not None:
            await self._client.close()
            self._client = None
