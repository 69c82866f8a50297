"""Bad input on groups, members, sessions and action follow-up (tests/test_bad_input.py has the
rest): a 4xx whose message says what to fix, and nothing stored changes."""

from __future__ import annotations

import pytest

from tests.world import Circle


def _snapshot(circle: Circle) -> dict:
    api, tok = circle.api, circle.facilitator[1]
    get = lambda path: api.call("GET", path, tok).json()  # noqa: E731
    session = get(circle.path())
    # Elapsed time moves on its own; everything else must stay as it was.
    for phase in [*session["phases"], session["current_phase"] or {}]:
        phase.pop("elapsed_seconds", None)
        phase.pop("overrun", None)
    return {
        "session": session,
        "notes": get(circle.path("/notes")),
        "contract": get(circle.path("/contract")),
        "plan": get(circle.path("/action-plan")),
        "learnings": get(circle.path("/learnings")),
        "members": get(f"/groups/{circle.group_id}/members"),
        "group": get(f"/groups/{circle.group_id}"),
    }


@pytest.fixture
def synthesis(api):
    """A session in its synthesis phase, with a note, a contract and an action stored."""
    circle = Circle.create(api)
    client = circle.client[1]
    circle.phase("presentation", "start")
    api.ok("POST", circle.path("/notes"), client, json={"body": "Hélène 😅 — 日本語"})
    circle.phase("presentation", "end")
    for phase in ("clarification", "contract"):
        circle.phase(phase, "start")
        if phase == "contract":
            api.ok(
                "PUT", circle.path("/contract"), client, json={"text": "Comment puis-je déléguer ?"}
            )
        circle.phase(phase, "end")
    circle.phase("consultation", "start")
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")
    action = api.ok(
        "POST",
        circle.path("/action-plan/actions"),
        client,
        json={
            "objective": "Déléguer",
            "first_step": "Lister",
            "indicator": "3 tâches",
            "due_date": "2030-01-01",
        },
    )
    circle.action_id = action["id"]  # type: ignore[attr-defined]
    return circle


def _bad(circle, method, path, token, expected, words, **kwargs):
    before = _snapshot(circle)
    res = circle.api.call(method, path, token, **kwargs)
    assert res.status_code == expected, (path, res.status_code, res.text)
    detail = res.json()["detail"]
    assert isinstance(detail, str)
    assert detail.strip()
    for word in words:
        assert word.lower() in detail.lower(), (word, detail)
    assert _snapshot(circle) == before


def test_bad_actions(synthesis):
    c, tok = synthesis, synthesis.client[1]
    url = c.path("/action-plan/actions")
    base = {"objective": "o", "first_step": "f", "indicator": "i"}
    _bad(c, "POST", url, tok, 422, ["due_date", "date"], json={**base, "due_date": "2026-02-30"})
    _bad(c, "POST", url, tok, 422, ["due_date"], json={**base, "due_date": "tomorrow"})
    _bad(c, "POST", url, tok, 422, ["due_date", "required"], json=base)
    action = c.path(f"/action-plan/actions/{c.action_id}")
    _bad(c, "PATCH", action, tok, 422, ["status"], json={"status": "finished"})
    _bad(
        c,
        "POST",
        f"{action}/progress",
        tok,
        422,
        ["future"],
        json={"note": "plus tard", "noted_on": "2999-01-01"},
    )
    _bad(
        c,
        "PATCH",
        c.path("/action-plan/actions/nope"),
        tok,
        404,
        ["no action"],
        json={"status": "done"},
    )


def test_bad_groups_and_members(synthesis, api):
    c, fac = synthesis, synthesis.facilitator[1]
    _bad(c, "PATCH", f"/groups/{c.group_id}", fac, 422, ["language"], json={"language": "de"})
    _bad(
        c, "PATCH", f"/groups/{c.group_id}", fac, 422, ["240"], json={"timeboxes": {"contract": 0}}
    )
    _bad(
        c,
        "PATCH",
        f"/groups/{c.group_id}",
        fac,
        422,
        ["timeboxes"],
        json={"timeboxes": {"lunch": 5}},
    )
    _bad(
        c,
        "POST",
        f"/groups/{c.group_id}/members",
        fac,
        422,
        ["role"],
        json={"user_id": c.outsider[0], "role": "boss"},
    )
    _bad(
        c,
        "POST",
        f"/groups/{c.group_id}/members",
        fac,
        409,
        ["already"],
        json={"user_id": c.members[1][0]},
    )
    _bad(
        c,
        "POST",
        f"/groups/{c.group_id}/members",
        fac,
        422,
        ["create the account"],
        json={"user_id": "no-such-user"},
    )


def test_session_with_bad_people(synthesis):
    c, fac = synthesis, synthesis.facilitator[1]
    url = f"/groups/{c.group_id}/sessions"
    _bad(c, "POST", url, fac, 422, ["must be a member"], json={"client_id": c.outsider[0]})
    _bad(
        c,
        "POST",
        url,
        fac,
        422,
        ["consultants must be members"],
        json={"client_id": c.members[1][0], "consultant_ids": [c.outsider[0]]},
    )
