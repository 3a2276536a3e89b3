"""Settings: one object, read from CLI flags, environment (SLIMSERVE_ prefix, ``__`` for nesting) and .env.

Nothing else in the service reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 inside a container.")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    grpc_enabled: bool = True
    grpc_port: int = Field(8001, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Larger gRPC messages fail.")
    grpc_transport: Literal["h2", "grpcio"] = Field(
        "h2",
        description="h2: the service's own HTTP/2 protocol on its event loop (the fastest here: "
        "benchmarks/serving.md); grpcio: grpc.aio on gRPC's C core, the reference implementation.",
    )
    shutdown_grace_s: float = Field(10.0, ge=0, description="Time in-flight requests get to finish.")
    drain_delay_s: float = Field(
        2.0,
        ge=0,
        description="After SIGTERM: not ready at once, keep serving this long, then stop accepting.",
    )
    head_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's line and headers must arrive within this, counted from the connection's "
        "opening or the request's first byte; later: 408 and the connection is closed. gRPC: a connection "
        "must open HTTP/2 within this.",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request's body must arrive within this after its headers; later: 408."
    )
    keep_alive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="An HTTP connection idle this long between requests is closed (uvicorn's default).",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="Open connections per front: one more HTTP connection is answered 503 and closed, "
        "one more gRPC connection gets GOAWAY.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; none: CORS off."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False


class RegistrySettings(BaseModel):
    path: Path = Field(Path("registry"), description="Model registry (a Triton model repository).")
    version_policy: Literal["latest", "all"] = Field(
        "latest", description="Load only the newest version of each variant, or every version."
    )
    strict_readiness: bool = Field(
        False,
        description="Server is ready only when every loaded variant answers by itself, through no fallback "
        "(Triton's strict readiness). Off: ready when every routed family can answer.",
    )


REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> str:
    """Refuse a URL redis-py would misread (raises ValueError, which settings report with the field's name)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"not a Redis URL ({exc})") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(REDIS_SCHEMES)}, like redis://host:6379/0")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("names no host, like redis://host:6379/0")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("names no socket path, like unix:///run/redis.sock")
    database = parts.path.lstrip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise ValueError(f"database '{database[:16]}' is not a number")
    return url


class RoutingSettings(BaseModel):
    default_variant: str = Field(
        "student-int8-x86",
        description="Variant that answers calls to a bare family name, in each family that has it; a family "
        "without it serves the default variant its build or import declared.",
    )
    family_defaults: dict[str, str] = Field(
        default_factory=dict, description="Per-family override of default_variant."
    )
    experiments_file: Path | None = Field(None, description="A/B experiments (YAML); none: no experiments.")
    shadow_queue_size: int = Field(1000, ge=1, description="Shadow copies waiting; more are dropped.")
    feedback_capacity: int = Field(100_000, ge=1, description="Predictions kept for ground-truth feedback.")
    feedback_ttl_s: float = Field(3600.0, gt=0, description="How long a prediction waits for its label.")
    redis_url: str | None = Field(
        None,
        description="Experiment state shared by every replica (predictions awaiting labels, tallies, weights), "
        "like redis://host:6379/0; none: kept in this process.",
    )
    redis_timeout_s: float = Field(
        0.25, gt=0, le=5, description="Bound on every Redis call; inference never waits for one."
    )

    rollout_period_s: float = Field(
        10.0, gt=0, description="How often the deciding replica evaluates every rollout's gates."
    )
    rollout_lease_s: float | None = Field(
        None, gt=0, description="How long the deciding replica's lease lasts unrenewed; none: 3 periods."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, url: str | None) -> str | None:
        return check_redis_url(url) if url else None


class BatchingSettings(BaseModel):
    enabled: bool = True
    max_batch_size: int = Field(32, ge=1, description="Rows per batch handed to a backend.")
    max_queue_delay_ms: float = Field(
        0.0,
        ge=0,
        description="Extra wait for a batch to fill. 0: greedy, a batch is whatever queued while the "
        "previous one ran, so a lone request never waits.",
    )
    max_queue_size: int = Field(256, ge=1, description="Requests waiting per variant before 503.")
    instances: int = Field(1, ge=1, description="Batches of one variant that may run at once.")


class RuntimeSettings(BaseModel):
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per inference.")
    intra_op_threads: int = Field(
        1, ge=1, description="ONNX Runtime and OpenVINO intra-op threads per inference."
    )
    openvino_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="OpenVINO performance hint for the CPU plugin."
    )
    worker_threads: int = Field(
        2,
        ge=1,
        description="Threads running inference off the event loop; the one idle the shortest time takes the "
        "next batch (service/inference_threads.py).",
    )
    inline_below_ms: float = Field(
        0.25,
        ge=0,
        description="A batch expected to compute in less than this runs on the event loop itself: handing it "
        "to an inference thread and back costs about that much (wake-ups, the GIL). 0: always a thread.",
    )
    warmup_iterations: int = Field(3, ge=0)
    gc_freeze: bool = Field(
        True,
        description="Once the variants are loaded, exempt what exists from garbage collection (gc.freeze): "
        "full collections then scan only what requests create.",
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=0,
        description="Net allocations between young-generation collections (Python's default, 700, collects "
        "hundreds of times a second under load); 0 keeps Python's default.",
    )
    optimize_fp32: bool = Field(
        True,
        description="Fuse and fold fp32 TorchScript for this CPU (oneDNN) when loading; the artifact on disk "
        "stays the portable one Triton loads. int8 variants are left as they are.",
    )


