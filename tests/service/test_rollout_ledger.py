"""The rollout ledger behind the state interface: states replaced by revision only, and a lease that one
holder at a time keeps (Redis: SET NX PX, renewed by its holder, gone at expiry or release)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.metrics import ServiceMetrics
from service.routing.local_state import FileLedger
from service.routing.redis_link import Outage, RedisLink, connect
from service.routing.redis_rollout import RedisLedger
from service.routing.state import RolloutLedger
from tests.redis_server import running_redis


def state(revision: int, step: int) -> str:
    return json.dumps({"revision": revision, "step": step})


async def check_revisions(ledger: RolloutLedger) -> None:
    assert await ledger.read("exp") is None
    assert not await ledger.write("exp", state(1, 0), replaces=3)  # nothing stored: only 0 replaces it
    assert await ledger.write("exp", state(1, 0), replaces=0)
    assert not await ledger.write("exp", state(2, 1), replaces=0)  # a writer that read nothing lost the race
    assert await ledger.write("exp", state(2, 1), replaces=1)
    stored = await ledger.read("exp")
    assert stored is not None and json.loads(stored)["step"] == 1


def test_the_file_ledger_replaces_by_revision_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "experiments.rollouts.json"
    asyncio.run(check_revisions(FileLedger(path)))
    again = FileLedger(path)
    stored = asyncio.run(again.read("exp"))
    assert stored is not None and json.loads(stored)["revision"] == 2
    assert asyncio.run(again.hold_lease("anyone", 1.0))  # one process: always the decider


def test_the_redis_ledger_has_one_lease_holder_at_a_time(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        links = [
            RedisLink(connect(url, 1.0), Outage(ServiceMetrics(CollectorRegistry())), 1.0) for _ in range(2)
        ]
        first, second = (RedisLedger(link) for link in links)
        await check_revisions(first)
        assert json.loads(await second.read("exp") or "{}")["step"] == 1  # every replica reads the same state
        assert await first.hold_lease("a", 0.3)
        assert not await second.hold_lease("b", 0.3)  # held by another replica
        assert await first.hold_lease("a", 0.3)  # its holder renews it
        await asyncio.sleep(0.5)  # not renewed: it expires, and another replica takes over
        assert await second.hold_lease("b", 30)
        assert not await first.hold_lease("a", 30)
        await first.release_lease("a")  # releasing someone else's lease does nothing
        assert not await first.hold_lease("a", 30)
        await second.release_lease("b")
        assert await first.hold_lease("a", 30)
        for link in links:
            await link.client.aclose()

    with running_redis(tmp_path) as server:
        asyncio.run(scenario(server.url))
