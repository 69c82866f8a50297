"""Transcription jobs: the database is their source of truth, the queue only wakes workers.

- An upload is sealed to a file as it arrives, then checked and recorded as a `queued` job, in
  one request.
- A worker claims the next job *fairly* (companion.speech.order: the group served longest
  ago goes first, so one group's long queue never blocks another's) with a conditional
  update, so two workers never run the same job; `attempts` identifies the claim.
- While it works, a heartbeat keeps the claim alive; a job whose heartbeat is older than the
  lease (its worker was killed) is queued again by `recover`, at start and every minute.
- The transcript is written in one transaction at the end: the job's segments are deleted and
  inserted again, keyed by (job, position), and the job is marked `done` only if the claim is
  still this worker's. A re-run therefore leaves exactly one copy of each segment.
- The recording is deleted once the transcript is stored or the job failed, unless the group
  keeps audio (then it stays, sealed).

Reading the jobs and the transcript, and correcting it, is companion.speech.transcript.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from companion.audit import service as audit
from companion.config import Settings
from companion.method.phases import Phase
from companion.sessions.service import require_running
from companion.speech import audio
from companion.speech.order import fair_order
from companion.speech.schemas import JobKind, JobStatus
from companion.speech.transcriber import Segment, Transcriber
from companion.store import outbox as memory
from companion.store.keyring import KeyGone, Keyring
from companion.store.models import (
    CodevSession,
    Group,
    TranscriptionJob,
    TranscriptSegment,
    User,
    new_id,
    utcnow,
)
from companion.vault import IntegrityError, MasterKey

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a recording that kills its worker this often is failed, not retried forever
PROGRESS_EVERY_S = 1.0
ORPHAN_AGE_S = 3600  # an audio file with no job this old is a leftover of a failed request


class Interrupted(Exception):
    """The worker is stopping: the job goes back to the queue."""


class ClaimLost(Exception):
    """The claim was lost (the job was re-queued and taken by another worker)."""


@dataclass
class JobContext:
    """What a worker needs: settings, the database, the master key, the executor."""

    settings: Settings
    sessions: sessionmaker[Session]
    master: MasterKey
    transcriber: Transcriber
    stopping: threading.Event = field(default_factory=threading.Event)


# --- upload ---------------------------------------------------------------------------------


def create_job(
    db: Session,
    *,
    settings: Settings,
    actor: User,
    group: Group,
    session: CodevSession,
    phase: Phase,
    upload: audio.SealedWriter,
) -> TranscriptionJob:
    """Check the recording sealed as it arrived (4xx for what can be known now: it is read back
    unsealed, in memory), put it in its place and queue its job (its id is the upload's).

    The caller discards the upload afterwards (`upload.discard()`: deleted unless committed)."""
    require_running(session, phase)
    upload.finish()
    with upload.reader() as recording:
        probe = audio.probe(recording, settings.speech.max_audio_seconds)
    job = TranscriptionJob(
        id=upload.job_id,
        group_id=group.id,
        session_id=session.id,
        phase=phase,
        kind=JobKind.upload,
        uploaded_by=actor.id,
        status=JobStatus.queued,
        progress=0.0,
        audio_seconds=probe.seconds,
        audio_format=probe.format,
        audio_kept=True,
        attempts=0,
        created_at=utcnow(),
    )
    upload.commit()
    try:
        db.add(job)
        db.flush()
        audit.record(db, actor.id, group.id, "recording.upload", "transcription_job", job.id)
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    return job


# --- claiming, fairly -----------------------------------------------------------------------


def claim_next(factory: sessionmaker[Session]) -> tuple[str, int] | None:
    """Claim the next job fairly: (job id, attempt number), or None if nothing is queued."""
    for _ in range(20):  # lose a race to another worker: look again
        with factory() as db, db.begin():
            order = fair_order(db)
            if not order:
                return None
            now = utcnow()
            claimed = db.execute(
                update(TranscriptionJob)
                .where(TranscriptionJob.id == order[0], TranscriptionJob.status == JobStatus.queued)
                .values(
                    status=JobStatus.running,
                    attempts=TranscriptionJob.attempts + 1,
                    started_at=now,
                    heartbeat_at=now,
                    progress=0.0,
                    error=None,
                )
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                attempt = db.scalar(
                    select(TranscriptionJob.attempts).where(TranscriptionJob.id == order[0])
                )
                return order[0], int(attempt or 0)
    return None


# --- running --------------------------------------------------------------------------------


def ours(job_id: str, attempt: int) -> list[object]:
    return [
        TranscriptionJob.id == job_id,
        TranscriptionJob.attempts == attempt,
        TranscriptionJob.status == JobStatus.running,
    ]


def _touch(factory: sessionmaker[Session], job_id: str, attempt: int, **values: object) -> bool:
    """Update our running job (heartbeat, progress); False if the claim is no longer ours."""
    with factory() as db, db.begin():
        result = db.execute(
            update(TranscriptionJob)
            .where(*ours(job_id, attempt))  # type: ignore[arg-type]
            .values(heartbeat_at=utcnow(), **values)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class Heartbeat:
    """Refreshes the claim every quarter lease while a job runs, whatever the executor does."""

    def __init__(self, ctx: JobContext, job_id: str, attempt: int) -> None:
        self.ctx, self.job_id, self.attempt = ctx, job_id, attempt
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        interval = max(self.ctx.settings.speech.lease_s / 4, 0.05)
        while not self._stop.wait(interval):
            try:
                if not _touch(self.ctx.sessions, self.job_id, self.attempt):
                    self.lost = True
                    return
            except Exception:  # the database is briefly away: try again next beat
                log.warning("Heartbeat of transcription job %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_next(ctx: JobContext) -> str | None:
    """Claim and run one job; its id, or None when nothing was queued."""
    claimed = claim_next(ctx.sessions)
    if claimed is None:
        return None
    run_claimed(ctx, *claimed)
    return claimed[0]


def run_claimed(ctx: JobContext, job_id: str, attempt: int) -> None:
    with ctx.sessions() as db:
        job = db.get(TranscriptionJob, job_id)
        group = db.get(Group, job.group_id) if job else None
        if job is None or group is None:
            return
        language, keep, seconds = group.language, group.keep_audio, job.audio_seconds
        try:
            key = Keyring(db, ctx.master).get(group.id)
        except KeyGone:
            return
    path = audio.audio_path(ctx.settings.data_dir, group.id, job_id)
    outcome = "unknown"
    try:
        with Heartbeat(ctx, job_id, attempt) as beat:
            try:
                recording = audio.open_sealed(path, key, job_id)
            except FileNotFoundError:
                raise JobFailed(
                    "The recording is no longer stored (it was deleted before it could be "
                    "transcribed); upload it again."
                ) from None
            except IntegrityError as exc:
                raise JobFailed(
                    f"The stored recording failed its integrity check ({exc})."
                ) from exc
            segments: list[Segment] = []
            # The voice-activity filter hears nothing in some clear speech (a synthetic or
            # distant voice): then the recording is heard again without it, and the model's
            # own no-speech guard decides.
            for vad in (True, False):
                if segments:
                    break
                segments = _collect(
                    ctx,
                    job_id,
                    attempt=attempt,
                    seconds=seconds,
                    language=language,
                    recording=recording if vad else audio.open_sealed(path, key, job_id),
                    beat=beat,
                    vad=vad,
                )
        if not segments:
            raise JobFailed(
                "No speech was found in the recording (only silence or noise); check the "
                "microphone and record again."
            )
        outcome = "done" if _finish(ctx, job_id, attempt, segments, keep) else "superseded"
    except Interrupted:
        outcome = "interrupted"
        _requeue(ctx.sessions, job_id, attempt)
    except ClaimLost:
        outcome = "superseded"
    except JobFailed as exc:
        outcome = "failed" if _fail(ctx.sessions, job_id, attempt, str(exc), keep) else "superseded"
    except Exception as exc:
        log.exception("Transcription job %s failed", job_id)
        failed = _fail(ctx.sessions, job_id, attempt, _reason(exc), keep)
        outcome = "failed" if failed else "superseded"
    finally:
        if outcome in ("done", "failed") and not keep:
            path.unlink(missing_ok=True)  # the job row already says so (audio_kept false)
    log.info("Transcription job %s (attempt %d): %s", job_id, attempt, outcome)


class JobFailed(Exception):
    """The job ends failed; the message is the reason a user reads."""


def _reason(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if text.endswith(".") or text.endswith(")") else f"{text}."


def _collect(
    ctx: JobContext,
    job_id: str,
    *,
    attempt: int,
    seconds: float,
    language: str,
    recording: BinaryIO,
    beat: Heartbeat,
    vad: bool = True,
) -> list[Segment]:
    segments: list[Segment] = []
    reported = float("-inf")  # the first segment is reported at once, then once a second
    for seg in ctx.transcriber.transcribe(recording, language, vad=vad):
        if ctx.stopping.is_set():
            raise Interrupted()
        if beat.lost:
            raise ClaimLost()
        segments.append(seg)
        if time.monotonic() - reported >= PROGRESS_EVERY_S:
            reported = time.monotonic()
            done = min(seg.end / seconds, 0.99) if seconds > 0 else 0.0
            if not _touch(ctx.sessions, job_id, attempt, progress=round(done, 4)):
                raise ClaimLost()
    if ctx.stopping.is_set():
        raise Interrupted()
    return segments


def store_transcript(
    db: Session, keys: Keyring, job: TranscriptionJob, segments: Sequence[Segment]
) -> None:
    """Replace the job's segments (idempotent: keyed by job and position) and mark it done.

    Each segment goes into the group's memory; the memories of replaced segments are removed.
    """
    replaced = db.scalars(select(TranscriptSegment.id).where(TranscriptSegment.job_id == job.id))
    for segment_id in replaced.all():
        memory.enqueue(db, job.group_id, "segment", segment_id, later=True)
    db.execute(delete(TranscriptSegment).where(TranscriptSegment.job_id == job.id))
    now = utcnow()
    for position, seg in enumerate(segments):
        row = TranscriptSegment(
            id=new_id(),
            job_id=job.id,
            session_id=job.session_id,
            phase=job.phase,
            position=position,
            start_s=round(seg.start, 3),
            end_s=round(seg.end, 3),
            edited=False,
            created_at=now,
            updated_at=now,
        )
        keys.seal(job.group_id, row, "text", seg.text)
        db.add(row)
        memory.enqueue(db, job.group_id, "segment", row.id, later=True)
    job.status = JobStatus.done
    job.progress = 1.0
    job.error = None
    job.finished_at = now
    job.heartbeat_at = now


def _finish(
    ctx: JobContext, job_id: str, attempt: int, segments: list[Segment], keep: bool
) -> bool:
    with ctx.sessions() as db, db.begin():
        job = db.scalar(
            select(TranscriptionJob)
            .where(*ours(job_id, attempt))  # type: ignore[arg-type]
            .with_for_update()
        )
        if job is None:
            return False
        store_transcript(db, Keyring(db, ctx.master), job, segments)
        job.audio_kept = keep
        audit.record(db, None, job.group_id, "transcript.store", "transcription_job", job.id)
    return True


def _fail(
    factory: sessionmaker[Session], job_id: str, attempt: int, reason: str, keep: bool
) -> bool:
    with factory() as db, db.begin():
        result = db.execute(
            update(TranscriptionJob)
            .where(*ours(job_id, attempt))  # type: ignore[arg-type]
            .values(
                status=JobStatus.failed,
                error=reason[:300],
                finished_at=utcnow(),
                audio_kept=keep,
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _requeue(factory: sessionmaker[Session], job_id: str, attempt: int) -> None:
    with factory() as db, db.begin():
        db.execute(
            update(TranscriptionJob)
            .where(*ours(job_id, attempt))  # type: ignore[arg-type]
            .values(status=JobStatus.queued, heartbeat_at=None, progress=0.0)
        )


# --- recovery -------------------------------------------------------------------------------


def recover(ctx: JobContext) -> int:
    """Queue again the jobs whose worker died; fail those that died too often; sweep
    leftover audio. Returns how many jobs are queued."""
    stale = utcnow() - timedelta(seconds=ctx.settings.speech.lease_s)
    dropped: list[Path] = []
    with ctx.sessions() as db, db.begin():
        abandoned = db.scalars(
            select(TranscriptionJob).where(
                TranscriptionJob.status == JobStatus.running,
                (TranscriptionJob.heartbeat_at.is_(None)) | (TranscriptionJob.heartbeat_at < stale),
            )
        ).all()
        for job in abandoned:
            if job.kind == JobKind.live:
                _close_live(db, job)  # its audio was in the dead process: keep what was stored
            elif job.attempts >= MAX_ATTEMPTS:
                job.status = JobStatus.failed
                job.finished_at = utcnow()
                job.error = (
                    f"The transcription stopped {job.attempts} times before the end (the worker "
                    "was killed or ran out of memory); try a shorter recording."
                )
                group = db.get(Group, job.group_id)
                if group is not None and not group.keep_audio:
                    job.audio_kept = False
                    dropped.append(audio.audio_path(ctx.settings.data_dir, job.group_id, job.id))
            else:
                log.warning(
                    "Transcription job %s was abandoned by its worker: queued again", job.id
                )
                job.status = JobStatus.queued
                job.heartbeat_at = None
                job.progress = 0.0
        queued = db.scalar(select(func.count()).where(TranscriptionJob.status == JobStatus.queued))
    for path in dropped:
        path.unlink(missing_ok=True)
    _sweep_orphans(ctx)
    return int(queued or 0)


def _close_live(db: Session, job: TranscriptionJob) -> None:
    stored = db.scalar(select(func.count()).where(TranscriptSegment.job_id == job.id))
    log.warning("Live transcription job %s lost its connection's process: closed", job.id)
    job.status = JobStatus.done if stored else JobStatus.failed
    job.finished_at = utcnow()
    job.error = None if stored else "The live connection was lost before any speech was heard."
    job.provisional_sealed = job.provisional_at = None


def _sweep_orphans(ctx: JobContext) -> None:
    """Delete audio files that no waiting or kept job accounts for (old enough to not be an
    upload still in its request)."""
    root = ctx.settings.data_dir / "audio"
    if not root.is_dir():
        return
    cutoff = time.time() - ORPHAN_AGE_S
    # An upload whose process was killed while it arrived leaves its partial (sealed) file; one
    # still arriving is being written to, so its time is recent.
    for partial in root.glob(f"*/.*{audio.PARTIAL_SUFFIX}"):
        try:
            if partial.stat().st_mtime < cutoff:
                partial.unlink()
        except FileNotFoundError:  # committed or discarded meanwhile
            continue
    files = [p for p in root.glob("*/*.sealed") if p.stat().st_mtime < cutoff]
    if not files:
        return
    with ctx.sessions() as db:
        rows = db.execute(
            select(TranscriptionJob.id, TranscriptionJob.status, Group.keep_audio)
            .join(Group, Group.id == TranscriptionJob.group_id)
            .where(TranscriptionJob.id.in_([p.stem for p in files]))
        ).all()
    known = {job_id: (status, keep) for job_id, status, keep in rows}
    for path in files:
        status, keep = known.get(path.stem, (None, False))
        if status is None or (status in (JobStatus.done, JobStatus.failed) and not keep):
            path.unlink(missing_ok=True)