class LimitsSettings(BaseModel):
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_batch_per_request: int = Field(256, ge=1, description="Rows one request may carry.")
    max_tensor_elements: int = Field(4 * 1024 * 1024, ge=1, description="Elements one input tensor may have.")
    request_timeout_s: float = Field(10.0, gt=0, description="Per-request deadline (504 after it).")
    model_timeouts_s: dict[str, float] = Field(
        default_factory=dict, description="Deadline per model or family name, overriding request_timeout_s."
    )
    allow_non_finite: bool = Field(False, description="Accept NaN/Inf inputs instead of 400.")


class BackendSettings(BaseModel):
    """Where a variant runs. In-process torch unless set to a Triton server."""

    kind: Literal["torch", "triton"] = "torch"
    url: str = Field("", description="Triton host:port (its gRPC or HTTP port, as protocol says).")
    protocol: Literal["grpc", "http"] = "grpc"
    model_name: str | None = Field(None, description="Triton's name for the model; default: the variant's.")
    model_version: str = Field("", description="Triton model version; empty: Triton's latest.")
    timeout_s: float = Field(5.0, gt=0, description="Per call to Triton; 504 after it.")
    fallback: str | None = Field(None, description="In-process variant that answers routed calls while down.")
    health_interval_s: float = Field(1.0, gt=0)
    health_timeout_s: float = Field(2.0, gt=0, description="A health check slower than this counts as down.")
    failure_threshold: int = Field(
        3, ge=1, description="Consecutive connection failures that open the breaker."
    )
    reset_after_s: float = Field(5.0, gt=0, description="How long the breaker stays open before a trial.")


def backend_key(name: str) -> str:
    """Environment variables cannot hold '-': ``teacher-fp32`` and ``TEACHER_FP32`` name the same variant."""
    return name.replace("-", "_").lower()


class AdminSettings(BaseModel):
    token: SecretStr | None = Field(
        None, description="Bearer token for admin endpoints; none: they answer 401."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLIMSERVE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        cli_prog_name="python -m service",
        cli_kebab_case=False,
        cli_implicit_flags=True,
    )

    server: ServerSettings = ServerSettings()
    registry: RegistrySettings = RegistrySettings()
    routing: RoutingSettings = RoutingSettings()
    batching: BatchingSettings = BatchingSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    limits: LimitsSettings = LimitsSettings()
    admin: AdminSettings = AdminSettings()
    backends: dict[str, BackendSettings] = Field(
        default_factory=dict, description="Per variant (or model name): where it runs; default in-process."
    )

    def default_variant_for(self, family: str) -> str:
        return self.routing.family_defaults.get(family, self.routing.default_variant)

    def backend_for(self, model: str, variant: str) -> BackendSettings:
        """The settings of a model name (``mnist-teacher-fp32``) or, failing that, of its variant."""
        configured = {backend_key(name): backend for name, backend in self.backends.items()}
        return configured.get(backend_key(model)) or configured.get(backend_key(variant)) or BackendSettings()


def settings_from_cli(argv: list[str]) -> Settings:
    """Flags override environment and .env, which override the defaults."""
    return CliApp.run(Settings, cli_args=argv)
