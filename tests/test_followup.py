"""Revisiting past action plans: the follow-up at the start of a session, and the calendar."""

from __future__ import annotations

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


def test_empty_plan_has_no_calendar(api):
    circle = Circle.create(api)
    res = api.call("GET", circle.path("/action-plan.ics"), circle.client[1])
    assert res.status_code == 404
    assert "no actions" in res.json()["detail"]
