"""The speech API's shapes: job states and kinds, jobs, segments, the transcript, the queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from companion.method.phases import Phase
from companion.text import LongText


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class JobKind(StrEnum):
    """How a job's audio came: a recording for the workers, or a live connection that
    transcribes it as it is said (no worker, no queue)."""

    upload = "upload"
    live = "live"


class JobView(BaseModel):
    id: str
    group_id: str
    session_id: str
    phase: Phase
    status: JobStatus
    progress: float = Field(description="Fraction of the recording transcribed, 0 to 1.")
    percent: int = Field(description="The same, in whole percent.")
    eta_seconds: float | None = Field(
        description="Estimated seconds until the transcript is stored; null when done or failed."
    )
    queue_position: int | None = Field(
        description="Jobs (of any group) the worker takes before this one; null unless queued."
    )
    audio_seconds: float
    audio_format: str
    audio_kept: bool = Field(description="The sealed recording is kept (the group opted in).")
    segments: int = Field(description="Segments stored (once done).")
    error: str | None = Field(description="Why the job failed, in words.")
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SegmentView(BaseModel):
    id: str
    job_id: str
    phase: Phase
    index: int = Field(description="Position in its recording.")
    start: float = Field(description="Seconds from the start of the recording.")
    end: float
    text: str
    speaker: str | None = Field(description="Speaker label when known.")
    edited: bool
    updated_at: datetime


class ProvisionalView(BaseModel):
    job_id: str
    phase: Phase
    speaker: str | None = Field(description="The participant who streams it.")
    text: str = Field(description="What was heard since the last final segment, not final yet.")
    updated_at: datetime


class TranscriptView(BaseModel):
    session_id: str
    phase: Phase | None
    segments: list[SegmentView]
    pending_jobs: int = Field(description="Recordings still queued or being transcribed.")
    provisional: list[ProvisionalView] = Field(
        default_factory=list,
        description="Each live stream's provisional text, replaced as it becomes final.",
    )


class SegmentEdit(BaseModel):
    text: LongText


class QueuedJob(BaseModel):
    id: str
    session_id: str
    phase: Phase
    status: JobStatus
    live: bool = Field(description="A live connection (transcribed as it is said, not queued).")
    position: int | None = Field(
        description="Jobs (of any group) the workers take before this one; null unless queued."
    )
    audio_seconds: float
    created_at: datetime


class GroupQueueView(BaseModel):
    queued: int = Field(description="This group's recordings waiting for a worker.")
    running: int = Field(description="This group's recordings being transcribed.")
    live: int = Field(description="This group's live connections.")
    queued_all: int = Field(description="Recordings waiting, all groups together.")
    running_all: int = Field(description="Recordings being transcribed, all groups together.")
    workers: int = Field(description="Worker threads per consumer.")
    jobs: list[QueuedJob] = Field(description="This group's unfinished jobs, next first.")


class QueueDepthView(BaseModel):
    queued: int
    running: int = Field(description="Uploaded recordings being transcribed.")
    live: int = Field(description="Live connections open.")
    done: int
    failed: int
    oldest_queued_s: float | None = Field(description="Age of the oldest waiting recording.")
    messages: int = Field(description="Wake-up messages in the queue (huey).")
    workers: int
