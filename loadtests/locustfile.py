"""locust users for slimserve: OIP JSON, binary tensors, gRPC, and the A/B user that sends ground truth.

Every user calls the model named by ``LOADTEST_MODEL`` (the family by default, so the experiment routes
it) with a sticky key drawn from many simulated end users, one real MNIST test digit per request. Each
request is reported to locust as ``"<kind> <variant>"``: the variant is only known from the response, so
the name is set after it arrives, and locust's CSVs then split cost per variant. Alongside locust's own
statistics every request is appended to ``LOADTEST_SAMPLES`` (one CSV row: when, what, which variant,
how long, how big, and for feedback whether the answer was right), which the report reads for exact
percentiles, latency over time and the client's own accuracy tally.

Options are environment variables (``loadtests/options.py``); run it through ``python -m loadtests run``
or directly: ``LOADTEST_MIX=json=1,ab=2 locust -f loadtests/locustfile.py --host http://127.0.0.1:8000``.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import time
from typing import IO, Any

import gevent
import grpc.experimental.gevent as grpc_gevent
import locust.stats
import numpy as np
from locust import FastHttpUser, User, between, events, task
from locust.env import Environment

from loadtests.options import LoadOptions
from loadtests.payloads import INPUT, OUTPUT, Digit, encode, load_digits, with_id

grpc_gevent.init_gevent()  # grpc's own threads would block gevent's loop; this makes its waits cooperative

import tritonclient.grpc as grpcclient  # noqa: E402  (after init_gevent, which must come first)

OPTIONS = LoadOptions.from_env()
DIGITS: list[Digit] = encode(*load_digits(OPTIONS.digits))
SAMPLE_FIELDS = ("start", "kind", "variant", "ms", "ok", "bytes", "labelled", "correct", "error")
_ids = itertools.count()
_sticky: dict[str, str] = {}  # sticky key -> the variant it got first: a later different one is a failure
_samples: dict[str, Any] = {}


class RoutingError(Exception):
    """The response did not say which variant answered, or a sticky key moved to another variant."""


def next_id(kind: str) -> str:
    return f"{OPTIONS.run_id}-{kind}-{next(_ids)}"


def sticky_key() -> str:
    return f"user-{random.randrange(OPTIONS.sticky_users)}"


def check_sticky(key: str, variant: str) -> None:
    first = _sticky.setdefault(key, variant)
    if first != variant:
        raise RoutingError(f"sticky key {key} got {variant} after {first}")


@events.init.add_listener
def _open_samples(environment: Environment, **_: Any) -> None:
    if OPTIONS.samples is not None:
        handle: IO[str] = OPTIONS.samples.open("w", newline="")
        writer = csv.DictWriter(handle, SAMPLE_FIELDS)
        writer.writeheader()
        _samples.update(handle=handle, writer=writer)


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, response_length: int,
            exception: BaseException | None = None, context: dict[str, Any] | None = None,
            start_time: float | None = None, **_: Any) -> None:  # fmt: skip
    writer = _samples.get("writer")
    if writer is None:
        return
    context = context or {}
    writer.writerow({
        "start": f"{start_time or time.time():.6f}", "kind": context.get("kind", name),
        "variant": context.get("variant", ""), "ms": f"{response_time:.3f}", "ok": int(exception is None),
        "bytes": response_length, "labelled": context.get("labelled", 0), "correct": context.get("correct", 0),
        "error": "" if exception is None else str(exception)[:200],
    })  # fmt: skip


@events.quitting.add_listener
def _close_samples(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and options.csv_prefix:
        # locust rewrites its stats CSV once a second and not again at exit, so its last snapshot can miss
        # the final second; the users have stopped by now, so one more tick makes the CSV the final count.
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC * 1.5)
    handle = _samples.pop("handle", None)
    _samples.pop("writer", None)
    if handle is not None:
        handle.close()


class _OipUser(FastHttpUser):
    """Shared by the HTTP users: post one digit, name the request after the variant that answered."""

    abstract = True
    wait_time = between(0, 0.01)
    kind = "http"

    def infer(self, digit: Digit) -> tuple[str, str, np.ndarray] | None:
        """Returns (request id, variant, logits), or None when the request failed (already reported)."""
        request_id, key = next_id(self.kind), sticky_key()
        body, headers = self.body(request_id, digit)
        headers[OPTIONS.sticky_header] = key
        context: dict[str, Any] = {"kind": self.kind}
        # bytes bodies work (geventhttpclient sends them as they are); locust's annotation says str or dict
        with self.client.post(f"/v2/models/{OPTIONS.model}/infer", data=body, headers=headers,  # type: ignore[arg-type]
                              name=f"{self.kind} ?", context=context, catch_response=True) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:120]}")
                return None
            try:
                variant, logits = self.decode(response.headers, response.content or b"")
                if response.headers.get("slimserve-variant") != variant:
                    raise RoutingError("slimserve-variant header and parameters.variant differ")
                check_sticky(key, variant)
            except (RoutingError, ValueError, KeyError) as exc:
                response.failure(f"{type(exc).__name__}: {exc}")
                return None
            response.request_meta["context"]["variant"] = variant  # locust copies the context it was given
            response.request_meta["name"] = f"{self.kind} {variant}"
        return request_id, variant, logits

    def body(self, request_id: str, digit: Digit) -> tuple[bytes, dict[str, str]]:
        return with_id(request_id, digit.json_tensors), {"content-type": "application/json"}

    def decode(self, headers: Any, content: bytes) -> tuple[str, np.ndarray]:
        document = json.loads(content)
        output = next(o for o in document["outputs"] if o["name"] == OUTPUT)
        return str(document["parameters"]["variant"]), np.asarray(output["data"], dtype=np.float32)


class JsonUser(_OipUser):
    """OIP JSON: tensors as JSON lists, both ways."""

    kind = "json"

    @task
    def infer_json(self) -> None:
        self.infer(random.choice(DIGITS))


class BinaryUser(_OipUser):
    """The binary tensor extension: a JSON header (length in Inference-Header-Content-Length), then raw bytes."""

    kind = "binary"

    @task
    def infer_binary(self) -> None:
        self.infer(random.choice(DIGITS))

    def body(self, request_id: str, digit: Digit) -> tuple[bytes, dict[str, str]]:
        header = with_id(request_id, digit.binary_header)
        return header + digit.binary_tensor, {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        }

    def decode(self, headers: Any, content: bytes) -> tuple[str, np.ndarray]:
        length = int(headers.get("inference-header-content-length") or len(content))
        document = json.loads(content[:length])
        if not any(
            o["name"] == OUTPUT and o.get("parameters", {}).get("binary_data_size")
            for o in document["outputs"]
        ):
            raise ValueError("the response carries no binary OUTPUT__0")
        return str(document["parameters"]["variant"]), np.frombuffer(content[length:], dtype=np.float32)


class AbUser(_OipUser):
    """The experiment's user: the family with a sticky key, then ground truth for a share of the answers."""

    kind = "ab"
    weight = 1

    @task
    def infer_and_label(self) -> None:
        digit = random.choice(DIGITS)
        answer = self.infer(digit)
        if answer is None or random.random() >= OPTIONS.feedback_fraction:
            return
        request_id, variant, logits = answer
        correct = int(int(np.argmax(logits)) == digit.label)
        context: dict[str, Any] = {"kind": "feedback", "variant": variant}
        body = json.dumps({"id": request_id, "label": digit.label})
        with self.client.post("/v1/feedback", data=body, headers={"content-type": "application/json"},
                              name="feedback", context=context, catch_response=True) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:120]}")
                return
            result = json.loads(response.content or b"{}").get("results", [{}])[0]
            if result.get("status") != "accepted":
                response.failure(f"feedback not accepted: {result}")
                return
            if result.get("variant") != variant or bool(result.get("correct")) != bool(correct):
                response.failure(
                    f"the service joined the label differently: {result}, client: {variant} {correct}"
                )
                return
            response.request_meta["context"].update(labelled=1, correct=correct)


