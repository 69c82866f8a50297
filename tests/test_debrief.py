"""Learning and regulation (phase 6): questions by role and the session's evaluation."""

from __future__ import annotations

from tests.world import Circle


def test_questions_follow_the_role_and_language(api):
    fr = Circle.create(api)
    client_q = api.ok("GET", fr.path("/learnings/questions"), fr.client[1])
    assert client_q["role"] == "client"
    assert any("première chose" in q for q in client_q["mine"])
    consultant_q = api.ok("GET", fr.path("/learnings/questions"), fr.consultants[0][1])
    assert any("ma propre pratique" in q for q in consultant_q["mine"])
    assert consultant_q["process"] == client_q["process"]
    facilitator_q = api.ok("GET", fr.path("/learnings/questions"), fr.facilitator[1])
    assert facilitator_q["mine"] == []
    en = Circle.create(api, group_name="Leaders", language="en")
    assert "first thing" in " ".join(
        api.ok("GET", en.path("/learnings/questions"), en.client[1])["mine"]
    )


def test_regulation_sums_up_the_evaluation(api):
    circle = Circle.create(api)
    circle.advance_to("learning")
    api.ok(
        "PUT",
        circle.path("/learnings"),
        circle.client[1],
        json={"text": "Je délègue lundi.", "rating": 5},
    )
    api.ok(
        "PUT",
        circle.path("/learnings"),
        circle.consultants[0][1],
        json={"text": "Écouter.", "rating": 3},
    )
    reg = api.ok("GET", circle.path("/learnings/regulation"), circle.consultants[1][1])
    assert reg["answers"] == 2
    assert reg["participants"] == 5
    assert reg["average_rating"] == 4
    assert reg["ratings"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert reg["overruns"] == []
    assert sorted(reg["missing"]) == sorted(["Zoé", "Kwame", "Faustine"])
