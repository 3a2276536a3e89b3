"""Admin credentials: ``Authorization: Bearer <token>`` (HTTP header or gRPC metadata).

Compared in constant time; the token is never logged or echoed.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from service.errors import Unauthorized


def require_admin(expected: SecretStr | None, authorization: str | None) -> None:
    if expected is None:
        raise Unauthorized("admin endpoints are disabled: no admin token is configured")
    scheme, _, given = (authorization or "").partition(" ")
    secret = expected.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin token>'")
