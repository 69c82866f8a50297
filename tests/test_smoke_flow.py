from tests.world import Circle


def test_full_text_only_session(api):
    circle = Circle.create(api)
    client_token = circle.client[1]
    consultant_token = circle.consultants[0][1]
    circle.phase("presentation", "start")
    api.ok(
        "POST", circle.path("/notes"), client_token, json={"body": "Mon équipe ne délègue pas 😅"}
    )
    circle.phase("presentation", "end")
    circle.phase("clarification", "start")
    api.ok("POST", circle.path("/notes"), consultant_token, json={"body": "Depuis quand ?"})
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    contract = api.ok(
        "PUT",
        circle.path("/contract"),
        client_token,
        json={"text": "Comment puis-je déléguer davantage à mon équipe ?"},
    )
    assert contract["text"].startswith("Comment puis-je")
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")
    action = api.ok(
        "POST",
        circle.path("/action-plan/actions"),
        client_token,
        json={
            "objective": "Déléguer le reporting",
            "first_step": "En parler lundi",
            "indicator": "Reporting fait par l'équipe",
            "due_date": "2030-01-15",
        },
    )
    assert action["status"] == "open"
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    learn = api.ok(
        "PUT",
        circle.path("/learnings"),
        consultant_token,
        json={"text": "J'ai appris", "rating": 4},
    )
    assert learn["average_rating"] == 4
    view = circle.phase("learning", "end")
    assert view["status"] == "closed"
    notes = api.ok("GET", circle.path("/notes"), consultant_token)
    assert [n["body"] for n in notes] == ["Mon équipe ne délègue pas 😅", "Depuis quand ?"]
