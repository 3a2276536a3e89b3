"""``python -m loadtests run``: start (or target) the service, run locust headless, write the report folder.

The folder holds locust's CSVs, every request (``requests.csv``), the service's experiment report and
metrics differences (``report.json``), ``report.md`` and the PNG plots. Exit status: 0 when locust ran
and the report's checks passed (no failures, counts agree with the service), 1 otherwise, so the command
can gate a change.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from loadtests import plots, report
from loadtests.options import KINDS, LoadOptions, format_mix, parse_mix
from loadtests.payloads import load_digits, save_digits
from loadtests.service import Target, find_experiment, snapshot, start_service, wait_ready

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
EXPERIMENTS = HERE / "experiments.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a bounded load test and write a report folder")
    run.add_argument("--registry", type=Path, default=Path("registry"),
                     help="registry to serve (built with `python -m models build` when missing)")  # fmt: skip
    run.add_argument(
        "--host",
        help="target a running service (http://127.0.0.1:PORT) instead of starting one; it must run with an "
        "experiments file routing the family (--routing.experiments_file loadtests/experiments.yaml): the "
        "report's split, labels and agreement come from that experiment",
    )
    run.add_argument("--grpc-host", help="its gRPC address (default: the --host's address, port 8001)")
    run.add_argument(
        "--experiments", type=Path, default=EXPERIMENTS, help="experiments file for the started service"
    )
    run.add_argument(
        "--model", default="mnist", help="what users call: the family (routed) or a variant's name"
    )
    run.add_argument("--users", type=int, default=16)
    run.add_argument("--spawn-rate", type=float, default=16)
    run.add_argument("--duration", default="15s", help="locust --run-time, e.g. 15s or 2m")
    run.add_argument("--mix", default=os.environ.get("LOADTEST_MIX", "json=1,binary=1,grpc=1,ab=3"),
                     help=f"user kinds and weights, kind=weight,...; kinds: {', '.join(KINDS)}")  # fmt: skip
    run.add_argument(
        "--feedback-fraction", type=float, default=0.5, help="share of A/B answers that get a label"
    )
    run.add_argument("--sticky-users", type=int, default=100_000, help="distinct sticky keys")
    run.add_argument("--out", type=Path, help="report folder (default reports/loadtest-<UTC time>)")
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "loadtests", *(sys.argv[1:] if argv is None else argv)])
    args.mix = parse_mix(args.mix)
    if args.host and not args.host.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("--host must be a loopback address: load tests target your own machine only")
    return args


def ensure_registry(path: Path, family: str) -> None:
    if not path.is_dir():
        print(f"registry {path} is missing: building it (a few minutes)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "models", "build", family, "--registry", str(path)], check=True)


def run_locust(args: argparse.Namespace, target: Target, options: LoadOptions, out: Path) -> int:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target.url,
               "-u", str(args.users), "-r", str(args.spawn_rate), "--run-time", args.duration,
               "--stop-timeout", "5", "--csv", str(out / "locust"), "--csv-full-history",
               "--only-summary", "--loglevel", "WARNING", "--logfile", str(out / "locust.log")]  # fmt: skip
    env = {**os.environ, **options.to_env()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    seconds = _seconds(args.duration)
    completed = subprocess.run(command, env=env, timeout=seconds + 120, stdout=subprocess.DEVNULL)
    return completed.returncode


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in duration:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total + (float(number) if number else 0.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC)
    out: Path = args.out or Path("reports") / f"loadtest-{stamp:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    family = args.model.split("-")[0]
    digits = out / "digits.npz"
    save_digits(digits, *load_digits(None))
    if args.host:
        url = args.host.rstrip("/")
        wait_ready(url, 60)
        grpc = args.grpc_host or f"{url.removeprefix('http://').rsplit(':', 1)[0]}:8001"
        code = _measure(args, Target(url, grpc), family, digits, out, stamp)
    else:
        ensure_registry(args.registry, family)
        experiments = out / "experiments.yaml"
        shutil.copyfile(args.experiments, experiments)
        with start_service(args.registry, experiments, out / "service.log") as target:
            code = _measure(args, target, family, digits, out, stamp)
    digits.unlink()
    return code


def _measure(args: argparse.Namespace, target: Target, family: str, digits: Path, out: Path,
             stamp: datetime.datetime) -> int:  # fmt: skip
    options = LoadOptions(model=args.model, feedback_fraction=args.feedback_fraction, grpc_target=target.grpc,
                          mix=args.mix, digits=digits, samples=out / "requests.csv",
                          sticky_users=args.sticky_users, run_id=f"lt{uuid.uuid4().hex[:8]}")  # fmt: skip
    experiment = find_experiment(target.url, family)
    before = snapshot(target.url, family, experiment)
    locust_code = run_locust(args, target, options, out)
    if not (out / "requests.csv").is_file():
        raise SystemExit(f"locust exited with code {locust_code} before any request: see {out}/locust.log")
    after = snapshot(target.url, family, experiment)
    samples = report.read_samples(out / "requests.csv")
    result = report.build(
        samples, before, after, family, report.locust_request_count(out / "locust_stats.csv")
    )
    plot_paths = {"Latency over time per variant": "latency_over_time.png",
                  "Trade-off: online accuracy against p99": "trade_off.png"}  # fmt: skip
    plots.latency_over_time(samples, out / plot_paths["Latency over time per variant"])
    plots.trade_off(result, out / plot_paths["Trade-off: online accuracy against p99"])
    (out / "experiment.json").write_text(json.dumps(after.experiment, indent=2))
    (out / "report.json").write_text(
        json.dumps({**result.to_json(), "locust_exit_code": locust_code}, indent=2)
    )
    settings = {
        "Date": f"{stamp:%Y-%m-%d %H:%M} UTC",
        "Target": f"{target.url} (gRPC {target.grpc})"
        + ("" if args.host else f", started on {args.registry}"),
        "Load": f"locust, {args.users} users ({format_mix(args.mix)}), {args.duration}, model `{args.model}`, "
        f"{options.sticky_users:,} sticky keys, feedback on {args.feedback_fraction:.0%} of A/B answers",
    }
    (out / "report.md").write_text(report.markdown(result, args.command_line, settings, plot_paths))
    print("\n".join(report.table(result)))
    passed = result.checks["passed"]
    print(f"\nwrote {out}/report.md ({'checks passed' if passed else 'CHECKS FAILED: see Checks'})")
    return 0 if passed and locust_code in (0, 1) and result.requests else 1
