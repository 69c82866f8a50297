"""The transcription queue's depth: a group's waiting work for its members, all of it for
administrators."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, AppStateDep, DbSession, GroupMember, SpeechDep
from companion.speech import depth
from companion.speech.schemas import GroupQueueView, QueueDepthView

router = APIRouter(tags=["transcription"])


@router.get("/groups/{group_id}/transcription-queue")
def group_queue(ctx: GroupMember, db: DbSession, state: AppStateDep) -> GroupQueueView:
    """The group's recordings waiting or being transcribed (with their place in the workers'
    order) and its live connections, with how many recordings wait in all."""
    return depth.group_queue(db, ctx.group.id, state.settings.speech.workers)


@router.get("/transcription-queue")
def queue_depth(_admin: AdminUser, db: DbSession, speech: SpeechDep) -> QueueDepthView:
    """Every group together (administrators): jobs per state, live connections, the age of
    the oldest waiting recording, queue messages."""
    messages = int(speech.huey.pending_count())
    return depth.depth(db, messages, speech.settings.speech.workers)
