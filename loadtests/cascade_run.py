"""``python -m loadtests cascade``: the cascade against teacher-only and student-only, one service, same load.

One service routes the family to a cascade arm; the pin header sends the same closed-loop load to the
teacher alone and to the student alone. Each phase runs the same duration at the same concurrency, on the
same digits; accuracy is the client's (it knows every label), escalation from the response headers, and the
service's report (fed every label) is kept beside them.

The threshold is the first stage's card's when the card records one; otherwise it is picked here, by the
pipeline's function (``models.cascade.pick_threshold``) on the validation split, and written into the
experiments file: the report says which.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from contract.layout import latest
from loadtests.drive import Driven, batches, drive, for_seconds
from loadtests.payloads import encode, load_digits
from loadtests.service import start_service

PIN = "slimserve-pin-variant"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests cascade", description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--family", default="mnist")
    parser.add_argument("--first", default="student-int8-x86")
    parser.add_argument("--then", default="teacher-fp32")
    parser.add_argument("--threshold", type=float, help="override the card's (or the computed) threshold")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20, help="per phase")
    parser.add_argument(
        "--rows", type=int, default=1, help="digits per request (32: the model, not HTTP, is the cost)"
    )
    parser.add_argument("--out", type=Path, help="markdown report (default: print only)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "loadtests", "cascade", *argv])
    return args


def threshold_for(args: argparse.Namespace) -> tuple[float, str]:
    """The threshold to serve and where it came from."""
    if args.threshold is not None:
        return args.threshold, "given on the command line"
    card = latest(args.registry, f"{args.family}-{args.first}").card
    if card.cascade is not None and card.cascade.then == args.then:
        return (
            card.cascade.threshold,
            f"the card of {card.name}:{card.version} (picked on {card.cascade.computed_on})",
        )
    from models.cascade import artifact_logits, pick_threshold
    from models.data import load_dataset

    validation = load_dataset(None).validation
    first = artifact_logits(latest(args.registry, f"{args.family}-{args.first}"), validation.images)
    then = artifact_logits(latest(args.registry, f"{args.family}-{args.then}"), validation.images)
    choice = pick_threshold(first, then, validation.labels)
    return choice.threshold, (
        f"computed at report time by models.cascade.pick_threshold on the validation split ({len(validation.labels)}"
        f" rows; the registry's cards predate cascades): expected escalation {choice.expected_escalation:.1%}, "
        f"margin {choice.margin * 100:.1f} pt"
    )


def experiments_file(args: argparse.Namespace, threshold: float, path: Path) -> Path:
    experiment = {
        "name": f"{args.family}-cascade", "family": args.family, "pin_header": PIN, "reference": args.then,
        "variants": [{"name": "cascade", "weight": 100}, {"name": args.first, "weight": 0}],
        "cascade": {"first": args.first, "then": args.then, "threshold": threshold},
    }  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    return path


async def phases(url: str, args: argparse.Namespace) -> dict[str, Driven]:
    requests = batches(encode(*load_digits(None)), args.rows)
    runs: dict[str, Driven] = {}
    for name, pin in (("cascade", None), ("teacher-only", args.then), ("student-only", args.first)):
        headers = {PIN: pin} if pin else {}
        runs[name] = await drive(url, args.family, requests, concurrency=args.concurrency, headers=headers,
                                 until=for_seconds(args.seconds), feedback=name == "cascade", run_id=name)  # fmt: skip
    return runs


def figures(runs: dict[str, Driven]) -> dict[str, dict[str, float]]:
    return {name: {"requests": len(run.ok), "failed": len(run.samples) - len(run.ok), "seconds": run.seconds,
                   "throughput": run.throughput, "rows_per_second": run.rows_per_second, "accuracy": run.accuracy,
                   "escalation_rate": run.escalation_rate if name == "cascade" else 0.0,
                   "row_escalation_rate": run.row_escalation_rate if name == "cascade" else 0.0,
                   "p50_ms": run.latency_ms(0.5), "p99_ms": run.latency_ms(0.99)}
            for name, run in runs.items()}  # fmt: skip


def markdown(args: argparse.Namespace, numbers: dict[str, dict[str, float]], threshold: float, source: str,
             service_report: dict[str, Any]) -> str:  # fmt: skip
    cascade, teacher = numbers["cascade"], numbers["teacher-only"]
    section = next(r for r in service_report["variants"] if r["variant"] == "cascade")["cascade"]
    accuracy_gap = (cascade["accuracy"] - teacher["accuracy"]) * 100
    speedup = cascade["throughput"] / teacher["throughput"]
    lines = [
        "# Confidence cascade: accuracy, escalation and throughput",
        "",
        f"Command: `{args.command_line}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}  ",
        f"Registry: `{args.registry}`; cascade `{args.first}` → `{args.then}`, threshold {threshold:.6f} "
        f"({source})  ",
        f"Load: closed loop, {args.concurrency} concurrent binary OIP requests of {args.rows} digit(s) over HTTP, "
        f"{args.seconds:g} s per "
        f"phase, the {args.family} test split's digits in turn; teacher-only and student-only pinned by header.",
        "",
        "| phase | requests | req/s | rows/s | accuracy | requests escalated | rows escalated | p50 (ms) "
        "| p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {n['requests']:,.0f} | {n['throughput']:,.0f} | {n['rows_per_second']:,.0f} "
            f"| {n['accuracy'] * 100:.2f}% | {n['escalation_rate'] * 100:.1f}% "
            f"| {n['row_escalation_rate'] * 100:.2f}% | {n['p50_ms']:.2f} | {n['p99_ms']:.2f} |"
            for name, n in numbers.items()
        ),
        "",
        "## Acceptance",
        "",
        f"- accuracy ≥ teacher − 0.2 pt: cascade {cascade['accuracy'] * 100:.2f}% vs teacher-only "
        f"{teacher['accuracy'] * 100:.2f}% ({accuracy_gap:+.2f} pt): {'holds' if accuracy_gap >= -0.2 else 'MISSED'}",
        f"- ≤ 25 % escalated: {cascade['escalation_rate'] * 100:.1f}% of requests (any row), "
        f"{cascade['row_escalation_rate'] * 100:.2f}% of rows: "
        f"{'holds' if cascade['escalation_rate'] <= 0.25 else 'MISSED'}",
        f"- throughput ≥ 2× teacher-only at the same concurrency: {speedup:.2f}×: "
        f"{'holds' if speedup >= 2 else 'MISSED'}",
        "",
        "## The service's own report of the cascade phase (every answer labelled)",
        "",
        f"Escalated: {section['escalated']:,} of {sum(s['requests'] for s in section['stages']):,} requests "
        f"({(section['escalation_rate'] or 0) * 100:.1f}%) had a row escalated; {section['escalated_rows']:,} of "
        f"{sum(s['rows'] for s in section['stages']):,} rows ({(section['row_escalation_rate'] or 0) * 100:.2f}%).",
        "",
        "| stage | second stage | requests | rows | labelled rows | online accuracy | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {s['variant']} | {s['escalated']} | {s['requests']:,} | {s['rows']:,} | {s['labelled']:,} "
            f"| {_percent(s['online_accuracy'])} | {_ms(s['latency_seconds']['p50'])} | {_ms(s['latency_seconds']['p99'])} |"
            for s in section["stages"]
        ),
        "",
        "A stage's requests: the second's are those with any row escalated, the first's the others; its rows and "
        "accuracy are the rows it answered. Stage latencies are the service's (decoded request to answer); an "
        "escalated request's includes both stages. The client's p50/p99 above include HTTP and the client.",
    ]
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1e3:.2f}"


def machine() -> str:
    return (f"{platform.machine()}, {_cpu()}, Python {platform.python_version()}; the load generator shares the "
            "cores with the service (and with other work on the machine)")  # fmt: skip


def _cpu() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()} × {model}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    threshold, source = threshold_for(args)
    work = Path("reports") / "cascade-run"  # the service's log and experiments file (not committed)
    work.mkdir(parents=True, exist_ok=True)
    experiments = experiments_file(args, threshold, work / "experiments.yaml")
    with start_service(args.registry, experiments, work / "service.log") as target:
        runs = asyncio.run(phases(target.url, args))
        report = (
            httpx.get(f"{target.url}/v1/experiments/{args.family}-cascade", timeout=30)
            .raise_for_status()
            .json()
        )
    numbers = figures(runs)
    text = markdown(args, numbers, threshold, source, report)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"threshold": threshold, "source": source, "phases": numbers,
                                         "service_report": report}, indent=2))  # fmt: skip
    return 0 if all(n["failed"] == 0 for n in numbers.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
