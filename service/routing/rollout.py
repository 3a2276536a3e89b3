"""A progressive rollout's state and its gates: pure functions of the tallies, so every replica that reads
the same shared tallies reaches the same decision.

The gates look at the current step's traffic only: the tallies now less the tallies when the step began
(its *baseline*). A step advances when every configured gate has enough data and holds; the candidate goes
back to 0 % as soon as one fails. Reaching the last step completes the rollout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.routing.experiments import Experiment, Rollout
from service.routing.stats import verdict
from service.routing.tally import ExperimentTallies, VariantTally, since, tally_fields, tally_from

Status = Literal["running", "paused", "completed", "rolled_back"]


class Transition(BaseModel):
    at: float  # wall-clock seconds
    kind: str  # start | advance | complete | rollback | pause | resume | restart
    from_percent: int
    to_percent: int
    reason: str
    by: str  # "gates" or "admin"


class RolloutState(BaseModel):
    """What a rollout has done so far; kept in the shared ledger and replaced whole, by revision."""

    revision: int = 0
    policy: Rollout
    step: int = 0  # index into policy.steps
    status: Status = "running"
    percent: int = 0  # the candidate's share now
    step_started: float = 0.0
    baseline: dict[str, dict[str, Any]] = Field(
        default_factory=dict
    )  # variant -> tally fields at the step's start
    transitions: list[Transition] = Field(default_factory=list)
    last_check: dict[str, Any] | None = None


@dataclass
class Decision:
    action: Literal["advance", "rollback", "hold"]
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)


def first_state(policy: Rollout, tallies: ExperimentTallies) -> RolloutState:
    state = RolloutState(policy=policy)
    return moved(state, "start", 0, "running", "rollout started", "gates", tallies)


def moved(
    state: RolloutState, kind: str, step: int, status: Status, reason: str, by: str,
    tallies: ExperimentTallies, percent: int | None = None,
) -> RolloutState:  # fmt: skip
    """``state`` after a transition: a new step begins with a new baseline."""
    now = time.time()
    to_percent = state.policy.steps[step] if percent is None else percent
    if status == "running" and percent is None and step == len(state.policy.steps) - 1:
        status, kind = "completed", "complete" if kind == "advance" else kind
    transition = Transition(at=now, kind=kind, from_percent=state.percent, to_percent=to_percent,
                            reason=reason, by=by)  # fmt: skip
    variants = (state.policy.candidate, state.policy.control)
    return state.model_copy(update={
        "revision": state.revision + 1, "step": step, "status": status, "percent": to_percent,
        "step_started": now, "baseline": {v: tally_fields(tallies.of(v)) for v in variants},
        "transitions": [*state.transitions, transition], "last_check": None,
    })  # fmt: skip


def window(state: RolloutState, tallies: ExperimentTallies, variant: str) -> VariantTally:
    return since(tallies.of(variant), tally_from(state.baseline.get(variant, {})))


def decide(experiment: Experiment, state: RolloutState, tallies: ExperimentTallies) -> Decision:
    """Advance, roll back or hold, on the current step's traffic; the reason names the gate and figures."""
    policy, gates = state.policy, state.policy.gates
    candidate, control = window(state, tallies, policy.candidate), window(state, tallies, policy.control)
    attempts = candidate.requests + candidate.errors
    p99 = candidate.latency_quantiles()["p99"]
    measured: dict[str, Any] = {"candidate_requests": candidate.requests, "candidate_errors": candidate.errors,
                                "candidate_labelled": candidate.labelled, "control_labelled": control.labelled,
                                "candidate_p99_s": p99}  # fmt: skip
    waiting: list[str] = []
    enough = attempts >= gates.min_samples
    if gates.max_error_rate is not None:
        rate = candidate.errors / attempts if attempts else 0.0
        measured["candidate_error_rate"] = rate
        if enough and rate > gates.max_error_rate:
            return Decision("rollback", f"error rate {rate:.4f} > max_error_rate {gates.max_error_rate} "
                                        f"over {attempts} requests", measured)  # fmt: skip
        if not enough:
            waiting.append(f"{attempts}/{gates.min_samples} requests for the error rate")
    if gates.max_p99_latency_s is not None:
        if candidate.requests >= gates.min_samples and p99 is not None and p99 > gates.max_p99_latency_s:
            return Decision("rollback", f"p99 latency {p99:.4f} s > max_p99_latency_s "
                                        f"{gates.max_p99_latency_s} over {candidate.requests} requests", measured)  # fmt: skip
        if candidate.requests < gates.min_samples:
            waiting.append(f"{candidate.requests}/{gates.min_samples} requests for the p99")
    if candidate.labelled < gates.min_samples:
        waiting.append(f"{candidate.labelled}/{gates.min_samples} labelled rows of {policy.candidate}")
    if gates.non_inferiority:
        result = verdict(candidate.correct, candidate.labelled, control.correct, control.labelled,
                         experiment.margin, gates.min_samples)  # fmt: skip
        measured |= {"verdict": result.verdict, "p_value": result.p_value,
                     "candidate_accuracy": candidate.accuracy, "control_accuracy": control.accuracy}  # fmt: skip
        figures = _accuracies(candidate, control, experiment.margin)
        if result.verdict == "inferior":
            return Decision("rollback", f"inferior to {policy.control}: {figures}", measured)
        if result.verdict != "non-inferior":
            if gates.max_samples is not None and candidate.labelled >= gates.max_samples:
                return Decision("rollback", f"not shown non-inferior to {policy.control} within max_samples "
                                            f"{gates.max_samples} labelled rows: {figures}", measured)  # fmt: skip
            waiting.append(f"a non-inferiority verdict against {policy.control} ({figures})")
    if waiting:
        return Decision("hold", "waiting for " + "; ".join(waiting), measured)
    return Decision("advance", _passed(gates.non_inferiority, candidate, control, experiment.margin, p99,
                                       measured.get("candidate_error_rate")), measured)  # fmt: skip


def _accuracies(candidate: VariantTally, control: VariantTally, margin: float) -> str:
    def share(tally: VariantTally) -> str:
        return f"{tally.correct}/{tally.labelled}" if tally.labelled else "no labels"

    return f"candidate {share(candidate)}, control {share(control)}, margin {margin}"


def _passed(non_inferiority: bool, candidate: VariantTally, control: VariantTally, margin: float,
            p99: float | None, error_rate: float | None) -> str:  # fmt: skip
    held = []
    if non_inferiority:
        held.append(f"non-inferior ({_accuracies(candidate, control, margin)})")
    if p99 is not None:
        held.append(f"p99 {p99:.4f} s")
    if error_rate is not None:
        held.append(f"error rate {error_rate:.4f}")
    return "gates held: " + ", ".join(held)
