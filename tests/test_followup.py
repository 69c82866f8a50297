"""Revisiting past action plans: the follow-up at the start of a session, and the calendar."""

from __future__ import annotations

import json
from datetime import date, timedelta

from icalendar import Calendar
from sqlalchemy import select

from companion.store.models import PhaseRun
from tests.doubles.openai_double import OpenAIDouble
from tests.world import Circle

ORDER = ["presentation", "clarification", "contract", "consultation", "synthesis", "learning"]


def _session_with_plan(circle: Circle) -> list[dict]:
    api, client = circle.api, circle.client[1]
    for phase in ORDER[:2]:
        circle.phase(phase, "start")
        circle.phase(phase, "end")
    circle.phase("contract", "start")
    api.ok(
        "PUT",
        circle.path("/contract"),
        client,
        json={"text": "Comment puis-je déléguer le reporting ?"},
    )
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")
    actions = [
        api.ok(
            "POST",
            circle.path("/action-plan/actions"),
            client,
            json={
                "objective": "Déléguer le reporting, enfin; vraiment",
                "first_step": "En parler lundi",
                "indicator": "Rapport de juin fait par l'équipe",
                "due_date": due,
            },
        )
        for due in ("2020-03-01", "2099-06-30")
    ]
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    api.ok(
        "PUT",
        circle.path("/learnings"),
        client,
        json={"text": "Je commence par lister mes tâches.", "rating": 5},
    )
    circle.phase("learning", "end")
    return actions


def test_the_group_hears_how_past_plans_went(api):
    circle = Circle.create(api)
    actions = _session_with_plan(circle)
    api.ok(
        "PATCH",
        circle.path(f"/action-plan/actions/{actions[1]['id']}"),
        circle.client[1],
        json={"status": "done"},
    )
    # The next session: a consultant reads the follow-up.
    follow = api.ok("GET", f"/groups/{circle.group_id}/follow-up", circle.consultants[1][1])
    [plan] = follow["plans"]
    assert plan["client"]["name"] == "Bérénice"
    assert plan["contract"] == "Comment puis-je déléguer le reporting ?"
    assert plan["first_thing"] == "Je commence par lister mes tâches."
    assert (plan["open"], plan["done"], plan["overdue"]) == (1, 1, 1)
    assert [a["id"] for a in follow["overdue"]] == [actions[0]["id"]]


def test_follow_up_never_shows_another_group(api):
    mine = Circle.create(api)
    other = Circle.create(api, group_name="Autre cercle")
    _session_with_plan(other)
    assert api.ok("GET", f"/groups/{mine.group_id}/follow-up", mine.client[1]) == {
        "plans": [],
        "overdue": [],
        "regulation": None,
    }
    res = api.call("GET", f"/groups/{other.group_id}/follow-up", mine.client[1])
    assert res.status_code == 404


def test_action_plan_as_icalendar(api):
    circle = Circle.create(api)
    actions = _session_with_plan(circle)
    res = api.call("GET", circle.path("/action-plan.ics"), circle.consultants[0][1])
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/calendar")
    body = res.content.decode()
    assert body.startswith("BEGIN:VCALENDAR\r\n")
    assert body.count("BEGIN:VEVENT") == 2
    assert "DTSTART;VALUE=DATE:20200301" in body
    assert f"UID:{actions[0]['id']}@codev-companion" in body
    assert "SUMMARY:Déléguer le reporting\\, enfin\\; vraiment" in body
    assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))
    events = Calendar.from_ical(res.content).walk("VEVENT")
    assert [e.start for e in events] == [date(2020, 3, 1), date(2099, 6, 30)]
    assert [e["SUMMARY"] for e in events] == ["Déléguer le reporting, enfin; vraiment"] * 2
    assert events[0]["DESCRIPTION"] == "En parler lundi — Rapport de juin fait par l'équipe"
    assert [str(e["STATUS"]) for e in events] == ["CONFIRMED", "CONFIRMED"]


