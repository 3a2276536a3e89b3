"""The batcher's deadlines: every waiting request fails at its own deadline, by one timer for all of them."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from service.batching.batcher import Deadlines


def test_each_future_fails_at_its_own_deadline_an_earlier_one_added_later_included() -> None:
    async def scenario() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        late, early = loop.create_future(), loop.create_future()
        started = time.monotonic()
        deadlines.add(loop, loop.time() + 0.6, late)
        deadlines.add(loop, loop.time() + 0.05, early)  # the one timer must move earlier for it
        with pytest.raises(TimeoutError):
            await early
        early_after = time.monotonic() - started
        late_pending = not late.done()
        with pytest.raises(TimeoutError):
            await late
        return early_after, time.monotonic() - started, late_pending

    early_after, late_after, late_pending = uvloop.run(scenario())
    assert early_after < 0.4, "the earlier deadline waited for the later one's timer"
    assert late_pending, "the later future failed with the earlier one"
    assert late_after >= 0.55


def test_an_answered_future_is_left_alone_at_its_deadline() -> None:
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        answered, waiting = loop.create_future(), loop.create_future()
        deadlines.add(loop, loop.time() + 0.05, answered)
        deadlines.add(loop, loop.time() + 0.1, waiting)
        answered.set_result("outputs")
        deadlines.settled()
        with pytest.raises(TimeoutError):
            await waiting
        return str(answered.result())

    assert uvloop.run(scenario()) == "outputs"


def test_answered_entries_are_swept_so_a_long_deadline_holds_no_memory() -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        for _ in range(10_000):
            future = loop.create_future()
            deadlines.add(loop, loop.time() + 600, future)
            future.set_result(None)
            deadlines.settled()
        return len(deadlines)

    assert uvloop.run(scenario()) <= 2 * Deadlines.SWEEP_ABOVE


def test_a_deadline_already_reached_fails_at_once_and_the_next_one_still_arms() -> None:
    """uvloop turns a timer due within half a millisecond into a plain handle with no ``when()``: a client
    whose deadline has run out must not break the timer for the requests after it."""

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        gone, later = loop.create_future(), loop.create_future()
        deadlines.add(loop, loop.time(), gone)
        deadlines.add(loop, loop.time() + 0.05, later)
        with pytest.raises(TimeoutError):
            await gone
        later_pending = not later.done()
        with pytest.raises(TimeoutError):
            await later
        return later_pending, len(deadlines) == 0

    assert uvloop.run(scenario()) == (True, True)
