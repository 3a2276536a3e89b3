"""Admin endpoints need ``Authorization: Bearer <token>``; compared in constant time, never logged."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from service.config import Settings
from service.errors import Unauthorized


def require_admin(request: Request, settings: Settings) -> None:
    expected = settings.admin.token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        raise Unauthorized("admin endpoints are disabled: no admin token is configured")
    secret = expected.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin token>'")
