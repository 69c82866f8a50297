"""Accounts and tokens. A token reads `cc_<token id>_<secret>`; only an argon2 hash of the secret
is stored, and the id makes lookup a single indexed read."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.accounts.schemas import UserView
from companion.errors import NotFound
from companion.store.keyring import SYSTEM_SCOPE, Keyring
from companion.store.models import ApiToken, User, new_id, utcnow

# Tokens carry 256 bits of randomness, so a light argon2 setting is ample and keeps requests fast.
_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
TOKEN_PREFIX = "cc"  # noqa: S105 (a label, not a secret)


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


def authenticate(db: Session, bearer: str) -> User | None:
    parts = bearer.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = db.get(ApiToken, parts[1])
    if token is None or token.revoked_at is not None:
        return None
    try:
        _hasher.verify(token.secret_hash, parts[2])
    except (VerificationError, InvalidHashError):
        return None
    return db.get(User, token.user_id)


def revoke_tokens(db: Session, user: User) -> int:
    tokens = db.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).all()
    for token in tokens:
        token.revoked_at = utcnow()
    return len(tokens)


def get_user(db: Session, user_id: str) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def user_name(keys: Keyring, user: User) -> str:
    return keys.open(SYSTEM_SCOPE, user, "name")


def view(keys: Keyring, user: User) -> UserView:
    return UserView(id=user.id, name=user_name(keys, user), is_admin=user.is_admin)


def users(db: Session, keys: Keyring) -> list[UserView]:
    """Every account, oldest first."""
    return [view(keys, u) for u in db.scalars(select(User).order_by(User.created_at))]
