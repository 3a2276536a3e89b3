"""The batcher's queue of waiting requests: a bounded deque, one waiter for the worker, a count for drain.

``asyncio.Queue`` does per item what the batcher needs per batch: every put clears an Event and looks for
getters and putters to wake, every get goes through a coroutine, every item is marked done one by one.
Here a put appends and wakes the worker only if it waits, a batch is taken with plain ``get_nowait`` calls
while requests are waiting, and a whole batch is marked done at once. One getter at a time: the batcher's
workers assemble batches under a lock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class PendingQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[bool] | None = None  # the getter waiting for an item
        self._unfinished = 0  # put and not yet marked done
        self._finished = asyncio.Event()
        self._finished.set()

    def __len__(self) -> int:
        """Items waiting to be taken."""
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """Queue ``item``; False, leaving it out, when ``maxsize`` items already wait."""
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        if self._unfinished == 0:
            self._finished.clear()
        self._unfinished += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)
        return True

    def get_nowait(self) -> T | None:
        return self._items.popleft() if self._items else None

    async def get(self, timeout_s: float | None = None) -> T | None:
        """The next item, waiting for one up to ``timeout_s`` (forever if None); None if none came.

        The wait is a timer on the waiter, not ``asyncio.wait_for``: on Python 3.11 ``wait_for`` drops a
        cancellation that arrives as the waited future completes, and a worker stopped at that moment would
        go on to wait forever.
        """
        items = self._items
        if items:
            return items.popleft()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not items:
            if deadline is not None and deadline <= loop.time():
                return None
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiter = waiter
            timer = None if deadline is None else loop.call_at(deadline, _time_out, waiter)
            try:
                if await waiter:  # True: the timer's, not a put's
                    break
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return items.popleft() if items else None

    def task_done(self, count: int = 1) -> None:
        """``count`` items taken earlier are finished with."""
        if count > self._unfinished:
            raise ValueError("task_done() called more times than items were put")
        self._unfinished -= count
        if self._unfinished == 0:
            self._finished.set()

    async def join(self) -> None:
        """Until every item put has been taken and marked done."""
        await self._finished.wait()


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)
