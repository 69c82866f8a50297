"""Live transcription of a running phase over a WebSocket.

The protocol (JSON text messages, audio in binary frames; their shapes and the close codes
are api/live_protocol.py):

1. The client opens `WS …/sessions/{s}/phases/{phase}/live` and sends
   `{"type": "start", "token": "cc_…", "format": "pcm16" | "webm"}` (with `"provisional":
   true` to be sent the provisional text too, see 4). A browser cannot set
   headers on a WebSocket, so the token travels in this first message (not in the URL, which
   access logs keep); a client that can send `Authorization: Bearer …` may leave it out.
   The web app sends `{"type": "start", "csrf": "<the page's CSRF token>", "format": …}`
   instead: the person is the one signed in by the handshake's session cookie, the CSRF token
   must be that browser session's, and the handshake's Origin, when sent, must be this host
   (another site's page cannot open a stream with the visitor's cookie). A token, when sent,
   wins over the cookie.
   Access is checked as for an upload (a participant of the session, the phase running).
2. The server answers `{"type": "ready", "job_id", "speaker", "format", "sample_rate"}`.
3. Binary frames: 16 kHz mono little-endian PCM16, or the chunks of a MediaRecorder
   webm/opus stream (the first one holds its header). A frame that is refused gets
   `{"type": "error", "detail"}` and the stream goes on.
4. The server pushes `{"type": "segments", "segments": [{id, index, start, end, text,
   speaker}], "heard", "final_until"}` as segments become final (times in seconds from the
   start of the connection).
   A client that asked for it in its start message also gets `{"type": "provisional",
   "text", "start", "end"}` between passes: the text of the audio not final yet (from `start`,
   where the final segments end, to `end`, what was heard), by a quicker pass, usually a few
   seconds after it was said. Each one replaces the one before; a `segments` message replaces
   it too (what it said is final now, and the next `provisional` tells the rest). The same
   text is in the transcript's `provisional`, for every page of the room.
5. `{"type": "end"}` from the client: the rest is transcribed, the server sends
   `{"type": "final", "segments": [...], "count", "heard"}` and closes (1000).

Closes: 1008 (policy violation) for a missing or unknown token, a missing or expired sign-in
cookie, a wrong CSRF token, another site's Origin, an outsider, a member who is not a
participant, an unknown group or session, and, looked at every PHASE_CHECK_S during the
stream, a person removed from the session or the group, signed out or whose token is no longer
valid (what they said before is kept); 4409 when the phase is not running or stops
running (each connection looks every PHASE_CHECK_S, audio or not, so the facilitator's end of
the phase closes it within about a second, after the rest is transcribed and stored); 1003
for a first message that is not a start, or a stream that cannot be decoded; 4413 over
COMPANION_LIVE_MAX_SECONDS; 4408 after COMPANION_LIVE_IDLE_S without a message.
What was said before a close is transcribed and kept; a dropped connection too. When the
group keeps audio, the stream's audio is kept too, sealed like an upload (see `live`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.websockets import WebSocketState

from api.deps import (
    SESSION_COOKIE,
    AppStateDep,
    Need,
    SessionAccess,
    SpeechDep,
    Unauthenticated,
    cookie_user,
    token_user,
)
from api.live_protocol import (
    AUDIO_FORMATS,
    Close,
    EndMessage,
    ErrorMessage,
    FinalMessage,
    LiveSegment,
    ProvisionalMessage,
    ReadyMessage,
    Refused,
    SegmentsMessage,
    ServerMessage,
    StartMessage,
)
from api.state import AppState
from companion.accounts import signin
from companion.config import Settings
from companion.errors import Conflict, DomainError, Forbidden, NotFound
from companion.method.phases import Phase
from companion.speech import live, stream
from companion.speech.priority import in_speech_thread
from companion.speech.queue import TranscriptionService
from companion.speech.stitch import Stitcher
from companion.store.keyring import Keyring
from companion.store.models import User

log = logging.getLogger(__name__)

router = APIRouter(tags=["transcription"])

LIVE_PATH = "/groups/{group_id}/sessions/{session_id}/phases/{phase}/live"
START_TIMEOUT_S = 10.0
PHASE_CHECK_S = 1.0  # how often a connection looks whether its phase still runs
_participant = SessionAccess(Need.participant)


@dataclass
class _Start:
    """The start message with the caller's credentials resolved."""

    token: str | None  # None: the web app's session cookie, with the page's CSRF token
    format: str
    csrf: str = ""
    cookie: str = ""
    provisional: bool = False  # the client asked for the provisional text


