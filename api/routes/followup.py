from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import DbSession, GroupMember, KeysDep, SessionMember
from companion.assist import followup

router = APIRouter(prefix="/groups/{group_id}", tags=["follow-up"])


@router.get("/follow-up")
def group_follow_up(ctx: GroupMember, db: DbSession, keys: KeysDep) -> followup.FollowUp:
    """How the previous clients' action plans are going, newest first, what is overdue, and the
    regulation points of the group's last ended session (to open the next one with)."""
    return followup.follow_up(db, keys, ctx.group)


@router.get(
    "/sessions/{session_id}/action-plan.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def action_plan_calendar(ctx: SessionMember, db: DbSession, keys: KeysDep) -> Response:
    """The action plan's due dates as an iCalendar file, one all-day event per action."""
    body = followup.action_plan_ics(db, keys, ctx.session)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="action-plan-{ctx.session.id[:8]}.ics"'
        },
    )
