"""Which variant answers a call to a bare family name."""

from __future__ import annotations

from collections.abc import Mapping

from service.config import Settings


class DefaultVariantRouter:
    """Routes every family call to its configured default variant (the A/B router replaces this)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def route(self, family: str, headers: Mapping[str, str]) -> str:
        return f"{family}-{self._settings.default_variant_for(family)}"
