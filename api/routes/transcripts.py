"""Recordings of a phase, their transcription jobs, and the sealed transcript."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    AppStateDep,
    AssistDep,
    DbSession,
    KeysDep,
    SessionMember,
    SessionParticipant,
    SpeechDep,
)
from api.responses import conflict
from api.upload_form import FileField
from companion.method.phases import Phase
from companion.sessions.service import require_running
from companion.speech import audio, jobs, transcript
from companion.speech.schemas import JobView, SegmentEdit, SegmentView, TranscriptView
from companion.store.models import new_id

router = APIRouter(prefix="/groups/{group_id}/sessions/{session_id}", tags=["transcription"])

# For api.limits.BodyLimit: uploads stream through with their own size limit.
UPLOAD_PATH = r"/groups/[^/]+/sessions/[^/]+/phases/[^/]+/recordings$"

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "wav, mp3, m4a/aac, ogg/opus or webm/opus",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/phases/{phase}/recordings",
    status_code=202,
    openapi_extra=_UPLOAD_BODY,
    responses={
        **conflict("The phase is not the one running."),
        413: {"description": "Over the upload size or duration limit."},
        422: {"description": "Empty, not audio, corrupt, truncated, or only silence."},
    },
)
async def upload_recording(
    phase: Phase,
    request: Request,
    *,
    ctx: SessionParticipant,
    db: DbSession,
    keys: KeysDep,
    state: AppStateDep,
    speech: SpeechDep,
    background: BackgroundTasks,
) -> JobView:
    """A recording of the running phase (multipart field `file`): sealed, checked, queued.

    Answers 202 with the job; follow it at `.../transcription-jobs/{job_id}`. The body is read
    only after the caller's access is checked, and the phase before the body. The file is
    sealed with the group's key as it arrives, straight into the data dir (nothing of it is
    ever in clear on disk), then read back unsealed to be checked; a refused one is deleted.
    """
    require_running(ctx.session, phase)
    form = FileField(request.headers.get("content-type"), name="file", max_files=1, max_fields=5)
    settings = state.settings
    job_id = new_id()
    key = await run_in_threadpool(keys.get, ctx.group.id)
    path = audio.audio_path(settings.data_dir, ctx.group.id, job_id)
    sealed = await run_in_threadpool(audio.SealedWriter, path, key, job_id)
    try:
        await form.stream_into(request.stream(), sealed)
        job = await run_in_threadpool(
            jobs.create_job,
            db,
            settings=settings,
            actor=ctx.user,
            group=ctx.group,
            session=ctx.session,
            phase=phase,
            upload=sealed,
        )
        view = await run_in_threadpool(transcript.job_view, db, job, settings.speech.workers)
    finally:
        sealed.discard()  # what was not committed (a refusal, an error, a cut connection)
    background.add_task(speech.wake)  # after the response: the job's row is committed by then
    return view


@router.get("/transcription-jobs")
def list_jobs(ctx: SessionMember, db: DbSession, state: AppStateDep) -> list[JobView]:
    workers = state.settings.speech.workers
    return [transcript.job_view(db, job, workers) for job in transcript.jobs_of(db, ctx.session)]


@router.get("/transcription-jobs/{job_id}")
def get_job(job_id: str, ctx: SessionMember, db: DbSession, state: AppStateDep) -> JobView:
    """Status, percent of the audio done, ETA, and the reason when it failed."""
    workers = state.settings.speech.workers
    return transcript.job_view(db, transcript.get_job(db, ctx.session, job_id), workers)


@router.get("/transcript")
def get_transcript(
    ctx: SessionMember, db: DbSession, keys: KeysDep, phase: Phase | None = None
) -> TranscriptView:
    """The session's transcript (or one phase's): segments in phase and recording order."""
    return transcript.transcript(db, keys, ctx.session, phase)


@router.patch("/transcript/segments/{segment_id}")
def edit_segment(
    segment_id: str,
    spec: SegmentEdit,
    *,
    ctx: SessionParticipant,
    db: DbSession,
    keys: KeysDep,
    assist: AssistDep,
    background: BackgroundTasks,
) -> SegmentView:
    """A participant corrects a segment's text; later assistance uses the corrected text (the
    ideas and the clarity review are refreshed at once)."""
    segment = transcript.edit_segment(
        db, keys, actor=ctx.user, session=ctx.session, segment_id=segment_id, text=spec.text
    )
    background.add_task(assist.changed, ctx.session.id, segment.phase)
    return segment
