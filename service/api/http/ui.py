"""``/`` (links), ``/ui[/{family}]`` (the trade-off page) and ``/ui/static/{name}``: HTML for people.

Not part of the OpenAPI document: the API is the JSON the page reads (``/v1/families...``). An unknown family
gets a 404 page that says so, never a blank page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from service import ui
from service.api.http.context import context

router = APIRouter(include_in_schema=False)

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slimserve</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/ui.css"></head>
<body><main class="message"><h1>slimserve</h1><ul>
<li><a href="/ui">Trade-off page</a>: what each variant costs and loses, live</li>
<li><a href="/v2">/v2</a>: Open Inference Protocol (<a href="/docs">API docs</a>, <a href="/openapi.json">OpenAPI</a>)</li>
<li><a href="/v1/experiments">/v1/experiments</a>: experiment reports</li>
<li><a href="/metrics">/metrics</a>: Prometheus</li>
</ul></main></body></html>
"""


def _families(request: Request) -> list[str]:
    return sorted(context(request).dataplane.store.families())


def _page(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=ui.PAGE_HEADERS)


@router.get("/")
async def index() -> HTMLResponse:
    return _page(INDEX)


@router.get("/ui")
async def default_page(request: Request) -> HTMLResponse:
    families = _families(request)
    if not families:
        message = "The registry has no family loaded (yet): reload this page once the service has started."
        return _page(ui.message_page("No family to show", message, families), 503)
    return _page(ui.family_page(families[0], families))


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    found = ui.asset(name)
    if found is None:
        return Response(f"no static file '{name[:64]}'\n", status_code=404, media_type="text/plain")
    data, media_type = found
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/ui/{family}")
async def family_page(request: Request, family: str) -> HTMLResponse:
    families = _families(request)
    if family not in families:
        message = f"There is no model family “{family[:64]}” here. Pick one of the families below."
        return _page(ui.message_page("Family not found", message, families), 404)
    return _page(ui.family_page(family, families))
