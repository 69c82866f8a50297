"""Administration pages: people, groups and their policy, the model-call audit, the
transcription queue and readiness. `AdminUser` only, like the API routes they mirror.

An administrator who is not a member reads no group content: of a group they see what the
API answers them (`POST`/`PATCH /groups/{id}` give its name, language, policy, audio
setting; `…/model-calls` its model calls, which hold no content), never its members,
sessions or memory. As a member they use the group's own page, like anyone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import AdminUser, AppStateDep, DbSession, KeysDep, SpeechDep
from api.web.deps import Viewer
from api.web.render import render
from companion.accounts import service as accounts
from companion.groups import service as groups
from companion.llm import audit as model_calls
from companion.speech import depth

router = APIRouter(prefix="/admin", include_in_schema=False)

MOST_CALLS = 200


@router.get("", response_class=HTMLResponse)
def people_and_groups(
    request: Request, _me: Viewer, admin: AdminUser, db: DbSession, keys: KeysDep
) -> Response:
    people = accounts.users(db, keys)
    context = {"people": people, "groups": groups.all_groups(db, keys, admin), "tab": "people"}
    return render(request, "pages/admin.html", context)


@router.get("/model-calls", response_class=HTMLResponse)
def model_call_audit(
    request: Request,
    _me: Viewer,
    admin: AdminUser,
    db: DbSession,
    keys: KeysDep,
    *,
    group_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """What GET /groups/{id}/model-calls answers an administrator, for one group or all."""
    known = groups.all_groups(db, keys, admin)
    names = {g.id: g.name for g in known}
    chosen = [group_id] if group_id else list(names)
    if group_id:
        groups.get_group(db, group_id)  # 404 for an unknown group, as the API answers
    calls = model_calls.latest(db, chosen, MOST_CALLS)
    context = {
        "calls": calls,
        "groups": known,
        "names": names,
        "group_id": group_id,
        "tab": "model-calls",
    }
    return render(request, "pages/admin_model_calls.html", context)


def llm_status(state: str) -> str:
    """The page's word for the model's state as /readyz tells it."""
    if state in ("remote", "local model ready"):
        return "ready"
    if state == "local model loading":
        return "loading"
    if state == "local model loads on first use":
        return "on_demand"
    if state.startswith("local model unavailable"):
        return "unavailable"
    return "off"


@router.get("/system", response_class=HTMLResponse)
def system(
    request: Request,
    _me: Viewer,
    _admin: AdminUser,
    db: DbSession,
    *,
    state: AppStateDep,
    speech: SpeechDep,
) -> Response:
    """Readiness (the checks of /readyz) and the transcription queue (GET
    /transcription-queue)."""
    ready = state.readiness()
    llm: str = ready["llm"]
    queue: Any = None
    try:
        messages = int(speech.huey.pending_count())
    except Exception:  # the queue's store is unreadable: the page says so, the rest still shows
        messages = -1
    queue = depth.depth(db, max(messages, 0), speech.settings.speech.workers)
    context = {
        "ready": ready,
        "llm": llm,
        "llm_status": llm_status(llm),
        "llm_reason": llm.split(": ", 1)[1] if ": " in llm else None,
        "queue": queue,
        "queue_unreadable": messages < 0,
        "tab": "system",
    }
    return render(request, "pages/admin_system.html", context)
