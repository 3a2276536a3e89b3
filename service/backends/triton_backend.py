"""A variant served by a Triton Inference Server, through tritonclient's asyncio clients.

Binary tensors over gRPC or HTTP. A background health check (server and model readiness) drives the
variant's readiness. Every failure that means "Triton cannot answer for this model" raises
BackendUnavailable (503, and routed calls fall back): transport failures, UNAVAILABLE and call timeouts
count towards the circuit breaker's threshold; a model Triton does not have or has not ready (NOT_FOUND,
unloaded in explicit model-control mode) trips it at once. The breaker half-opens after a pause and closes
on the first success. Anything else Triton refuses is an internal error (500), logged once per call.
"""

from __future__ import annotations

import asyncio
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
from service.errors import BackendUnavailable, InternalError
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# tritonclient reports gRPC codes as "StatusCode.X" and HTTP ones as the number
TRANSPORT_FAILURES = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.CANCELLED",
    "StatusCode.DEADLINE_EXCEEDED",
    "503",
    "504",
}
MODEL_MISSING = {"StatusCode.NOT_FOUND", "404"}


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
        self._checked = False
        self.unavailable_reason = "not connected yet"
        self._health: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._client is not None and self._healthy and self.breaker.allows_calls()

    @property
    def _where(self) -> str:
        return f"Triton at {self._config.url} ({self._config.protocol})"

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
            reason = f"{self._where} is not ready to serve '{self._model_name}'"
        except TimeoutError:
            ready, reason = False, f"{self._where} did not answer within {self._config.health_timeout_s} s"
        except (InferenceServerException, aiohttp.ClientError, OSError) as exc:
            ready, reason = False, f"{self._where} cannot be reached ({str(exc)[:200] or type(exc).__name__})"
        if ready != self._healthy or not self._checked:  # the first check is logged either way
            log.log(logging.INFO if ready else logging.WARNING, "%s for %s: %s", self._where, self._card.name,
                    "ready" if ready else f"NOT ready: {reason}")  # fmt: skip
        self._checked = True
        self.unavailable_reason = "" if ready else reason
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
            raise BackendUnavailable(f"{self._card.name}: {self._where} is unavailable (circuit open)")
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
            raise self._failed(f"did not answer within {self._config.timeout_s} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._failed(f"cannot be reached ({exc})") from None
        except InferenceServerException as exc:
            status = str(exc.status())
            if status in MODEL_MISSING or "unknown model" in exc.message():  # older Tritons: HTTP 400
                raise self._failed(
                    f"does not serve '{self._model_name}' ({exc.message()})", trip=True
                ) from None
            if status in TRANSPORT_FAILURES:
                raise self._failed(f"cannot answer ({status}: {exc.message()})") from None
            log.error("%s refused %s: %s", self._where, self._model_name, exc)
            raise InternalError(f"the Triton backend of '{self._card.name}' failed") from None
        self.breaker.record_success()
        return {name: result.as_numpy(name) for name in self._outputs}

    def _failed(self, what: str, *, trip: bool = False) -> BackendUnavailable:
        """Count the failure on the breaker and say what happened; the caller falls back or gets 503."""
        if trip:
            self.breaker.trip()
        else:
            self.breaker.record_failure()
        if not self.breaker.allows_calls():
            self._healthy = False
            self.unavailable_reason = f"{self._where} {what}"
        log.warning("%s for %s: %s", self._where, self._card.name, what)
        return BackendUnavailable(f"{self._card.name}: {self._where} {what}")

    async def unload(self) -> None:
        await cancel_and_wait(self._health)
        if self._client is not None:
            await self._client.close()
            self._client = None
