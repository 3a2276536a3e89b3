"""Steady traffic against a running service, routed (the family) and direct (one variant), every answer kept."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np

FAMILY = "mnist"


def body(rows: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "INPUT__0", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    model: str  # what was called: the family (routed) or a variant's model name (direct)
    status: int
    variant: str  # the slimserve-variant header, "" on errors
    fallback: bool
    retry_after: str | None
    error: str

    @property
    def routed(self) -> bool:
        return self.model == FAMILY


async def drive(
    url: str, stop: asyncio.Event, rows: np.ndarray, *, direct: str | None = None, routed_users: int = 3
) -> list[Answer]:
    """``routed_users`` callers of the family and, with ``direct``, one caller of that model, until ``stop``."""
    answers: list[Answer] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def user(model: str) -> None:
            while not stop.is_set():
                response = await client.post(f"/v2/models/{model}/infer", json=body(rows[:1]))
                error = response.json().get("error", "") if response.status_code != 200 else ""
                answers.append(Answer(time.monotonic(), model, response.status_code,
                                      response.headers.get("slimserve-variant", ""),
                                      response.headers.get("slimserve-fallback") == "true",
                                      response.headers.get("retry-after"), error))  # fmt: skip
                await asyncio.sleep(0.01)

        users = [user(FAMILY) for _ in range(routed_users)] + ([user(direct)] if direct else [])
        await asyncio.gather(*users)
    return answers


def check_never_500(answers: list[Answer]) -> None:
    """No 500 to anyone; every routed call answered; a direct call answered or told to retry (503)."""
    assert answers, "no traffic was sent"
    internal = [answer for answer in answers if answer.status >= 500 and answer.status != 503]
    assert not internal, f"{len(internal)} answers with an internal error, e.g. {internal[:3]}"
    unanswered = [answer for answer in answers if answer.routed and answer.status != 200]
    assert not unanswered, f"{len(unanswered)} routed calls not answered, e.g. {unanswered[:3]}"
    refused = [answer for answer in answers if answer.status == 503]
    assert all(answer.retry_after for answer in refused), refused[:3]
    assert all(answer.status in (200, 503) for answer in answers), {answer.status for answer in answers}
