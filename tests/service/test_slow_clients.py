"""What slow or idle clients can hold: a request's head and body have deadlines, open connections a cap.

Raw sockets play the clients (an HTTP library would finish its requests); the server is the real one.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RunningService, make_settings, run_service

INFER = "/v2/models/mnist/infer"
ONE_DIGIT = (
    b'{"inputs":[{"name":"INPUT__0","shape":[1,1,28,28],"datatype":"FP32","data":['
    + b",".join([b"0"] * 784)
    + b"]}]}"
)


def request_head(length: int) -> bytes:
    return (
        f"POST {INFER} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


@contextlib.contextmanager
def connection(service: RunningService) -> Iterator[socket.socket]:
    sock = socket.create_connection((service.host, service.port), timeout=30)
    try:
        yield sock
    finally:
        sock.close()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server says before it closes (the 30 s socket timeout fails a server that never does)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def strict(tiny_registry: Path) -> Iterator[RunningService]:
    server = {"head_timeout_s": 0.5, "body_timeout_s": 0.5}
    with run_service(make_settings(tiny_registry, server=server)) as running:
        yield running


def test_a_connection_that_never_sends_is_answered_408_and_closed(strict: RunningService) -> None:
    with connection(strict) as sock:
        answer = read_until_closed(sock)
    assert status_of(answer) == 408
    assert b"connection: close" in answer


def test_a_head_that_never_finishes_is_answered_408_and_closed(strict: RunningService) -> None:
    with connection(strict) as sock:
        sock.sendall(request_head(len(ONE_DIGIT))[:40])  # the request line and part of a header
        assert status_of(read_until_closed(sock)) == 408


def test_a_body_that_never_finishes_is_answered_408_and_closed(strict: RunningService) -> None:
    with connection(strict) as sock:
        sock.sendall(request_head(len(ONE_DIGIT)) + ONE_DIGIT[:100])
        assert status_of(read_until_closed(sock)) == 408


def test_many_half_sent_requests_are_all_released(strict: RunningService) -> None:
    sockets = [socket.create_connection((strict.host, strict.port), timeout=30) for _ in range(200)]
    try:
        for sock in sockets:
            sock.sendall(request_head(len(ONE_DIGIT))[:30])
        assert {status_of(read_until_closed(sock)) for sock in sockets} == {408}
    finally:
        for sock in sockets:
            sock.close()


def test_a_client_that_sends_in_pieces_within_the_deadlines_is_served(strict: RunningService) -> None:
    """Each deadline covers a whole head or body, and a kept-alive connection gets fresh ones per request."""
    request = request_head(len(ONE_DIGIT)) + ONE_DIGIT
    with connection(strict) as sock:
        for _ in range(2):
            sock.sendall(request[:50])
            time.sleep(0.1)
            sock.sendall(request[50:])
            answer = sock.recv(65536)
            assert status_of(answer) == 200, answer
        with strict.client() as client:  # and the server still serves everyone else
            assert client.post(INFER, content=ONE_DIGIT).status_code == 200


def test_an_idle_kept_alive_connection_is_closed_silently_after_the_keep_alive_timeout(
    tiny_registry: Path,
) -> None:
    """The idle wait between requests has its own limit, shorter here than the head's: it, not the head's
    10 s, decides when the connection goes; and a request that comes in time is served on the same one."""
    server = {"keep_alive_timeout_s": 0.4, "head_timeout_s": 10}
    with run_service(make_settings(tiny_registry, server=server)) as service, connection(service) as sock:
        for _ in range(2):
            sock.sendall(request_head(len(ONE_DIGIT)) + ONE_DIGIT)
            assert status_of(sock.recv(65536)) == 200
            time.sleep(0.1)
        started = time.monotonic()
        assert read_until_closed(sock) == b""  # closed without a word, as uvicorn closes idle connections
        assert 0.2 < time.monotonic() - started < 2.5  # uvicorn's own default would be 5 s, the head's 10 s


def test_a_connection_answered_before_its_body_came_is_closed_once_idle(tiny_registry: Path) -> None:
    """A 413 goes out on the declared length; the client then sends the body anyway and stops: the wait for
    its next request is bounded like any other."""
    server = {"keep_alive_timeout_s": 0.4, "head_timeout_s": 10, "body_timeout_s": 10}
    settings = make_settings(tiny_registry, server=server, limits={"max_request_bytes": 2048})
    with run_service(settings) as service, connection(service) as sock:
        sock.settimeout(8)
        body = b"x" * 4096
        sock.sendall(request_head(len(body)))
        assert status_of(sock.recv(65536)) == 413
        sock.sendall(body)
        started = time.monotonic()
        read_until_closed(sock)
        assert time.monotonic() - started < 5


def test_connections_beyond_the_cap_are_refused_503_until_one_closes(tiny_registry: Path) -> None:
    settings = make_settings(tiny_registry, server={"max_connections": 3, "head_timeout_s": 60})
    with run_service(settings) as service:
        held = [socket.create_connection((service.host, service.port), timeout=30) for _ in range(3)]
        try:
            with connection(service) as extra:
                answer = read_until_closed(extra)
            assert status_of(answer) == 503
            assert b"retry-after: 1" in answer
            held.pop().close()
            deadline = time.monotonic() + 30  # the server learns of the close on its next loop turn
            while True:
                with connection(service) as sock:
                    sock.sendall(request_head(len(ONE_DIGIT)) + ONE_DIGIT)
                    status = status_of(sock.recv(65536))
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 200
        finally:
            for sock in held:
                sock.close()
