"""``ModelStreamInfer``: many inferences over one bidirectional stream, as tritonclient's ``start_stream``.

Triton's semantics: each message is an independent request, answered when it is done (the response carries
the request id, so answers may overtake each other), and a failed request answers with ``error_message``
while the stream stays open. Requests of one stream run concurrently up to ``max_in_flight``; past that the
stream stops reading, so a client that floods it is slowed by HTTP/2 flow control instead of growing memory.
An answer counts until the transport has taken it, so a client that stops reading answers is held the same way.

Per message, a stream skips what a unary call pays for: call setup, metadata and the final status. On this
machine the bare grpc.aio stream answered three to four times as many messages per second as unary calls
(benchmarks/ceilings.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from tritonclient.grpc import service_pb2 as pb

from service.errors import InternalError, SlimServeError

log = logging.getLogger(__name__)

Answer = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelStreamInferResponse]]


async def answer_stream(
    requests: AsyncIterator[pb.ModelInferRequest], answer: Answer, max_in_flight: int
) -> AsyncGenerator[pb.ModelStreamInferResponse, None]:
    """Answer every request of the stream, in the order they finish; returns once all are answered."""
    finished: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()

    async def one(request: pb.ModelInferRequest) -> None:
        # its slot is released once its answer has been handed on (below), not when it is ready: a client
        # that stops reading answers must stop being read, not fill ``finished``
        try:
            finished.put_nowait(await answer(request))
        except SlimServeError as error:
            finished.put_nowait(error_message(request, error.message))
        except Exception:
            log.exception("gRPC stream inference failed")
            finished.put_nowait(error_message(request, InternalError().message))

    async def read_all() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                task = asyncio.create_task(one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.wait(set(running))
        finally:
            finished.put_nowait(None)

    reader = asyncio.create_task(read_all())
    try:
        while (response := await finished.get()) is not None:
            yield response
            slots.release()  # the transport took the answer: one more request may be read
        await reader  # the client's stream broke: its error ends this one
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()


def error_message(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    failed = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version)
    failed.id = request.id
    return pb.ModelStreamInferResponse(error_message=message, infer_response=failed)
