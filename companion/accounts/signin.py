"""Signing in from a browser: one-time invitation links, then a session behind a cookie.

A link reads `/join/<id>_<secret>` and a cookie `<id>_<secret>`; only a SHA-256 of the secret is
stored (256 random bits need no slow hash, and the cookie is checked on every request). The
setup link, the one invitation without a user, creates the first administrator.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from companion.accounts import service as accounts
from companion.errors import DomainError
from companion.store.keyring import Keyring
from companion.store.models import Invitation, User, WebSession, new_id, utcnow


class LinkProblem(StrEnum):
    unknown = "unknown"
    used = "used"
    expired = "expired"


class LinkRefused(DomainError):
    """A link that cannot sign anyone in; `problem` says which page to show."""

    status = 410

    MESSAGES = {  # noqa: RUF012
        LinkProblem.unknown: "This sign-in link is not valid: ask for a new link.",
        LinkProblem.used: "This sign-in link was already used: ask for a new link.",
        LinkProblem.expired: "This sign-in link has expired: ask for a new link.",
    }

    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(self.MESSAGES[problem])
        self.problem = problem


@dataclass(frozen=True)
class Issued:
    """A new invitation: its link's token (shown once) and when it expires."""

    token: str
    expires_at: datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    row_id, sep, secret = token.partition("_")
    if not sep or len(row_id) != 36 or not secret:
        return None
    return row_id, secret


Secret = TypeVar("Secret", Invitation, WebSession)


def _behind(db: Session, model: type[Secret], token: str) -> Secret | None:
    """The row a link or cookie `<id>_<secret>` names, if its secret matches."""
    parts = _split(token)
    row = db.get(model, parts[0]) if parts else None
    if row is None or parts is None or not hmac.compare_digest(row.secret_hash, _digest(parts[1])):
        return None
    return row


def invite(
    db: Session, user: User | None, *, created_by: str | None, valid_for: timedelta
) -> Issued:
    """A one-time link for `user` (None: the setup link). Older unused links stay valid until
    they expire, so a link sent twice by mistake still works once."""
    secret = secrets.token_urlsafe(32)
    row = Invitation(
        id=new_id(),
        user_id=user.id if user else None,
        secret_hash=_digest(secret),
        created_by=created_by,
        expires_at=utcnow() + valid_for,
    )
    db.add(row)
    db.flush()
    return Issued(f"{row.id}_{secret}", row.expires_at)


def peek(db: Session, token: str) -> Invitation:
    """The invitation behind a link, still usable, without using it (the page before the click)."""
    row = _behind(db, Invitation, token)
    if row is None:
        raise LinkRefused(LinkProblem.unknown)
    if row.used_at is not None:
        raise LinkRefused(LinkProblem.used)
    if row.expires_at <= utcnow():
        raise LinkRefused(LinkProblem.expired)
    return row


def redeem(db: Session, token: str) -> Invitation:
    """Use a link once. The update is conditional, so two clicks racing get one sign-in."""
    row = peek(db, token)
    used = db.execute(
        update(Invitation)
        .where(Invitation.id == row.id, Invitation.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkRefused(LinkProblem.used)
    db.refresh(row)
    return row


def needs_setup(db: Session) -> bool:
    return db.scalar(select(func.count()).select_from(User).where(User.is_admin)) == 0


def setup_invitation(db: Session, token: str) -> Invitation:
    """The setup link behind `token`, while it is still the way to make the first
    administrator (not used, and no administrator yet)."""
    invitation = peek(db, token)
    if invitation.user_id is not None or not needs_setup(db):
        raise LinkRefused(LinkProblem.used)
    return invitation


def set_up(db: Session, keys: Keyring, token: str, name: str) -> User:
    """Use the setup link: the first administrator, named `name`."""
    setup_invitation(db, token)
    redeem(db, token)
    return accounts.create_user(db, keys, name, is_admin=True)


def invited(db: Session, token: str) -> User:
    """The person an invitation link is for, without using the link."""
    return _invitee(db, peek(db, token))


def join(db: Session, token: str) -> User:
    """Use an invitation link: the person it signs in."""
    return _invitee(db, redeem(db, token))


def _invitee(db: Session, invitation: Invitation) -> User:
    user = db.get(User, invitation.user_id) if invitation.user_id else None
    if user is None:
        raise LinkRefused(LinkProblem.unknown)
    return user


def setup_link(db: Session, valid_for: timedelta) -> Issued | None:
    """A fresh setup link while no administrator exists, else None."""
    if not needs_setup(db):
        return None
    return invite(db, None, created_by=None, valid_for=valid_for)


@dataclass(frozen=True)
class Opened:
    """A new browser session: the cookie's value and the CSRF token the pages send back."""

    cookie: str
    csrf: str
    expires_at: datetime


def open_session(db: Session, user: User, valid_for: timedelta) -> Opened:
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        id=new_id(),
        user_id=user.id,
        secret_hash=_digest(secret),
        csrf=secrets.token_urlsafe(32),
        expires_at=utcnow() + valid_for,
    )
    db.add(row)
    db.flush()
    return Opened(f"{row.id}_{secret}", row.csrf, row.expires_at)


def session_of(db: Session, cookie: str, valid_for: timedelta) -> WebSession | None:
    """The live session behind a cookie; each use moves its expiry on (an idle limit)."""
    row = _behind(db, WebSession, cookie)
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if now - row.seen_at > timedelta(minutes=5):  # not a write on every request
        row.seen_at = now
        row.expires_at = now + valid_for
    return row


def csrf_matches(row: WebSession, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(row.csrf, sent)


def close_session(row: WebSession) -> None:
    row.revoked_at = utcnow()
