"""Rendering pages: one Jinja2 environment, the person's language and the page's CSRF token."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api.web.i18n import Translator, preferred
from companion.recent import Recent

WEB = Path(__file__).parent
LANG_COOKIE = "companion_lang"
templates = Jinja2Templates(directory=WEB / "templates")
templates.env.autoescape = True


def iso(value: datetime | date | None) -> str:
    """Machine form of a time; the page's time.js shows it in the person's locale and zone."""
    return value.isoformat() if value is not None else ""


templates.env.filters["iso"] = iso


def language(request: Request, group_language: str | None = None) -> str:
    return preferred(
        request.cookies.get(LANG_COOKIE), group_language, request.headers.get("accept-language")
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    group_language: str | None = None,
) -> HTMLResponse:
    """A page or a partial, with `t` (strings), `lang`, `csrf` and `me` (the signed-in person,
    when there is one) available to every template."""
    lang = language(request, group_language)
    values = {
        "t": Translator(lang),
        "lang": lang,
        "csrf": getattr(request.state, "csrf", ""),
        "me": getattr(request.state, "me", None),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, values, status_code=status)


# Panels every viewer of a session sees alike, as last rendered: six open pages reload a panel
# after each note, and it is read and rendered once for them all (in this process's memory).
_shared: Recent[str] = Recent(256, max_age_s=120)


def render_shared(
    request: Request,
    template: str,
    key: str,
    values: Callable[[], Mapping[str, Any]],
    *,
    group_language: str | None = None,
) -> HTMLResponse:
    """A partial that shows the same to everyone it is rendered for: `key` says everything it
    shows (a fingerprint of its content and every flag it depends on), `values` reads its
    context only when no rendering of that key in the viewer's language is kept. Its template
    gets `t` and `lang`, never `me` or `csrf`: nothing of the viewer's own. The caller has
    checked the viewer's access already."""
    lang = language(request, group_language)
    digest = hashlib.sha256(f"{template}\n{lang}\n{key}".encode()).hexdigest()
    html = _shared.get(digest)
    if html is None:
        context = {"t": Translator(lang), "lang": lang, **values()}
        html = templates.get_template(template).render(context)
        _shared.add(digest, html)
    return HTMLResponse(html)


def is_page(request: Request) -> bool:
    """Whether an error should answer as a page (the web app) rather than JSON (the API)."""
    path = request.url.path
    return not path.startswith(("/api/", "/static/", "/healthz", "/readyz", "/docs", "/openapi"))


def error_page(request: Request, status: int, message: str, problem: str | None = None) -> Response:
    """The service's own message, on a page that says what to do; a fragment for a panel."""
    template = "partials/error.html" if request.headers.get("hx-request") else "pages/error.html"
    return render(
        request, template, {"status": status, "message": message, "problem": problem}, status=status
    )
