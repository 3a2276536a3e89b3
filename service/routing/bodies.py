"""Request bodies of the experiment endpoints: ground-truth feedback and admin changes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.routing.experiments import Cascade, Rollout, Shadow

ClassIndex = Annotated[int, Field(ge=0)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    label: ClassIndex | list[ClassIndex] = Field(
        description="The true class of each row the request carried."
    )


class ExperimentChange(BaseModel):
    """Body of PUT /v1/experiments/{name}: only the fields given change; ``null`` removes a shadow,
    cascade or rollout."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, int] | None = Field(None, description="variant -> weight, summing to 100")
    shadow: Shadow | None = None
    margin: float | None = Field(None, ge=0, lt=1)
    cascade: Cascade | None = None
    rollout: Rollout | None = None


class RolloutAction(BaseModel):
    """Body of POST /v1/experiments/{name}/rollout (admin)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["pause", "resume", "advance", "rollback"] = Field(
        description="pause or resume the gates; advance to the next step or roll back to 0 %, now"
    )
    reason: str | None = Field(None, max_length=200, description="Kept with the transition.")
