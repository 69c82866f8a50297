"""Signing in and out: the setup link, invitation links, the language switch.

A link is used by a POST from its page, never by the GET: chat apps and mail scanners open
links to preview them, and would otherwise spend a one-time link before its person does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import SESSION_COOKIE, AppStateDep, DbSession, KeysDep, web_session
from api.web.i18n import LANGUAGES
from api.web.render import LANG_COOKIE, render
from companion.accounts import service as accounts
from companion.accounts import signin
from companion.audit import service as audit
from companion.config import Settings
from companion.errors import Forbidden
from companion.store.models import User
from companion.text import Name

router = APIRouter(include_in_schema=False)


def _signed_in(settings: Settings, db: DbSession, user: User) -> Response:
    opened = signin.open_session(db, user, timedelta(days=settings.web_session_days))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie,
        max_age=int(settings.web_session_days * 86400),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


@router.get("/setup/{token}", response_class=HTMLResponse)
def setup_page(token: str, request: Request, db: DbSession) -> Response:
    signin.setup_invitation(db, token)
    return render(request, "pages/setup.html", {"token": token})


@router.post("/setup/{token}")
def setup(
    token: str, name: Annotated[Name, Form()], state: AppStateDep, db: DbSession, keys: KeysDep
) -> Response:
    """The first administrator, created by whoever holds the link `companion serve` printed."""
    user = signin.set_up(db, keys, token, name)
    audit.record(db, user.id, None, "user.create", "user", user.id)
    return _signed_in(state.settings, db, user)


@router.get("/join/{token}", response_class=HTMLResponse)
def join_page(token: str, request: Request, db: DbSession, keys: KeysDep) -> Response:
    name = accounts.user_name(keys, signin.invited(db, token))
    return render(request, "pages/join.html", {"token": token, "name": name})


@router.post("/join/{token}")
def join(token: str, state: AppStateDep, db: DbSession) -> Response:
    user = signin.join(db, token)
    audit.record(db, user.id, None, "signin.invitation", "user", user.id)
    return _signed_in(state.settings, db, user)


@router.post("/signout")
def signout(csrf_token: Annotated[str, Form()], request: Request, db: DbSession) -> Response:
    row = web_session(request, db)
    if row is not None:
        if not signin.csrf_matches(row, csrf_token):
            raise Forbidden("This sign-out lacks the page's CSRF token: reload the page.")
        signin.close_session(row)
    request.state.web_session, request.state.csrf = None, ""
    response = render(request, "pages/signed_out.html")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(lang: str, back: Annotated[str, Query(alias="next")] = "/") -> Response:
    """The person's language, kept in a cookie; `next` must be a path of this service."""
    local = back.startswith("/") and "\\" not in back and not urlsplit(back).netloc
    target = back if local else "/"
    response = RedirectResponse(target, status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response
