"""The Redis experiment state against a real redis-server: joins once fleet-wide, tallies add up, outages
cost nothing but what is counted as lost, configuration follows changes and outlives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.errors import StateUnavailable
from service.metrics import ServiceMetrics
from service.routing.experiments import Experiment, ExperimentsFile
from service.routing.feedback import Prediction
from service.routing.local_state import InProcessState
from service.routing.redis_config import RedisConfig
from service.routing.redis_link import Outage, RedisLink, connect
from service.routing.redis_state import RedisState
from tests.redis_server import RedisServer, running_redis

EXPERIMENT = Experiment.model_validate(
    {"name": "ab", "family": "mnist", "variants": [{"name": "student-int8-x86", "weight": 100}]}
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as running:
        yield running


@dataclass
class Replica:
    state: RedisState
    config: RedisConfig
    metrics: ServiceMetrics


@contextlib.asynccontextmanager
async def replicas(server: RedisServer, count: int = 1, capacity: int = 100) -> AsyncIterator[list[Replica]]:
    """``count`` replicas' stores on one Redis, each with its own client and metrics; closed afterwards."""
    made = []
    for _ in range(count):
        metrics = ServiceMetrics(CollectorRegistry())
        link = RedisLink(connect(server.url, timeout_s=0.25), Outage(metrics), timeout_s=0.25)
        made.append(Replica(RedisState(link, capacity, ttl_s=60), RedisConfig(link), metrics))
    try:
        yield made
    finally:
        for each in made:
            await each.config.stop()
            await each.state.stop()  # closes the client


def prediction(
    classes: tuple[int, ...] = (7,), created: float | None = None, shadow: str | None = None
) -> Prediction:
    return Prediction("ab", "mnist", "student-int8-x86", classes, time.time() if created is None else created,
                      shadow_variant=shadow)  # fmt: skip


def lost(metrics: ServiceMetrics, kind: str) -> float:
    return metrics.registry.get_sample_value("slimserve_experiment_state_lost_total", {"kind": kind}) or 0.0


