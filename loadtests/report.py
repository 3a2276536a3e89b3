"""Turn one run into numbers per variant, check them against the service's own, and write report.md.

Three witnesses count the same requests: the per-request samples the locustfile wrote, locust's stats
CSV, and the service (``slimserve_requests_total`` and the experiment report, differenced over the run).
The table takes latency and throughput from the client (what users felt) and online accuracy and
agreement from the service (what the experiment decides on); ``checks`` records where the witnesses
agree, so a report that disagrees with the service says so instead of being quietly wrong.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.service import Snapshot

UNROUTED = "?"  # requests that failed before the response named a variant
COUNT_TOLERANCE = 0.01  # acceptance: request counts within 1% of the service's


@dataclass
class Sample:
    start: float
    kind: str
    variant: str
    ms: float
    ok: bool
    bytes: int
    labelled: int
    correct: int
    error: str


def read_samples(path: Path) -> list[Sample]:
    with path.open(newline="") as handle:
        return [
            Sample(
                float(r["start"]),
                r["kind"],
                r["variant"] or UNROUTED,
                float(r["ms"]),
                r["ok"] == "1",
                int(r["bytes"]),
                int(r["labelled"]),
                int(r["correct"]),
                r["error"],
            )
            for r in csv.DictReader(handle)
        ]


def locust_request_count(stats_csv: Path) -> int:
    """Inference requests in locust's own stats CSV: every named row but feedback and the aggregate."""
    with stats_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sum(int(r["Request Count"]) for r in rows if r["Name"] not in ("Aggregated", "feedback"))


@dataclass
class VariantRow:
    variant: str
    weight: float | None = None  # the experiment's weight, percent
    requests: int = 0
    failures: int = 0
    share: float | None = None  # of routed requests
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    throughput_rps: float = 0.0
    mean_response_bytes: float | None = None
    model_bytes: float | None = None
    client_labelled: int = 0
    client_correct: int = 0
    client_accuracy: float | None = None  # from the client's own argmax on the answers it labelled
    service_requests: int = 0  # slimserve_requests_total over the run, every status
    experiment_requests: int = 0  # the experiment report's count over the run (successful routed requests)
    labelled: int = 0  # the experiment report's, including labels joined to shadow answers
    correct: int = 0
    online_accuracy: float | None = None
    compared: int = 0
    agreed: int = 0
    agreement: float | None = None


@dataclass
class Report:
    model: str
    experiment: str | None
    reference: str | None
    shadow: str | None
    duration_s: float
    requests: int
    failures: int
    feedback_sent: int
    rows: list[VariantRow]
    checks: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _experiment_counts(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per variant: requests, labelled, correct, compared, agreed (back from the report's ratios)."""
    counts = {}
    for row in report.get("variants", []):
        labelled, compared = row.get("labelled", 0), row.get("compared_with_reference", 0)
        counts[row["variant"]] = {
            "requests": row.get("requests", 0),
            "labelled": labelled,
            "correct": round((row.get("online_accuracy") or 0.0) * labelled),
            "compared": compared,
            "agreed": round((row.get("agreement_with_reference") or 0.0) * compared),
            "weight": row.get("weight"),
        }
    return counts


def build(samples: list[Sample], before: Snapshot, after: Snapshot, model: str, locust_count: int) -> Report:
    inference = [s for s in samples if s.kind != "feedback"]
    feedback = [s for s in samples if s.kind == "feedback"]
    starts = [s.start for s in samples]
    duration = max(s.start + s.ms / 1000 for s in samples) - min(starts) if samples else 0.0
    exp_after, exp_before = _experiment_counts(after.experiment), _experiment_counts(before.experiment)
    by_variant: dict[str, list[Sample]] = defaultdict(list)
    for sample in inference:
        by_variant[sample.variant].append(sample)
    names = list(dict.fromkeys([*exp_after, *sorted(v for v in by_variant if v != UNROUTED)]))
    if UNROUTED in by_variant:
        names.append(UNROUTED)
    routed = sum(len(v) for k, v in by_variant.items() if k != UNROUTED)
    rows = []
    for name in names:
        mine = by_variant.get(name, [])
        ok = [s.ms for s in mine if s.ok]
        labels = [s for s in feedback if s.variant == name and s.labelled]
        row = VariantRow(name, requests=len(mine), failures=sum(not s.ok for s in mine))
        if name != UNROUTED:
            row.share = _ratio(len(mine), routed)
        if ok:
            row.p50_ms, row.p95_ms, row.p99_ms = (float(q) for q in np.percentile(ok, [50, 95, 99]))
            row.mean_response_bytes = float(np.mean([s.bytes for s in mine if s.ok]))
        row.throughput_rps = len(mine) / duration if duration else 0.0
        row.model_bytes = after.model_bytes.get(name)
        row.client_labelled, row.client_correct = len(labels), sum(s.correct for s in labels)
        row.client_accuracy = _ratio(row.client_correct, row.client_labelled)
        row.service_requests = round(
            sum(v for (variant, _), v in after.requests.items() if variant == name)
            - sum(v for (variant, _), v in before.requests.items() if variant == name)
        )
        if name in exp_after:
            now, then = exp_after[name], exp_before.get(name, {})
            row.weight = now["weight"]
            delta = {
                k: round(now[k] - then.get(k, 0))
                for k in ("requests", "labelled", "correct", "compared", "agreed")
            }
            row.experiment_requests, row.labelled, row.correct = (
                delta["requests"],
                delta["labelled"],
                delta["correct"],
            )
            row.compared, row.agreed = delta["compared"], delta["agreed"]
            row.online_accuracy = _ratio(row.correct, row.labelled)
            row.agreement = _ratio(row.agreed, row.compared)
        rows.append(row)
    experiment = after.experiment or {}
    shadow = (experiment.get("shadow") or {}).get("variant")
    report = Report(
        model=model, experiment=experiment.get("name"), reference=experiment.get("reference"), shadow=shadow,
        duration_s=duration, requests=len(inference), failures=sum(not s.ok for s in samples),
        feedback_sent=len(feedback), rows=rows,
    )  # fmt: skip
    report.checks = checks(report, locust_count)
    return report


def checks(report: Report, locust_count: int) -> dict[str, Any]:
    """Where the client's counts and the service's agree; ``passed`` is the conjunction."""
    service_total = sum(r.service_requests for r in report.rows)
    routed = [r for r in report.rows if r.variant != UNROUTED]
    counts_ok = (
        all(_within(r.requests, r.service_requests) for r in routed if r.requests or r.service_requests)
        and _within(report.requests, service_total)
        and _within(locust_count, service_total)
    )
    # Labels on shadow answers reach only the service's tally: the client saw the primary's answer alone.
    # Without an experiment the service keeps no labelled tally (its report is the experiment's): nothing to
    # compare, as when `make loadtest` loads a plain `make serve`.
    primaries = [r for r in routed if r.variant != report.shadow and r.client_labelled and report.experiment]
    accuracy_ok = all(r.client_labelled == r.labelled and r.client_correct == r.correct for r in primaries)
    split = {r.variant: (r.share or 0.0) * 100 - (r.weight or 0.0) for r in routed if r.weight}
    return {
        "locust_requests": locust_count,
        "sampled_requests": report.requests,
        "service_requests": service_total,
        "request_counts_within_1pct": counts_ok,
        "client_accuracy_matches_service": accuracy_ok,
        "split_minus_weight_points": split,
        "split_within_5_points": all(abs(d) <= 5 for d in split.values()),
        "passed": counts_ok and accuracy_ok and report.failures == 0,
    }


def _within(mine: float, theirs: float) -> bool:
    return abs(mine - theirs) <= COUNT_TOLERANCE * max(mine, theirs)


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value * scale, spec)
    )


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def table(report: Report) -> list[str]:
    lines = [
        "| variant | weight | requests | failures | share | p50 ms | p95 ms | p99 ms | req/s | labelled | "
        "online accuracy | agreement with reference | model bytes | response bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.variant} | {'–' if r.weight is None else f'{r.weight:g}%'} | {r.requests:,} | {r.failures} | {_pct(r.share)} | "
            f"{_fmt(r.p50_ms, '.1f')} | {_fmt(r.p95_ms, '.1f')} | {_fmt(r.p99_ms, '.1f')} | "
            f"{r.throughput_rps:.1f} | {r.labelled:,} | {_pct(r.online_accuracy)} | "
            f"{_pct(r.agreement)} | {_fmt(r.model_bytes, ',.0f')} | {_fmt(r.mean_response_bytes, ',.0f')} |"
        )
    return lines


