"""The rollout loop: every period, the replica holding the lease reads the fleet's tallies, decides each
rollout's next move (``rollout.decide``), records it in the ledger and sets the weights; every replica
reports the candidate's share. Admin actions (pause, resume, advance, rollback) go through the same ledger.

State first, weights second: a crash between the two leaves weights one step behind, and the next period
sets them from the state again, so the state is the one source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from service.config import RoutingSettings
from service.errors import InvalidInput, ModelNotFound, StateUnavailable
from service.metrics import ServiceMetrics
from service.routing.experiments import Experiment, Rollout
from service.routing.rollout import RolloutState, decide, first_state, moved
from service.routing.router import Router
from service.routing.state import RolloutLedger
from service.routing.tally import ExperimentTallies
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SetWeights = Callable[[str, dict[str, int]], Awaitable[None]]
ReadTallies = Callable[[str], Awaitable[ExperimentTallies]]
Action = Literal["pause", "resume", "advance", "rollback"]
WRITE_ATTEMPTS = 5


class RolloutController:
    def __init__(self, routing: RoutingSettings, ledger: RolloutLedger, router: Router, set_weights: SetWeights,
                 tallies: ReadTallies, metrics: ServiceMetrics) -> None:  # fmt: skip
        self._period_s = routing.rollout_period_s
        self._lease_s = routing.rollout_lease_s or 3 * routing.rollout_period_s
        self._ledger = ledger
        self._router = router
        self._set_weights = set_weights
        self._tallies = tallies
        self._metrics = metrics
        self._holder = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollouts")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if any(e.rollout for e in self._router.experiments()):
            with contextlib.suppress(StateUnavailable):  # another replica decides from its next period
                await self._ledger.release_lease(self._holder)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except StateUnavailable:
                pass  # the store is away: nothing moves until it answers
            except Exception:  # a bug in one period must not stop rollouts for good
                log.exception("rollouts: a period failed")
            await asyncio.sleep(self._period_s)

    async def tick(self) -> None:
        """One period: decide (when holding the lease), set weights from the state, publish the share."""
        experiments = [e for e in self._router.experiments() if e.rollout is not None]
        if not experiments:
            return
        deciding = await self._ledger.hold_lease(self._holder, self._lease_s)
        for experiment in experiments:
            state = await self._read(experiment.name)
            if deciding:
                state = await self._decide(experiment, state)
                if state is not None and state.policy == experiment.rollout:
                    await self._set_weights(experiment.name, state.policy.weights(state.percent))
            if state is not None:
                labels = (experiment.name, experiment.family, state.policy.candidate)
                self._metrics.rollout_percent.labels(*labels).set(state.percent)

    async def _read(self, name: str) -> RolloutState | None:
        stored = await self._ledger.read(name)
        return RolloutState.model_validate_json(stored) if stored else None

    async def _decide(self, experiment: Experiment, state: RolloutState | None) -> RolloutState | None:
        policy = experiment.rollout
        assert policy is not None
        tallies = await self._tallies(experiment.name)
        if state is None or state.policy != policy:
            return await self._commit(experiment, state, _current(state, policy, tallies))
        if state.status != "running":
            return state
        decision = decide(experiment, state, tallies)
        check = {"action": decision.action, "reason": decision.reason, "measured": decision.measured}
        if decision.action == "hold":
            held = state.model_copy(update={"revision": state.revision + 1, "last_check": check})
            return await self._commit(experiment, state, held)
        if decision.action == "advance":
            new = moved(state, "advance", state.step + 1, "running", decision.reason, "gates", tallies)
        else:
            new = moved(state, "rollback", state.step, "rolled_back", decision.reason, "gates", tallies, 0)
        return await self._commit(experiment, state, new.model_copy(update={"last_check": check}))

    async def _commit(
        self, experiment: Experiment, old: RolloutState | None, new: RolloutState
    ) -> RolloutState | None:
        """Store ``new`` if nothing changed the state since ``old`` was read; the stored state either way."""
        if not await self._ledger.write(experiment.name, new.model_dump_json(), old.revision if old else 0):
            return await self._read(experiment.name)
        if old is None or len(new.transitions) > len(old.transitions):
            self._announce(experiment, new)
        return new

    def _announce(self, experiment: Experiment, state: RolloutState) -> None:
        transition = state.transitions[-1]
        self._metrics.rollout_transitions.labels(experiment.name, experiment.family, transition.kind).inc()
        log.log(logging.WARNING if transition.kind == "rollback" else logging.INFO,
                "rollout %s: %s %s %d%% -> %d%% by %s: %s", experiment.name, transition.kind,
                state.policy.candidate, transition.from_percent, transition.to_percent, transition.by,
                transition.reason)  # fmt: skip

    # admin
    async def act(self, name: str, action: Action, reason: str | None) -> None:
        """Pause, resume, force the next step or force a rollback; refused (400) when it makes no sense."""
        experiment = self._router.experiment(name)
        if experiment is None:
            raise ModelNotFound(f"unknown experiment '{name[:64]}'")
        if experiment.rollout is None:
            raise InvalidInput(f"experiment '{name}' has no rollout")
        why = f"admin: {reason}" if reason else f"admin: {action}"
        for _ in range(WRITE_ATTEMPTS):
            tallies = await self._tallies(name)
            stored = await self._read(name)
            new = _acted(_current(stored, experiment.rollout, tallies), action, why, tallies)
            if await self._ledger.write(name, new.model_dump_json(), stored.revision if stored else 0):
                self._announce(experiment, new)
                await self._set_weights(name, new.policy.weights(new.percent))
                self._metrics.rollout_percent.labels(name, experiment.family, new.policy.candidate).set(
                    new.percent
                )
                return
        raise StateUnavailable(f"rollout of '{name}' kept changing under the admin change; try again")

    async def describe(self, name: str) -> dict[str, Any]:
        """The report's view: where the rollout stands and every transition so far."""
        state = await self._read(name)
        if state is None:
            return {"status": "not started", "percent": None, "step": None, "transitions": []}
        return state.model_dump(mode="json", exclude={"policy", "baseline", "revision"})