def test_a_label_joins_once_whichever_replica_it_reaches(server: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(server, 2) as (a, b):
            a.state.remember("r1", prediction((3, 4)))
            a.state.remember("old", prediction(created=time.time() - 120))
            await a.state.settle()
            assert (await b.state.take("r1", [3])).status == "needs 2 labels, got 1"
            taken = await b.state.take("r1", [3, 5])
            assert taken.status == "ok" and taken.prediction is not None
            assert taken.prediction == prediction((3, 4), created=taken.prediction.created)
            assert (await a.state.take("r1", [3, 5])).status == "unknown id"
            assert (await b.state.take("r1", [3, 5])).status == "unknown id"
            assert (await b.state.take("old", [7])).status == "expired"
            assert (await b.state.take("never", [7])).status == "unknown id"
            odd = 'line\nbreak "quoted" é ✓'  # ids are the client's: any text
            a.state.remember(odd, prediction())
            await a.state.settle()
            assert (await b.state.take(odd, [7])).status == "ok"

    asyncio.run(scenario())


def test_capacity_evicts_the_oldest_fleet_wide(server: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(server, 2, capacity=3) as (a, b):
            for index in range(5):
                (a if index % 2 else b).state.remember(f"r{index}", prediction())
                await (a if index % 2 else b).state.settle()
            statuses = [(await a.state.take(f"r{index}", [7])).status for index in range(5)]
            assert statuses == ["unknown id", "unknown id", "ok", "ok", "ok"]

    asyncio.run(scenario())


def test_a_label_before_the_shadow_answer_reaches_the_replica_running_the_shadow(server: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(server, 2) as (a, b):
            a.state.remember("early", prediction(shadow="teacher-fp32"))
            a.state.remember("late", prediction(shadow="teacher-fp32"))
            await a.state.settle()
            assert (await b.state.take("early", [7])).status == "ok"  # the shadow copy has not answered yet
            handed: list[tuple[str, list[int]]] = []
            a.state.answer_shadow("early", (1,), lambda labels: handed.append(("early", labels)))
            a.state.answer_shadow("late", (2,), lambda labels: handed.append(("late", labels)))
            await a.state.settle()
            assert handed == [("early", [7])]
            taken = await b.state.take("late", [2])
            assert taken.prediction is not None and taken.prediction.shadow_classes == (2,)

    asyncio.run(scenario())


def test_tallies_from_every_replica_add_up_to_what_one_process_counts(server: RedisServer) -> None:
    latencies = [0.0004, 0.002, 0.002, 0.003, 0.05, 0.9]

    async def scenario() -> None:
        async with replicas(server, 3) as fleet:
            alone = InProcessState(100, 60, 10)
            for index, seconds in enumerate(latencies):
                for store in (fleet[index % 3].state, alone):
                    store.count("ab", "student-int8-x86", {"requests": 1}, latency_s=seconds)
                    counts = {"labelled": 2, "correct": index % 2, "compared": 1, "agreed": 1}
                    store.count("ab", "teacher-fp32", counts)
                    store.count_shadow_dropped("ab")
            for each in fleet:
                await each.state.settle()
            shared, expected = await fleet[0].state.tallies("ab"), await alone.tallies("ab")
            assert shared == expected
            assert shared.of("student-int8-x86").latency_quantiles()["p50"] == pytest.approx(0.002, rel=0.05)

    asyncio.run(scenario())


def test_an_outage_loses_only_what_it_counts_and_the_store_comes_back(server: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(server) as (a,):
            a.state.remember("before", prediction())
            await a.state.settle()
            server.kill()
            a.state.remember("during", prediction())  # the response path never raises
            a.state.count("ab", "student-int8-x86", {"requests": 1})
            with pytest.raises(StateUnavailable):
                await a.state.settle()
            assert lost(a.metrics, "prediction") == 1 and lost(a.metrics, "count") == 1
            assert a.metrics.registry.get_sample_value("slimserve_experiment_state_up") == 0
            with pytest.raises(StateUnavailable):
                await a.state.take("before", [7])
            server.start()  # same folder: the append-only file brings "before" back; "during" is gone
            a.state.remember("after", prediction())
            await a.state.settle()
            statuses = [(await a.state.take(name, [7])).status for name in ("before", "during", "after")]
            assert statuses == ["ok", "unknown id", "ok"]
            assert a.metrics.registry.get_sample_value("slimserve_experiment_state_up") == 1

    asyncio.run(scenario())


def test_configuration_changes_reach_other_replicas_and_outlive_restarts(server: RedisServer) -> None:
    seed = ExperimentsFile(experiments=[EXPERIMENT])
    changed = EXPERIMENT.model_copy(update={"margin": 0.05})

    async def scenario() -> None:
        async with replicas(server, 2) as (a, b):
            assert (await a.config.load(seed)).experiments == [EXPERIMENT]
            assert (await b.config.load(seed)).experiments == [EXPERIMENT]
            applied: list[list[Experiment]] = []
            await b.config.start(applied.append)
            await a.config.save(changed)
            await b.config.refresh()
            assert applied[-1] == [changed]

    async def after_restart() -> None:
        async with replicas(server) as (c,):
            assert (await c.config.load(seed)).experiments == [changed]  # Redis's copy wins over the file's

    asyncio.run(scenario())
    server.stop()
    server.start()
    asyncio.run(after_restart())


def test_an_unreachable_store_at_start_up_serves_the_files_experiments(server: RedisServer) -> None:
    server.kill()
    seed = ExperimentsFile(experiments=[EXPERIMENT])

    async def scenario() -> None:
        async with replicas(server) as (a,):
            assert await a.config.load(seed) == seed
            with pytest.raises(StateUnavailable):
                await a.config.save(EXPERIMENT)
            assert a.metrics.registry.get_sample_value("slimserve_experiment_state_up") == 0

    asyncio.run(scenario())
