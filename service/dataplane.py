"""The transport-independent core: validate a request against the variant's signature, run it, measure it.

HTTP and gRPC both call this; it knows nothing of either. Metrics are recorded here, once per request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.card import TensorSpec
from contract.triton_config import ModelConfig, load_config
from service import __version__
from service.batching.batcher import BatchResult
from service.cascade import CascadeStep
from service.codecs import datatype_of
from service.errors import (
    BackendUnavailable,
    InternalError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    RequestTimeout,
    SlimServeError,
)
from service.metrics import RequestSeries, ServiceMetrics
from service.protocol import InferRequest, InferResponse, Tensor
from service.readiness import Readiness
from service.registry.store import ModelStore, ServedVariant, State, parse_version
from service.routing.loop import ExperimentLoop
from service.routing.router import Assignment
from service.served import InferOutcome, cascade_parameters
from service.signature import prepare_input, select_outputs

log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch_per_request: int
    request_timeout_s: float
    model_timeouts_s: dict[str, float]


class RequestIds:
    """Ids for requests that came without one (feedback joins on them): a random prefix per process and a
    counter, unique across replicas and restarts without a random draw per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


def tensor_metadata(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": spec.name, "datatype": spec.datatype, "shape": spec.shape} for spec in specs]


class DataPlane:
    def __init__(
        self,
        store: ModelStore,
        experiments: ExperimentLoop,
        metrics: ServiceMetrics,
        limits: Limits,
        readiness: Readiness,
    ) -> None:
        self.store = store
        self.experiments = experiments
        self.readiness = readiness
        self.draining = False  # set on SIGTERM: not ready, still serving until the server stops accepting
        self._metrics = metrics
        self._limits = limits
        self._ids = RequestIds()
        self._cascade = CascadeStep(store, metrics)

    # health and metadata
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self.not_ready_reasons()

    def not_ready_reasons(self) -> list[str]:
        if self.draining:
            return ["the server is draining (shutting down)"]
        return self.readiness.problems()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "slimserve", "version": __version__, "extensions": EXTENSIONS}

    def resolve_name(self, model: str) -> str:
        """The variant that describes a name: itself, or for a family its default variant."""
        return self.experiments.router.default_model(model) if self.store.is_family(model) else model

    def _loaded(self, model: str, version: str | None) -> tuple[dict[int, ServedVariant], ServedVariant]:
        """Every loaded version of a model (or routed family) and the one ``version`` names (or the newest)."""
        name = self.resolve_name(model)
        number = parse_version(version)
        versions = self.store.versions_of(name)
        if number is not None and number not in versions:
            raise ModelNotFound(f"model '{model}' has no loaded version {number}")
        return versions, versions[number or max(versions)]

    def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        versions, served = self._loaded(model, version)
        card = served.model.card
        return {
            "name": model,
            "versions": [str(v) for v in sorted(versions)],
            "platform": card.format.triton_platform,
            "inputs": tensor_metadata(card.signature.inputs),
            "outputs": tensor_metadata(card.signature.outputs),
            "parameters": {"variant": card.variant, "precision": card.precision},
        }

    def model_config(self, model: str, version: str | None) -> ModelConfig:
        _, served = self._loaded(model, version)
        return load_config(served.model.directory.parent, served.model.card)

    def model_ready(self, model: str, version: str | None) -> bool:
        """A variant: it answers itself. A family: its routed calls get answers (fallbacks included)."""
        if self.store.is_family(model) and version is None:
            return self.readiness.family_ready(model)
        name = self.resolve_name(model)
        try:
            self.store.find(name, parse_version(version))
        except (ModelNotReady, BackendUnavailable):
            return False
        return True

    def repository_index(self) -> list[dict[str, Any]]:
        index = [
            dict(zip(("state", "reason"), s.status(), strict=True), name=s.name, version=str(s.version))
            for s in self.store.all()
        ]
        index += [
            {"name": b.name, "version": str(b.version), "state": str(State.UNAVAILABLE), "reason": b.reason}
            for b in self.store.broken
        ]
        return index

    def statistics(self, model: str | None, version: str | None) -> list[dict[str, Any]]:
        if model:
            versions, served = self._loaded(model, version)
            variants = [served] if version else list(versions.values())
        else:
            variants = self.store.all()
        return [s.stats.as_triton(s.name, s.version, s.batcher.batches_run) for s in variants]

    # model control (Triton's repository extension)
    async def load_model(self, model: str) -> None:
        await self.store.load_model(model)

    async def unload_model(self, model: str) -> None:
        await self.store.unload_model(model)

    # inference
    def count_rejected(self, model: str, protocol: str, error: SlimServeError) -> None:
        """Count a request the transport refused before it reached ``infer`` (it could not be decoded)."""
        labels = self._labels_of(model, protocol)
        self._metrics.requests.labels(**labels, status=error.reason).inc()

    def _labels_of(self, model: str, protocol: str) -> dict[str, str]:
        """Labels of a request to ``model`` before (or without) a variant serving it: the family's name for
        a family, the variant's own labels for a known variant, ready or not."""
        labels = {"model": "", "variant": "", "version": "", "backend": "", "protocol": protocol}
        if self.store.is_family(model):
            labels["model"] = model
        elif self.store.has(model):
            versions = self.store.versions_of(model)
            labels |= versions[max(versions)].labels
        return labels

    async def infer(
        self,
        model: str,
        version: str | None,
        request: InferRequest,
        *,
        protocol: str,
        headers: Mapping[str, str],
        deadline_s: float | None = None,
    ) -> InferOutcome:
        """Run one request. ``deadline_s`` is the client's own remaining time (a gRPC deadline)."""
        started = time.perf_counter()
        wanted: str | None = None
        served: ServedVariant | None = None
        fell_back = False
        assignment: Assignment | None = None
        try:
            assignment = self.experiments.route(model, headers) if self.store.is_family(model) else None
            wanted = assignment.model if assignment else model
            try:
                served = self.store.find(wanted, parse_version(version))
            except (BackendUnavailable, ModelNotReady) as unavailable:
                served, fell_back = self._fallback(wanted, assignment, unavailable), True
            card = served.model.card
            batch = prepare_input(
                served.name,
                card.signature,
                request,
                max_rows=self._limits.max_batch_per_request,
            )
            outputs = select_outputs(served.name, card.signature, request)
            deadline = asyncio.get_running_loop().time() + self._timeout(served, request, deadline_s)
            series = self._series_of(served, protocol)
            try:
                result = await self._run(served, batch, deadline, series)
            except (BackendUnavailable, ModelNotReady) as unavailable:
                if fell_back:
                    raise
                # the backend could not answer (Triton went away, lost the model, timed out): inference is
                # idempotent, so a routed call is retried once on the fallback, within the same deadline
                served, fell_back = self._fallback(served.name, assignment, unavailable), True
                card = served.model.card
                series = self._series_of(served, protocol)
                result = await self._run(served, batch, deadline, series)
            escalation = None
            if assignment is not None and assignment.cascade is not None:
                arm_series = series  # the second stage runs on the arm's behalf: in flight under the arm
                served, result, escalation = await self._cascade.answer(
                    assignment,
                    served,
                    batch,
                    result,
                    lambda then, rows: self._run(then, rows, deadline, arm_series),
                )
                card = served.model.card
                series = self._series_of(served, protocol)
        except Exception as exc:
            error = self._as_client_error(exc, model)
            labels = self._failed_labels(model, wanted, served, protocol)
            self._metrics.requests.labels(**labels, status=error.reason).inc()
            if assignment is not None and not isinstance(error, InvalidInput):
                self.experiments.count_error(assignment)
            if served is not None and not isinstance(error, InvalidInput):
                served.stats.record_failure(time.perf_counter() - started)
            raise error from None
        elapsed = time.perf_counter() - started
        served.stats.record_success(elapsed, result.queue_seconds, result.compute_seconds, batch.shape[0])
        served.window.record(elapsed, batch.shape[0])
        series.ok.inc()
        series.duration.observe(elapsed)
        series.queue_duration.observe(result.queue_seconds)
        series.batch_size.observe(result.batch_rows)
        series.compute_duration.observe(result.compute_seconds)
        request_id = request.id or self._ids.next()  # feedback needs an id to join labels to
        first_output = card.signature.outputs[0].name
        self.experiments.record(
            assignment, card, request_id, batch, result.outputs[first_output], elapsed, escalation
        )
        response = InferResponse(
            model_name=model,
            model_version=str(served.version),
            id=request_id,
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
        outcome = InferOutcome(response, served, assignment, fell_back, escalation)
        if escalation is not None:
            response.parameters.update(cascade_parameters(outcome))
        return outcome

    async def _run(
        self, served: ServedVariant, batch: np.ndarray, deadline: float, series: RequestSeries
    ) -> BatchResult:
        in_flight = series.in_flight
        in_flight.inc()
        try:
            # no await between finding the variant and queueing on it: a reload cannot slip in between
            return await served.batcher.infer(batch, deadline)
        finally:
            in_flight.dec()

    def _series_of(self, served: ServedVariant, protocol: str) -> RequestSeries:
        return self._metrics.series(*served.label_values, protocol)

    def _failed_labels(
        self, model: str, wanted: str | None, served: ServedVariant | None, protocol: str
    ) -> dict[str, str]:
        """What a failed request is counted under: the variant serving it when it failed, else the one it
        was routed to, else what it asked for."""
        if served is not None:
            return {**served.labels, "protocol": protocol}
        if wanted is not None and wanted != model and self.store.has(wanted):
            return self._labels_of(wanted, protocol)
        return self._labels_of(model, protocol)

    def _fallback(
        self, unavailable: str, assignment: Assignment | None, error: SlimServeError
    ) -> ServedVariant:
        served = self.readiness.substitute(unavailable, routed=assignment is not None, error=error)
        card = served.model.card
        self._metrics.fallbacks.labels(
            card.family, unavailable.removeprefix(f"{card.family}-"), card.variant
        ).inc()
        return served

    @staticmethod
    def _as_client_error(exc: Exception, model: str) -> SlimServeError:
        if isinstance(exc, SlimServeError):
            return exc
        if isinstance(exc, TimeoutError):
            return RequestTimeout(f"model '{model}' did not answer within the deadline")
        log.error("inference on %s failed", model, exc_info=exc)
        return InternalError(f"inference on model '{model}' failed")

    def _timeout(self, served: ServedVariant, request: InferRequest, deadline_s: float | None) -> float:
        per_model, timeout = self._limits.model_timeouts_s, self._limits.request_timeout_s
        if per_model:
            card = served.model.card
            timeout = per_model.get(card.name, per_model.get(card.family, timeout))
        requested = request.parameters.get("timeout") if request.parameters else None  # Triton: microseconds
        if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
            timeout = min(timeout, requested / 1e6)
        if deadline_s is not None:
            timeout = min(timeout, max(deadline_s, 0.0))
        return timeout