def _current(stored: RolloutState | None, policy: Rollout, tallies: ExperimentTallies) -> RolloutState:
    """The state to act on: the stored one; a first one; or, when the policy changed, the stored one
    started again from the policy's first step (its history kept)."""
    if stored is None:
        return first_state(policy, tallies)
    if stored.policy != policy:
        return moved(stored.model_copy(update={"policy": policy}), "restart", 0, "running",
                     "the rollout policy changed", "gates", tallies)  # fmt: skip
    return stored


def _acted(state: RolloutState, action: Action, why: str, tallies: ExperimentTallies) -> RolloutState:
    last = len(state.policy.steps) - 1
    if action == "pause":
        if state.status != "running":
            raise InvalidInput(f"rollout: cannot pause: it is {state.status}")
        return moved(state, "pause", state.step, "paused", why, "admin", tallies, state.percent)
    if action == "resume":
        if state.status == "paused":
            return moved(state, "resume", state.step, "running", why, "admin", tallies)
        if state.status == "rolled_back":
            return moved(state, "restart", 0, "running", why, "admin", tallies)
        raise InvalidInput(f"rollout: cannot resume: it is {state.status}")
    if action == "advance":
        if state.status not in ("running", "paused") or state.step >= last:
            raise InvalidInput(
                f"rollout: cannot advance: it is {state.status} at step {state.step + 1} of {last + 1}"
            )
        return moved(state, "advance", state.step + 1, "running", why, "admin", tallies)
    if state.percent == 0 and state.status == "rolled_back":
        raise InvalidInput("rollout: cannot roll back: it is rolled back already")
    return moved(state, "rollback", state.step, "rolled_back", why, "admin", tallies, 0)
