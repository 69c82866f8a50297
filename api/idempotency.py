"""Safe retries: a POST sent with an `Idempotency-Key` header runs once.

The first request with a key claims it (a committed row) before it runs; its answer, if it
succeeded (2xx), is kept sealed for a day, and a retry with the same key and the same body gets
that answer again, marked `Idempotent-Replayed: true`, without running. The same key with
another body answers 409, and so does a retry while the first is still running. An answer that
is not a success frees the key: nothing was changed (the request's transaction was rolled
back), so the retry runs.

A key belongs to the caller's credential (token or sign-in cookie) and the path: two people, or
two routes, never share one. Nothing of the request is kept in clear: the row's id and the
body are digests, the answer is sealed with the group's key (the system's outside a group).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import SESSION_COOKIE
from api.state import AppState
from companion.accounts import service as accounts
from companion.accounts import signin
from companion.store.keyring import SYSTEM_SCOPE, KeyGone, Keyring
from companion.store.models import Group, IdempotencyKey, utcnow
from companion.vault import open_text, seal_text

HEADER = b"idempotency-key"
KEPT = timedelta(hours=24)  # how long an answer is replayed
STALE = timedelta(minutes=10)  # a claim this old without an answer: its request died
MAX_ANSWER = 1 << 20  # larger answers are not kept (no creating route answers so much)
# Creations whose answer carries a secret (a token, a sign-in link): only that they succeeded
# is kept, never the answer.
_SECRET = re.compile(r"^/api/v1/(users|users/[^/]+/(tokens|invitations)|groups/[^/]+/invitations)$")
_GROUP = re.compile(r"^/api/v1/groups/([0-9a-fA-F-]{36})(?:/|$)")
# With the CSRF token: another site, which cannot read it, never matches a page key.
_CREDENTIAL = (b"authorization", b"cookie", b"x-csrf-token")


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes | None  # None: an answer that carries a secret, which is not kept


class Claimed(Exception):
    """The key is someone's: its stored row decides the answer."""

    def __init__(self, row: IdempotencyKey) -> None:
        self.row = row


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key: bytes = headers.get(HEADER) or b""
        credential = b"\0".join(headers.get(h, b"") for h in _CREDENTIAL)
        if not key.strip() or not credential.strip(b"\0"):
            await self.app(scope, receive, send)  # without a caller, the route answers 401
            return
        state: AppState = scope["app"].state.companion
        if not await run_in_threadpool(_signed_in, state, scope):
            await self.app(scope, receive, send)  # a revoked token gets no replay: a 401
            return
        path: str = scope["path"]
        row_id = hashlib.sha256(b"\0".join([credential, path.encode(), key])).hexdigest()
        found = _GROUP.match(path)
        group_id = found.group(1) if found else None
        try:
            await run_in_threadpool(_claim, state, row_id, group_id)
        except Claimed as claimed:
            body = await _read_body(receive)
            await _send(send, await run_in_threadpool(_replay, state, claimed.row, body))
            return
        await self._first(scope, receive, send, state, row_id, keep=not _SECRET.match(path))

    async def _first(
        self, scope: Scope, receive: Receive, send: Send, state: AppState, row_id: str, *,
        keep: bool,
    ) -> None:  # fmt: skip
        """Run the request, hashing its body as it passes and keeping a copy of its answer."""
        digest = hashlib.sha256()
        status = 0
        content_type = ""
        kept: list[bytes] = []
        size = 0

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
            return message

        async def keeping_send(message: Message) -> None:
            nonlocal status, content_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers", [])).get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= MAX_ANSWER:
                    kept.append(message.get("body", b""))
            await send(message)

        answer: Answer | None = None
        try:
            await self.app(scope, hashing_receive, keeping_send)
            if 200 <= status < 300 and size <= MAX_ANSWER:
                answer = Answer(status, content_type, b"".join(kept) if keep else None)
        finally:
            await run_in_threadpool(_settle, state, row_id, digest.hexdigest(), answer)


