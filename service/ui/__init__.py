"""The trade-off page: HTML rendered from two small templates, and the static files it loads.

Everything the page needs ships inside this package (``static/``, ``templates/``: package data in
pyproject.toml), so it works offline and behind any firewall; the page reads its numbers from the service's
JSON endpoints, never from here.
"""

from __future__ import annotations

import html
from importlib import resources

MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
ASSETS = ("ui.css", "chart.js", "ui.js")
# The page may load and call nothing but this service: no CDN, no font, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def asset(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type; None for anything that is not one of ``ASSETS``."""
    if name not in ASSETS:
        return None
    data = resources.files(__package__).joinpath("static", name).read_bytes()
    return data, MEDIA_TYPES[name[name.rindex(".") :]]


def _links(families: list[str]) -> str:
    return "".join(f'<li><a href="/ui/{html.escape(f)}">{html.escape(f)}</a></li>' for f in families)


def family_page(family: str, families: list[str]) -> str:
    options = "".join(
        f'<option value="{html.escape(f)}"{" selected" if f == family else ""}>{html.escape(f)}</option>'
        for f in families
    )
    return _fill(
        _template("page.html"),
        family=html.escape(family),
        family_options=options,
        family_links=_links(families),
    )


def message_page(title: str, message: str, families: list[str]) -> str:
    return _fill(
        _template("message.html"),
        title=html.escape(title),
        message=html.escape(message),
        family_links=_links(families) or "<li>none is served yet</li>",
    )