def test_empty_plan_has_no_calendar(api):
    circle = Circle.create(api)
    res = api.call("GET", circle.path("/action-plan.ics"), circle.client[1])
    assert res.status_code == 404
    assert "no actions" in res.json()["detail"]


# --- the previous session's regulation points --------------------------------------------------


def _ran_long(circle: Circle, phase: str, minutes: float) -> None:
    """As if `phase` (ended) had lasted `minutes`."""
    state = circle.api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db, db.begin():
        run = db.scalar(
            select(PhaseRun).where(
                PhaseRun.session_id == circle.session_id, PhaseRun.phase == phase
            )
        )
        run.started_at = run.ended_at - timedelta(minutes=minutes)


def _summarised(circle: Circle, double: OpenAIDouble, point: str) -> dict:
    _session_with_plan(circle)  # ends with the client's learning, rated 5, and closes
    _ran_long(circle, "clarification", 27.5)  # 20 minutes by default
    double.reply(json.dumps({"points": [{"kind": "change", "text": point, "learnings": [1]}]}))
    return circle.api.ok(
        "POST", circle.path("/learnings/regulation/summary"), circle.facilitator[1]
    )


def test_the_next_session_opens_with_the_regulation_points(assisted, model_double):
    circle = Circle.create(assisted)
    made = _summarised(circle, model_double, "Tenir le temps.")
    assert made["points"][0]["learnings"] == [1]
    group, facilitator = f"/groups/{circle.group_id}", circle.facilitator[1]
    # The next session of the group: the facilitator opens with the points.
    nxt = assisted.ok(
        "POST", f"{group}/sessions", facilitator, json={"client_id": circle.members[1][0]}
    )
    assisted.ok("POST", f"{group}/sessions/{nxt['id']}/phases/presentation/start", facilitator)
    reg = assisted.ok("GET", f"{group}/follow-up", facilitator)["regulation"]
    assert reg["session_id"] == circle.session_id
    assert reg["summarised"] is True
    assert reg["edited"] is False
    assert [(p["kind"], p["text"]) for p in reg["points"]] == [("change", "Tenir le temps.")]
    assert reg["average_rating"] == 5
    assert reg["answers"] == 1
    [over] = reg["overruns"]
    assert (over["phase"], over["timebox_minutes"], over["minutes"], over["minutes_over"]) == (
        "clarification",
        20,
        28,
        8,
    )
    # Rewritten by the facilitator: the follow-up shows the edit, to every member.
    assisted.ok(
        "PUT",
        circle.path("/learnings/regulation/summary"),
        facilitator,
        json={"points": [{"kind": "keep", "text": "Garder la météo.", "learnings": [1]}]},
    )
    reg = assisted.ok("GET", f"{group}/follow-up", circle.members[2][1])["regulation"]
    assert reg["edited"] is True
    assert [p["text"] for p in reg["points"]] == ["Garder la météo."]


def test_an_ended_session_without_points_still_gives_its_facts(api):
    circle = Circle.create(api)
    _session_with_plan(circle)
    reg = api.ok("GET", f"/groups/{circle.group_id}/follow-up", circle.client[1])["regulation"]
    assert reg["summarised"] is False
    assert reg["points"] == []
    assert reg["average_rating"] == 5


def test_regulation_points_never_reach_another_group(assisted, model_double):
    other = Circle.create(assisted, group_name="Autre cercle")
    _summarised(other, model_double, "Secret de l'autre cercle.")
    mine = Circle.create(assisted)
    follow = assisted.ok("GET", f"/groups/{mine.group_id}/follow-up", mine.facilitator[1])
    assert follow["regulation"] is None
    assert "Secret" not in json.dumps(follow)
    res = assisted.call("GET", f"/groups/{other.group_id}/follow-up", mine.facilitator[1])
    assert res.status_code == 404
    assert "Secret" not in res.text
