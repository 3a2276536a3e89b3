"""``make soak``: a bounded soak. Does the service's memory stay flat under steady load?

Starts the service on a registry (with an experiment, so routing, shadow and the prediction store are
exercised), warms it up, samples its RSS, drives wrk against every variant and the routed family for the
given minutes, samples RSS again and writes the growth to a Markdown report.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.loadgen import json_body, real_digit
from benchmarks.processes import service
from benchmarks.serving import machine

LUA = """
local paths = {{{paths}}}
local f = io.open("{body}", "rb")
local body = f:read("*all")
f:close()
request = function()
  return wrk.format("POST", paths[math.random(#paths)], {{["Content-Type"] = "application/json",
    ["x-user-id"] = tostring(math.random(100000))}}, body)
end
"""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wrk(url: str, script: Path, seconds: int) -> tuple[int, int]:
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), url]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    requests = int(text.split(" requests in ")[0].split()[-1])
    failures = int(text.split("Non-2xx or 3xx responses: ")[1].split()[0]) if "Non-2xx" in text else 0
    return requests, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument(
        "--warmup-seconds", type=int, default=90,
        help="load before the first sample: long enough to fill the bounded prediction store (100k entries)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/soak.md"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        experiments = Path(folder) / "experiments.yaml"
        experiments.write_text(yaml.safe_dump({"experiments": [{
            "name": "soak", "family": "mnist", "sticky_key": "x-user-id",
            "variants": [{"name": "student-int8-x86", "weight": 80}, {"name": "student-fp32", "weight": 20}],
            "shadow": {"variant": "teacher-fp32", "percent": 10},
        }]}))  # fmt: skip
        body, _ = json_body(real_digit())
        (Path(folder) / "body.json").write_bytes(body)
        models = sorted(p.name for p in args.registry.iterdir() if p.name.startswith("mnist-"))
        paths = ", ".join(f'"/v2/models/{name}/infer"' for name in models) + ', "/v2/models/mnist/infer"'
        script = Path(folder) / "soak.lua"
        script.write_text(LUA.format(paths=paths, body=Path(folder) / "body.json"))
        with service(args.registry, True, ["--routing.experiments_file", str(experiments)]) as (port, _, pid):
            url = f"http://127.0.0.1:{port}"
            ready_rss = rss_bytes(pid)
            wrk(url, script, args.warmup_seconds)  # fills bounded stores, allocator pools, batch shapes
            start = rss_bytes(pid)
            samples = [start]
            total = failed = 0
            for _ in range(max(1, round(args.minutes * 2))):  # 30 s slices, RSS after each
                requests, failures = wrk(url, script, 30)
                total, failed = total + requests, failed + failures
                samples.append(rss_bytes(pid))
            end = samples[-1]
    growth = (end - start) / start
    command_line = "python -m benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    report = [
        "# Soak", "",
        f"- Command: `{command_line.strip()}`",
        f"- Machine: {machine()}",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Load: wrk, 16 connections, random over every variant and the routed family (experiment with "
        f"10% shadow to the teacher, random sticky keys), one real digit per request; {args.minutes:g} min "
        f"after a {args.warmup_seconds} s warm-up. Every answered request's prediction waits for its label in a "
        "store bounded at `--routing.feedback_capacity` (100,000 entries, about 27 MiB when full): the warm-up "
        "fills it, so the measured window shows growth beyond what is bounded by design.",
        f"- RSS when ready, before any load: {ready_rss / 2**20:.1f} MiB.",
        "",
        "| requests | non-2xx | RSS after warm-up | RSS at end | growth | target |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {total:,} | {failed} | {start / 2**20:.1f} MiB | {end / 2**20:.1f} MiB | {growth:+.1%} | "
        f"< 10%: {'PASS' if growth < 0.10 else 'MISS'} |",
        "",
        "RSS every 30 s (MiB): " + ", ".join(f"{s / 2**20:.1f}" for s in samples),
        "",
    ]  # fmt: skip
    args.out.write_text("\n".join(report))
    print(f"wrote {args.out}: RSS {start / 2**20:.1f} -> {end / 2**20:.1f} MiB ({growth:+.1%})")


if __name__ == "__main__":
    main()
