"""Where the experiment loop keeps what must agree across replicas: one interface, two stores.

``ExperimentState`` holds the predictions waiting for labels and the tallies behind reports and verdicts;
``ExperimentsConfig`` holds the experiments' configuration. In-process for one process (the default),
Redis for a fleet (``routing.redis_url``). Writes on the response path never wait and never raise: a shared
store buffers them and writes them behind; only feedback, reports and admin changes wait for the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from service.routing.experiments import Experiment, ExperimentsFile
from service.routing.feedback import Prediction
from service.routing.tally import ExperimentTallies

OnLateLabels = Callable[[list[int]], None]


@dataclass(frozen=True, slots=True)
class Taken:
    """What a label found: status "ok" with the prediction, or why not ("unknown id", "expired", ...)."""

    status: str
    prediction: Prediction | None = None


class ExperimentState(Protocol):
    write_behind_s: float  # how long a prediction made elsewhere may take to become visible; 0: at once

    def remember(self, request_id: str, prediction: Prediction) -> None:
        """Keep a prediction for its label (response path: never waits, never raises)."""

    def count(
        self, experiment: str, variant: str, counts: dict[str, int], latency_s: float | None = None
    ) -> None:
        """Add to a variant's tallies (``counts`` keys are ``tally.COUNTS``); never waits, never raises."""

    def count_shadow_dropped(self, experiment: str) -> None: ...

    def answer_shadow(self, request_id: str, classes: tuple[int, ...], on_late_labels: OnLateLabels) -> None:
        """Attach the shadow's answer to a waiting prediction; if its label came first, hand the label over."""

    async def take(self, request_id: str, labels: list[int]) -> Taken:
        """Remove the prediction ``labels`` (one per row) join; at most one label ever joins it. When its
        shadow's answer is still on its way, keep the labels for ``answer_shadow``."""

    async def settle(self) -> None:
        """Make everything counted here so far visible to every replica."""

    async def tallies(self, experiment: str) -> ExperimentTallies: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ExperimentsConfig(Protocol):
    async def load(self, seed: ExperimentsFile) -> ExperimentsFile:
        """The experiments to serve: the stored copy of each experiment in ``seed``, else ``seed``'s."""

    async def save(self, experiment: Experiment) -> None:
        """Keep an admin change so restarts and (for a shared store) every replica see it."""

    async def start(self, apply: Callable[[list[Experiment]], None]) -> None:
        """Follow changes made elsewhere, calling ``apply`` with the changed experiments."""

    async def stop(self) -> None: ...


class RolloutLedger(Protocol):
    """Where rollouts keep their state (one JSON document per experiment, replaced whole by revision) and the
    lease that lets exactly one replica decide at a time."""

    async def read(self, experiment: str) -> str | None: ...

    async def write(self, experiment: str, state: str, replaces: int) -> bool:
        """Store ``state`` if the stored one's revision is ``replaces`` (0: none stored); False if not."""

    async def hold_lease(self, holder: str, ttl_s: float) -> bool:
        """Take the deciding lease, or keep it for another ``ttl_s``; False while another replica holds it."""

    async def release_lease(self, holder: str) -> None: ...
