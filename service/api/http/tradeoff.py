"""``/v1/families`` and ``/v1/families/{family}/tradeoff``: what the trade-off page reads (docs/ui.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from service.api.http.context import context
from service.metrics.window import DEFAULT_WINDOW_S, HORIZON_S, SLOT_S
from service.tradeoff import families, family_tradeoff

router = APIRouter(prefix="/v1", tags=["Trade-off"])

WindowSeconds = Annotated[
    int,
    Query(
        ge=SLOT_S,
        le=HORIZON_S,
        description=f"Seconds of live traffic behind latency and throughput ({SLOT_S}-{HORIZON_S}).",
    ),
]


@router.get("/families", summary="Every served family: its variants, default variant and experiment")
async def list_families(request: Request) -> dict[str, Any]:
    return {"families": families(context(request).dataplane)}


@router.get(
    "/families/{family}/tradeoff",
    summary="Per variant: what it costs (card, live latency and throughput) and loses (experiment report)",
)
async def tradeoff(
    request: Request, family: str, window_s: WindowSeconds = DEFAULT_WINDOW_S
) -> dict[str, Any]:
    return await family_tradeoff(context(request).dataplane, family, window_s)
