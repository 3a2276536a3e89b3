"""``answer_stream`` below any transport: what a stream holds for a client that floods it or stops reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tritonclient.grpc import service_pb2 as pb

from service.api.grpc.stream import answer_stream

IN_FLIGHT = 4


async def instant_answer(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse(id=request.id))


def test_a_client_that_stops_reading_answers_stops_being_read() -> None:
    """Answers count against the in-flight limit until the transport takes them: a client that sends and never
    reads holds at most the limit's worth of answers, and the rest of its requests stay unread (HTTP/2 flow
    control then stops it)."""

    async def scenario() -> None:
        pulled = 0

        async def requests() -> AsyncIterator[pb.ModelInferRequest]:
            nonlocal pulled
            for number in range(100):
                pulled += 1
                yield pb.ModelInferRequest(id=str(number))

        stream = answer_stream(requests(), instant_answer, IN_FLIGHT)
        first = await stream.__anext__()  # the client reads one answer, then stops reading
        await asyncio.sleep(0.05)
        assert first.infer_response.id == "0"
        assert pulled <= IN_FLIGHT + 2  # the answered and handed on, the limit, the one waiting for a slot
        await stream.aclose()

    asyncio.run(scenario())


def test_a_client_that_reads_gets_every_answer() -> None:
    async def scenario() -> None:
        async def requests() -> AsyncIterator[pb.ModelInferRequest]:
            for number in range(50):
                yield pb.ModelInferRequest(id=str(number))

        answers = [
            response.infer_response.id async for response in answer_stream(requests(), instant_answer, 4)
        ]
        assert sorted(answers, key=int) == [str(number) for number in range(50)]

    asyncio.run(scenario())
