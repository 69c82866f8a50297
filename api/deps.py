"""Request dependencies: the database session, the keyring, the caller and their access.

Every group-scoped route declares what it needs with one of the `Access` dependencies below;
tests/test_authorization.py finds them on each route and checks the 404/403 matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from api.state import AppState
from companion.accounts import service as accounts
from companion.accounts import signin
from companion.assist.ideas.service import Embed
from companion.assist.synthesis.runner import AssistRunner
from companion.errors import DomainError, Forbidden, NotFound
from companion.groups import service as groups
from companion.groups.schemas import Role
from companion.llm.gateway import LLMGateway
from companion.memory.chroma import MemoryUnavailable
from companion.memory.service import Memory
from companion.sessions import service as sessions
from companion.speech.queue import TranscriptionService
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Group, User, WebSession


class Unauthenticated(DomainError):
    status = 401


def app_state(request: HTTPConnection) -> AppState:
    state: AppState = request.app.state.companion
    return state


async def _app_state(request: HTTPConnection) -> AppState:
    return app_state(request)


# What the application's lifespan made (api/main.py); routes take them as dependencies so
# that none reaches into request.app.state itself. The dependencies that only look something
# up are `async`: FastAPI runs a plain `def` one in the thread pool, a hop per dependency that
# a busy request pays several times over.
AppStateDep = Annotated[AppState, Depends(_app_state)]

# A page of a list: a bounded offset, so a huge one is a 422, not an overflow in the database.
Limit = Annotated[int, Query(ge=1, le=1000, description="How many rows, 1-1000.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows skipped, 0-10^9.")]


async def get_assist(request: Request) -> AssistRunner:
    assist: AssistRunner = request.app.state.assist
    return assist


AssistDep = Annotated[AssistRunner, Depends(get_assist)]


async def get_speech(request: HTTPConnection) -> TranscriptionService:
    speech: TranscriptionService = request.app.state.transcription
    return speech


SpeechDep = Annotated[TranscriptionService, Depends(get_speech)]


def memory_of(request: Request) -> Memory:
    """The running memory, or why there is none."""
    memory: Memory | None = getattr(request.app.state, "memory", None)
    if memory is None:
        if not app_state(request).settings.memory.enabled:
            raise MemoryUnavailable("The group memory is turned off (COMPANION_MEMORY_ENABLED).")
        raise MemoryUnavailable("The group memory is not running; retry in a moment.")
    return memory


async def get_memory(request: Request) -> Memory:
    return memory_of(request)


MemoryDep = Annotated[Memory, Depends(get_memory)]


async def find_memory(request: Request) -> Memory | None:
    """The memory, or None when it is off or not running (for what only reports on it)."""
    memory: Memory | None = getattr(request.app.state, "memory", None)
    return memory


MaybeMemoryDep = Annotated[Memory | None, Depends(find_memory)]


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with app_state(request).sessions() as db:
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise


DbSession = Annotated[Session, Depends(get_db, scope="function")]


async def get_keys(request: Request, db: DbSession) -> Keyring:
    return Keyring(db, app_state(request).master)


KeysDep = Annotated[Keyring, Depends(get_keys)]


def get_gateway(request: Request) -> LLMGateway:
    return app_state(request).llm()


GatewayDep = Annotated[LLMGateway, Depends(get_gateway)]

_bearer = HTTPBearer(auto_error=False, description="Token printed by `companion users create`.")

SESSION_COOKIE = "companion_session"  # the web app's sign-in (HttpOnly)
CSRF_HEADER = "X-CSRF-Token"  # the pages send the session's CSRF token with every change
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def web_session(request: Request, db: Session) -> WebSession | None:
    """The browser session behind the request's cookie, if it is live (kept on the request)."""
    if hasattr(request.state, "web_session"):
        found: WebSession | None = request.state.web_session
        return found
    cookie = request.cookies.get(SESSION_COOKIE)
    days = app_state(request).settings.web_session_days
    row = signin.session_of(db, cookie, timedelta(days=days)) if cookie else None
    request.state.web_session = row
    request.state.csrf = row.csrf if row is not None else ""  # for pages, even after a rollback
    return row


def token_user(db: Session, token: str, lifetime: timedelta) -> User:
    """The owner of an API token."""
    user = accounts.authenticate(db, token, lifetime)
    if user is None:
        raise Unauthenticated(
            "This token is unknown, revoked or expired, or its owner was deactivated: ask for "
            "a new invitation link."
        )
    return user


