"""The contract between the runner and the locust process: environment variables, parsed in one place.

locust runs in its own process (it monkey-patches the standard library with gevent), so the runner
cannot hand it Python objects; everything the locustfile needs beyond ``--host`` travels as ``LOADTEST_*``
variables, and these helpers are the only code that reads or writes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("json", "binary", "grpc", "ab")
DEFAULT_MIX = {"json": 1, "binary": 1, "grpc": 1, "ab": 3}


def parse_mix(text: str) -> dict[str, int]:
    """``"json=1,grpc=2"`` -> weights per user kind; kinds left out get 0, so the mix says who runs."""
    mix = dict.fromkeys(KINDS, 0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in mix:
            raise ValueError(f"unknown user kind '{kind}' in mix '{text}' (one of {', '.join(KINDS)})")
        try:
            mix[kind] = int(weight or "1")
        except ValueError:
            raise ValueError(f"mix '{text}': weight of '{kind}' is not an integer") from None
        if mix[kind] < 0:
            raise ValueError(f"mix '{text}': weight of '{kind}' is negative")
    if not any(mix.values()):
        raise ValueError(f"mix '{text}' runs no users")
    return mix


def format_mix(mix: Mapping[str, int]) -> str:
    return ",".join(f"{kind}={weight}" for kind, weight in mix.items() if weight)


@dataclass(frozen=True)
class LoadOptions:
    """What the locust users do; ``from_env``/``to_env`` round-trip it through the environment."""

    model: str = "mnist"  # the family: routed by its experiment
    sticky_header: str = "x-user-id"
    sticky_users: int = 100_000  # distinct sticky keys: many, so the hash split follows the weights
    feedback_fraction: float = 0.5
    grpc_target: str = "127.0.0.1:8001"
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    digits: Path | None = None  # .npz with images/labels; None: the built-in MNIST test split
    samples: Path | None = None  # where the per-request CSV goes; None: not written
    run_id: str = "run"  # prefix of request ids, so runs against one long-lived service never collide

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LoadOptions:
        default = cls()
        digits, samples = env.get("LOADTEST_DIGITS"), env.get("LOADTEST_SAMPLES")
        fraction = float(env.get("LOADTEST_FEEDBACK_FRACTION", default.feedback_fraction))
        if not 0 <= fraction <= 1:
            raise ValueError(f"LOADTEST_FEEDBACK_FRACTION={fraction}: must be within [0, 1]")
        return cls(
            model=env.get("LOADTEST_MODEL", default.model),
            sticky_header=env.get("LOADTEST_STICKY_HEADER", default.sticky_header),
            sticky_users=int(env.get("LOADTEST_STICKY_USERS", default.sticky_users)),
            feedback_fraction=fraction,
            grpc_target=env.get("LOADTEST_GRPC_TARGET", default.grpc_target),
            mix=parse_mix(env.get("LOADTEST_MIX", format_mix(default.mix))),
            digits=Path(digits) if digits else None,
            samples=Path(samples) if samples else None,
            run_id=env.get("LOADTEST_RUN_ID", default.run_id),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            "LOADTEST_MODEL": self.model,
            "LOADTEST_STICKY_HEADER": self.sticky_header,
            "LOADTEST_STICKY_USERS": str(self.sticky_users),
            "LOADTEST_FEEDBACK_FRACTION": str(self.feedback_fraction),
            "LOADTEST_GRPC_TARGET": self.grpc_target,
            "LOADTEST_MIX": format_mix(self.mix),
            "LOADTEST_RUN_ID": self.run_id,
        }
        if self.digits is not None:
            env["LOADTEST_DIGITS"] = str(self.digits)
        if self.samples is not None:
            env["LOADTEST_SAMPLES"] = str(self.samples)
        return env
