"""Plain inference answered by the HTTP protocol itself (``service.api.http.direct``): the same answers as
through ASGI, and every request it does not take still served by uvicorn, in order."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.harness import RunningService, make_settings, run_service


class PassThrough:
    """A middleware that changes nothing; its presence alone sends inference through ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def add_pass_through(app: FastAPI) -> None:
    app.add_middleware(PassThrough)


@pytest.fixture(scope="module")
def direct(tiny_registry: Path) -> Iterator[RunningService]:
    with run_service(make_settings(tiny_registry)) as running:
        running.wait_loaded()
        yield running


@pytest.fixture(scope="module")
def through_asgi(tiny_registry: Path) -> Iterator[RunningService]:
    with run_service(make_settings(tiny_registry), customize_app=add_pass_through) as running:
        running.wait_loaded()
        yield running


def infer_body(digits: np.ndarray, request_id: str = "") -> bytes:
    tensor = {
        "name": "INPUT__0",
        "shape": [1, 1, 28, 28],
        "datatype": "FP32",
        "data": digits[0].ravel().tolist(),
    }
    return json.dumps({"id": request_id, "inputs": [tensor]} if request_id else {"inputs": [tensor]}).encode()


def cycle_of(service: RunningService, sock: socket.socket) -> str:
    """The kind of request cycle uvicorn's protocol holds for this client socket's connection."""
    assert service.http_state is not None
    port = sock.getsockname()[1]
    [protocol] = [
        p for p in service.http_state.connections if getattr(p, "client", None) == ("127.0.0.1", port)
    ]
    return type(getattr(protocol, "cycle", None)).__name__


def comparable(response: httpx.Response) -> tuple[int, object, list[str]]:
    """Status, JSON body and header names (values such as the date and the request id differ per request)."""
    body = response.json()
    if isinstance(body, dict):
        body.pop("id", None)
    return response.status_code, body, sorted(response.headers.keys())


def test_plain_inference_is_answered_directly_with_what_asgi_answers(
    direct: RunningService, through_asgi: RunningService, digits: np.ndarray
) -> None:
    requests = [
        ("/v2/models/mnist-student-fp32/infer", infer_body(digits)),
        ("/v2/models/mnist-student-fp32/versions/1/infer", infer_body(digits, "a")),
        ("/v2/models/no-such-model/infer", infer_body(digits)),
        ("/v2/models/mnist-student-fp32/infer", b'{"inputs": [{"name": "INPUT__0"'),
        ("/v2/models/mnist-student-fp32/infer", b'{"inputs": []}'),
    ]
    with direct.client() as ours, through_asgi.client() as reference:
        for path, body in requests:
            headers = {"content-type": "application/json"}
            answered = ours.post(path, content=body, headers=headers)
            expected = reference.post(path, content=body, headers=headers)
            assert comparable(answered) == comparable(expected), path
            assert answered.headers["content-length"] == str(len(answered.content))


def raw_request(path: str, body: bytes, *extra: str) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "host: test",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


def read_responses(sock: socket.socket, count: int) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """``count`` responses with a content-length each, parsed in arrival order; and whatever followed."""
    buffer = b""
    responses: list[tuple[int, dict[str, str], bytes]] = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} responses"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk
            buffer += chunk
        responses.append((int(status_line.split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return responses, buffer


def test_pipelined_requests_are_answered_in_order(direct: RunningService, digits: np.ndarray) -> None:
    live = b"GET /v2/health/live HTTP/1.1\r\nhost: test\r\n\r\n"
    path = "/v2/models/mnist-student-fp32/infer"
    with socket.create_connection((direct.host, direct.port), timeout=30) as sock:
        sock.sendall(
            raw_request(path, infer_body(digits, "first"))
            + live
            + raw_request(path, infer_body(digits, "second"))
        )
        responses, rest = read_responses(sock, 3)
    assert [status for status, _, _ in responses] == [200, 200, 200]
    assert json.loads(responses[0][2])["id"] == "first"
    assert json.loads(responses[1][2]) == {"live": True}
    assert json.loads(responses[2][2])["id"] == "second"
    assert rest == b""


def test_a_body_over_the_limit_and_a_closing_request_are_answered_as_before(
    direct: RunningService, digits: np.ndarray
) -> None:
    path = "/v2/models/mnist-student-fp32/infer"
    with socket.create_connection((direct.host, direct.port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {10**12}\r\n\r\n".encode())
        [(status, _, body)], _ = read_responses(sock, 1)
        assert status == 413, body
        assert "exceeds the limit" in json.loads(body)["error"]
    with socket.create_connection((direct.host, direct.port), timeout=30) as sock:
        sock.sendall(raw_request(path, infer_body(digits), "connection: close"))
        [(status, headers, _)], rest = read_responses(sock, 1)
        assert (status, headers["connection"]) == (200, "close")
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest == b""  # and the server closed the connection


def test_only_plain_inference_takes_the_direct_path(
    direct: RunningService, through_asgi: RunningService, digits: np.ndarray
) -> None:
    path, body = "/v2/models/mnist-student-fp32/infer", infer_body(digits)
    chunked = (
        f"POST {path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n".encode()
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection((direct.host, direct.port), timeout=30) as sock:
        for request, expected in [
            (raw_request(path, body), "DirectCycle"),
            (chunked, "RequestResponseCycle"),
            (raw_request(path + "?x=1", body), "RequestResponseCycle"),
            (raw_request(path, body, "content-encoding: identity"), "RequestResponseCycle"),
            (raw_request(path.replace("/infer", "/versions/1/infer"), body), "DirectCycle"),
        ]:
            sock.sendall(request)
            [(status, _, answer)], _ = read_responses(sock, 1)
            assert status == 200, answer
            assert cycle_of(direct, sock) == expected, request[:80]
    with socket.create_connection((through_asgi.host, through_asgi.port), timeout=30) as sock:
        sock.sendall(raw_request(path, body))
        [(status, _, _)], _ = read_responses(sock, 1)
        assert (status, cycle_of(through_asgi, sock)) == (
            200,
            "RequestResponseCycle",
        )  # a middleware is there
