"""One exception hierarchy for the whole service.

Each error carries its HTTP status and its gRPC code, so both transports map errors from the same table
and can never disagree (the trap KServe fell into with two separate maps).
"""

from __future__ import annotations

import grpc


class SlimServeError(Exception):
    """Base of every error the service reports to a client; the message is safe to show."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(SlimServeError):
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_input"


class Unauthorized(SlimServeError):
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    reason = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ModelNotFound(SlimServeError):
    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "not_found"


class ModelLoadFailed(SlimServeError):
    """A model control request could not load what it asked for; what was serving still serves."""

    http_status = 400  # as Triton answers a failed load
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "load_failed"


class PayloadTooLarge(SlimServeError):
    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "payload_too_large"


class Unimplemented(SlimServeError):
    http_status = 501
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    reason = "unimplemented"


class _RetryLater(SlimServeError):
    """A 503 the client may retry: says when through Retry-After."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ModelNotReady(_RetryLater):
    reason = "not_ready"


class Overloaded(_RetryLater):
    reason = "overloaded"


class BackendUnavailable(_RetryLater):
    """A remote backend (Triton) cannot be reached; routed traffic falls back if a fallback is set."""

    reason = "backend_unavailable"


class StateUnavailable(_RetryLater):
    """The shared experiment state (Redis) cannot be reached: feedback, reports and admin changes wait for it;
    inference never does."""

    reason = "state_unavailable"


class RequestTimeout(SlimServeError):
    http_status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "timeout"


class InternalError(SlimServeError):
    """Anything unexpected; the message never carries internals (they go to the log)."""

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)
