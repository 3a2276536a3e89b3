"""The OpenAPI document as clients and fuzzers see it.

Request schemas embedded through ``openapi_extra`` carry pydantic's ``$defs``; those are hoisted into
``components/schemas`` so every ``$ref`` resolves. FastAPI's 422 is replaced by what the service really
answers: errors as ``{"error": "<message>"}`` with the status of the one error hierarchy.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, naming the field"}},
}


def _hoist(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        definitions.update(
            {name: _hoist(schema, definitions) for name, schema in node.pop("$defs", {}).items()}
        )
        return {key: _hoist(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_hoist(item, definitions) for item in node]
    return node


def build_openapi(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    definitions: dict[str, Any] = {}
    spec = _hoist(spec, definitions)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_BODY
    error = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for path in spec["paths"].values():
        for operation in path.values():
            operation["responses"].pop("422", None)
            operation["responses"]["default"] = error
    text = json.dumps(spec).replace('"#/$defs/', '"#/components/schemas/')
    document: dict[str, Any] = json.loads(text)
    return document


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
