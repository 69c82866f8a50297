"""Bad input gets a clear 4xx whose detail says what to fix, and nothing stored changes.

Every refusal below is checked against a snapshot of what the API shows (the session, its notes,
contract, action plan and learnings, the group's members, the audit log), taken before the
request and again after it. Valid unicode must be accepted and come back exactly.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.main import create_app
from companion.config import Settings
from companion.method.phases import PHASES
from tests.world import PREFIX, Api, Circle

UNICODE = "Hélène 😅 — 日本語"
JSON = {"Content-Type": "application/json"}
ACTION = {"objective": "Déléguer", "first_step": "Lister", "indicator": "3 tâches"}


def snapshot(circle: Circle) -> dict[str, Any]:
    api, fac = circle.api, circle.facilitator[1]
    views = {
        "session": (circle.path(), fac),
        "notes": (circle.path("/notes"), fac),
        "contract": (circle.path("/contract"), fac),
        "plan": (circle.path("/action-plan"), fac),
        "learnings": (circle.path("/learnings"), fac),
        "members": (f"/groups/{circle.group_id}/members", fac),
        "audit": (f"{PREFIX}/audit", api.admin_token),
    }

    def get(view: tuple[str, str]) -> tuple[int, Any]:
        res = api.call("GET", *view)
        return res.status_code, res.json()

    got = {name: get(view) for name, view in views.items()}
    # Elapsed time moves on its own; everything else must stay as it was.
    session = got["session"][1]
    for phase in [*session["phases"], session["current_phase"] or {}]:
        phase.pop("elapsed_seconds", None)
        phase.pop("overrun", None)
    return got


class Guard:
    """Sends bad requests and checks each is refused clearly while nothing changes."""

    def __init__(self, circle: Circle) -> None:
        self.circle = circle
        self.before = snapshot(circle)

    def refused(
        self,
        method: str,
        path: str,
        token: str,
        status: int,
        words: tuple[str, ...] | list[str],
        **kwargs: Any,
    ) -> str:
        res = self.circle.api.call(method, path, token, **kwargs)
        assert res.status_code == status, (method, path, res.status_code, res.text)
        body = res.json()
        detail = body["detail"]
        assert isinstance(detail, str), body
        assert len(detail.strip()) > 10, body
        for word in words:
            assert word.lower() in detail.lower(), (word, detail)
        if status == 422 and "errors" in body:
            assert all(e["field"] and e["message"] for e in body["errors"]), body
        assert snapshot(self.circle) == self.before, (method, path, detail)
        return detail

    def moved(self, phase: str, move: str) -> None:
        """A legal phase move; what it changes becomes the new reference."""
        self.circle.phase(phase, move)
        self.before = snapshot(self.circle)


def walk_to(circle: Circle, stop: str) -> None:
    """From where the session is, run the phases in order until `stop` runs; the contract phase
    records a contract and the synthesis phase an action on the way."""
    api, client = circle.api, circle.client[1]
    first = api.ok("GET", circle.path(), client)["next_phase"]
    for phase in PHASES[PHASES.index(first) :]:
        circle.phase(phase, "start")
        if phase == "contract":
            text = {"text": "Comment puis-je déléguer davantage ?"}
            api.ok("PUT", circle.path("/contract"), client, json=text)
        if phase == "synthesis":
            action = {**ACTION, "due_date": "2030-01-15"}
            circle.action_id = api.ok(  # type: ignore[attr-defined]
                "POST", circle.path("/action-plan/actions"), client, json=action
            )["id"]
        if phase == stop:
            return
        circle.phase(phase, "end")


# --- valid unicode is accepted ---------------------------------------------------------------


def test_unicode_and_emoji_are_accepted_and_come_back_exactly(api, settings):
    circle = Circle.create(api, names=(UNICODE, "Anatole", "Zoé", "Kwame"), facilitator="Ørjan")
    client, consultant = circle.client[1], circle.consultants[0][1]
    members = api.ok("GET", f"/groups/{circle.group_id}/members", client)
    assert UNICODE in [m["name"] for m in members]

    circle.phase("presentation", "start")
    bodies = [
        UNICODE,
        "Ligne 1\n\tLigne 2 — « guillemets » ’apostrophe’ ✅ 🇫🇷 👩🏽‍💻 ∑ ½",
        "x" * settings.max_text_chars,  # exactly at the limit
    ]
    for body in bodies:
        note = api.ok("POST", circle.path("/notes"), consultant, json={"body": body})
        assert note["body"] == body
    # Surrounding blanks are trimmed; the text itself stays as sent.
    api.ok("POST", circle.path("/notes"), client, json={"body": f"  {UNICODE}\n "})
    stored = api.ok("GET", circle.path("/notes"), client)
    assert [n["body"] for n in stored] == [*bodies, UNICODE]

    for phase in ("presentation", "clarification"):
        circle.phase(phase, "end")
        circle.phase(PHASES[PHASES.index(phase) + 1], "start")
    contract = f"{UNICODE} : comment déléguer ?"
    assert api.ok("PUT", circle.path("/contract"), client, json={"text": contract})["text"] == (
        contract
    )
    for phase in ("contract", "consultation"):
        circle.phase(phase, "end")
        circle.phase(PHASES[PHASES.index(phase) + 1], "start")
    spec = {"objective": UNICODE, "first_step": "Écrire 🖊️", "indicator": "日本語 ✔"}
    action = api.ok(
        "POST", circle.path("/action-plan/actions"), client, json={**spec, "due_date": "2030-02-28"}
    )
    progress = api.ok(
        "POST",
        circle.path(f"/action-plan/actions/{action['id']}/progress"),
        client,
        json={"note": UNICODE, "noted_on": date.today().isoformat()},
    )
    assert progress["progress"][0]["note"] == UNICODE
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    api.ok("PUT", circle.path("/learnings"), consultant, json={"text": UNICODE, "rating": 5})

    assert api.ok("GET", circle.path("/contract"), consultant)["text"] == contract
    [stored_action] = api.ok("GET", circle.path("/action-plan"), consultant)["actions"]
    assert {k: stored_action[k] for k in spec} == spec
    assert stored_action["due_date"] == "2030-02-28"
    assert stored_action["progress"][0]["note"] == UNICODE
    assert stored_action["session_id"] == circle.session_id
    learnings = api.ok("GET", circle.path("/learnings"), client)
    assert [(x["text"], x["author"]["name"]) for x in learnings["learnings"]] == [
        (UNICODE, "Anatole")
    ]
    assert api.ok("GET", circle.path(), consultant)["client"]["name"] == UNICODE


# --- before the session and during its first phase ---------------------------------------------


def test_bad_paths_enums_and_bodies(api, settings):
    circle = Circle.create(api)
    guard = Guard(circle)
    fac, client = circle.facilitator[1], circle.client[1]
    gid, notes = circle.group_id, circle.path("/notes")

    # An unknown phase in the path lists the valid ones.
    guard.refused("POST", circle.path("/phases/brainstorm/start"), fac, 422, ["phase", *PHASES])
    # Unknown enum values name the field and the accepted values.
    guard.refused(
        "POST",
        "/groups",
        api.admin_token,
        422,
        ["language", "'fr' or 'en'"],
        json={"name": "Autre cercle", "language": "de", "facilitator_ids": [circle.facilitator[0]]},
    )
    guard.refused(
        "POST",
        f"/groups/{gid}/members",
        fac,
        422,
        ["role", "'facilitator' or 'member'"],
        json={"user_id": circle.outsider[0], "role": "boss"},
    )
    # A page beyond any list is refused, not an overflow in the database (was a 500).
    for listed in (f"/groups/{gid}/audit", f"/groups/{gid}/model-calls", f"{PREFIX}/audit"):
        guard.refused("GET", listed, api.admin_token, 422, ["offset"], params={"offset": 2**63})
    # Nothing runs yet: phases go in order, and notes wait for a phase.
    guard.refused("POST", circle.path("/phases/presentation/end"), fac, 409, ["start presentation"])
    guard.refused(
        "POST", notes, client, 409, ["no phase is running", "start a phase"], json={"body": "Tôt"}
    )

    guard.moved("presentation", "start")
    guard.refused(
        "PUT",
        circle.path("/contract"),
        client,
        409,
        ["contract phase", "start it first"],
        json={"text": "Comment puis-je déléguer ?"},
    )
    guard.refused(
        "POST",
        circle.path("/action-plan/actions"),
        client,
        409,
        ["synthesis phase"],
        json={**ACTION, "due_date": "2030-01-01"},
    )

    def note(status: int, words: list[str], **kwargs: Any) -> str:
        return guard.refused("POST", notes, client, status, words, **kwargs)

    note(422, ["body", "empty", "write some text"], json={"body": ""})
    note(422, ["body", "empty", "write some text"], json={"body": " \n\t\u00a0\u3000 "})
    limit = settings.max_text_chars
    note(
        422, ["body", str(limit + 1), "the limit is", str(limit)], json={"body": "x" * (limit + 1)}
    )
    note(422, ["body", "control characters", "UTF-8"], json={"body": "a\x00b"})
    # An escaped lone surrogate is valid JSON but not text.
    note(422, ["body", "string"], content=b'{"body": "a\\ud800b"}', headers=JSON)
    note(422, ["body", "required"], json={"text": "wrong field"})
    note(422, ["body", "string"], json={"body": 42})
    note(400, ["not valid JSON", "send a JSON object"], content=b'{"body": "x"', headers=JSON)
    note(
        400,
        ["not valid JSON", "UTF-8"],
        content='{"body": "Hélène"}'.encode("latin-1"),
        headers=JSON,
    )
    # Too big, whether the length is declared or the body is streamed.
    too_big = b'{"body": "' + b"x" * settings.max_request_bytes + b'"}'
    words = ["over the limit", str(settings.max_request_bytes), "bytes"]
    note(413, words, content=too_big, headers=JSON)
    note(413, words, content=iter([too_big[:65536], too_big[65536:]]), headers=JSON)


# --- along the session, and after it closes -------------------------------------------------------


def test_bad_input_along_the_session(api):
    circle = Circle.create(api)
    fac, client, consultant = circle.facilitator[1], circle.client[1], circle.consultants[0][1]
    contract, actions = circle.path("/contract"), circle.path("/action-plan/actions")
    learnings = circle.path("/learnings")

    walk_to(circle, "contract")
    guard = Guard(circle)
    detail = guard.refused(
        "PUT",
        contract,
        client,
        422,
        ["exactly one sentence", "found 2", "«Comment puis-je déléguer ?»"],
        json={"text": "Comment puis-je déléguer ? Et comment recruter ?"},
    )
    assert "«Et comment recruter ?»" in detail
    guard.refused("PUT", contract, client, 422, ["empty", "one sentence"], json={"text": "..."})
    guard.refused("PUT", contract, client, 422, ["text", "200"], json={"text": "Comment " * 30})
    guard.refused("PUT", contract, client, 422, ["control characters"], json={"text": "Quoi\x00 ?"})

    circle.phase("contract", "end")
    walk_to(circle, "synthesis")
    guard = Guard(circle)
    action = f"{actions}/{circle.action_id}"  # type: ignore[attr-defined]
    for bad in ("2026-02-30", "tomorrow"):
        guard.refused(
            "POST", actions, client, 422, ["due_date", "date"], json={**ACTION, "due_date": bad}
        )
    guard.refused(
        "PATCH",
        action,
        client,
        422,
        ["status", "'open', 'done' or 'dropped'"],
        json={"status": "finished"},
    )
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    guard.refused(
        "POST",
        f"{action}/progress",
        client,
        422,
        ["cannot be dated in the future", tomorrow],
        json={"note": "Demain", "noted_on": tomorrow},
    )
    guard.refused(
        "POST",
        f"{action}/progress",
        client,
        422,
        ["noted_on", "date"],
        json={"note": "Fait", "noted_on": "2026-02-30"},
    )

    guard.moved("synthesis", "end")
    guard.moved("learning", "start")
    for rating in (0, 6, "five"):
        guard.refused(
            "PUT", learnings, consultant, 422, ["rating"], json={"text": "Appris", "rating": rating}
        )

    api.ok("PUT", learnings, consultant, json={"text": "J'ai appris", "rating": 4})
    guard.moved("learning", "end")
    assert guard.before["session"][1]["status"] == "closed"
    read_only = ["closed", "read-only"]
    guard.refused("POST", circle.path("/notes"), consultant, 409, read_only, json={"body": "x"})
    guard.refused("PUT", contract, client, 409, read_only, json={"text": "Comment faire ?"})
    guard.refused(
        "POST", actions, client, 409, read_only, json={**ACTION, "due_date": "2030-01-01"}
    )
    guard.refused(
        "PUT", learnings, consultant, 409, read_only, json={"text": "Encore", "rating": 5}
    )
    guard.refused(
        "POST", circle.path("/phases/learning/start"), fac, 409, ["session is closed", "nothing"]
    )


def test_the_app_settings_set_the_text_limit(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", max_text_chars=100)
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        circle = Circle.create(api)
        circle.phase("presentation", "start")
        Guard(circle).refused(
            "POST",
            circle.path("/notes"),
            circle.client[1],
            422,
            ["limit", "100"],
            json={"body": "x" * 101},
        )
