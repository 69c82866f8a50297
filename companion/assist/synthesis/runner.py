"""Keeps the ideas, themes and the draft synthesis of running consultations current.

A thread wakes every `assist_poll_s` seconds (or at once when a request pokes it) and, for
each session whose phase 4 runs or ended within the last hour: refreshes its ideas (new notes
and transcript segments; cheap), then, when the ideas changed since the stored draft, asks the
model for a new one. So the draft is ready when the phase ends, and a restarted service (or a
transcript stored by a separate worker) is caught up by the next poll: nothing depends on an
event that could be missed. A failed model run is retried after `assist_retry_s`, or as soon
as new ideas come.

It also has the model review the clarifying questions no cue decided, for each session whose
phase 2 runs or ended within the last few minutes (the last recording is transcribed after),
when a model is configured; a failed review is retried after `assist_retry_s`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from companion.assist import service as assist
from companion.assist.ideas import service as ideas
from companion.assist.synthesis import inputs, runs
from companion.assist.synthesis import service as synthesis
from companion.assist.synthesis.inputs import Inputs
from companion.config import Settings
from companion.errors import DomainError
from companion.llm.errors import ModelError
from companion.llm.gateway import LLMGateway
from companion.method.phases import Language, Phase
from companion.sessions.service import ClosedSession, require_open
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group, PhaseRun, utcnow
from companion.vault import MasterKey

log = logging.getLogger(__name__)

AFTER_PHASE = timedelta(hours=1)  # a draft may still be wanted a while after phase 4 ended
AFTER_CLARIFICATION = timedelta(minutes=10)  # its last recording is transcribed after its end


class AssistRunner:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        master: MasterKey,
        embed: Callable[[], ideas.Embed],
        llm: Callable[[], LLMGateway],
        model_configured: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.master = master
        self.embed = embed
        self.llm = llm
        self.model_configured = model_configured
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._poked: set[str] = set()
        self._poked_clarity: set[str] = set()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="assist-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop; a model call under way ends when the model server (or the
        gateway) is closed, so close those, then `join`."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float = 30) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    @property
    def running(self) -> bool:
        """Whether this runner keeps sessions' ideas up to date in the background."""
        return self._thread is not None and self._thread.is_alive()

    def poke(self, session_id: str) -> None:
        with self._guard:
            self._poked.add(session_id)
        self._wake.set()

    def poke_clarity(self, session_id: str) -> None:
        """New clarifying questions: have them reviewed at once rather than at the next poll."""
        with self._guard:
            self._poked_clarity.add(session_id)
        self._wake.set()

    def changed(self, session_id: str, phase: Phase) -> None:
        """A text of `phase` was added or corrected: refresh what depends on it at once."""
        if phase == Phase.consultation:
            self.poke(session_id)
        elif phase == Phase.clarification:
            self.poke_clarity(session_id)

    def phase_ended(self, session_id: str, phase: Phase) -> None:
        """At the end of phase 4 a draft run that started before the last ideas is given up,
        so the draft covering every idea starts now instead of after it."""
        if phase != Phase.consultation:
            return
        with self.sessions() as db:
            newest = runs.newest_text(db, session_id)
        if runs.abandon_if_stale(session_id, newest):
            log.info("Phase 4 of session %s ended: its stale draft run is given up", session_id)
        self.poke(session_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.assist.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                due = [(s, self.work) for s in self.due()]
                due += [(s, self.review_clarity) for s in self.due_clarity()]
            except Exception:
                log.exception("The assistance runner could not list the sessions to refresh")
                continue
            for session_id, job in due:
                if self._stop.is_set():
                    return
                try:
                    job(session_id)
                except Exception:  # one session's trouble must not stop the others'
                    log.exception("The assistance runner failed on session %s", session_id)

    def due(self) -> list[str]:
        with self._guard:
            poked, self._poked = self._poked, set()
        return self._with_phase(poked, Phase.consultation, AFTER_PHASE, open_only=False)

    def due_clarity(self) -> list[str]:
        """Sessions whose clarifying questions may await the model: phase 2 running or just
        ended, or poked; none while no model is configured."""
        with self._guard:
            poked, self._poked_clarity = self._poked_clarity, set()
        if not self.model_configured():
            return []
        return self._with_phase(poked, Phase.clarification, AFTER_CLARIFICATION, open_only=True)

    def _with_phase(
        self, poked: set[str], phase: Phase, after: timedelta, *, open_only: bool
    ) -> list[str]:
        """The poked sessions first, then those whose `phase` runs or ended within `after`."""
        query = (
            select(PhaseRun.session_id)
            .join(CodevSession, CodevSession.id == PhaseRun.session_id)
            .where(
                PhaseRun.phase == phase,
                or_(PhaseRun.ended_at.is_(None), PhaseRun.ended_at >= utcnow() - after),
            )
        )
        if open_only:
            query = query.where(CodevSession.closed_at.is_(None))
        with self.sessions() as db:
            running = db.scalars(query).all()
        return sorted(poked) + [s for s in running if s not in poked]

    def review_clarity(self, session_id: str) -> None:
        """Have the model review the session's questions that no cue decided and no review
        covers; those that failed lately wait for `assist_retry_s`."""
        with self.sessions() as db:
            keys = Keyring(db, self.master)
            session = db.get(CodevSession, session_id)
            if session is None:
                return
            try:
                require_open(session)
            except ClosedSession:
                return
            group = db.get(Group, session.group_id)
            assert group is not None
            retry = timedelta(seconds=self.settings.assist.retry_s)
            try:
                assist.review_clarity(
                    db, keys, self.llm, group, session, retry_after=retry, wait=False
                )
            except DomainError as exc:  # stored: the view says it, tried again later
                log.warning("Clarity review of session %s failed: %s", session_id, exc)

    def work(self, session_id: str) -> None:
        """Refresh one session's ideas, then its draft if it is stale (the model part only
        when a model is configured)."""
        with self.sessions() as db:
            keys = Keyring(db, self.master)
            session = db.get(CodevSession, session_id)
            if session is None:
                return
            group = db.get(Group, session.group_id)
            assert group is not None
            language = Language(group.language)
            ideas.bring_up_to_date(db, keys, session, language, self.embed())
            if not self.model_configured():
                return  # the draft's inputs are read only for a model to write it
            found = inputs.read(db, keys, session, language)
            if not found.ideas.ideas:
                return
            row = synthesis.stored(db, session)
            if synthesis.is_current(row, found):
                return
            if row is not None and row.basis == found.basis:  # failed on these very inputs
                retry_at = row.updated_at + timedelta(seconds=self.settings.assist.retry_s)
                if utcnow() < retry_at:
                    return
            lock = runs.compose_lock(session_id)
            if not lock.acquire(blocking=False):
                return  # a request is making it now
            try:
                self._draft(db, keys, group=group, session=session, found=found)
                db.commit()
            finally:
                lock.release()

    def _draft(
        self,
        db: Session,
        keys: Keyring,
        *,
        group: Group,
        session: CodevSession,
        found: Inputs,
    ) -> None:
        try:
            gateway = self.llm()
        except ModelError as exc:  # no server: said in the draft's status, tried again later
            synthesis.store(db, keys, session, found.basis, error=str(exc))
            return
        try:
            synthesis.make_draft(
                db,
                keys,
                gateway=gateway,
                group=group,
                session=session,
                found=found,
                embed=self.embed(),
            )
        except runs.DraftSuperseded:
            log.info("Draft synthesis of session %s given up for newer ideas", session.id)
            self.poke(session.id)
        except ModelError as exc:  # stored by make_draft
            log.warning("Draft synthesis of session %s failed: %s", session.id, exc)
