"""``python -m loadtests rollout``: a good candidate rolled out to 100 %, a worse one rolled back to 0 %.

Each scenario starts the service with an experiment carrying a rollout policy, sends labelled closed-loop
traffic (every answer's labels go back as feedback) and polls the experiment report until the rollout
completes or is rolled back, or the time bound passes. With ``--restart`` the good run's service is stopped
and started again once the candidate reaches the second step: it must resume at the same step. The report
lists every transition with its reason and plots the candidate's configured and observed share over time.

- good: the distilled int8 student against the teacher it was distilled from (as accurate or better);
- bad: the student trained without distillation against the distilled int8 student (0.4 pt worse on the
  test split: more than the 0.2 pt margin).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests.cascade_run import machine
from loadtests.drive import Batch, Sample, batches, drive
from loadtests.payloads import encode, load_digits
from loadtests.service import start_service

STEPS = [10, 25, 50, 100]
GATES = {"min_samples": 300, "max_samples": 5000, "non_inferiority": True, "max_p99_latency_s": 0.5,
         "max_error_rate": 0.01}  # fmt: skip
SCENARIOS = {
    "good": {"control": "teacher-fp32", "candidate": "student-int8-x86"},
    "bad": {"control": "student-int8-x86", "candidate": "student-scratch-fp32"},
}
MARGIN = 0.002
TERMINAL = ("completed", "rolled_back")


@dataclass
class Run:
    scenario: str
    control: str
    candidate: str
    started: float = 0.0  # wall clock
    samples: list[Sample] = field(default_factory=list)
    polls: list[tuple[float, int | None, str]] = field(default_factory=list)  # (t, percent, status)
    restart: dict[str, Any] | None = None
    final: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return self.polls[-1][2] if self.polls else "not started"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests rollout", description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--family", default="mnist")
    parser.add_argument("--scenario", choices=("good", "bad", "both"), default="both")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8, help="digits per request (each labelled)")
    parser.add_argument("--period", type=float, default=1.0, help="routing.rollout_period_s of the service")
    parser.add_argument("--limit", type=float, default=300, help="time bound of each scenario, seconds")
    parser.add_argument("--restart", action="store_true", help="restart the good run's service at step 2")
    parser.add_argument("--out", type=Path, help="markdown report (default: print only)")
    parser.add_argument("--plot", type=Path, help="PNG of the traffic share over time")
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "loadtests", "rollout", *argv])
    return args


def experiments_file(family: str, run: Run, path: Path) -> Path:
    experiment = {
        "name": f"{family}-rollout", "family": family, "margin": MARGIN, "reference": run.control,
        "variants": [{"name": run.control, "weight": 100}, {"name": run.candidate, "weight": 0}],
        "rollout": {"candidate": run.candidate, "control": run.control, "steps": STEPS, "gates": GATES},
    }  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    return path


async def segment(url: str, args: argparse.Namespace, run: Run, requests: list[Batch], deadline: float,
                  restart_at: int | None) -> bool:  # fmt: skip
    """Drive and poll until the rollout ends, the deadline passes or (``restart_at``) that step is reached;
    True when it stopped for the restart."""
    name = f"{args.family}-rollout"
    stop = asyncio.Event()
    restart = False

    async def poll() -> None:
        nonlocal restart
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not stop.is_set():
                rollout = (await client.get(f"/v1/experiments/{name}")).json()["rollout"]
                run.polls.append((time.time() - run.started, rollout["percent"], rollout["status"]))
                run.final = rollout
                if rollout["status"] in TERMINAL or time.time() > deadline:
                    stop.set()
                elif restart_at is not None and rollout["percent"] == restart_at:
                    restart = True
                    stop.set()
                await asyncio.sleep(0.5)

    offset = time.time() - run.started  # the segment's samples are timed from its own start
    poller = asyncio.create_task(poll())
    driven = await drive(url, args.family, requests, concurrency=args.concurrency, until=lambda _: stop.is_set(),
                         feedback=True, run_id=f"{run.scenario}{len(run.samples)}")  # fmt: skip
    await poller
    run.samples += [replace(sample, at=sample.at + offset) for sample in driven.samples]
    return restart


def scenario(args: argparse.Namespace, name: str, requests: list[Batch], work: Path) -> Run:
    run = Run(name, SCENARIOS[name]["control"], SCENARIOS[name]["candidate"])
    experiments = experiments_file(args.family, run, work / f"{name}.yaml")
    (work / f"{name}.rollouts.json").unlink(missing_ok=True)  # a fresh rollout
    extra = ["--routing.rollout_period_s", str(args.period)]
    run.started = time.time()
    deadline = run.started + args.limit
    restart_at = STEPS[1] if args.restart and name == "good" else None
    segments = 0
    while True:
        segments += 1
        with start_service(
            args.registry, experiments, work / f"{name}-service-{segments}.log", extra=extra
        ) as target:
            if run.restart is not None and "resumed" not in run.restart:
                report = httpx.get(f"{target.url}/v1/experiments/{args.family}-rollout", timeout=30).json()
                run.restart |= {"resumed": report["rollout"]["percent"], "status": report["rollout"]["status"],
                                "resumed_at": time.time() - run.started}  # fmt: skip
            stopped_for_restart = asyncio.run(segment(target.url, args, run, requests, deadline, restart_at))
        if not stopped_for_restart:
            break
        run.restart = {"at": time.time() - run.started, "percent": restart_at}
        restart_at = None
    run.seconds = time.time() - run.started
    return run


def transitions_table(run: Run) -> list[str]:
    rows = ["| t (s) | transition | candidate share | by | reason |", "|---|---|---|---|---|"]
    for t in run.final.get("transitions", []):
        rows.append(f"| {t['at'] - run.started:.1f} | {t['kind']} | {t['from_percent']} % → {t['to_percent']} % "
                    f"| {t['by']} | {t['reason']} |")  # fmt: skip
    return rows


def section(run: Run, args: argparse.Namespace) -> list[str]:
    ok = [s for s in run.samples if s.status == 200]
    failed = len(run.samples) - len(ok)
    expected = "completed" if run.scenario == "good" else "rolled_back"
    final_percent = run.final.get("percent")
    holds = run.status == expected and final_percent == (100 if run.scenario == "good" else 0)
    lines = [
        f"## {run.scenario}: candidate `{run.candidate}` against control `{run.control}`",
        "",
        f"Outcome: **{run.status}** at {final_percent} % after {run.seconds:.0f} s (bound {args.limit:g} s): "
        f"{'as required' if holds else 'NOT as required'} (the {run.scenario} candidate must end at "
        f"{'100' if run.scenario == 'good' else '0'} %). {len(ok):,} requests ({sum(s.rows for s in ok):,} "
        f"labelled rows) answered, {failed} failed.",
        "",
    ]
    if run.restart:
        resumed = run.restart.get("resumed")
        lines += [
            f"Restart: the service was stopped at {run.restart['at']:.1f} s with the candidate at "
            f"{run.restart['percent']} % and started again; it resumed at {resumed} % ({run.restart.get('status')}): "
            f"{'the same step' if resumed == run.restart['percent'] else 'NOT the same step'}. Its in-process "
            "tallies started from zero, so the step's gates counted its traffic again from there.",
            "",
        ]
    return [*lines, *transitions_table(run), ""]


def markdown(args: argparse.Namespace, runs: list[Run], plot: Path | None) -> str:
    lines = [
        "# Metric-gated progressive rollout",
        "",
        f"Command: `{args.command_line}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}  ",
        f"Registry: `{args.registry}`; steps {STEPS} %, margin {MARGIN * 100:.1f} pt, gates per step (on that "
        f"step's traffic only): {GATES}; decision period {args.period:g} s  ",
        f"Load: closed loop, {args.concurrency} concurrent binary OIP requests of {args.rows} digits, every "
        "answer labelled through /v1/feedback; one service process (in-process state, rollout ledger beside the "
        "experiments file).",
        "",
    ]
    if plot is not None:
        lines += [f"![traffic share over time]({plot.name})", ""]
    for run in runs:
        lines += section(run, args)
    return "\n".join(lines) + "\n"


def plot_share(runs: list[Run], path: Path, bin_s: float = 2.0) -> None:
    """Per scenario: the configured share (steps) and the observed share of answered requests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(runs), 1, figsize=(9, 3.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        polls = [(t, p) for t, p, _ in run.polls if p is not None]
        ax.step([t for t, _ in polls], [p for _, p in polls], where="post", label="configured (report)")
        bins: dict[int, list[bool]] = {}
        for sample in run.samples:
            if sample.status == 200:
                bins.setdefault(int(sample.at // bin_s), []).append(sample.variant == run.candidate)
        xs = sorted(bins)
        ax.plot([(b + 0.5) * bin_s for b in xs], [100 * sum(bins[b]) / len(bins[b]) for b in xs], ".",
                alpha=0.6, label=f"observed ({bin_s:g} s bins)")  # fmt: skip
        for t in run.final.get("transitions", []):
            ax.axvline(t["at"] - run.started, color="grey", alpha=0.3, linewidth=0.8)
        if run.restart:
            ax.axvline(run.restart["at"], color="red", linestyle="--", label="service restarted")
        ax.set(title=f"{run.scenario}: {run.candidate} vs {run.control} → {run.status}",
               xlabel="seconds since the start", ylabel="candidate share (%)", ylim=(-5, 105))  # fmt: skip
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work = Path("reports") / "rollout-run"  # service logs, experiments files and ledgers (not committed)
    work.mkdir(parents=True, exist_ok=True)
    requests = batches(encode(*load_digits(None)), args.rows)
    names = ["good", "bad"] if args.scenario == "both" else [args.scenario]
    runs = [scenario(args, name, requests, work) for name in names]
    if args.plot:
        plot_share(runs, args.plot)
    text = markdown(args, runs, args.plot)
    print(text)
    if args.out:
        args.out.write_text(text)
    wanted = {"good": "completed", "bad": "rolled_back"}
    return 0 if all(run.status == wanted[run.scenario] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
