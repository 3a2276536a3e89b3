"""The connection to the shared experiment store and what happens while it is away.

Every call is bounded by a short timeout and never retried inline: an unreachable Redis costs a request
nothing, and what could not be recorded is counted (``slimserve_experiment_state_lost_total``) and logged,
at most once per interval, until Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.errors import StateUnavailable
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

KEY_PREFIX = "slimserve:"
LOG_EVERY_S = 10.0


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A client whose every call gives up after ``timeout_s``: no inline retries, no waiting for a pool."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        max_connections=8,
        decode_responses=True,
    )


class Outage:
    """Counts what could not be recorded while the store is away; logs going down and coming back."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._up = True
        self._logged_at = -LOG_EVERY_S
        self._unlogged = 0
        metrics.experiment_state_up.set(1)
        for kind in ("prediction", "count", "shadow_answer"):  # 0 series from the start, for alerts
            metrics.experiment_state_lost.labels(kind)

    @property
    def up(self) -> bool:
        return self._up

    def lost(self, kind: str, amount: int, error: BaseException) -> None:
        if amount:
            self._metrics.experiment_state_lost.labels(kind).inc(amount)
        self.failed(error, amount)

    def failed(self, error: BaseException, unrecorded: int = 0) -> None:
        self._up = False
        self._metrics.experiment_state_up.set(0)
        self._unlogged += unrecorded
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning(
                "experiment state (Redis) unreachable: %s; %d updates not recorded since the last report",
                type(error).__name__ if not str(error) else str(error)[:200],
                self._unlogged,
            )
            self._logged_at, self._unlogged = now, 0

    def recovered(self) -> None:
        if not self._up:
            log.info("experiment state (Redis) reachable again")
        self._up = True
        self._metrics.experiment_state_up.set(1)


class RedisLink:
    """One client, its time bound and its outage record, shared by the state and the configuration."""

    def __init__(self, client: redis.Redis, outage: Outage, timeout_s: float) -> None:
        self.client = client
        self.outage = outage
        self.timeout_s = timeout_s

    async def call(self, operation: Any) -> Any:  # redis-py types its commands as sync-or-async
        """Await one Redis operation within the time bound; StateUnavailable (503) when Redis does not answer."""
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await operation
        except (RedisError, OSError, TimeoutError) as exc:
            self.outage.failed(exc)
            raise StateUnavailable("the experiment state (Redis) cannot be reached; try again") from None
        self.outage.recovered()
        return result
