"""Accounts and tokens. A token reads `cc_<token id>_<secret>`; only an argon2 hash of the secret
is stored, and the id makes lookup a single indexed read."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.schemas import TokenView, UserView
from companion.errors import NotFound
from companion.recent import Recent
from companion.store.keyring import SYSTEM_SCOPE, Keyring
from companion.store.models import ApiToken, User, WebSession, new_id, utcnow

# Tokens carry 256 bits of randomness, so a light argon2 setting is ample and keeps requests fast.
_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
TOKEN_PREFIX = "cc"  # noqa: S105 (a label, not a secret)


class Verified:
    """Secrets this process has already checked against their argon2 hash, as SHA-256 digests
    by token id: argon2 takes a core for ~10 ms, and every request shows its token. The row is
    still read on each request, so a revoked or expired token fails at once."""

    def __init__(self, size: int = 4096) -> None:
        self._digests: Recent[bytes] = Recent(size)

    def knows(self, token_id: str, secret: str) -> bool:
        known = self._digests.get(token_id)
        digest = hashlib.sha256(secret.encode()).digest()
        return known is not None and hmac.compare_digest(known, digest)

    def add(self, token_id: str, secret: str) -> None:
        self._digests.add(token_id, hashlib.sha256(secret.encode()).digest())


_verified = Verified()


def create_user(db: Session, keys: Keyring, name: str, *, is_admin: bool = False) -> User:
    user = User(id=new_id(), is_admin=is_admin)
    keys.seal(SYSTEM_SCOPE, user, "name", name)
    db.add(user)
    db.flush()
    return user


def issue_token(db: Session, user: User) -> str:
    secret = secrets.token_urlsafe(32)
    token = ApiToken(id=new_id(), user_id=user.id, secret_hash=_hasher.hash(secret))
    db.add(token)
    db.flush()
    return f"{TOKEN_PREFIX}_{token.id}_{secret}"


def authenticate(db: Session, bearer: str, lifetime: timedelta) -> User | None:
    """The owner of a token that is neither revoked nor older than `lifetime`, if they are not
    deactivated; None otherwise."""
    parts = bearer.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = db.get(ApiToken, parts[1])
    if token is None or token.revoked_at is not None or token.created_at + lifetime <= utcnow():
        return None
    if not _verified.knows(token.id, parts[2]):
        try:
            _hasher.verify(token.secret_hash, parts[2])
        except (VerificationError, InvalidHashError):
            return None
        _verified.add(token.id, parts[2])
    user = db.get(User, token.user_id)
    return user if user is not None and user.deactivated_at is None else None


def tokens(db: Session, user: User, lifetime: timedelta) -> list[TokenView]:
    """The person's tokens, newest first."""
    now = utcnow()
    rows = db.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    )
    return [
        TokenView(
            id=t.id,
            created_at=t.created_at,
            expires_at=t.created_at + lifetime,
            revoked_at=t.revoked_at,
            active=t.revoked_at is None and t.created_at + lifetime > now,
        )
        for t in rows
    ]


def revoke_token(db: Session, user: User, token_id: str) -> None:
    """Revoke one of the person's tokens: it answers 401 from the next request on."""
    token = db.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"{user.id} has no token with id {token_id}; GET …/tokens lists them.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()


def revoke_tokens(db: Session, user: User) -> int:
    tokens = db.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).all()
    for token in tokens:
        token.revoked_at = utcnow()
    return len(tokens)


def deactivate(db: Session, user: User) -> None:
    """Every token and sign-in of the person dead at once (their open live streams close at
    their next check); their name and what they wrote stay."""
    now = utcnow()
    user.deactivated_at = now
    revoke_tokens(db, user)
    for row in db.scalars(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
    ):
        row.revoked_at = now


def get_user(db: Session, user_id: str) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


# People's names by user id, opened once per process: every view names the authors of its
# notes and ideas, and a name never changes once the account is made.
names: Recent[str] = Recent(10_000)


def user_name(keys: Keyring, user: User) -> str:
    known = names.get(user.id)
    if known is None:
        known = keys.open(SYSTEM_SCOPE, user, "name")
        names.add(user.id, known)
    return known


def name_of(db: Session, keys: Keyring, user_id: str) -> str:
    """The person's name, without reading their row when this process knows it already."""
    return names.get(user_id) or user_name(keys, get_user(db, user_id))


def view(keys: Keyring, user: User) -> UserView:
    return UserView(
        id=user.id,
        name=user_name(keys, user),
        is_admin=user.is_admin,
        deactivated_at=user.deactivated_at,
    )


def users(db: Session, keys: Keyring) -> list[UserView]:
    """Every account, oldest first."""
    return [view(keys, u) for u in db.scalars(select(User).order_by(User.created_at))]
