"""Live mode: one participant's audio of a running phase, transcribed while it arrives.

A connection is a `live` transcription job (`audio_format` `live/pcm16` or `live/webm`, by
the participant) that is `running` from its start: no worker claims it, a heartbeat thread
keeps it alive, and each pass stores the segments it made final at once, sealed, with the
participant's name as the speaker, in the same table as uploads (so the transcript,
corrections and the assistance see them while the phase runs). The end of the stream, or a
dropped connection, transcribes the rest and marks the job `done`; if the process dies
instead, `jobs.recover` closes the job and keeps what was stored.

Provisional text. A word becomes final a window to a hold after it was said (20 s then 4 s by
default); meanwhile, every DRAFT_EVERY_S of new audio, a draft pass transcribes the audio not
final yet (at most a window of it) with greedy decoding over the audio's own length
(`WhisperTranscriber(greedy=True)`) on a model of its own with DRAFT_THREADS threads, and
stores its text on the job, sealed with the group's key (`provisional_sealed`,
`provisional_at`), so every page of the room reads it from the database (the transcript's
`provisional`), whichever process serves it. Drafts run alongside the passes: a pass takes
seconds (beam search over a whole window), and what is said meanwhile would otherwise wait
for it. A draft that a pass made stale while it ran (its start became final) keeps only what
follows the pass's last final words, or is dropped if they are not in it. The text is
cleared when segments become final (they replace it; a draft of what is left follows at
once) and when the job ends (the end's pass does not wait for a draft under way). Drafts are
skipped when the machine or the stream is behind: one draft at a time in the process, none
while more than one pass runs in it (the final text comes first), the next draft waits for
at least DRAFT_DUTY times the wall time the last one took, and none runs while the audio
arrives faster than it is said (a backlog, which the passes take soon anyway). An executor
that offers no draft (a stand-in without a `draft` attribute) makes no provisional text.

The audio is written to disk only when the group keeps audio (the setting uploads honour,
read when the connection opens and again at its end): the decoded samples are then held in
memory as PCM16 (about 115 MB an hour) and, when the stream ends or the dropped connection is
finalised, written once as a 16 kHz mono WAV sealed with the group's key, where and as an
upload is kept (`audio.audio_path`, `audio.seal_to`), so the same deletions cover it; the job
says `audio_kept`. Otherwise nothing of the audio touches the disk.

Every method but `feed` blocks (database, model): call them from a thread pool.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
import wave
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.service import user_name
from companion.audit import service as audit
from companion.errors import DomainError
from companion.method.phases import Phase
from companion.sessions.service import require_running
from companion.speech import audio, jobs
from companion.speech.schemas import JobKind, JobStatus
from companion.speech.stitch import Draft, Stitcher
from companion.speech.stream import RATE, Decoder, StreamBroken
from companion.speech.transcriber import (
    DRAFT_THREADS,
    ConfiguredWhisper,
    Segment,
    Transcriber,
    WhisperTranscriber,
)
from companion.store import outbox as memory
from companion.store.keyring import Keyring
from companion.store.models import (
    CodevSession,
    Group,
    TranscriptionJob,
    TranscriptSegment,
    User,
    new_id,
    utcnow,
)

log = logging.getLogger(__name__)

ATTEMPT = 1  # a live job is claimed once, by its connection
DRAFT_EVERY_S = 2.0  # new audio that calls for a new draft
DRAFT_DUTY = 1.0  # ...and at least this many times the wall time the last draft took
MIN_DRAFT_S = 1.0  # less audio not final than this is not worth a draft
BACKLOG_S = 1.5  # audio this far ahead of the pace it is said: no draft
ARRIVALS_S = 10.0  # the frames of this many last seconds tell the pace


class _Finals:
    """How many passes run in this process: drafts give way when more than one does (the
    passes make the text final; a draft only shows it early). Scheduling only: nothing stored
    depends on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1


FINALS = _Finals()
DRAFTING = threading.Lock()  # one draft at a time in the process


def drafter(transcriber: Transcriber) -> Transcriber | None:
    """The executor of the draft passes for the passes' one: greedy Whisper on a model of its
    own for Whisper, a stand-in's own `draft` when it has one, else none (no provisional
    text)."""
    if isinstance(transcriber, WhisperTranscriber):
        spec = replace(transcriber.spec, cpu_threads=DRAFT_THREADS)
        return WhisperTranscriber(spec, greedy=True)
    if isinstance(transcriber, ConfiguredWhisper):
        return ConfiguredWhisper(transcriber.settings, greedy=True, threads=DRAFT_THREADS)
    draft = getattr(transcriber, "draft", None)
    return draft if draft is not None and hasattr(draft, "transcribe") else None


class TooLong(DomainError):
    status = 413


class Lost(Exception):
    """The job was closed under the connection (its heartbeat went stale)."""


