"""The first page: the person's groups, or how to sign in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import DbSession, KeysDep, web_session
from api.web.deps import viewer
from api.web.render import render
from companion.accounts import signin
from companion.groups import service as groups

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbSession, keys: KeysDep) -> Response:
    if web_session(request, db) is None:
        return render(request, "pages/welcome.html", {"setup": signin.needs_setup(db)})
    user = viewer(request, db, keys)
    mine = [groups.view(keys, g, role) for g, role in groups.groups_of(db, user)]
    return render(request, "pages/home.html", {"groups": mine})
