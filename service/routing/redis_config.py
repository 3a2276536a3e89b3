"""Experiments' configuration in Redis: an admin change on any replica reaches all, and survives restarts.

One hash holds each experiment as JSON, beside a version counter bumped in the same transaction. Every
replica polls the counter (one GET per interval) and re-reads the hash when it moves. The experiments file
seeds the hash: an experiment Redis does not know yet is added from the file; one it knows keeps Redis's
copy (admin changes outlive rollouts); the file still decides which experiments exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pydantic import ValidationError

from service.errors import StateUnavailable
from service.routing.experiments import Experiment, ExperimentsFile
from service.routing.redis_link import KEY_PREFIX, RedisLink
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EXPERIMENTS = f"{KEY_PREFIX}experiments"
VERSION = f"{KEY_PREFIX}experiments:version"
POLL_EVERY_S = 0.5  # well inside the 2 s in which a change must reach every replica


class RedisConfig:
    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._client = link.client
        self._seed = ExperimentsFile()
        self._seeded = False
        self._version: str | None = None
        self._apply: Callable[[list[Experiment]], None] | None = None
        self._poller: asyncio.Task[None] | None = None

    async def load(self, seed: ExperimentsFile) -> ExperimentsFile:
        """Redis's copy where it has one; the file's where Redis is unreachable (until it answers)."""
        self._seed = seed
        with contextlib.suppress(StateUnavailable):
            return ExperimentsFile(experiments=await self._sync())
        log.warning(
            "experiment state (Redis) unreachable at start-up: serving the experiments file's weights"
        )
        return seed

    async def _sync(self) -> list[Experiment]:
        if not self._seeded:
            pipe = self._client.pipeline(transaction=True)
            for experiment in self._seed.experiments:
                pipe.hsetnx(EXPERIMENTS, experiment.name, experiment.model_dump_json())
            added = await self._link.call(pipe.execute())
            if any(added):
                await self._link.call(self._client.incr(VERSION))
            self._seeded = True
        pipe = self._client.pipeline(transaction=True)
        pipe.get(VERSION)
        pipe.hgetall(EXPERIMENTS)
        self._version, stored = await self._link.call(pipe.execute())
        return [self._parse(stored.get(e.name), e) for e in self._seed.experiments]

    @staticmethod
    def _parse(stored: str | None, seeded: Experiment) -> Experiment:
        if stored is None:
            return seeded
        try:
            return Experiment.model_validate_json(stored)
        except ValidationError as exc:
            log.error("experiment %s in Redis is not valid, serving the file's: %s", seeded.name, exc)
            return seeded

    async def save(self, experiment: Experiment) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(EXPERIMENTS, experiment.name, experiment.model_dump_json())
        pipe.incr(VERSION)
        await self._link.call(pipe.execute())

    async def start(self, apply: Callable[[list[Experiment]], None]) -> None:
        self._apply = apply
        self._poller = asyncio.create_task(self._follow(), name="experiments-config")

    async def stop(self) -> None:
        await cancel_and_wait(self._poller)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_EVERY_S)
            with contextlib.suppress(StateUnavailable):
                await self.refresh()

    async def refresh(self) -> None:
        """Apply what changed elsewhere since the last look (one GET when nothing did)."""
        if self._seeded and await self._link.call(self._client.get(VERSION)) == self._version:
            return
        experiments = await self._sync()
        if self._apply is not None:
            self._apply(experiments)