def _signed_in(state: AppState, scope: Scope) -> bool:
    """Whether the request's token or sign-in cookie is still good (a replay is an answer
    too: a revoked token or a closed sign-in gets none)."""
    request = Request(scope)
    settings = state.settings
    with state.sessions() as db:
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return accounts.authenticate(db, authorization[7:], settings.token_lifetime) is not None
        cookie = request.cookies.get(SESSION_COOKIE)
        valid_for = timedelta(days=settings.web_session_days)
        return cookie is not None and signin.session_of(db, cookie, valid_for) is not None


_swept = [datetime.min.replace(tzinfo=UTC)]  # when this process last deleted old answers
SWEEP_EVERY = timedelta(minutes=1)


def _sweep(db: Session, now: datetime) -> None:
    """Old answers go as new keys come (no sweeper to run), at most once a minute: a write
    on every POST would queue behind the database's one writer."""
    if now - _swept[0] < SWEEP_EVERY:
        return
    _swept[0] = now
    db.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEPT))
    db.commit()


def _claim(state: AppState, row_id: str, group_id: str | None) -> None:
    """Claim the key (committed at once, so a concurrent retry sees it), or raise Claimed."""
    now = utcnow()
    with state.sessions() as db:
        _sweep(db, now)
        for _ in range(3):  # a claim freed between our read and our insert: claim it again
            existing = db.get(IdempotencyKey, row_id)
            if existing is not None and existing.created_at < now - KEPT:
                db.delete(existing)  # kept its day: the key is free again
                db.commit()
                existing = None
            if existing is not None:
                db.expunge(existing)
                raise Claimed(existing)
            in_group = group_id if group_id and db.get(Group, group_id) else None
            db.add(IdempotencyKey(id=row_id, group_id=in_group, created_at=now))
            try:
                db.commit()
                return
            except IntegrityError:  # claimed by a concurrent retry between the read and now
                db.rollback()
        raise RuntimeError("the Idempotency-Key could not be claimed")


def _settle(state: AppState, row_id: str, request_hash: str, answer: Answer | None) -> None:
    """Keep the answer of a success; free the key otherwise."""
    with state.sessions() as db, db.begin():
        row = db.get(IdempotencyKey, row_id)
        if row is None:
            return
        if answer is None:
            db.delete(row)
            return
        try:
            key = Keyring(db, state.master).get(row.group_id or SYSTEM_SCOPE)
        except KeyGone:  # the group was deleted meanwhile: nothing to replay
            db.delete(row)
            return
        row.request_hash = request_hash
        row.status_code = answer.status
        row.content_type = answer.content_type[:100]
        row.completed_at = utcnow()
        if answer.body is None:
            return
        row.response_sealed = seal_text(
            key,
            answer.body.decode("utf-8", "replace"),
            IdempotencyKey.__tablename__,
            row.id,
            "response",
        )
        row.completed_at = utcnow()


def _replay(state: AppState, row: IdempotencyKey, body: bytes) -> Answer:
    if row.completed_at is None:
        if utcnow() - row.created_at > STALE:
            return _problem(
                409,
                "The first request with this Idempotency-Key never finished. Check whether it "
                "took effect (a GET) before you send it again with a new key.",
            )
        return _problem(409, "A request with this Idempotency-Key is still running; retry soon.")
    if row.request_hash != hashlib.sha256(body).hexdigest():
        return _problem(
            409,
            "This Idempotency-Key was already used with another request body; use a new key "
            "for a new request.",
        )
    if row.response_sealed is None:
        return _problem(
            409,
            f"The first request with this Idempotency-Key succeeded (HTTP {row.status_code}), "
            "and its answer held a secret (a token or a sign-in link), which is not kept: list "
            "what exists to find it, or send a new request with a new key.",
        )
    with state.sessions() as db:
        try:
            key = Keyring(db, state.master).get(row.group_id or SYSTEM_SCOPE)
        except KeyGone:
            return _problem(409, "The group of the first request with this key was deleted.")
        assert row.response_sealed is not None
        text = open_text(key, row.response_sealed, IdempotencyKey.__tablename__, row.id, "response")
    return Answer(row.status_code or 200, row.content_type or "application/json", text.encode())


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _problem(status: int, detail: str) -> Answer:
    return Answer(status, "application/json", json.dumps({"detail": detail}).encode())


async def _send(send: Send, answer: Answer) -> None:
    """An answer made here: a refusal, or a success replayed."""
    body = answer.body or b""
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if 200 <= answer.status < 300:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
