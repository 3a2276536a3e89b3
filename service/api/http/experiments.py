"""``/v1/experiments`` (reports and admin changes) and ``/v1/feedback`` (ground truth)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, TypeAdapter

from service.api.http.context import context
from service.api.http.wire import parse_json, read_body
from service.auth import require_admin
from service.routing.bodies import ExperimentChange, FeedbackItem, RolloutAction
from service.routing.loop import ExperimentLoop

router = APIRouter(prefix="/v1", tags=["Experiments"])
Body = TypeVar("Body", bound=BaseModel)

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


@router.get("/experiments", summary="Every experiment: traffic, online accuracy, agreement, latency, verdict")
async def experiments(request: Request) -> dict[str, Any]:
    return {"experiments": await context(request).dataplane.experiments.reports()}


@router.get("/experiments/{name}", summary="One experiment's report")
async def experiment(request: Request, name: str) -> dict[str, Any]:
    return await context(request).dataplane.experiments.report(name)


async def admin_body(request: Request, model: type[Body]) -> tuple[ExperimentLoop, Body]:
    """An admin change: the token first, then the body, validated (400 naming the field)."""
    ctx = context(request)
    require_admin(ctx.settings.admin.token, request.headers.get("authorization"))
    body = await read_body(request.receive, request.headers, ctx.settings.limits.max_request_bytes)
    return ctx.dataplane.experiments, model.model_validate(parse_json(body))


@router.put(
    "/experiments/{name}",
    summary="Change weights, shadow, margin, cascade or rollout policy (admin)",
    openapi_extra=body_schema(ExperimentChange),
)
async def change_experiment(request: Request, name: str) -> dict[str, Any]:
    experiments, change = await admin_body(request, ExperimentChange)
    return await experiments.update(name, change)


@router.post(
    "/experiments/{name}/rollout",
    summary="Pause, resume, advance or roll back a rollout (admin)",
    openapi_extra=body_schema(RolloutAction),
)
async def rollout_action(request: Request, name: str) -> dict[str, Any]:
    experiments, action = await admin_body(request, RolloutAction)
    return await experiments.rollout_action(name, action)


@router.post(
    "/feedback", summary="Join ground-truth labels to earlier predictions", openapi_extra=FEEDBACK_BODY
)
async def feedback(request: Request) -> dict[str, Any]:
    ctx = context(request)
    body = await read_body(request.receive, request.headers, ctx.settings.limits.max_request_bytes)
    parsed = FEEDBACK.validate_python(parse_json(body))
    items = parsed if isinstance(parsed, list) else [parsed]
    results = await ctx.dataplane.experiments.feedback(items)
    return {"accepted": sum(r["status"] == "accepted" for r in results), "results": results}
