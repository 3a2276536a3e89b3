"""The transport-independent core: validate a request against the variant's signature, run it, measure it.

HTTP and gRPC both call this; it knows nothing of either. Metrics are recorded here, once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import __version__
from service.codecs import NUMPY_DTYPES, datatype_of
from service.errors import (
    InternalError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    RequestTimeout,
    SlimServeError,
)
from service.metrics import ServiceMetrics
from service.protocol import InferRequest, InferResponse, RequestedOutput, Tensor
from service.registry.artifacts import TensorSpec
from service.registry.store import ModelStore, ServedVariant, State, parse_version
from service.routing import DefaultVariantRouter

log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "statistics"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch_per_request: int
    request_timeout_s: float
    allow_non_finite: bool


@dataclass(frozen=True, slots=True)
class InferOutcome:
    response: InferResponse
    served: ServedVariant
    routed: bool  # True when a family name was routed to a variant


def tensor_metadata(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": spec.name, "datatype": spec.datatype, "shape": spec.shape} for spec in specs]


class DataPlane:
    def __init__(
        self, store: ModelStore, router: DefaultVariantRouter, metrics: ServiceMetrics, limits: Limits
    ) -> None:
        self.store = store
        self._router = router
        self._metrics = metrics
        self._limits = limits

    # health and metadata
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.store.ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "slimserve", "version": __version__, "extensions": EXTENSIONS}

    def resolve_name(self, model: str, headers: Mapping[str, str]) -> tuple[str, bool]:
        if self.store.is_family(model):
            return self._router.route(model, headers), True
        return model, False

    def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        name, _ = self.resolve_name(model, {})
        number = parse_version(version)
        versions = self.store.versions_of(name)
        if number is not None and number not in versions:
            raise ModelNotFound(f"model '{model}' has no loaded version {number}")
        card = versions[number or max(versions)].model.card
        return {
            "name": model,
            "versions": [str(v) for v in sorted(versions)],
            "platform": "pytorch_libtorch",
            "inputs": tensor_metadata(card.signature.inputs),
            "outputs": tensor_metadata(card.signature.outputs),
            "parameters": {"variant": card.variant, "precision": card.precision},
        }

    def model_ready(self, model: str, version: str | None) -> bool:
        name, _ = self.resolve_name(model, {})
        try:
            self.store.find(name, parse_version(version))
        except ModelNotReady:
            return False
        return True

    def repository_index(self) -> list[dict[str, Any]]:
        index = [
            {
                "name": served.name,
                "version": str(served.version),
                "state": str(served.state),
                "reason": served.reason,
            }
            for served in self.store.all()
        ]
        index += [
            {
                "name": broken.name,
                "version": str(broken.version),
                "state": str(State.UNAVAILABLE),
                "reason": broken.reason,
            }
            for broken in self.store.broken
        ]
        return index

    # inference
    async def infer(
        self,
        model: str,
        version: str | None,
        request: InferRequest,
        *,
        protocol: str,
        headers: Mapping[str, str],
    ) -> InferOutcome:
        started = time.perf_counter()
        labels = {"model": "", "variant": "", "version": "", "backend": "", "protocol": protocol}
        try:
            name, routed = self.resolve_name(model, headers)
            served = self.store.find(name, parse_version(version))
            card = served.model.card
            labels.update(
                model=card.family,
                variant=card.variant,
                version=str(card.version),
                backend=served.backend.kind,
            )
            batch = self._prepare_input(served, request)
            outputs = self._select_outputs(served, request)
            result = await asyncio.wait_for(served.batcher.infer(batch), self._timeout(request))
        except SlimServeError as exc:
            self._metrics.requests.labels(**labels, status=exc.reason).inc()
            raise
        except TimeoutError:
            self._metrics.requests.labels(**labels, status=RequestTimeout.reason).inc()
            raise RequestTimeout(f"model '{model}' did not answer within the deadline") from None
        except Exception:
            log.exception("inference on %s failed", model)
            self._metrics.requests.labels(**labels, status=InternalError.reason).inc()
            raise InternalError(f"inference on model '{model}' failed") from None
        variant_labels = {key: labels[key] for key in ("model", "variant", "version", "backend")}
        self._metrics.requests.labels(**labels, status="ok").inc()
        self._metrics.request_duration.labels(**labels).observe(time.perf_counter() - started)
        self._metrics.queue_duration.labels(**variant_labels).observe(result.queue_seconds)
        self._metrics.batch_size.labels(**variant_labels).observe(result.batch_rows)
        response = InferResponse(
            model_name=model,
            model_version=str(served.version),
            id=request.id,
            outputs=[
                Tensor(
                    wanted.name,
                    datatype_of(result.outputs[wanted.name]),
                    result.outputs[wanted.name],
                    {"binary_data": wanted.binary},
                )
                for wanted in outputs
            ],
            parameters={"variant": card.variant},
        )
        return InferOutcome(response, served, routed)

    def _timeout(self, request: InferRequest) -> float:
        timeout = self._limits.request_timeout_s
        requested = request.parameters.get("timeout")  # Triton: microseconds
        if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
            timeout = min(timeout, requested / 1e6)
        return timeout

    def _prepare_input(self, served: ServedVariant, request: InferRequest) -> np.ndarray:
        spec = served.model.card.signature.inputs[0]
        names = [tensor.name for tensor in request.inputs]
        for name in names:
            if name != spec.name:
                raise InvalidInput(f"unknown input '{name[:64]}': model '{served.name}' takes '{spec.name}'")
        if len(names) != 1:
            raise InvalidInput(f"input '{spec.name}' is given {len(names)} times")
        array = request.inputs[0].array
        expected = spec.shape
        if array.ndim != len(expected) or any(
            want not in (-1, got) for want, got in zip(expected, array.shape, strict=True)
        ):
            raise InvalidInput(f"input '{spec.name}': expected shape {expected}, got {list(array.shape)}")
        rows = array.shape[0]
        if rows < 1 or rows > self._limits.max_batch_per_request:
            raise InvalidInput(
                f"input '{spec.name}': batch of {rows} rows; between 1 and "
                f"{self._limits.max_batch_per_request} are accepted"
            )
        converted = array.astype(NUMPY_DTYPES[spec.datatype])  # always a fresh, writable copy
        if not self._limits.allow_non_finite and not np.isfinite(converted).all():
            raise InvalidInput(f"input '{spec.name}': NaN or infinite values are not accepted")
        return converted

    def _select_outputs(self, served: ServedVariant, request: InferRequest) -> list[RequestedOutput]:
        known = [spec.name for spec in served.model.card.signature.outputs]
        if request.outputs is None:
            return [RequestedOutput(name, binary=request.binary_outputs) for name in known]
        for wanted in request.outputs:
            if wanted.name not in known:
                raise InvalidInput(
                    f"unknown output '{wanted.name[:64]}': model '{served.name}' has {', '.join(known)}"
                )
        return request.outputs