def open_job(
    db: Session,
    keys: Keyring,
    *,
    actor: User,
    group: Group,
    session: CodevSession,
    phase: Phase,
    audio_format: str,
) -> tuple[TranscriptionJob, str]:
    """The live job of one connection, and its speaker label (the participant's name)."""
    require_running(session, phase)
    now = utcnow()
    job = TranscriptionJob(
        id=new_id(),
        group_id=group.id,
        session_id=session.id,
        phase=phase,
        kind=JobKind.live,
        uploaded_by=actor.id,
        status=JobStatus.running,
        progress=0.0,
        audio_seconds=0.0,
        audio_format=audio_format,
        audio_kept=False,
        attempts=ATTEMPT,
        created_at=now,
        started_at=now,
        heartbeat_at=now,
    )
    db.add(job)
    db.flush()
    audit.record(db, actor.id, group.id, "recording.live", "transcription_job", job.id)
    return job, user_name(keys, actor)


@dataclass
class Final:
    """A segment as it is pushed to the connection."""

    id: str
    index: int
    start: float
    end: float
    text: str
    speaker: str


@dataclass
class LiveRecording:
    ctx: jobs.JobContext
    job_id: str
    group_id: str
    session_id: str
    phase: Phase
    speaker: str
    decoder: Decoder
    stitcher: Stitcher
    max_seconds: float
    keep: bool = False  # the group keeps audio: the samples are held, sealed at the end
    draft: Transcriber | None = None  # the draft passes' executor; None: no provisional text
    stored: int = 0
    closed: bool = False
    provisional: str = ""  # the provisional text stored on the job now
    drafts: int = 0  # draft passes run
    _audio: bytearray = field(default_factory=bytearray, repr=False)  # PCM16, when kept
    _beat: jobs.Heartbeat | None = field(default=None, repr=False)
    _busy: threading.Lock = field(default_factory=threading.Lock, repr=False)  # passes
    _drafting: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _text: threading.Lock = field(default_factory=threading.Lock, repr=False)  # provisional
    _drafted_to: float = field(default=float("-inf"), repr=False)  # heard at the last draft
    _draft_took: float = field(default=0.0, repr=False)  # wall seconds of the last draft
    _arrivals: deque[tuple[float, float]] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        self._beat = jobs.Heartbeat(self.ctx, self.job_id, ATTEMPT).__enter__()

    # --- on the event loop: cheap -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Decode a frame (BadChunk: refused, the stream goes on; StreamBroken: it cannot)."""
        if self._beat is not None and self._beat.lost:
            raise Lost()
        limit = self.max_seconds - self.stitcher.heard
        if self.decoder.format.endswith("pcm16") and len(data) / 2 / RATE > limit:
            raise TooLong(self._too_long())
        samples = self.decoder.feed(data)
        if samples.size / RATE > limit:
            raise TooLong(self._too_long())
        self._add(samples)
        if samples.size:
            now = time.monotonic()
            self._arrivals.append((now, now - self.stitcher.heard))
            while now - self._arrivals[0][0] > ARRIVALS_S and len(self._arrivals) > 1:
                self._arrivals.popleft()

    def _add(self, samples: np.ndarray) -> None:
        self.stitcher.add(samples)
        if self.keep and samples.size:
            self._audio += (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()

    def _too_long(self) -> str:
        return (
            f"Live audio is limited to {self.max_seconds:.0f} s per connection "
            "(COMPANION_LIVE_MAX_SECONDS); what came before is transcribed."
        )

    def ready(self) -> bool:
        return not self.closed and self.stitcher.ready()

    def ahead(self) -> float:
        """Seconds of audio received ahead of the pace it is said, over the last frames."""
        if not self._arrivals:
            return 0.0
        return max(lag for _, lag in self._arrivals) - self._arrivals[-1][1]

    def draft_due(self) -> bool:
        """A draft pass is worth running now (see the module's docstring)."""
        if self.draft is None or self.closed or self._drafting.locked():
            return False
        if FINALS.running > 1 or DRAFTING.locked():
            return False
        if self.stitcher.pending_s < MIN_DRAFT_S:
            return False
        fresh = self.stitcher.heard - self._drafted_to
        return fresh >= max(DRAFT_EVERY_S, DRAFT_DUTY * self._draft_took) and (
            self.ahead() <= BACKLOG_S
        )

    # --- in a thread ------------------------------------------------------------------------

    def phase_running(self) -> str | None:
        """None while the phase runs; else why the stream must stop (Lost: the job was
        closed under this connection)."""
        with self.ctx.sessions() as db:
            if db.scalar(select(TranscriptionJob.id).where(*jobs.ours(self.job_id, ATTEMPT))):  # type: ignore[arg-type]
                session = db.get(CodevSession, self.session_id)
            else:
                raise Lost()
            if session is None:
                return "The session was deleted."
            try:
                require_running(session, self.phase)
            except DomainError as exc:
                return str(exc)
        return None

    def advance(self) -> list[Final]:
        """One pass over what waits, its final segments stored."""
        with self._busy:
            if self.closed:
                return []
            started = time.monotonic()
            with FINALS.one():
                segments = self.stitcher.step()
            log.debug(
                "Live job %s: a pass made %d segments final in %.2f s",
                self.job_id,
                len(segments),
                time.monotonic() - started,
            )
            return self._store(segments, done=False)

    def make_draft(self) -> Draft | None:
        """One draft pass, its text stored on the job, sealed (None: closed, no executor, no
        draft slot free, stale, or the same text as the one stored). May run while a pass
        does."""
        with self._drafting:
            if self.closed or self.draft is None or not DRAFTING.acquire(blocking=False):
                return None
            try:
                started = time.monotonic()
                draft = self.stitcher.draft(self.draft)
                self._draft_took = time.monotonic() - started
            finally:
                DRAFTING.release()
            self.drafts += 1
            log.debug(
                "Live job %s: a draft of %.1f-%.1f s took %.2f s",
                self.job_id,
                draft.start,
                draft.end,
                self._draft_took,
            )
            with self._text:
                current = None if self.closed else self.stitcher.rebase(draft)
                if current is None:
                    log.debug("Live job %s: the draft was stale", self.job_id)
                    return None  # a pass made part of it final meanwhile: a new draft follows
                draft = current
                self._drafted_to = draft.end
                if draft.text == self.provisional:
                    return None
                with self.ctx.sessions() as db, db.begin():
                    job = self._locked_job(db)
                    if draft.text:
                        keys = Keyring(db, self.ctx.master)
                        keys.seal(self.group_id, job, "provisional", draft.text)
                        job.provisional_at = utcnow()
                    else:
                        job.provisional_sealed = job.provisional_at = None
                self.provisional = draft.text
            return draft

    def finish(self) -> list[Final]:
        """The rest of the stream transcribed and stored; the job ends. Idempotent; waits for
        a pass under way."""
        with self._busy:
            if self.closed:
                return []
            return self._finish()

    def _finish(self) -> list[Final]:
        try:
            with contextlib.suppress(StreamBroken):  # cut mid-frame: what decoded before counts
                self._add(self.decoder.close())
            with FINALS.one():
                segments = self.stitcher.step(final=True)
            return self._store(segments, done=True)
        finally:
            self.closed = True
            if self._beat is not None:
                self._beat.__exit__(None, None, None)

    def _store(self, segments: list[Segment], done: bool) -> list[Final]:
        written: list[Path] = []
        try:
            with self._text:  # a draft's text is written before or after, never between
                return self._store_in(segments, done, written)
        except BaseException:
            for path in written:  # the job does not say it is kept: no file either
                path.unlink(missing_ok=True)
            raise

    def _locked_job(self, db: Session) -> TranscriptionJob:
        """This connection's job, its row locked; Lost if it was closed under the connection."""
        job: TranscriptionJob | None = db.scalar(
            select(TranscriptionJob)
            .where(*jobs.ours(self.job_id, ATTEMPT))  # type: ignore[arg-type]
            .with_for_update()
        )
        if job is None:
            raise Lost()
        return job

    def _store_in(self, segments: list[Segment], done: bool, written: list[Path]) -> list[Final]:
        out: list[Final] = []
        with self.ctx.sessions() as db, db.begin():
            job = self._locked_job(db)
            keys = Keyring(db, self.ctx.master)
            now = utcnow()
            for seg in segments:
                row = TranscriptSegment(
                    id=new_id(),
                    job_id=job.id,
                    session_id=job.session_id,
                    phase=job.phase,
                    position=self.stored,
                    start_s=round(seg.start, 3),
                    end_s=round(seg.end, 3),
                    edited=False,
                    created_at=now,
                    updated_at=now,
                )
                keys.seal(self.group_id, row, "text", seg.text)
                keys.seal(self.group_id, row, "speaker", self.speaker)
                db.add(row)
                memory.enqueue(db, self.group_id, "segment", row.id, later=True)
                out.append(
                    Final(row.id, self.stored, row.start_s, row.end_s, seg.text, self.speaker)
                )
                self.stored += 1
            if segments or done:  # what was provisional is final now, or will never be
                job.provisional_sealed = job.provisional_at = None
                self.provisional = ""
                self._drafted_to = float("-inf")  # a draft of what is left, at once
            heard = self.stitcher.heard
            job.audio_seconds = round(heard, 3)
            job.progress = round(min(self.stitcher.offset / heard, 1.0), 4) if heard else 0.0
            job.heartbeat_at = now
            if done:
                job.finished_at = now
                job.progress = 1.0
                job.audio_kept = self._seal_audio(db, keys, job.id, written)
                if self.stored:
                    job.status = JobStatus.done
                    audit.record(
                        db, None, job.group_id, "transcript.store", "transcription_job", job.id
                    )
                else:
                    job.status = JobStatus.failed
                    job.error = "No speech was heard in the live audio."
        return out

    def _seal_audio(self, db: Session, keys: Keyring, job_id: str, written: list[Path]) -> bool:
        """The stream's audio as a WAV, sealed like a kept upload, if the group (still) keeps
        audio; whether it was written."""
        samples, self._audio = self._audio, bytearray()
        group = db.get(Group, self.group_id)
        if not self.keep or not samples or group is None or not group.keep_audio:
            return False
        data = io.BytesIO()
        with wave.open(data, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples)
        del samples
        path = audio.audio_path(self.ctx.settings.data_dir, self.group_id, job_id)
        written.append(path)
        audio.seal_to(path, data, keys.get(self.group_id), job_id)
        return True
