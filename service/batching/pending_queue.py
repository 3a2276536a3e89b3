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
        self._waiter: asyncio.Future[None] | None = None  # the getter waiting for an item
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
            waiter.set_result(None)
        return True

    def get_nowait(self) -> T | None:
        return self._items.popleft() if self._items else None

    async def get(self, timeout_s: float | None = None) -> T | None:
        """The next item, waiting for one up to ``timeout_s`` (forever if None); None if none came."""
        items = self._items
        while not items:
            if timeout_s is not None and timeout_s <= 0:
                return None
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                if timeout_s is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, timeout_s)
            except TimeoutError:
                return items.popleft() if items else None
            finally:
                self._waiter = None
        return items.popleft()

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