def markdown(report: Report, command: str, settings: dict[str, Any], plots: dict[str, str]) -> str:
    c = report.checks
    lines = [
        f"# Load test: {report.model}", "",
        f"- Command: `{command}`",
        *[f"- {key}: {value}" for key, value in settings.items()],
        f"- Experiment: {report.experiment or 'none'} (reference {report.reference or '–'}, shadow {report.shadow or 'none'})",
        f"- Duration: {report.duration_s:.1f} s; {report.requests:,} inference requests, {report.failures} failures, "
        f"{report.feedback_sent:,} feedback posts", "",
        "Latency, throughput and response bytes are the client's (locust); requests per variant are the client's "
        "count of the variant named in each response. Online accuracy, labelled and agreement come from the "
        "service's experiment report over this run (a shadow variant's labels include those joined to its "
        "mirrored answers); model bytes from `slimserve_variant_model_bytes`.", "",
        *table(report), "",
        "## Accuracy: the client's tally and the service's", "",
        "| variant | client labelled | client accuracy | service labelled | service accuracy |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r.variant} | {r.client_labelled:,} | {_pct(r.client_accuracy, 2)} | {r.labelled:,} | "
          f"{_pct(r.online_accuracy, 2)} |" for r in report.rows if r.variant != UNROUTED],
        "",
        "## Checks", "",
        f"- Requests: locust {c['locust_requests']:,}, samples {c['sampled_requests']:,}, service "
        f"(`slimserve_requests_total`) {c['service_requests']:,}: within 1% per variant and in total: "
        f"{'yes' if c['request_counts_within_1pct'] else 'NO'}",
        "- The client's accuracy tally equals the service's for every primary variant: "
        + (("yes" if c["client_accuracy_matches_service"] else "NO") if report.experiment
           else "not compared (no experiment: the service keeps no labelled tally)"),
        "- Traffic share minus weight (points): "
        + (", ".join(f"{v} {d:+.1f}" for v, d in c["split_minus_weight_points"].items()) or "no experiment")
        + f" (within ±5: {'yes' if c['split_within_5_points'] else 'NO'})",
        "",
        "## Plots", "",
        *[f"- {title}: [{path}]({path})" for title, path in plots.items()],
        "",
        "Locust's own CSVs: `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv`, "
        "`locust_exceptions.csv`; every request: `requests.csv`; the service's report: `experiment.json`.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)
