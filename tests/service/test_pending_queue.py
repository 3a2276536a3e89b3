"""The batcher's queue (``service.batching.pending_queue``): order, bound, waits, and what drain waits for."""

from __future__ import annotations

import asyncio

import pytest

from service.batching.pending_queue import PendingQueue


def test_items_come_out_in_order_and_a_full_queue_refuses_without_keeping_the_item() -> None:
    async def scenario() -> None:
        queue: PendingQueue[int] = PendingQueue(2)
        assert queue.put_nowait(1) and queue.put_nowait(2)
        assert not queue.put_nowait(3)
        assert len(queue) == 2
        assert [queue.get_nowait(), await queue.get(), queue.get_nowait()] == [1, 2, None]

    asyncio.run(scenario())


def test_a_waiting_get_is_woken_by_a_put_and_a_timed_one_gives_up() -> None:
    async def scenario() -> None:
        queue: PendingQueue[str] = PendingQueue(4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await queue.get(0.05) is None
        assert loop.time() - started >= 0.04
        assert await queue.get(0) is None
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        assert not getter.done()
        queue.put_nowait("a")
        assert await asyncio.wait_for(getter, 1) == "a"
        timed = asyncio.create_task(queue.get(5))
        await asyncio.sleep(0.01)
        queue.put_nowait("b")
        assert await asyncio.wait_for(timed, 1) == "b"

    asyncio.run(scenario())


def test_a_cancelled_getter_leaves_the_next_item_for_the_next_getter() -> None:
    async def scenario() -> None:
        queue: PendingQueue[int] = PendingQueue(4)
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        queue.put_nowait(7)
        assert await asyncio.wait_for(queue.get(), 1) == 7

    asyncio.run(scenario())


def test_a_timed_getter_cancelled_as_its_item_arrives_is_cancelled_and_leaves_the_item() -> None:
    """A batcher stopped while it waits out its batching delay must stop (asyncio.wait_for on 3.11 would
    return the item and swallow the cancellation)."""

    async def scenario() -> None:
        queue: PendingQueue[int] = PendingQueue(4)
        getter = asyncio.create_task(queue.get(5))
        await asyncio.sleep(0.01)
        queue.put_nowait(1)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        assert queue.get_nowait() == 1

    asyncio.run(scenario())


def test_join_waits_until_every_item_put_is_marked_done() -> None:
    async def scenario() -> None:
        queue: PendingQueue[int] = PendingQueue(8)
        await asyncio.wait_for(queue.join(), 1)  # nothing put: nothing to wait for
        for item in range(3):
            queue.put_nowait(item)
        joined = asyncio.create_task(queue.join())
        taken = [queue.get_nowait(), queue.get_nowait()]
        queue.task_done(len(taken))
        await asyncio.sleep(0.01)
        assert not joined.done()  # one item is still waiting
        queue.get_nowait()
        queue.task_done()
        await asyncio.wait_for(joined, 1)
        with pytest.raises(ValueError):
            queue.task_done()

    asyncio.run(scenario())