def _start_message(raw: Mapping[str, Any], header: str | None, cookie: str | None = None) -> _Start:
    text = raw.get("text")
    try:
        body = StartMessage.model_validate_json(text if isinstance(text, str) else "")
    except ValidationError:
        raise Refused(
            Close.unsupported,
            'Send {"type": "start", "token": "<your token>", "format": "pcm16"} first.',
        ) from None
    token = body.token or header
    if not token:
        if body.csrf is None:
            raise Refused(Close.policy, "Send your token in the start message.")
        if not cookie:
            raise Refused(
                Close.policy, "You are not signed in: open your invitation link, then retry."
            )
    fmt = body.format
    if not isinstance(fmt, str) or fmt not in AUDIO_FORMATS:
        raise Refused(Close.unsupported, f"Unknown audio format {fmt!r}; use 'pcm16' or 'webm'.")
    if not token:
        return _Start(None, fmt, str(body.csrf), str(cookie), body.provisional)
    return _Start(token, fmt, provisional=body.provisional)


def _default_port(scheme: str) -> str:
    return {"http": "80", "https": "443", "ws": "80", "wss": "443"}.get(scheme, "")


def _host(netloc: str, scheme: str) -> str:
    """`host[:port]` in lower case, without the scheme's default port."""
    netloc = netloc.strip().lower()
    port = _default_port(scheme)
    return netloc.removesuffix(f":{port}") if port else netloc


def _same_origin(origin: str | None, host: str | None, settings: Settings) -> None:
    """A browser's stream must come from this service's own pages: the handshake's Origin
    (when sent) is the host it asked for, or the public address the service is behind."""
    if origin is None:
        return  # not a browser: it cannot carry a visitor's cookie without them
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Refused(Close.policy, f"Streams are refused from the origin {origin!r}.")
    allowed: set[str] = set()
    if host:
        allowed.add(_host(host, parts.scheme))
    if settings.public_url:
        public = urlsplit(settings.public_url)
        allowed.add(_host(public.netloc, public.scheme))
    if _host(parts.netloc, parts.scheme) not in allowed:
        raise Refused(
            Close.policy,
            f"Streams are refused from another site ({origin}): open the room's page here.",
        )


def _user(db: Session, start: _Start, settings: Settings) -> User:
    """The caller: by token (the API) or by the browser's session cookie and CSRF token, with
    the same checks as an HTTP request."""
    try:
        if start.token is not None:
            return token_user(db, start.token, settings.token_lifetime)
        row = signin.session_of(db, start.cookie, timedelta(days=settings.web_session_days))
        return cookie_user(db, row, start.csrf, change=True)
    except (Unauthenticated, Forbidden) as exc:
        raise Refused(Close.policy, str(exc)) from exc


def _open(
    state: AppState,
    speech: TranscriptionService,
    *,
    start: _Start,
    group_id: str,
    session_id: str,
    phase: Phase,
) -> live.LiveRecording:
    """Authenticate, check access exactly as an upload does, and open the live job."""
    settings = state.settings
    with state.sessions() as db, db.begin():
        user = _user(db, start, settings)
        try:
            ctx = _participant(group_id, session_id, db, user)
            keys = Keyring(db, state.master)
            decoder = stream.decoder(start.format)
            job, speaker = live.open_job(
                db,
                keys,
                actor=user,
                group=ctx.group,
                session=ctx.session,
                phase=phase,
                audio_format=decoder.format,
            )
        except (NotFound, Forbidden, Unauthenticated) as exc:
            raise Refused(Close.policy, str(exc)) from exc
        except Conflict as exc:
            raise Refused(Close.conflict, str(exc)) from exc
        language, keep = ctx.group.language, ctx.group.keep_audio
    stitcher = Stitcher(speech.transcriber, language, settings.live.window_s, settings.live.hold_s)
    return live.LiveRecording(
        ctx=speech.ctx,
        job_id=job.id,
        group_id=group_id,
        session_id=session_id,
        phase=phase,
        speaker=speaker,
        decoder=decoder,
        stitcher=stitcher,
        max_seconds=settings.live.max_seconds,
        keep=keep,
        draft=live.drafter(speech.transcriber),
    )


def _still_allowed(state: AppState, start: _Start, group_id: str, session_id: str) -> str | None:
    """None while the caller may still stream here (still signed in, still a participant of
    the session); else why not."""
    with state.sessions() as db:
        try:
            _participant(group_id, session_id, db, _user(db, start, state.settings))
        except Refused as exc:
            return exc.reason
        except (NotFound, Forbidden, Unauthenticated) as exc:
            return str(exc)
    return None


