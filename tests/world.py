"""A small client for tests: creates the first admin the way the CLI does, then talks HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from companion.accounts import service as accounts
from companion.config import Settings
from companion.method.phases import PHASES
from companion.runtime import open_store
from companion.speech.jobs import store_transcript
from companion.speech.transcriber import Segment
from companion.store.keyring import Keyring
from companion.store.models import TranscriptionJob, new_id
from companion.vault import MasterKey

PREFIX = "/api/v1"

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10, what: str = "the condition") -> T:
    """Poll `predicate` until it returns something true, and return that; fail after
    `timeout` seconds. For tests that wait on something another thread or process does."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.02)
    return value


@dataclass
class Api:
    client: TestClient
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)  # user id -> token

    @classmethod
    def bootstrap(cls, client: TestClient, settings: Settings) -> Api:
        """The first admin, written straight to the store: the running app's (its lifespan
        opened and migrated it) when `client` has one on the same database, else opened here."""
        state = getattr(client.app.state, "companion", None)  # type: ignore[attr-defined]
        if state is not None and state.settings.resolved_database_url == (
            settings.resolved_database_url
        ):
            return cls._with_admin(client, state.sessions, state.master)
        store = open_store(settings)
        try:
            return cls._with_admin(client, store.sessions, store.master)
        finally:
            store.engine.dispose()

    @classmethod
    def _with_admin(
        cls, client: TestClient, sessions: sessionmaker[Session], master: MasterKey
    ) -> Api:
        with sessions() as db, db.begin():
            admin = accounts.create_user(db, Keyring(db, master), "Admin", is_admin=True)
            token = accounts.issue_token(db, admin)
        return cls(client, token, {admin.id: token})

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        url = path if path.startswith("/") and not path.startswith("/groups") else PREFIX + path
        return self.client.request(method, url, headers=headers, **kwargs)

    def ok(self, method: str, path: str, token: str | None, **kwargs: Any) -> Any:
        res = self.call(method, path, token, **kwargs)
        assert res.status_code < 300, (res.status_code, res.text)
        return res.json() if res.content else None

    def browser(self, user_id: str) -> tuple[TestClient, str]:
        """A browser signed in as `user_id` by an invitation link, and its pages' CSRF token."""
        link = self.ok("POST", f"{PREFIX}/users/{user_id}/invitations", self.admin_token)
        browser = TestClient(self.client.app)
        assert browser.post(link["path"], follow_redirects=False).status_code == 303
        page = browser.get("/")
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        assert csrf
        return browser, csrf

    def user(self, name: str) -> tuple[str, str]:
        body = self.ok("POST", f"{PREFIX}/users", self.admin_token, json={"name": name})
        self.tokens[body["id"]] = body["token"]
        return body["id"], body["token"]


@dataclass
class Circle:
    """A group with a facilitator, four members, an open cycle and a session (client: first)."""

    api: Api
    group_id: str
    facilitator: tuple[str, str]
    members: list[tuple[str, str]]
    outsider: tuple[str, str]
    cycle_id: str
    session_id: str

    @property
    def client(self) -> tuple[str, str]:
        return self.members[0]

    @property
    def consultants(self) -> list[tuple[str, str]]:
        return self.members[1:]

    def path(self, rest: str = "") -> str:
        return f"/groups/{self.group_id}/sessions/{self.session_id}{rest}"

    def phase(self, phase: str, move: str) -> Any:
        return self.api.ok("POST", self.path(f"/phases/{phase}/{move}"), self.facilitator[1])

    @classmethod
    def create(
        cls,
        api: Api,
        names: tuple[str, ...] = ("Bérénice", "Anatole", "Zoé", "Kwame"),
        facilitator: str = "Faustine",
        group_name: str = "Cercle des directrices",
        language: str = "fr",
    ) -> Circle:
        fac = api.user(facilitator)
        members = [api.user(n) for n in names]
        outsider = api.user("Oscar Outsider")
        group = api.ok(
            "POST",
            "/groups",
            api.admin_token,
            json={"name": group_name, "language": language, "facilitator_ids": [fac[0]]},
        )
        gid = group["id"]
        for uid, _ in members:
            api.ok("POST", f"/groups/{gid}/members", fac[1], json={"user_id": uid})
        cycle = api.ok("POST", f"/groups/{gid}/cycles", fac[1])
        session = api.ok(
            "POST",
            f"/groups/{gid}/sessions",
            fac[1],
            json={"client_id": members[0][0]},
        )
        return cls(api, gid, fac, members, outsider, cycle["id"], session["id"])

    def advance_to(self, phase: str) -> None:
        """Run the phases before `phase` (start, end) and start `phase`."""
        order = [p.value for p in PHASES]
        for earlier in order[: order.index(phase)]:
            self.phase(earlier, "start")
            self.phase(earlier, "end")
        self.phase(phase, "start")

    def consult_on(self, contract: str) -> None:
        """Run the phases up to the contract, have the client confirm `contract`, and start the
        consultation (phase 4)."""
        self.advance_to("contract")
        self.api.ok("PUT", self.path("/contract"), self.client[1], json={"text": contract})
        self.phase("contract", "end")
        self.phase("consultation", "start")

    def recorded(self, phase: str, texts: list[str], uploaded_by: str, status: str = "done") -> str:
        """A stored transcript of `phase`, one segment per text, written as the worker writes
        it (no audio, no model); returns the job id."""
        state = self.api.client.app.state.companion  # type: ignore[attr-defined]
        with state.sessions() as db, db.begin():
            job = TranscriptionJob(
                id=new_id(), group_id=self.group_id, session_id=self.session_id, phase=phase,
                status=status, progress=1.0, audio_seconds=2.0 * len(texts),
                audio_format="ogg/opus", audio_kept=False, attempts=1, uploaded_by=uploaded_by,
            )  # fmt: skip
            db.add(job)
            db.flush()
            segments = [Segment(2.0 * i, 2.0 * i + 2.0, text) for i, text in enumerate(texts)]
            store_transcript(db, Keyring(db, state.master), job, segments)
        return str(job.id)
