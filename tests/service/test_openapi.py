"""``/openapi.json`` is a valid OpenAPI 3.1 document: generated clients and gateways may refuse anything less."""

from __future__ import annotations

from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.harness import RunningService


def test_the_served_document_validates_as_openapi_3_1(service: RunningService) -> None:
    with service.client() as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert not errors, "\n".join(errors[:10])
    body = document["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]
    assert "Inference-Header-Content-Length" in body["description"]