class _Connection:
    """One live stream: receives frames; runs passes one at a time in the thread pool, and
    drafts one at a time beside them."""

    def __init__(
        self,
        ws: WebSocket,
        rec: live.LiveRecording,
        state: AppState,
        provisional: bool = False,
        access: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.ws, self.rec, self.settings = ws, rec, state.settings
        self.provisional = provisional  # the client asked for the provisional text
        # Looked at every PHASE_CHECK_S: a person removed from the group, signed out or whose
        # token was revoked stops streaming within about a second (1008).
        self.access = access
        self.access_at = asyncio.get_running_loop().time()
        self.pass_task: asyncio.Task[None] | None = None
        self.draft_task: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()
        self.gone = False
        self.checked_at = asyncio.get_running_loop().time()

    async def send(self, message: ServerMessage) -> None:
        if self.gone:
            return
        try:
            async with self.send_lock:
                await self.ws.send_json(message.model_dump(mode="json"))
        except (WebSocketDisconnect, RuntimeError):
            self.gone = True

    async def _passes(self) -> None:
        """Passes while a window waits, one at a time."""
        while self.rec.ready():
            segments = await in_speech_thread(self.rec.advance)
            if segments:
                await self.send(
                    SegmentsMessage(
                        segments=_segments(segments),
                        heard=round(self.rec.stitcher.heard, 3),
                        final_until=round(self.rec.stitcher.offset, 3),
                    )
                )

    async def _drafts(self) -> None:
        """Drafts while one is due, one at a time, alongside the passes."""
        while self.rec.draft_due():
            draft = await in_speech_thread(self.rec.make_draft)
            if draft is not None and self.provisional:
                await self.send(
                    ProvisionalMessage(
                        text=draft.text, start=round(draft.start, 3), end=round(draft.end, 3)
                    )
                )

    def schedule(self) -> None:
        self.pass_task = _settled(self.pass_task)
        self.draft_task = _settled(self.draft_task)
        if self.pass_task is None and self.rec.ready():
            self.pass_task = asyncio.create_task(self._passes())
        if self.draft_task is None and self.rec.draft_due():
            self.draft_task = asyncio.create_task(self._drafts())

    async def drain(self) -> None:
        """Wait for the pass and the draft under way (their failures were or will be
        reported elsewhere)."""
        for task in (self.pass_task, self.draft_task):
            await _quietly(task, self.rec.job_id)
        self.pass_task = self.draft_task = None

    async def finish(self, code: Close = Close.normal, reason: str = "") -> None:
        """Transcribe the rest, say so, close. A draft under way is not waited for: the rest's
        pass starts at once, and what the draft makes is stale by its end. A failed pass is
        logged, not re-raised, so what was stored stays and the job still ends."""
        await _quietly(self.pass_task, self.rec.job_id)
        self.pass_task = None
        segments = await in_speech_thread(self.rec.finish)
        await self.drain()
        await self.send(
            FinalMessage(
                job_id=self.rec.job_id,
                segments=_segments(segments),
                count=self.rec.stored,
                heard=round(self.rec.stitcher.heard, 3),
            )
        )
        await _close(self.ws, code, reason)

    async def phase_running(self) -> bool:
        """Whether the phase still runs and the caller may still stream; if not, the stream
        is finished and closed (4409; 1008 for the caller)."""
        now = self.checked_at = asyncio.get_running_loop().time()
        if now - self.access_at >= PHASE_CHECK_S:
            self.access_at = now
            refused = await run_in_threadpool(self.access)
            if refused is not None:
                await self.finish(Close.policy, _reason(refused))
                return False
        stopped = await run_in_threadpool(self.rec.phase_running)
        if stopped is None:
            return True
        await self.finish(Close.conflict, _reason(stopped))
        return False

    async def frame(self, data: bytes) -> bool:
        """Take one audio frame; False when the stream must stop (it was closed)."""
        if len(data) > self.settings.live.max_frame_bytes:
            await self.send(
                ErrorMessage(
                    detail=f"A frame is limited to {self.settings.live.max_frame_bytes} bytes "
                    f"(COMPANION_LIVE_MAX_FRAME_BYTES); this one has {len(data)}: send smaller "
                    "chunks. It was ignored.",
                )
            )
            return True
        if not await self.phase_running():
            return False
        try:
            self.rec.feed(data)
        except stream.BadChunk as exc:
            await self.send(ErrorMessage(detail=f"{exc} It was ignored."))
            return True
        except live.TooLong as exc:
            await self.finish(Close.too_long, _reason(str(exc)))
            return False
        except stream.StreamBroken as exc:
            await self.finish(Close.unsupported, _reason(str(exc)))
            return False
        self.schedule()
        return True


def _segments(finals: list[live.Final]) -> list[LiveSegment]:
    return [LiveSegment.model_validate(final, from_attributes=True) for final in finals]


async def _quietly(task: asyncio.Task[None] | None, job_id: str) -> None:
    """Wait for a pass or a draft; its failure is logged (the stream has already stopped)."""
    if task is not None:
        try:
            await task
        except Exception:
            log.exception("A live pass or draft of job %s failed", job_id)


def _settled(task: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
    """The task if it still runs; None once it is done; its failure (Lost, or the model
    failed) raised, which stops the stream."""
    if task is None or not task.done():
        return task
    failed = task.exception()
    if failed is not None:
        raise failed
    return None


def _reason(text: str) -> str:
    """A close reason is at most 123 bytes of UTF-8."""
    data = text.encode()
    return data[:123].decode(errors="ignore") if len(data) > 123 else text


async def _close(ws: WebSocket, code: Close, reason: str) -> None:
    if ws.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await ws.close(int(code), _reason(reason))


@router.websocket(LIVE_PATH)
async def live_phase(
    ws: WebSocket,
    group_id: str,
    session_id: str,
    phase: str,
    state: AppStateDep,
    speech: SpeechDep,
) -> None:
    """A participant's audio of the running phase, transcribed as it arrives (see above)."""
    await ws.accept()
    header = ws.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    try:
        try:
            first = await asyncio.wait_for(ws.receive(), START_TIMEOUT_S)
        except TimeoutError:
            raise Refused(Close.timeout, "No start message came; send it first.") from None
        if first["type"] == "websocket.disconnect":
            return
        start = _start_message(first, bearer, ws.cookies.get(SESSION_COOKIE))
        if start.token is None:
            _same_origin(ws.headers.get("origin"), ws.headers.get("host"), state.settings)
        try:
            running = Phase(phase)
        except ValueError:
            raise Refused(Close.policy, f"No phase named {phase!r}.") from None
        rec = await run_in_threadpool(
            _open,
            state,
            speech,
            start=start,
            group_id=group_id,
            session_id=session_id,
            phase=running,
        )
    except Refused as exc:
        await _close(ws, exc.code, exc.reason)
        return
    except DomainError as exc:
        await _close(ws, Close.unsupported, str(exc))
        return
    conn = _Connection(
        ws,
        rec,
        state,
        start.provisional,
        access=functools.partial(_still_allowed, state, start, group_id, session_id),
    )
    await conn.send(
        ReadyMessage(
            job_id=rec.job_id,
            speaker=rec.speaker,
            format=start.format,
            sample_rate=stream.RATE,
        )
    )
    try:
        await _serve(conn, state.settings.live.idle_s)
    except live.Lost:
        await _close(ws, Close.conflict, "This live transcription was closed; connect again.")
    except Exception:
        log.exception("Live transcription job %s failed", rec.job_id)
        await _close(ws, Close.failed, "The live transcription failed; what was stored is kept.")
    finally:
        # Dropped, failed or cancelled (the server stops): transcribe and keep what was said.
        # In a thread of its own that a cancellation of this task does not stop.
        done = asyncio.get_running_loop().run_in_executor(None, _finish_quietly, conn)
        await asyncio.shield(done)


def _finish_quietly(conn: _Connection) -> None:
    try:
        conn.rec.finish()  # waits for a pass under way; nothing to do if it was finished
    except Exception:
        log.exception("Closing live transcription job %s failed", conn.rec.job_id)


async def _serve(conn: _Connection, idle_s: float) -> None:
    """Receive until the stream ends; between messages, look every PHASE_CHECK_S whether the
    phase still runs. One receive stays pending across those looks (never cancelled midway)."""
    loop = asyncio.get_running_loop()
    receiving: asyncio.Task[Any] | None = None
    heard_at = loop.time()
    try:
        while True:
            if loop.time() - conn.checked_at >= PHASE_CHECK_S and not await conn.phase_running():
                return
            if receiving is None:
                receiving = asyncio.ensure_future(conn.ws.receive())
            now = loop.time()
            wait = min(conn.checked_at + PHASE_CHECK_S, heard_at + idle_s) - now
            done, _ = await asyncio.wait({receiving}, timeout=max(wait, 0.0))
            if not done:
                if loop.time() - heard_at >= idle_s:
                    await conn.finish(
                        Close.timeout, f"No audio for {idle_s:.0f} s; the stream is closed."
                    )
                    return
                continue
            message, receiving = receiving.result(), None
            heard_at = loop.time()
            if not await _message(conn, message):
                return
    finally:
        if receiving is not None:
            receiving.cancel()


async def _message(conn: _Connection, message: Mapping[str, Any]) -> bool:
    """Handle one message; False when the stream has ended."""
    if message["type"] == "websocket.disconnect":
        conn.gone = True
        return False
    data = message.get("bytes")
    if data is not None:
        return await conn.frame(data)
    try:
        EndMessage.model_validate_json(message.get("text") or "")
    except ValidationError:
        await conn.send(ErrorMessage(detail='Send audio as binary frames, or {"type": "end"}.'))
        return True
    await conn.finish(Close.normal, "The transcript of this stream is complete.")
    return False
