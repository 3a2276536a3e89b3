"""A circuit breaker for a remote backend: stop calling a server that is down, try again later.

CLOSED: calls go through; ``failure_threshold`` consecutive connection failures open it, and so does one
definite "this model cannot be served here" (``trip``). OPEN: calls are refused at once (the caller falls
back) until ``reset_after_s`` has passed. HALF_OPEN: one trial (a call or a health check) decides: success
closes it, failure opens it again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, failure_threshold: int, reset_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failure_threshold
        self._reset_after = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows_calls(self) -> bool:
        return self.state is not BreakerState.OPEN

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self.trip()

    def trip(self) -> None:
        """Open now, whatever the count: the server said it cannot serve, no need to ask again."""
        if self._opened_at is None:
            self.opened_count += 1
        self._opened_at = self._clock()
