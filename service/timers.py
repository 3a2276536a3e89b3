"""One timer armed for the earliest of many due times, for a hot path that sets a deadline per request.

On uvloop a timer armed and then cancelled costs 2.4 µs, so the slow-client guard (one per connection) and
the batcher's deadlines (one per variant) each keep a single timer, armed for the earliest time anything is
due, and check what is actually due when it fires. uvloop keeps time in milliseconds: a timer may fire up to
half of one early, and one due sooner than that is a plain ``Handle`` without ``when()``. So the due time is
kept here, and anything due within a millisecond of the firing counts as reached instead of re-arming a
timer that would fire again at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

RESOLUTION_S = 0.001


def reached(loop: asyncio.AbstractEventLoop, due: float) -> bool:
    return due <= loop.time() + RESOLUTION_S


class EarliestTimer:
    """Calls ``callback`` at the earliest due time asked for since it last fired."""

    __slots__ = ("_callback", "_handle", "due")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.Handle | None = None
        self.due = math.inf  # inf while none is armed

    def arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """Fire at ``due`` unless already armed for earlier."""
        if due < self.due:
            if self._handle is not None:
                self._handle.cancel()
            self._handle, self.due = loop.call_at(due, self._fire), due

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self.due = None, math.inf

    def _fire(self) -> None:
        self._handle, self.due = None, math.inf
        self._callback()
