"""Groups, members, cycles and rotation, timeboxes and reminders, the audit log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import create_engine, text

from companion.store.models import utcnow
from tests.world import Circle


def test_rotation_proposes_members_not_yet_client(api):
    circle = Circle.create(api)
    fac = circle.facilitator[1]
    cycle = api.ok("GET", f"/groups/{circle.group_id}/cycles/{circle.cycle_id}", fac)
    assert cycle["size"] == 4
    assert cycle["sessions"] == 1
    rotation = api.ok("GET", f"/groups/{circle.group_id}/cycles/{circle.cycle_id}/rotation", fac)
    assert [c["user_id"] for c in rotation["candidates"]] == [m[0] for m in circle.members[1:]]
    assert [c["name"] for c in rotation["already_client"]] == ["Bérénice"]


def test_second_client_turn_needs_a_facilitator_override(api):
    circle = Circle.create(api)
    fac = circle.facilitator[1]
    sessions = f"/groups/{circle.group_id}/sessions"
    refused = api.call("POST", sessions, fac, json={"client_id": circle.client[0]})
    assert refused.status_code == 409
    assert "override_reason" in refused.json()["detail"]
    assert len(api.ok("GET", sessions, fac)) == 1

    reason = "Bérénice revient avec la suite de son projet"
    again = api.ok(
        "POST", sessions, fac, json={"client_id": circle.client[0], "override_reason": reason}
    )
    assert again["override_reason"] == reason
    actions = [e["action"] for e in api.ok("GET", f"/groups/{circle.group_id}/audit", fac)]
    assert "rotation.override" in actions


def test_only_a_facilitator_plans_sessions_and_cycles(api):
    circle = Circle.create(api)
    member = circle.members[1][1]
    res = api.call(
        "POST",
        f"/groups/{circle.group_id}/sessions",
        member,
        json={"client_id": circle.members[1][0]},
    )
    assert res.status_code == 403
    assert "facilitator" in res.json()["detail"]
    second = api.call("POST", f"/groups/{circle.group_id}/cycles", circle.facilitator[1])
    assert second.status_code == 409
    assert "still open" in second.json()["detail"]


def test_new_cycle_after_closing(api):
    circle = Circle.create(api)
    fac = circle.facilitator[1]
    base = f"/groups/{circle.group_id}/cycles"
    api.ok("POST", f"{base}/{circle.cycle_id}/close", fac)
    nxt = api.ok("POST", base, fac)
    assert nxt["number"] == 2
    rotation = api.ok("GET", f"{base}/{nxt['id']}/rotation", fac)
    assert len(rotation["candidates"]) == 4


def test_group_keeps_a_facilitator(api):
    circle = Circle.create(api)
    fac_id, fac = circle.facilitator
    res = api.call(
        "PATCH", f"/groups/{circle.group_id}/members/{fac_id}", fac, json={"role": "member"}
    )
    assert res.status_code == 409
    assert "at least one facilitator" in res.json()["detail"]


def test_reminder_follows_the_group_language(api):
    fr = Circle.create(api)
    en = Circle.create(api, group_name="Leaders circle", language="en")
    for circle in (fr, en):
        for phase in ("presentation", "clarification", "contract"):
            circle.phase(phase, "start")
            circle.phase(phase, "end")
        circle.phase("consultation", "start")
    fr_view = api.ok("GET", fr.path(), fr.client[1])
    en_view = api.ok("GET", en.path(), en.client[1])
    assert "ne répond pas" in fr_view["current_phase"]["reminder"]
    assert fr_view["current_phase"]["title"] == "Consultation"
    assert "does not answer" in en_view["current_phase"]["reminder"]


def test_timebox_overrun_is_flagged(api, settings):
    circle = Circle.create(api)
    api.ok(
        "PATCH",
        f"/groups/{circle.group_id}",
        circle.facilitator[1],
        json={"timeboxes": {"presentation": 5}},
    )
    circle.phase("presentation", "start")
    view = api.ok("GET", circle.path(), circle.client[1])
    assert view["current_phase"]["timebox_minutes"] == 5
    assert view["current_phase"]["overrun"] is False
    # Move the start 6 minutes back, as if the exposé had run long.
    engine = create_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE phase_runs SET started_at = :t WHERE session_id = :s"),
            {"t": utcnow() - timedelta(minutes=6), "s": circle.session_id},
        )
    engine.dispose()
    view = api.ok("GET", circle.path(), circle.client[1])
    assert view["current_phase"]["overrun"] is True
    assert view["current_phase"]["elapsed_seconds"] >= 360
    assert view["phases"][1]["timebox_minutes"] == 20  # defaults kept for the others


def test_audit_says_who_did_what_without_content(api):
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    api.ok(
        "POST", circle.path("/notes"), circle.client[1], json={"body": "Texte très confidentiel"}
    )
    entries = api.ok("GET", f"/groups/{circle.group_id}/audit", circle.facilitator[1])
    note = next(e for e in entries if e["action"] == "note.add")
    assert note["actor_id"] == circle.client[0]
    assert "confidentiel" not in str(entries)
    assert {"group.create", "member.add", "cycle.start", "session.create", "phase.start"} <= {
        e["action"] for e in entries
    }
    admin_view = api.ok("GET", "/api/v1/audit", api.admin_token)
    assert any(e["group_id"] == circle.group_id for e in admin_view)


def test_action_follow_up_after_the_session_closed(api):
    circle = Circle.create(api)
    client = circle.client[1]
    for phase in ("presentation", "clarification", "contract", "consultation"):
        circle.phase(phase, "start")
        circle.phase(phase, "end")
    circle.phase("synthesis", "start")
    action = api.ok(
        "POST",
        circle.path("/action-plan/actions"),
        client,
        json={
            "objective": "Déléguer",
            "first_step": "Lister les tâches",
            "indicator": "3 tâches déléguées",
            "due_date": "2020-01-01",
        },
    )
    assert action["overdue"] is True
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    circle.phase("learning", "end")
    url = circle.path(f"/action-plan/actions/{action['id']}")
    api.ok("POST", f"{url}/progress", client, json={"note": "Deux tâches déléguées"})
    done = api.ok("PATCH", url, client, json={"status": "done"})
    assert done["status"] == "done"
    assert done["overdue"] is False
    assert done["progress"][0]["note"] == "Deux tâches déléguées"
    closed = api.call(
        "POST",
        circle.path("/action-plan/actions"),
        client,
        json={"objective": "x", "first_step": "y", "indicator": "z", "due_date": "2030-01-01"},
    )
    assert closed.status_code == 409


def test_concurrent_starts_of_a_phase_leave_one_winner(api):
    circle = Circle.create(api)
    url = circle.path("/phases/presentation/start")
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda _: api.call("POST", url, circle.facilitator[1]).status_code, range(16))
        )
    assert codes.count(200) == 1
    assert set(codes) <= {200, 409}
    view = api.ok("GET", circle.path(), circle.client[1])
    assert view["current_phase"]["phase"] == "presentation"
