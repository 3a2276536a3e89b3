"""The inference thread pool: one hot thread for a stream of calls, more only while calls overlap."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from service.inference_threads import InferenceThreads


def test_calls_one_after_another_stay_on_the_thread_that_ran_the_last_one() -> None:
    pool = InferenceThreads(2)
    try:
        blocker = threading.Event()
        first = pool.submit(blocker.wait)
        second = pool.submit(threading.get_ident)  # the first thread is busy: a second one starts
        busy_second_thread = second.result(timeout=5)
        blocker.set()
        first.result(timeout=5)
        # both threads are idle now; a sequence of calls must not alternate between them (a call can, rarely,
        # come before the thread that ran the last one is back in the idle list: most, not all)
        threads = Counter(pool.submit(threading.get_ident).result(timeout=5) for _ in range(50))
        assert max(threads.values()) >= 45, threads
        assert len({busy_second_thread, *threads}) <= 2
    finally:
        pool.shutdown()


def test_overlapping_calls_run_at_once_up_to_the_limit() -> None:
    pool = InferenceThreads(2)
    try:
        both_in = threading.Barrier(2, timeout=5)
        calls = [pool.submit(both_in.wait) for _ in range(2)]  # deadlocks unless two threads run them
        assert sorted(call.result(timeout=5) for call in calls) == [0, 1]
        gate = threading.Event()
        running = [pool.submit(gate.wait) for _ in range(2)]
        queued = pool.submit(lambda: "ran after a thread freed up")
        assert not queued.done()  # a third thread would exceed the limit
        gate.set()
        assert queued.result(timeout=5) == "ran after a thread freed up"
        assert all(call.result(timeout=5) for call in running)
    finally:
        pool.shutdown()


def test_an_exception_reaches_the_caller_and_the_thread_lives_on() -> None:
    pool = InferenceThreads(1)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(timeout=5)
        assert pool.submit(lambda: 42).result(timeout=5) == 42
    finally:
        pool.shutdown()


def test_shutdown_cancels_what_waits_when_asked_joins_and_refuses_new_calls() -> None:
    pool = InferenceThreads(1)
    gate = threading.Event()
    running = pool.submit(gate.wait)
    waiting = pool.submit(lambda: "never")
    stopper = threading.Thread(target=lambda: pool.shutdown(wait=True, cancel_futures=True))
    stopper.start()
    stopper.join(timeout=0.2)
    assert stopper.is_alive()  # joins the thread that is still running a call
    gate.set()
    stopper.join(timeout=5)
    assert not stopper.is_alive()
    assert running.result(timeout=5) is True
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_an_event_loop_awaits_calls_through_run_in_executor() -> None:
    pool = InferenceThreads(2)

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(pool, pow, 2, n) for n in range(8))))

    try:
        assert asyncio.run(scenario()) == [2**n for n in range(8)]
    finally:
        pool.shutdown()


def test_a_thread_that_cannot_start_fails_its_call_and_leaves_no_call_or_slot_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = InferenceThreads(1)

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:  # fault injection: the OS refuses a thread (a pids limit)
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            pool.submit(lambda: "never")
    try:
        assert pool.submit(lambda: "ran").result(timeout=5) == "ran"  # the slot was not taken by the failure
    finally:
        pool.shutdown(wait=True)
