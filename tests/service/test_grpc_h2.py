"""The service's own HTTP/2 gRPC transport (service/api/grpc/h2) where the protocol shows: flow control both
ways, compression, resets, pings, broken peers and draining. Real clients: tritonclient on gRPC's C core, and
the ``h2`` package as an independent HTTP/2 client where a test needs to shape frames itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from contract.layout import ModelVersion
from service.api.grpc import health
from service.api.grpc.h2.connection import Limits
from service.api.grpc.h2.frames import header_block
from service.api.grpc.h2.headers import HeaderBlockDecoder
from service.api.grpc.h2.server import Http2GrpcServer
from service.backends.base import Backend
from tests.harness import RunningService, make_settings, run_service
from tests.service.conftest import assert_close
from tests.service.faults import FaultyBackend

SERVICE = "/inference.GRPCInferenceService"
STUDENT = "mnist-student-fp32"


@pytest.fixture(scope="module")
def service(tiny_registry: Path, references: dict[str, np.ndarray]) -> Iterator[RunningService]:
    settings = make_settings(
        tiny_registry, server={"grpc_transport": "h2"}, limits={"max_batch_per_request": 2048}
    )
    with run_service(settings) as running:
        yield running


def grpc_input(batch: np.ndarray) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return tensor


def framed(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


def infer_request(batch: np.ndarray, model: str = STUDENT) -> bytes:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="INPUT__0", datatype="FP32", shape=list(batch.shape))
    request.raw_input_contents.append(batch.astype("<f4").tobytes())
    return framed(request.SerializeToString())


class H2Client:
    """A plain HTTP/2 client on a socket, driven one step at a time by the test."""

    def __init__(self, port: int, settings: dict[h2.settings.SettingCodes, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings or {})
        self.conn.initiate_connection()
        self.flush()
        self.events: list[Any] = []
        # the server's SETTINGS and its connection WINDOW_UPDATE come first: then a request body may be sent
        self.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        self.until(lambda e: isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0)

    def flush(self) -> None:
        if data := self.conn.data_to_send():
            self.sock.sendall(data)

    def call(
        self, path: str, body: bytes = b"", headers: dict[str, str] | None = None, end_stream: bool = True
    ) -> int:
        stream = self.conn.get_next_available_stream_id()
        fields = {":method": "POST", ":scheme": "http", ":path": path, ":authority": "localhost",
                  "content-type": "application/grpc", "te": "trailers", **(headers or {})}  # fmt: skip
        self.conn.send_headers(stream, list(fields.items()), end_stream=end_stream and not body)
        if body:
            self.conn.send_data(stream, body, end_stream=end_stream)
        self.flush()
        return stream

    def until(self, done: Callable[[Any], bool]) -> Any:
        """Read until an event satisfies ``done``; received DATA is acknowledged, so windows reopen."""
        while True:
            for event in self.events:
                if done(event):
                    return event
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.events.append(event)
            self.flush()

    def answer(self, stream: int) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
        """(response headers, the DATA, trailers) of a finished stream; a Trailers-Only answer has no DATA."""
        self.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == stream)
        mine = [e for e in self.events if getattr(e, "stream_id", None) == stream]
        headers = next(dict(e.headers) for e in mine if isinstance(e, h2.events.ResponseReceived))
        data = b"".join(e.data for e in mine if isinstance(e, h2.events.DataReceived))
        trailers = next((dict(e.headers) for e in mine if isinstance(e, h2.events.TrailersReceived)), headers)
        return headers, data, trailers

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(service: RunningService) -> Iterator[H2Client]:
    h2_client = H2Client(service.grpc_port)
    yield h2_client
    h2_client.close()


def test_unknown_methods_and_non_grpc_requests_are_answered_and_the_connection_keeps_serving(
    client: H2Client,
) -> None:
    unknown = client.call(f"{SERVICE}/Nope", framed(b""))
    headers, data, trailers = client.answer(unknown)
    assert (headers[b":status"], trailers[b"grpc-status"], data) == (b"200", b"12", b"")  # Trailers-Only
    assert b"Method not found" in trailers[b"grpc-message"]
    not_grpc = client.call("/", headers={"content-type": "application/json"})
    assert client.answer(not_grpc)[0][b":status"] == b"415"
    live = client.call(f"{SERVICE}/ServerLive", framed(b""))
    _, data, trailers = client.answer(live)
    assert trailers[b"grpc-status"] == b"0"
    assert pb.ServerLiveResponse.FromString(data[5:]).live


def test_a_ping_is_acknowledged_with_its_payload(client: H2Client) -> None:
    client.conn.ping(b"slimserv")
    client.flush()
    assert client.until(lambda e: isinstance(e, h2.events.PingAckReceived)).ping_data == b"slimserv"


def test_a_response_larger_than_the_clients_window_waits_for_window_updates(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    small_window = H2Client(service.grpc_port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    try:
        batch = np.tile(digits, (4, 1, 1, 1))  # 256 rows: 10 KiB of logits against a 1 KiB window
        stream = small_window.call(f"{SERVICE}/ModelInfer", infer_request(batch))
        _, data, trailers = small_window.answer(stream)
        assert trailers[b"grpc-status"] == b"0"
        assert len([e for e in small_window.events if isinstance(e, h2.events.DataReceived)]) > 1
        response = pb.ModelInferResponse.FromString(data[5:])
        logits = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(256, 10)
        assert_close(logits, np.tile(references[STUDENT], (4, 1)))
    finally:
        small_window.close()


def test_a_request_larger_than_a_streams_window_and_compressed_requests(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    batch = np.tile(digits, (32, 1, 1, 1))  # 2048 rows: 6.4 MB against the server's 1 MiB stream window
    expected = np.tile(references[STUDENT], (32, 1))
    with triton_grpc.InferenceServerClient(service.grpc_url) as triton:
        assert_close(triton.infer(STUDENT, [grpc_input(batch)]).as_numpy("OUTPUT__0"), expected)
        for algorithm in ("gzip", "deflate"):
            answer = triton.infer(STUDENT, [grpc_input(batch[:8])], compression_algorithm=algorithm)
            assert_close(answer.as_numpy("OUTPUT__0"), expected[:8])


def test_a_compressed_message_in_an_unknown_encoding_is_unimplemented(client: H2Client) -> None:
    compressed = b"\1" + (4).to_bytes(4, "big") + b"abcd"
    stream = client.call(f"{SERVICE}/ServerLive", compressed, {"grpc-encoding": "snappy"})
    trailers = client.answer(stream)[2]
    assert trailers[b"grpc-status"] == b"12" and b"snappy" in trailers[b"grpc-message"]


def test_metadata_over_the_advertised_limit_fails_the_call_and_not_the_connection(
    service: RunningService,
) -> None:
    with grpc.insecure_channel(service.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(pb.ServerLiveRequest(), metadata=(("x-huge", "v" * 40_000),))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "header list" in refused.value.details()
        assert stub.ServerLive(pb.ServerLiveRequest()).live


def test_the_deadline_covers_an_upload_that_never_finishes(client: H2Client, digits: np.ndarray) -> None:
    body = infer_request(digits[:1])
    stream = client.conn.get_next_available_stream_id()
    fields = {":method": "POST", ":scheme": "http", ":path": f"{SERVICE}/ModelInfer", ":authority": "localhost",
              "content-type": "application/grpc", "te": "trailers", "grpc-timeout": "300m"}  # fmt: skip
    client.conn.send_headers(stream, list(fields.items()))
    client.conn.send_data(stream, body[: len(body) // 2])  # half a message, then nothing
    client.flush()
    started = time.monotonic()
    trailers = client.answer(stream)[2]
    assert trailers[b"grpc-status"] == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0]).encode()
    assert time.monotonic() - started < 5


def test_a_reset_call_is_dropped_and_the_connection_keeps_serving(
    client: H2Client, digits: np.ndarray
) -> None:
    slow = client.call(
        f"{SERVICE}/ModelInfer", infer_request(np.tile(digits, (4, 1, 1, 1)), "mnist-teacher-fp32")
    )
    client.conn.reset_stream(slow)
    client.flush()
    live = client.call(f"{SERVICE}/ServerLive", framed(b""))
    assert client.answer(live)[2][b"grpc-status"] == b"0"


def test_a_peer_that_does_not_speak_http2_gets_goaway_and_is_closed(service: RunningService) -> None:
    with socket.create_connection(("127.0.0.1", service.grpc_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_until_closed(sock)[-1] == 7  # GOAWAY, then the server closed


def test_stopping_lets_calls_in_flight_finish_and_refuses_new_ones(
    tiny_registry: Path, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    def slow_teacher(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, infer_delay_s=1.5) if model.card.variant == "teacher-fp32" else backend

    settings = make_settings(tiny_registry, server={"grpc_transport": "h2", "shutdown_grace_s": 10})
    answers: list[np.ndarray] = []

    def call(url: str) -> None:
        with triton_grpc.InferenceServerClient(url) as triton:
            answers.append(triton.infer("mnist-teacher-fp32", [grpc_input(digits[:4])]).as_numpy("OUTPUT__0"))

    with run_service(settings, backend_wrapper=slow_teacher) as running:
        in_flight = threading.Thread(target=call, args=(running.grpc_url,))
        in_flight.start()
        time.sleep(0.5)
    in_flight.join(timeout=30)
    assert len(answers) == 1, "the call in flight when the server began stopping was not answered"
    assert_close(answers[0], references["mnist-teacher-fp32"][:4])
    with pytest.raises(InferenceServerException) as refused:
        call(running.grpc_url)
    assert refused.value.status() == str(grpc.StatusCode.UNAVAILABLE)


def test_remembered_header_blocks_are_forgotten_when_the_table_changes() -> None:
    encoder, decoder = hpack.Encoder(), HeaderBlockDecoder(16 << 10)
    first = encoder.encode([(b"x-user-id", b"u1")])  # a literal that enters the table
    assert decoder.decode(first) == ((b"x-user-id", b"u1"),)
    repeated = encoder.encode([(b"x-user-id", b"u1")])  # now one indexed field: remembered
    assert repeated != first
    assert decoder.decode(repeated) == decoder.decode(repeated) == ((b"x-user-id", b"u1"),)
    assert decoder.decode(encoder.encode([(b"x-user-id", b"u2")])) == ((b"x-user-id", b"u2"),)
    # the same bytes as before now index the newer entry: a stale memory would answer u1
    assert decoder.decode(repeated) == ((b"x-user-id", b"u2"),)


def test_our_header_blocks_decode_as_sent_whatever_their_length() -> None:
    fields = [(b"grpc-status", b"3"), (b"grpc-message", b"x" * 300), (b"slimserve-" + b"k" * 200, b"")]
    assert hpack.Decoder().decode(header_block(fields), raw=True) == [(b":status", b"200"), *fields]


@contextlib.contextmanager
def bare_h2_server(limits: Limits) -> Iterator[int]:
    """The transport alone, with the health servicer, on its own loop in a thread."""
    loop = asyncio.new_event_loop()
    server = Http2GrpcServer(1 << 20, limits)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(cast(Any, Ready())), server)
    port = loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class Ready:
    def ready(self) -> bool:
        return True


def test_request_bytes_held_on_a_connection_are_bounded() -> None:
    with bare_h2_server(Limits(max_buffered=100_000)) as port:
        h2_client = H2Client(port)
        try:
            partial = b"\0" + (500_000).to_bytes(4, "big") + b"x" * 60_000  # a message that never completes
            first = h2_client.call("/grpc.health.v1.Health/Check", partial, end_stream=False)
            second = h2_client.call("/grpc.health.v1.Health/Check", partial, end_stream=False)
            trailers = h2_client.answer(second)[2]
            assert trailers[b"grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]).encode()
            assert b"buffered on this connection" in trailers[b"grpc-message"]
            h2_client.conn.reset_stream(first)  # its bytes are released: a new call fits again
            h2_client.flush()
            check = h2_client.call("/grpc.health.v1.Health/Check", framed(b""))
            assert h2_client.answer(check)[2][b"grpc-status"] == b"0"
        finally:
            h2_client.close()


def read_until_closed(sock: socket.socket) -> list[int]:
    """The types of the frames the server sent before closing the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    kinds, position = [], 0
    while position + 9 <= len(received):
        kinds.append(received[position + 3])
        position += 9 + int.from_bytes(received[position : position + 3], "big")
    return kinds


def test_silent_connections_are_closed_and_connections_past_the_cap_refused() -> None:
    with bare_h2_server(Limits(preface_timeout_s=0.3, max_connections=1)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            started = time.monotonic()
            assert read_until_closed(silent)[-1] == 7  # GOAWAY, then closed
            assert time.monotonic() - started < 5
        h2_client = H2Client(port)  # the one connection allowed
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as one_too_many:
                assert read_until_closed(one_too_many) == [7]
            check = h2_client.call("/grpc.health.v1.Health/Check", framed(b""))
            assert h2_client.answer(check)[2][b"grpc-status"] == b"0"
        finally:
            h2_client.close()
