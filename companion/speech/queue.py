"""The durable transcription queue: huey, embedded (SQLite under the data dir) or on Redis.

Messages only wake workers; the jobs themselves live in the database (companion.speech.jobs),
so a lost or duplicated message costs nothing: a worker takes the next job fairly, and
`recover` (at start and every minute) queues again what a dead worker left behind.

- In the API process, `TranscriptionService.start()` runs a consumer in threads (no external
  process needed), unless COMPANION_TRANSCRIPTION_WORKER=false.
- `companion worker` runs the same consumer on its own, for separate transcription machines
  (with COMPANION_REDIS_URL, or the same data dir for the embedded queue).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from huey import RedisHuey, SqliteHuey, crontab  # type: ignore[import-untyped]
from huey.consumer import Consumer, Worker  # type: ignore[import-untyped]
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.speech import jobs
from companion.speech.priority import lower_this_thread
from companion.speech.schemas import JobStatus
from companion.speech.transcriber import ConfiguredWhisper, Transcriber
from companion.store.models import TranscriptionJob
from companion.vault import MasterKey

log = logging.getLogger(__name__)

QUEUE_NAME = "companion-transcription"
TASK = "companion.transcribe"
RECOVER = "companion.recover"


def make_huey(settings: Settings) -> Any:
    if settings.speech.redis_url:
        return RedisHuey(QUEUE_NAME, url=settings.speech.redis_url, results=False, utc=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "transcription-queue.db"
    return SqliteHuey(QUEUE_NAME, filename=str(path), results=False, utc=True)


class _Worker(Worker):  # type: ignore[misc]
    """huey's worker, woken at once when this process enqueues (no polling delay)."""

    delay: float
    default_delay: float
    max_delay: float
    backoff: float

    def __init__(self, *args: Any, nudge: threading.Event, **kwargs: Any) -> None:
        self.nudge = nudge
        super().__init__(*args, **kwargs)

    def initialize(self) -> None:
        # In the worker's own thread, before any job: behind the requests (speech/priority.py).
        lower_this_thread()
        super().initialize()

    def sleep(self) -> None:
        self.delay = min(self.delay, self.max_delay)
        if self.nudge.wait(self.delay):
            self.nudge.clear()
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


class _Consumer(Consumer):  # type: ignore[misc]
    def __init__(self, huey: Any, service: TranscriptionService, embedded: bool, **kw: Any) -> None:
        self.service = service
        self.embedded = embedded
        super().__init__(huey, **kw)

    def _create_worker(self) -> _Worker:
        return _Worker(
            huey=self.huey,
            stop_flag=self.stop_flag,
            default_delay=self.default_delay,
            max_delay=self.max_delay,
            backoff=self.backoff,
            max_tasks=self.max_tasks,
            nudge=self.service.nudge,
        )

    def _set_signal_handlers(self) -> None:
        if not self.embedded:  # inside the API the server owns the signals
            super()._set_signal_handlers()

    def stop(self, graceful: bool = False) -> None:
        # A job in progress goes back to the queue at its next segment instead of holding the
        # shutdown for the rest of the recording.
        self.service.ctx.stopping.set()
        self.service.nudge.set()
        super().stop(graceful=graceful)


class TranscriptionService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        master: MasterKey,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = jobs.JobContext(
            settings, sessions, master, transcriber or ConfiguredWhisper(settings)
        )
        self.nudge = threading.Event()
        self.huey = make_huey(settings)
        self._task = self.huey.task(name=TASK)(self._drain)
        self.huey.periodic_task(crontab(), name=RECOVER)(self.recover)
        self._consumer: _Consumer | None = None

    @property
    def transcriber(self) -> Transcriber:
        return self.ctx.transcriber

    @transcriber.setter
    def transcriber(self, value: Transcriber) -> None:
        self.ctx.transcriber = value

    # The task: run jobs until none is queued (or the worker stops).
    def _drain(self) -> None:
        while not self.ctx.stopping.is_set() and jobs.run_next(self.ctx) is not None:
            pass

    def wake(self) -> None:
        """Tell a worker there is work (after the job's transaction has committed)."""
        self._task()
        self.nudge.set()

    def recover(self) -> int:
        queued = jobs.recover(self.ctx)
        if queued:
            self.wake()
        return queued

    def queue_depth(self) -> dict[str, int]:
        """Jobs per status, over every group (for operators)."""
        with self.ctx.sessions() as db:
            rows = db.execute(
                select(TranscriptionJob.status, func.count()).group_by(TranscriptionJob.status)
            ).all()
        depth = {s.value: 0 for s in JobStatus}
        depth.update({status: int(count) for status, count in rows})
        depth["messages"] = int(self.huey.pending_count())
        return depth

    def _make_consumer(self, embedded: bool) -> _Consumer:
        return _Consumer(
            self.huey,
            self,
            embedded,
            workers=self.settings.speech.workers,
            worker_type="thread",
            periodic=True,
            initial_delay=0.05,
            max_delay=2.0,
            check_worker_health=True,
            shutdown_timeout=30,
        )

    def start(self) -> None:
        """Recover what a previous process left, then (by default) start workers in threads."""
        self.ctx.stopping.clear()
        try:
            self.recover()
        except Exception:  # the API still starts; the minute's recovery will try again
            log.exception("Recovering transcription jobs failed")
        if self.settings.speech.worker:
            self._consumer = self._make_consumer(embedded=True)
            self._consumer.start()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        self.ctx.stopping.set()
        try:
            with self.ctx.sessions() as db:
                left = db.scalar(
                    select(func.count()).where(TranscriptionJob.status == JobStatus.queued)
                )
            if left:
                self._task()  # for another worker now, or for this one's next start
        except Exception:
            log.warning("Could not hand queued transcription jobs over", exc_info=True)
        self.huey.storage.close()

    def run_forever(self) -> None:
        """`companion worker`: consume until SIGINT (graceful) or SIGTERM."""
        self.ctx.stopping.clear()
        self.recover()
        self._make_consumer(embedded=False).run()
