"""``/v1/experiments`` (reports and admin changes) and ``/v1/feedback`` (ground truth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, TypeAdapter

from service.api.http.context import context
from service.api.http.wire import parse_json, read_body
from service.auth import require_admin
from service.routing.bodies import ExperimentChange, FeedbackItem, RolloutAction

router = APIRouter(prefix="/v1", tags=["Experiments"])

FEEDBACK = TypeAdapter(FeedbackItem | list[FeedbackItem])
FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": FEEDBACK.json_schema()}}}
}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


CHANGE_BODY = body_schema(ExperimentChange)


@router.get("/experiments", summary="Every experiment: traffic, online accuracy, agreement, latency, verdict")
async def experiments(request: Request) -> dict[str, Any]:
    return {"experiments": await context(request).dataplane.experiments.reports()}


@router.get("/experiments/{name}", summary="One experiment's report")
async def experiment(request: Request, name: str) -> dict[str, Any]:
    return await context(request).dataplane.experiments.report(name)


@router.put(
    "/experiments/{name}", summary="Change weights, shadow or margin (admin)", openapi_extra=CHANGE_BODY
)
async def change_experiment(request: Request, name: str) -> dict[str, Any]:
    ctx = context(request)
    require_admin(ctx.settings.admin.token, request.headers.get("authorization"))
    body = await read_body(request, ctx.settings.limits.max_request_bytes)
    change = ExperimentChange.model_validate(parse_json(body))
    return await ctx.dataplane.experiments.update(name, change)


@router.post(
    "/experiments/{name}/rollout",
    summary="Pause, resume, advance or roll back a rollout (admin)",
    openapi_extra=body_schema(RolloutAction),
)
async def rollout_action(request: Request, name: str) -> dict[str, Any]:
    ctx = context(request)
    require_admin(ctx.settings.admin.token, request.headers.get("authorization"))
    body = await read_body(request, ctx.settings.limits.max_request_bytes)
    action = RolloutAction.model_validate(parse_json(body))
    return await ctx.dataplane.experiments.rollout_action(name, action)


@router.post(
    "/feedback", summary="Join ground-truth labels to earlier predictions", openapi_extra=FEEDBACK_BODY
)
async def feedback(request: Request) -> dict[str, Any]:
    ctx = context(request)
    body = await read_body(request, ctx.settings.limits.max_request_bytes)
    parsed = FEEDBACK.validate_python(parse_json(body))
    items = parsed if isinstance(parsed, list) else [parsed]
    results = await ctx.dataplane.experiments.feedback(items)
    return {"accepted": sum(r["status"] == "accepted" for r in results), "results": results}
