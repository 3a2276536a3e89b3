"""The set of variants this process serves: loaded from the registry, looked up by name and version.

A variant that fails to load (missing or corrupted artifact, unsupported engine) is marked UNAVAILABLE
with its reason and logged; the others keep serving.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.backends.base import Backend, unavailable_reason
from service.batching.batcher import DynamicBatcher
from service.config import Settings
from service.errors import BackendUnavailable, InvalidInput, ModelLoadFailed, ModelNotFound, ModelNotReady
from contract.layout import (
    ArtifactError,
    BrokenVersion,
    ModelVersion,
    is_version_name,
    scan,
)
from service.metrics import VARIANT_LABELS
from service.metrics.window import LiveWindow
from service.signature import FiniteCheck
from service.statistics import VariantStatistics

log = logging.getLogger(__name__)

BackendFactory = Callable[[ModelVersion], Backend]


class State(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


UNLOADED = "unloaded"  # the reason of a variant taken out by model control


@dataclass(slots=True)
class ServedVariant:
    model: ModelVersion
    batcher: DynamicBatcher
    state: State = State.LOADING
    reason: str = ""
    load_seconds: float = 0.0
    stats: VariantStatistics = field(default_factory=VariantStatistics)
    window: LiveWindow = field(default_factory=LiveWindow)  # the last minutes, for the trade-off page
    # its metric labels' values in VARIANT_LABELS' order, built once: every request's series is found by them
    label_values: tuple[str, str, str, str] = field(init=False)

    def __post_init__(self) -> None:
        card = self.model.card
        self.label_values = (card.family, card.variant, str(card.version), self.backend.kind)

    @property
    def labels(self) -> dict[str, str]:
        """Its metric labels by name: what a request that failed on it is counted under, with the protocol."""
        return dict(zip(VARIANT_LABELS, self.label_values, strict=True))

    @property
    def backend(self) -> Backend:
        return self.batcher.backend

    @property
    def name(self) -> str:
        return self.model.card.name

    @property
    def unloaded(self) -> bool:
        """Taken out by model control (an operator's choice), not broken."""
        return self.state is State.UNAVAILABLE and self.reason == UNLOADED

    @property
    def serving(self) -> bool:
        """Loaded and its backend can answer now (a remote backend may be down while the variant is loaded)."""
        return self.state is State.READY and self.backend.ready

    def status(self) -> tuple[str, str]:
        """(state, reason) as clients see it: a loaded variant whose backend is down is UNAVAILABLE."""
        if self.state is State.READY and not self.backend.ready:
            return str(State.UNAVAILABLE), unavailable_reason(self.backend)
        return str(self.state), self.reason

    @property
    def version(self) -> int:
        return self.model.card.version


def parse_version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not is_version_name(version):
        raise InvalidInput(f"model version must be a positive integer, got '{version[:32]}'")
    return int(version)


class ModelStore:
    def __init__(self, settings: Settings, backend_factory: BackendFactory) -> None:
        self._settings = settings
        self._backend_factory = backend_factory
        self._variants: dict[str, dict[int, ServedVariant]] = {}
        self._families: dict[str, list[str]] = {}
        self._declared: dict[str, tuple[str, str]] = {}  # family -> (created_at, default variant its cards declare)
        self.broken: list[BrokenVersion] = []
        self.loaded = False
        self.registry_error = ""

    async def load_all(self) -> None:
        try:
            models, self.broken = scan(self._settings.registry.path)
        except ArtifactError as exc:
            log.error("cannot read the registry: %s", exc)
            self.registry_error = str(exc)
            self.loaded = True
            return
        for name, versions in models.items():
            self._variants[name] = {number: self._create(versions[number]) for number in self._chosen(versions)}
            self._add_family(self._variants[name])
        for served in self.all():
            await self._load(served)
        self.loaded = True

    def _chosen(self, versions: dict[int, ModelVersion]) -> list[int]:
        chosen = sorted(versions)
        return chosen[-1:] if self._settings.registry.version_policy == "latest" else chosen

    def _add_family(self, versions: dict[int, ServedVariant]) -> None:
        for served in versions.values():
            card = served.model.card
            names = self._families.setdefault(card.family, [])
            if served.name not in names:
                names.append(served.name)
            if card.default_variant and (card.created_at, card.default_variant) > self._declared.get(card.family, ("", "")):
                self._declared[card.family] = (card.created_at, card.default_variant)

    def declared_default(self, family: str) -> str | None:
        """The default variant the family's newest card declares (its build or import), if any."""
        declared = self._declared.get(family)
        return declared[1] if declared else None

    async def load_model(self, name: str) -> None:
        """(Re)load one model from the registry without dropping a request.

        New versions are verified and warmed before they serve; the swap is one assignment; versions it
        replaced finish the requests they already hold, then unload. If a new version fails to load, the
        model keeps serving what it served and the error says why.
        """
        try:
            models, _ = scan(self._settings.registry.path)
        except ArtifactError as exc:
            raise ModelLoadFailed(f"cannot load '{name}': {exc}") from None
        if name not in models:
            raise ModelNotFound(f"model '{name[:128]}' is not in the registry")
        current = self._variants.get(name, {})
        updated: dict[int, ServedVariant] = {}
        for number in self._chosen(models[name]):
            kept = current.get(number)
            if kept is not None and kept.state is State.READY:
                updated[number] = kept
                continue
            fresh = self._create(models[name][number])
            await self._load(fresh)
            if fresh.state is not State.READY:
                raise ModelLoadFailed(f"cannot load '{name}' version {number}: {fresh.reason}")
            updated[number] = fresh
        self._variants[name] = updated
        self._add_family(updated)
        log.info("%s now serves versions %s", name, sorted(updated))
        for number, old in current.items():
            if updated.get(number) is not old:
                await self._retire(old, "replaced")

    async def unload_model(self, name: str) -> None:
        for served in self.versions_of(name).values():
            await self._retire(served, UNLOADED)
        log.info("%s unloaded", name)

    async def _retire(self, served: ServedVariant, reason: str) -> None:
        served.state, served.reason = State.UNAVAILABLE, reason
        await served.batcher.drain()
        await served.backend.unload()

    def _create(self, model: ModelVersion) -> ServedVariant:
        batching = self._settings.batching
        enabled = batching.enabled
        batcher = DynamicBatcher(
            self._backend_factory(model),
            name=f"{model.card.name}:{model.card.version}",
            max_batch_size=min(batching.max_batch_size, model.card.max_batch_size or batching.max_batch_size)
            if enabled
            else 1,
            max_delay_s=batching.max_queue_delay_ms / 1000 if enabled else 0.0,
            max_queue_size=batching.max_queue_size,
            instances=batching.instances if enabled else self._settings.runtime.worker_threads,
            check=None
            if self._settings.limits.allow_non_finite
            else FiniteCheck(model.card.signature.inputs[0].name),
        )
        return ServedVariant(model, batcher)

    async def _load(self, served: ServedVariant) -> None:
        started = time.perf_counter()
        try:
            await served.backend.load()
        except Exception as exc:  # any failure makes this variant unavailable, never the server
            served.state, served.reason = State.UNAVAILABLE, str(exc) or type(exc).__name__
            log.error("%s version %d is unavailable: %s", served.name, served.version, served.reason)
            return
        served.load_seconds = time.perf_counter() - started
        served.batcher.start()
        served.state = State.READY

    async def unload_all(self) -> None:
        for served in self.all():
            await self._retire(served, UNLOADED)

    def all(self) -> list[ServedVariant]:
        return [served for versions in self._variants.values() for served in versions.values()]

    def families(self) -> dict[str, list[str]]:
        return self._families

    def has(self, name: str) -> bool:
        """``name`` is a variant of the registry (loaded, loading, unavailable or unloaded)."""
        return name in self._variants

    def is_family(self, name: str) -> bool:
        return name in self._families and name not in self._variants

    def versions_of(self, name: str) -> dict[int, ServedVariant]:
        versions = self._variants.get(name)
        if versions is None:
            raise ModelNotFound(f"unknown model '{name[:128]}'")
        return versions

    def find(self, name: str, version: int | None) -> ServedVariant:
        """The variant to run; raises 404 if unknown, 503 if known but not ready."""
        versions = self.versions_of(name)
        if version is not None:
            if version not in versions:
                loaded = ", ".join(str(number) for number in sorted(versions))
                raise ModelNotFound(f"model '{name}' has no loaded version {version} (loaded: {loaded})")
            served = versions[version]
        elif len(versions) == 1:
            (served,) = versions.values()
        else:
            ready = [served for served in versions.values() if served.state is State.READY]
            served = max(ready or versions.values(), key=lambda candidate: candidate.version)
        if served.state is not State.READY:
            why = f": {served.reason}" if served.reason else ""
            raise ModelNotReady(f"model '{name}' version {served.version} is not ready ({served.state}{why})")
        if not served.backend.ready:
            raise BackendUnavailable(
                f"model '{name}' version {served.version} is unavailable: {unavailable_reason(served.backend)}"
            )
        return served
