"""``POST /v1/models/{family}:predict``: instances in, classes and probabilities out, for humans and curl."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.http.context import context
from service.api.http.wire import parse_json, read_body
from service.errors import InvalidInput
from service.protocol import InferRequest, Tensor, WirePredictRequest
from service.served import served_metadata

router = APIRouter(prefix="/v1", tags=["Convenience"])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": WirePredictRequest.model_json_schema()}},
    }
}


@router.post(
    "/models/{model}:predict",
    summary="Classify instances (nested or flat pixel lists)",
    openapi_extra=PREDICT_BODY,
)
async def predict(request: Request, model: str, response: Response) -> dict[str, Any]:
    ctx = context(request)
    raw = await read_body(request.receive, request.headers, ctx.settings.limits.max_request_bytes)
    body = WirePredictRequest.model_validate(parse_json(raw))
    spec = ctx.dataplane.model_metadata(model, None)["inputs"][0]
    row_shape = spec["shape"][1:]
    per_row = math.prod(row_shape)
    try:
        pixels = np.asarray(body.instances, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"instances: each instance must be {per_row} numbers, flat or nested") from None
    if pixels.ndim < 1 or pixels.size != len(body.instances) * per_row:
        raise InvalidInput(f"instances: each instance must have {per_row} values (shape {row_shape})")
    tensor = Tensor(spec["name"], "FP32", pixels.reshape(len(body.instances), *row_shape))
    outcome = await ctx.dataplane.infer(
        model, None, InferRequest([tensor]), protocol="http", headers=request.headers
    )
    response.headers.update(served_metadata(outcome))
    card = outcome.served.model.card
    probabilities = softmax(outcome.response.outputs[0].array.astype(np.float64))
    classes = probabilities.argmax(axis=1)
    labels = card.labels or [str(index) for index in range(probabilities.shape[1])]
    return {
        "model": card.name,
        "version": card.version,
        "predictions": [
            {"class": int(index), "label": labels[index], "probabilities": row.round(6).tolist()}
            for index, row in zip(classes, probabilities, strict=True)
        ],
    }
