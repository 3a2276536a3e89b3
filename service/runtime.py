"""The serving stack, transport-free: executor, backends, store and DataPlane, started and stopped together.

HTTP and gRPC are both fronts on one Runtime (see service.assembly), so they share variants and metrics.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import numpy as np
import torch

from contract.layout import ModelVersion
from contract.runners import RunnerOptions
from service.backends.base import Backend
from service.backends.inprocess import InProcessBackend
from service.backends.triton_backend import TritonBackend
from service.config import Settings
from service.dataplane import DataPlane, Limits
from service.inference_threads import InferenceThreads
from service.metrics import ServiceMetrics
from service.metrics.variants import VariantCollector
from service.readiness import Readiness
from service.registry.store import ModelStore
from service.routing.checks import registry_checks
from service.routing.experiments import ExperimentsFile, load_experiments
from service.routing.loop import ExperimentLoop
from service.routing.stores import experiment_stores
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BackendWrapper = Callable[[Backend, ModelVersion], Backend]


def load_checked_experiments(settings: Settings) -> ExperimentsFile:
    """The experiments file, refused (ExperimentsFileError, InvalidInput) if it or its variants are wrong."""
    path = settings.routing.experiments_file
    experiments = load_experiments(path) if path is not None else ExperimentsFile()
    check = registry_checks(settings.registry.path)
    return ExperimentsFile(experiments=[check(experiment) for experiment in experiments.experiments])


class Runtime:
    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        *,
        backend_wrapper: BackendWrapper | None = None,
        on_ready: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._backend_wrapper = backend_wrapper
        self._on_ready = on_ready or []
        self._executor = InferenceThreads(settings.runtime.worker_threads)
        runtime = settings.runtime
        self._runner_options = RunnerOptions(
            runtime.intra_op_threads, runtime.optimize_fp32, runtime.openvino_hint
        )
        self.store = ModelStore(settings, self._make_backend)
        limits = Limits(
            settings.limits.max_batch_per_request,
            settings.limits.request_timeout_s,
            settings.limits.model_timeouts_s,
        )
        self.experiments = ExperimentLoop(
            settings,
            load_checked_experiments(settings),
            metrics,
            self._run_shadow,
            registry_checks(settings.registry.path),
            experiment_stores(settings, metrics),
            self._class_count,
            self._default_variant,
        )
        self.readiness = Readiness(
            self.store, self.experiments.router, self._fallback_for, strict=settings.registry.strict_readiness
        )
        self.dataplane = DataPlane(self.store, self.experiments, metrics, limits, self.readiness)
        self._loading: asyncio.Task[None] | None = None
        self._gc_thresholds = gc.get_threshold()
        self._collector = VariantCollector(self.store, self.experiments)
        metrics.registry.register(self._collector)

    def _class_count(self) -> int:
        """Classes of the widest loaded output: the bound a ground-truth label must stay under."""
        return max(
            (served.model.card.signature.outputs[0].shape[-1] for served in self.store.all()), default=0
        )

    def _default_variant(self, family: str) -> str:
        """What the bare family name serves: the family's setting, else ``default_variant`` when the family
        has it, else the default its build declared in its cards (a family like wdbc has no x86 int8)."""
        routing = self.settings.routing
        if family in routing.family_defaults:
            return routing.family_defaults[family]
        names = self.store.families().get(family, [])
        if not names or f"{family}-{routing.default_variant}" in names:
            return routing.default_variant
        return self.store.declared_default(family) or routing.default_variant

    def _fallback_for(self, model: str, variant: str) -> str | None:
        return self.settings.backend_for(model, variant).fallback

    def _make_backend(self, model: ModelVersion) -> Backend:
        config = self.settings.backend_for(model.card.name, model.card.variant)
        backend: Backend
        if config.kind == "triton":
            backend = TritonBackend(model, config)
        else:
            runtime = self.settings.runtime
            backend = InProcessBackend(
                model,
                self._executor,
                self._runner_options,
                runtime.warmup_iterations,
                inline_below_s=runtime.inline_below_ms / 1000,
            )
        return self._backend_wrapper(backend, model) if self._backend_wrapper else backend

    async def _run_shadow(self, model: str, batch: np.ndarray) -> np.ndarray:
        served = self.store.find(model, None)
        result = await served.batcher.infer(batch)
        return result.outputs[served.model.card.signature.outputs[0].name]

    async def start(self) -> None:
        """Load and warm every variant in the background: liveness answers while readiness waits."""
        torch.set_num_threads(self.settings.runtime.torch_threads)  # inter-op parallelism is our thread pool
        if self.settings.runtime.gc_young_threshold:
            gc.set_threshold(self.settings.runtime.gc_young_threshold, *self._gc_thresholds[1:])
        await self.experiments.start()
        self._loading = asyncio.create_task(self._load(), name="load-variants")

    async def _load(self) -> None:
        await self.store.load_all()
        if self.settings.runtime.gc_freeze:
            # Everything alive now lives as long as the process: keep it out of full collections, which
            # otherwise walk the whole heap (torch, numpy, the web stack) and pause the loop ~0.1 s each.
            gc.collect()
            gc.freeze()
        for served in self.store.all():
            log.log(
                logging.INFO if served.serving else logging.WARNING,
                "variant %s",
                Readiness.variant_line(served),
            )
        problems = self.readiness.problems()
        log.log(
            logging.WARNING if problems else logging.INFO, "server ready: %s", "; ".join(problems) or "yes"
        )
        for line in self._on_ready:
            log.info("%s", line)

    async def stop(self) -> None:
        if self.settings.runtime.gc_freeze:
            gc.unfreeze()  # what this runtime held can be collected once it is gone (tests start many)
        gc.set_threshold(*self._gc_thresholds)
        await self.experiments.stop()
        await cancel_and_wait(self._loading)
        await self.store.unload_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.metrics.registry.unregister(self._collector)
