"""Tables. Columns ending in `_sealed` hold AES-GCM ciphertext; everything else is metadata.

Names of people and every free text are sealed; ids, roles, statuses, timestamps and due
dates stay clear because queries need them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC timestamps")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


def _group_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)


def _session_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = _id()
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # sealed with the system key
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    # Deactivated: no token or sign-in of theirs works any more (an administrator's act).
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DataKeyRow(Base):
    """A data key wrapped by the master key. scope: a group id or 'system'."""

    __tablename__ = "data_keys"
    id: Mapped[str] = _id()
    scope: Mapped[str] = mapped_column(String(64), unique=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = _created()


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[str] = _id()
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    language: Mapped[str] = mapped_column(String(2))
    policy: Mapped[str] = mapped_column(String(20))
    timeboxes: Mapped[dict[str, int]] = mapped_column(JSON)
    keep_audio: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)
    id: Mapped[str] = _id()
    group_id: Mapped[str] = _group_fk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    joined_at: Mapped[datetime] = _created()


class Cycle(Base):
    __tablename__ = "cycles"
    __table_args__ = (UniqueConstraint("group_id", "number"),)
    id: Mapped[str] = _id()
    group_id: Mapped[str] = _group_fk()
    number: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _created()
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CodevSession(Base):
    """One co-development session (a 'séance'); `completed`/`running` mirror PhaseState."""

    __tablename__ = "sessions"
    id: Mapped[str] = _id()
    group_id: Mapped[str] = _group_fk()
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    facilitator_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    completed: Mapped[int] = mapped_column(Integer, default=0)
    running: Mapped[str | None] = mapped_column(String(20))
    override_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Participant(Base):
    __tablename__ = "session_participants"
    __table_args__ = (UniqueConstraint("session_id", "user_id"),)
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # client | consultant | facilitator


class PhaseRun(Base):
    __tablename__ = "phase_runs"
    __table_args__ = (UniqueConstraint("session_id", "phase"),)
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    phase: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    phase: Mapped[str] = mapped_column(String(20))
    author_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[str] = _id()
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    text_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[datetime] = _created()


class Action(Base):
    __tablename__ = "actions"
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    objective_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    first_step_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    indicator_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    resources_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # optional
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class ActionProgress(Base):
    __tablename__ = "action_progress"
    id: Mapped[str] = _id()
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    note_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    noted_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = _created()


class Learning(Base):
    __tablename__ = "learnings"
    __table_args__ = (UniqueConstraint("session_id", "user_id"),)
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    text_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    rating: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()


class AuditEvent(Base):
    """Who did what on which group, when. Never content."""

    __tablename__ = "audit_events"
    id: Mapped[str] = _id()
    at: Mapped[datetime] = _created()
    actor_id: Mapped[str | None] = mapped_column(String(36), index=True)
    group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(30))
    target_id: Mapped[str | None] = mapped_column(String(36))


class ModelCall(Base):
    """One request to a language model, allowed or refused, and how it ended. Never content."""

    __tablename__ = "model_calls"
    id: Mapped[str] = _id()
    at: Mapped[datetime] = _created()
    group_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    endpoint_host: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(200))
    policy: Mapped[str] = mapped_column(String(20))
    decision: Mapped[str] = mapped_column(String(10))  # allowed | refused
    outcome: Mapped[str] = mapped_column(String(10))  # ok | error | cancelled
    error: Mapped[str | None] = mapped_column(String(40))  # a kind (unavailable, ...), no text
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)


class MemoryOutbox(Base):
    """Content waiting to be (re)indexed into its group's memory. Ids and kinds only, no content.

    A row is written in the same transaction as the content; indexing after the commit deletes
    it, and a failure leaves it here with the kind of error for a later retry.
    """

    __tablename__ = "memory_outbox"
    id: Mapped[str] = _id()
    group_id: Mapped[str] = _group_fk()
    kind: Mapped[str] = mapped_column(String(20))  # note | contract | action | learning
    source_id: Mapped[str] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(60))  # an exception kind, no text
    created_at: Mapped[datetime] = _created()
    tried_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TranscriptionJob(Base):
    """One recording of a phase on its way to a transcript. Ids, states and numbers only.

    `attempts` counts the claims by a worker; `heartbeat_at` is refreshed while one works, so
    a job whose worker died (no heartbeat for the lease) is queued again. `kind` says whether
    a worker runs it (`upload`) or a live connection does (`live`, companion.speech.live).
    """

    __tablename__ = "transcription_jobs"
    id: Mapped[str] = _id()
    group_id: Mapped[str] = _group_fk()
    session_id: Mapped[str] = _session_fk()
    phase: Mapped[str] = mapped_column(String(20))
    # companion.speech.schemas.JobKind; the store sits below the speech package.
    kind: Mapped[str] = mapped_column(String(10), default="upload", server_default="upload")
    uploaded_by: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(10), index=True)  # queued|running|done|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # fraction of the audio done
    audio_seconds: Mapped[float] = mapped_column(Float)
    audio_format: Mapped[str] = mapped_column(String(60))  # container/codec, e.g. ogg/opus
    audio_kept: Mapped[bool] = mapped_column(Boolean, default=False)  # sealed file still there
    error: Mapped[str | None] = mapped_column(String(300))  # a readable reason, never content
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A running live job's provisional text (the audio not final yet, by a cheaper pass),
    # sealed; cleared when its text becomes final or the job ends.
    provisional_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    provisional_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TranscriptSegment(Base):
    """A stretch of a recording's transcript; times in seconds from the recording's start."""

    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("job_id", "position"),)
    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(
        ForeignKey("transcription_jobs.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = _session_fk()
    phase: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer)  # the segment's index in its recording
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    speaker_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    text_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    edited_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Theme(Base):
    """A group of ideas of one consultation. Numbered in order of appearance; a theme keeps its
    id and number as ideas arrive. `label_basis` names the ideas its label was made from (ids
    only), so a label is remade only when the theme changed."""

    __tablename__ = "themes"
    __table_args__ = (UniqueConstraint("session_id", "number"),)
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    number: Mapped[int] = mapped_column(Integer)
    label_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    label_source: Mapped[str | None] = mapped_column(String(10))  # model | words | edited
    label_basis: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()


class Idea(Base):
    """One idea of a consultation: a stretch [start, end) of a note or transcript segment, never
    reworded, with its sealed embedding (vectors of confidential text are content too)."""

    __tablename__ = "ideas"
    __table_args__ = (
        UniqueConstraint("source_id", "position"),
        # What the ideas view's key reads at every reload, from the index alone (0013).
        Index("ix_ideas_view_key", "session_id", "id", "theme_id", "duplicate_of", "author_id"),
    )
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    source_kind: Mapped[str] = mapped_column(String(10))  # note | segment
    source_id: Mapped[str] = mapped_column(String(36), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the idea's order within its source
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[str | None] = mapped_column(String(36))
    theme_id: Mapped[str] = mapped_column(ForeignKey("themes.id", ondelete="CASCADE"), index=True)
    duplicate_of: Mapped[str | None] = mapped_column(String(36))
    text_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    vector_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


class Synthesis(Base):
    """The client's draft synthesis of a session, kept current during the consultation.

    `basis` fingerprints what it was made from (idea and theme ids, the contract's id), so a
    stale draft is recognised without opening anything."""

    __tablename__ = "syntheses"
    id: Mapped[str] = _id()
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(10))  # ready | failed
    basis: Mapped[str] = mapped_column(String(64))
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(String(300))  # a readable reason, never content
    prompt_version: Mapped[str | None] = mapped_column(String(20))
    seconds: Mapped[float | None] = mapped_column(Float)  # how long the model part took
    updated_at: Mapped[datetime] = _created()


class ClarityReview(Base):
    """The model's review of one clarifying question that no cue decided (phase 2).

    Found by `fingerprint`, an HMAC of the normalised question under the group's key (never the
    text); a corrected transcript gives a new text, so a new review. `status` done: the kind
    and the reason are sealed in `review_sealed` (JSON); failed: `error` says why (never
    content), and the question is tried again after `assist_retry_s`."""

    __tablename__ = "clarity_reviews"
    __table_args__ = (UniqueConstraint("session_id", "fingerprint"),)
    id: Mapped[str] = _id()
    session_id: Mapped[str] = _session_fk()
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10))  # done | failed
    review_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(String(300))
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = _created()


class RegulationSummary(Base):
    """A session's regulation points (phase 6), for the next session to open with.

    The points are sealed as JSON citing learnings by their author's id; `basis` fingerprints
    the learnings they were made from, so a summary older than the learnings is recognised
    without opening anything. `edited` once a facilitator rewrote the points."""

    __tablename__ = "regulation_summaries"
    id: Mapped[str] = _id()
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    basis: Mapped[str] = mapped_column(String(64))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    edited_by: Mapped[str | None] = mapped_column(String(36))
    prompt_version: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = _created()


class Invitation(Base):
    """A one-time sign-in link. `user_id` is null for the setup link that creates the first
    administrator. Only a hash of the link's secret is stored."""

    __tablename__ = "invitations"
    id: Mapped[str] = _id()
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A browser's sign-in, behind an HttpOnly cookie; `csrf` is sent back by the pages with
    every state-changing request (it is not a secret from the database, the cookie is)."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    seen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A POST sent with an `Idempotency-Key` (api/idempotency.py): claimed before it runs, then
    its answer kept for a day, so a retry gets the first answer instead of a second creation.
    The id is a digest of the caller's credential, the path and the key (none kept in clear);
    the answer is sealed with the group's key (the system's outside a group) and goes with
    the group."""

    __tablename__ = "idempotency_keys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    request_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the body
    status_code: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    response_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