def cookie_user(db: Session, row: WebSession | None, csrf: str | None, *, change: bool) -> User:
    """The person signed in by a browser session; a change must carry its CSRF token, which
    another site cannot read."""
    if row is None:
        raise Unauthenticated("Your sign-in has expired or was closed: open a new invitation link.")
    if change and not signin.csrf_matches(row, csrf):
        raise Forbidden("This change lacks the page's CSRF token: reload the page and try again.")
    user = db.get(User, row.user_id)
    if user is None or user.deactivated_at is not None:
        raise Unauthenticated("This account no longer exists or was deactivated.")
    return user


def current_user(
    request: Request,
    db: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, by bearer token (the API) or by the web app's session cookie."""
    if credentials is not None:
        lifetime = app_state(request).settings.token_lifetime
        return token_user(db, credentials.credentials, lifetime)
    if not request.cookies.get(SESSION_COOKIE):
        raise Unauthenticated("Send your token as 'Authorization: Bearer <token>'.")
    change = request.method not in SAFE_METHODS
    return cookie_user(
        db, web_session(request, db), request.headers.get(CSRF_HEADER), change=change
    )


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("This needs an administrator account.")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


class Need(StrEnum):
    """What a route needs of the caller, from the weakest to the strongest."""

    member = "member"  # any member of the group
    facilitator = "facilitator"  # a facilitator of the group
    manage = "manage"  # a facilitator of the group, or an administrator
    participant = "participant"  # in the session: client, consultant or its facilitator
    client = "client"  # the client of the session


@dataclass
class GroupContext:
    group: Group
    user: User
    role: Role | None  # None for an administrator who is not a member


@dataclass
class SessionContext(GroupContext):
    session: CodevSession


def _group_access(db: Session, user: User, group_id: str, need: Need) -> GroupContext:
    group = db.get(Group, group_id)
    member = groups.membership(db, group_id, user.id) if group else None
    if group is not None and member is None and need is Need.manage and user.is_admin:
        return GroupContext(group, user, None)
    if group is None or member is None:
        raise NotFound(f"No group with id {group_id} among your groups.")
    role = Role(member.role)
    if need in (Need.facilitator, Need.manage) and role is not Role.facilitator:
        raise Forbidden("This needs the facilitator role in this group.")
    return GroupContext(group, user, role)


class Access:
    need: Need


class GroupAccess(Access):
    def __init__(self, need: Need) -> None:
        self.need = need

    def __call__(self, group_id: str, db: DbSession, user: CurrentUser) -> GroupContext:
        return _group_access(db, user, group_id, self.need)


class SessionAccess(Access):
    def __init__(self, need: Need) -> None:
        self.need = need

    def __call__(
        self, group_id: str, session_id: str, db: DbSession, user: CurrentUser
    ) -> SessionContext:
        group_need = Need.facilitator if self.need is Need.facilitator else Need.member
        ctx = _group_access(db, user, group_id, group_need)
        session = sessions.get_session(db, ctx.group, session_id)
        if self.need is Need.participant and user.id not in sessions.participants(db, session):
            raise Forbidden(
                "Only the session's participants (client, consultants, facilitator) can do this."
            )
        if self.need is Need.client and user.id != session.client_id:
            raise Forbidden("Only the client of this session can do this.")
        return SessionContext(ctx.group, user, ctx.role, session)


GroupMember = Annotated[GroupContext, Depends(GroupAccess(Need.member))]
GroupFacilitator = Annotated[GroupContext, Depends(GroupAccess(Need.facilitator))]
GroupManager = Annotated[GroupContext, Depends(GroupAccess(Need.manage))]
SessionMember = Annotated[SessionContext, Depends(SessionAccess(Need.member))]
SessionFacilitator = Annotated[SessionContext, Depends(SessionAccess(Need.facilitator))]
SessionParticipant = Annotated[SessionContext, Depends(SessionAccess(Need.participant))]
SessionClient = Annotated[SessionContext, Depends(SessionAccess(Need.client))]


def get_embed(request: Request) -> Embed:
    return app_state(request).embed()


EmbedDep = Annotated[Embed, Depends(get_embed)]


@dataclass(frozen=True)
class MemberOfSession:
    """Who is let in, by id only: what a long response keeps of its access check."""

    group_id: str
    session_id: str
    user_id: str


def session_member_briefly(
    group_id: str,
    session_id: str,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> MemberOfSession:
    """`SessionMember`'s check in a transaction of its own, for a response that lasts (a page's
    event stream): a request's session would hold its database connection until the stream
    ends, and a hundred open pages would take every connection of the pool."""
    with app_state(request).sessions() as db:
        user = current_user(request, db, credentials)
        ctx = SessionAccess(Need.member)(group_id, session_id, db, user)
        db.commit()  # a sign-in's idle limit moved on (web_session)
        return MemberOfSession(ctx.group.id, ctx.session.id, user.id)


SessionMemberBriefly = Annotated[MemberOfSession, Depends(session_member_briefly)]
