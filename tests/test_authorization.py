"""The authorisation matrix, generated from the app's own routes.

Every route mounted from `api.main.ROUTERS` is found here without being named: a new route is
covered (or makes a test fail until it declares its access) without editing this file.

- every operation in the OpenAPI schema (health aside) comes from ROUTERS, and vice versa;
- every route with `{group_id}` in its path declares exactly one `api.deps.Access` dependency
  (a `SessionAccess` when the path also has `{session_id}`);
- without a token (or with an unknown one) every route answers 401;
- routes that depend on `admin_user` refuse a non-administrator with 403;
- on group-scoped routes: an outsider, an administrator who is not a member (unless the route's
  need is `manage`) and anyone asking about a group that does not exist get 404; then, by need,
  a plain member (facilitator, manage), a member who is not a participant (participant), and a
  consultant and the facilitator (client) get 403;
- the weakest caller a route's need allows (and an administrator for `manage`) is not refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.deps import Access, Need, SessionAccess, admin_user
from api.main import API_PREFIX, ROUTERS, create_app
from companion.config import Settings
from companion.method.phases import Phase
from companion.speech.jobs import store_transcript
from companion.speech.transcriber import Segment
from companion.store.keyring import Keyring
from companion.store.models import TranscriptionJob, TranscriptSegment, new_id
from tests.world import Api, Circle

HEALTH = {"/healthz", "/readyz"}
BODY_METHODS = {"POST", "PUT", "PATCH"}
MISSING_GROUP = "00000000-0000-4000-8000-000000000000"
REFUSED = {401, 403, 404}
PARAM = re.compile(r"{(\w+)(?::\w+)?}")  # a path parameter, with or without a converter


@dataclass(frozen=True)
class Op:
    """One method of one route, as mounted under API_PREFIX."""

    method: str
    path: str  # without API_PREFIX, with its {params}
    route: APIRoute

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def group_scoped(self) -> bool:
        return "{group_id}" in self.path

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)


# WebSocket routes take their token in the first message: their matrix is tested with them.
WEBSOCKETS = {"/groups/{group_id}/sessions/{session_id}/phases/{phase}/live": "test_speech_live"}


def _operations() -> list[Op]:
    ops = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIWebSocketRoute):
                continue
            assert isinstance(route, APIRoute), f"{route!r} in ROUTERS is not an APIRoute"
            ops += [Op(method, route.path, route) for method in sorted(route.methods or ())]
    return sorted(ops, key=lambda op: (op.path, op.method))


OPS = _operations()
GROUP_OPS = [op for op in OPS if op.group_scoped]


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependants(dep)


def _accesses(op: Op) -> list[Access]:
    calls: list[object] = [d.call for d in _dependants(op.route.dependant)]
    return [call for call in calls if isinstance(call, Access)]


def _access(op: Op) -> Access:
    accesses = _accesses(op)
    assert len(accesses) == 1, (
        f"{op.id} is group-scoped and must declare exactly one Access dependency "
        f"(GroupMember, SessionClient, ...); it has {accesses or 'none'}"
    )
    return accesses[0]


def _needs_admin(op: Op) -> bool:
    return any(d.call is admin_user for d in _dependants(op.route.dependant))


# --- the routes themselves ----------------------------------------------------------------


def test_routers_cover_every_operation_in_the_schema(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))  # the schema needs no store
    schema = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path not in HEALTH
        for method in item
    }
    routers = {(op.method, API_PREFIX + op.path) for op in OPS}
    assert routers == schema, (
        f"only in ROUTERS: {sorted(routers - schema)}; only in the schema: {sorted(schema - routers)}"
    )
    assert GROUP_OPS, "no group-scoped route found"


def test_websocket_routes_have_their_own_matrix() -> None:
    found = {
        r.path for router in ROUTERS for r in router.routes if isinstance(r, APIWebSocketRoute)
    }
    assert found == set(WEBSOCKETS), f"test the access of {sorted(found - set(WEBSOCKETS))}"
    for module in set(WEBSOCKETS.values()):
        assert (Path(__file__).parent / f"{module}.py").is_file()


@pytest.mark.parametrize("op", GROUP_OPS, ids=lambda op: op.id)
def test_group_route_declares_its_access(op: Op) -> None:
    access = _access(op)
    assert isinstance(access.need, Need)
    if "{session_id}" in op.path:
        assert isinstance(access, SessionAccess), (
            f"{op.id} names a session but checks only the group ({access!r}): use a Session* access"
        )


# --- the world ----------------------------------------------------------------------------


# Stand-ins for routes that refuse before they look anything up.
NOWHERE = {
    "group_id": MISSING_GROUP,
    "session_id": MISSING_GROUP,
    "cycle_id": MISSING_GROUP,
    "user_id": MISSING_GROUP,
    "action_id": MISSING_GROUP,
    "job_id": MISSING_GROUP,
    "segment_id": MISSING_GROUP,
    "idea_id": MISSING_GROUP,
    "theme_id": MISSING_GROUP,
    "token_id": MISSING_GROUP,
    "phase": next(iter(Phase)).value,
}


def _url(op: Op, values: dict[str, str]) -> str:
    unknown = [p for p in op.params if p not in values]
    assert not unknown, (
        f"{op.id}: no value for path parameter(s) {unknown}; teach tests/test_authorization.py "
        f"how to make one (World.build and NOWHERE)"
    )
    return API_PREFIX + PARAM.sub(lambda m: values[m.group(1)], op.path)


def _call(api: Api, op: Op, url: str, token: str | None) -> tuple[int, str]:
    body: dict[str, Any] = {"json": {}} if op.method in BODY_METHODS else {}
    # A required query parameter (a search's `q`) gets a plain word.
    required = {
        p.alias: "budget" for p in op.route.dependant.query_params if p.field_info.is_required()
    }
    res = api.call(op.method, url, token, params=required, **body)
    return res.status_code, res.text[:200]


@dataclass
class World:
    api: Api
    circle: Circle
    bystander: tuple[str, str]  # in the group, joined after the session: not a participant
    params: dict[str, str]

    def call(self, op: Op, token: str | None, group_id: str | None = None) -> tuple[int, str]:
        values = dict(self.params)
        if group_id is not None:
            values["group_id"] = group_id
        return _call(self.api, op, _url(op, values), token)

    @classmethod
    def build(cls, api: Api) -> World:
        circle = Circle.create(api)
        gid = circle.group_id
        bystander = api.user("Bastien Bystander")
        api.ok(
            "POST", f"/groups/{gid}/members", circle.facilitator[1], json={"user_id": bystander[0]}
        )
        params = {
            "group_id": gid,
            "session_id": circle.session_id,
            "cycle_id": circle.cycle_id,
            "user_id": circle.members[-1][0],
            "phase": next(iter(Phase)).value,
        }
        if any("action_id" in op.params for op in OPS):
            params["action_id"] = cls._action(circle)
        if any(p in op.params for op in OPS for p in ("job_id", "segment_id")):
            params.update(cls._transcript(api, circle))
        if any(p in op.params for op in OPS for p in ("idea_id", "theme_id")):
            params.update(cls._idea(circle))  # after _action: phase 4 has its idea by then
        return cls(api, circle, bystander, params)

    @staticmethod
    def _idea(circle: Circle) -> dict[str, str]:
        theme = circle.api.ok("GET", circle.path("/ideas"), circle.facilitator[1])["themes"][0]
        return {"theme_id": theme["id"], "idea_id": theme["ideas"][0]["id"]}

    @staticmethod
    def _transcript(api: Api, circle: Circle) -> dict[str, str]:
        """A stored transcript (one recording, one segment), written as the worker writes it."""
        state = api.client.app.state.companion  # type: ignore[attr-defined]
        with state.sessions() as db, db.begin():
            job = TranscriptionJob(
                id=new_id(),
                group_id=circle.group_id,
                session_id=circle.session_id,
                phase=Phase.presentation,
                status="done",
                progress=1.0,
                audio_seconds=1.0,
                audio_format="wav/pcm_s16le",
                audio_kept=False,
                attempts=1,
            )
            db.add(job)
            db.flush()
            store_transcript(db, Keyring(db, state.master), job, [Segment(0.0, 1.0, "Bonjour.")])
            segment = db.scalar(
                select(TranscriptSegment.id).where(TranscriptSegment.job_id == job.id)
            )
        return {"job_id": job.id, "segment_id": str(segment)}

    @staticmethod
    def _action(circle: Circle) -> str:
        for phase in (Phase.presentation, Phase.clarification, Phase.contract, Phase.consultation):
            circle.phase(phase, "start")
            if phase is Phase.contract:
                circle.api.ok(
                    "PUT",
                    circle.path("/contract"),
                    circle.client[1],
                    json={"text": "Comment puis-je déléguer davantage ?"},
                )
            if phase is Phase.consultation:  # an idea, so the synthesis has something to read
                circle.api.ok(
                    "POST",
                    circle.path("/notes"),
                    circle.consultants[0][1],
                    json={"body": "Tu pourrais confier un premier tableau à ton adjoint."},
                )
            circle.phase(phase, "end")
        circle.phase(Phase.synthesis, "start")
        action = circle.api.ok(
            "POST",
            circle.path("/action-plan/actions"),
            circle.client[1],
            json={
                "objective": "Déléguer le reporting",
                "first_step": "En parler lundi",
                "indicator": "Reporting fait par l'équipe",
                "due_date": "2030-01-15",
            },
        )
        return str(action["id"])

    # Who is refused, and who is the weakest caller let through, for each need.

    def refused(self, need: Need) -> dict[str, str]:
        """name -> token for the members the need must refuse with 403."""
        c = self.circle
        return {
            Need.member: {},
            Need.facilitator: {"a plain member": c.consultants[0][1]},
            Need.manage: {"a plain member": c.consultants[0][1]},
            Need.participant: {"a member who is not a participant": self.bystander[1]},
            Need.client: {"a consultant": c.consultants[0][1], "the facilitator": c.facilitator[1]},
        }[need]

    def allowed(self, need: Need) -> dict[str, str]:
        """name -> token for the weakest callers the need must let through."""
        c = self.circle
        return {
            Need.member: {"a member who is not a participant": self.bystander[1]},
            Need.facilitator: {"the facilitator": c.facilitator[1]},
            Need.manage: {
                "the facilitator": c.facilitator[1],
                "a non-member admin": self.api.admin_token,
            },
            Need.participant: {"a consultant": c.consultants[0][1]},
            Need.client: {"the client": c.client[1]},
        }[need]


def _report(failures: list[str]) -> str:
    return f"{len(failures)} authorisation failure(s):\n  " + "\n  ".join(failures)


# --- the matrix ---------------------------------------------------------------------------


def test_every_route_needs_a_token(client: TestClient) -> None:
    api = Api(client, admin_token="")  # no account at all: nothing can be let through
    failures = []
    for op in OPS:
        for name, token in (("no token", None), ("an unknown token", "cc_nope_nope")):
            status, text = _call(api, op, _url(op, NOWHERE), token)
            if status != 401:
                failures.append(f"{op.id}: {name} got {status}, expected 401 ({text})")
    assert not failures, _report(failures)


def test_admin_routes_refuse_other_users(api: Api) -> None:
    _, token = api.user("Nina Nonadmin")
    failures = []
    for op in OPS:
        if _needs_admin(op):
            status, text = _call(api, op, _url(op, NOWHERE), token)
            if status != 403:
                failures.append(f"{op.id}: a non-admin got {status}, expected 403 ({text})")
    assert not failures, _report(failures)


def _mutation_order(op: Op) -> tuple[bool, bool, bool]:
    """Reads first, then writes, then deletions, and deleting the group very last."""
    return (op.method != "GET", op.method == "DELETE", op.path == "/groups/{group_id}")


def test_group_routes(api: Api) -> None:
    world = World.build(api)
    c = world.circle
    failures = []

    # Who must be refused: nothing changes, so the order does not matter.
    for op in GROUP_OPS:
        need = _access(op).need
        checks: list[tuple[str, str, str | None, int]] = [
            ("an outsider", c.outsider[1], None, 404),
            ("a member, on a group that does not exist", c.client[1], MISSING_GROUP, 404),
            ("an admin, on a group that does not exist", api.admin_token, MISSING_GROUP, 404),
        ]
        if need is not Need.manage:
            checks.append(("a non-member admin", api.admin_token, None, 404))
        checks += [(name, token, None, 403) for name, token in world.refused(need).items()]
        for name, token, group_id, want in checks:
            status, text = world.call(op, token, group_id)
            if status != want:
                failures.append(f"{op.id} [{need}]: {name} got {status}, expected {want} ({text})")

    # Who must be let through: reads must answer 200, writes anything but a refusal or a 5xx
    # (an empty body is usually a 422). Writes change the world, so they come last.
    for op in sorted(GROUP_OPS, key=_mutation_order):
        need = _access(op).need
        allowed = world.allowed(need)
        if op.method == "DELETE" and need is Need.manage:
            # A deletion succeeds once; the facilitator passes `manage` by the same check as
            # `facilitator`, so the administrator's way through is the one left to prove.
            allowed = {"a non-member admin": api.admin_token}
        for name, token in allowed.items():
            status, text = world.call(op, token)
            # 503 is a dependency that is down (the tests run without a language model), not
            # a refusal: the caller got past authorisation.
            crashed = status >= 500 and status != 503
            if status in REFUSED or crashed or (op.method == "GET" and status != 200):
                failures.append(f"{op.id} [{need}]: {name} was not let through: {status} ({text})")

    assert not failures, _report(failures)