class GrpcUser(User):
    """tritonclient.grpc on the gRPC port; locust request events are fired around each call."""

    wait_time = between(0, 0.01)
    kind = "grpc"

    def on_start(self) -> None:
        self.client = grpcclient.InferenceServerClient(OPTIONS.grpc_target)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def infer_grpc(self) -> None:
        digit = random.choice(DIGITS)
        tensor = grpcclient.InferInput(INPUT, list(digit.pixels.shape), "FP32")
        tensor.set_data_from_numpy(digit.pixels)
        request_id, key = next_id(self.kind), sticky_key()
        context: dict[str, Any] = {"kind": self.kind}
        name, length, error = f"{self.kind} ?", 0, None
        start_time, start = time.time(), time.perf_counter()
        try:
            result = self.client.infer(OPTIONS.model, [tensor], request_id=request_id,
                                       headers={OPTIONS.sticky_header: key})  # fmt: skip
            response = result.get_response()
            length = response.ByteSize()
            variant = response.parameters["variant"].string_param
            if not variant:
                raise RoutingError("the response names no variant")
            check_sticky(key, variant)
            context["variant"], name = variant, f"{self.kind} {variant}"
        except Exception as exc:  # any client error is a failed request in the statistics, not a crash
            error = exc
        self.environment.events.request.fire(
            request_type="gRPC", name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=length, exception=error, context=context, start_time=start_time,
        )  # fmt: skip


def _apply_mix() -> None:
    """Weights from the mix; a kind left out is abstract, so locust does not spawn it."""
    for user in (JsonUser, BinaryUser, AbUser, GrpcUser):
        user.weight = OPTIONS.mix[user.kind]
        user.abstract = user.weight == 0


_apply_mix()  # in a function: a module-level loop variable holding a User class would be collected twice
