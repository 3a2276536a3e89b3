"""The transport wrapper that sends a response's head and body in one write, on a real uvloop socket pair."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from service.api.http.coalescing import CoalescingTransport


async def _pair() -> tuple[CoalescingTransport, socket.socket]:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    theirs.setblocking(False)
    return CoalescingTransport(transport, asyncio.get_running_loop()), theirs


async def _received(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        data += await asyncio.wait_for(loop.sock_recv(peer, size - len(data)), 5)
    return data


def test_head_and_body_written_in_one_step_arrive_together_in_order() -> None:
    async def scenario() -> None:
        wrapped, peer = await _pair()
        wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
        wrapped.write(b"body")
        assert await _received(peer, 23) == b"HTTP/1.1 200 OK\r\n\r\nbody"
        wrapped.close()
        peer.close()

    uvloop.run(scenario())


def test_a_lone_write_is_flushed_by_the_end_of_the_loop_iteration() -> None:
    async def scenario() -> None:
        wrapped, peer = await _pair()
        wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # nothing follows until the client sends its body
        assert await _received(peer, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        wrapped.write(b"next")
        wrapped.close()  # a held write is sent before the connection closes
        assert await _received(peer, 4) == b"next"
        peer.close()

    uvloop.run(scenario())
