"""No log line says what was said: the access log writes route templates, never paths or
query strings, and nothing else logs content (issue 14, item 5)."""

import logging

from tests.world import Api, Circle

CANARIES = ("Zéphyrine-canari", "Ornithorynque-7741")


def test_a_whole_session_logs_no_word_of_it(api: Api, caplog):
    caplog.set_level(logging.DEBUG)
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    note = f"{CANARIES[0]} ne délègue rien de son reporting."
    api.ok("POST", circle.path("/notes"), circle.client[1], json={"body": note})
    api.ok(
        "GET",
        f"/groups/{circle.group_id}/memory/search",
        circle.members[1][1],
        params={"q": CANARIES[1]},
    )
    circle.phase("presentation", "end")
    for phase in ("clarification", "contract"):
        circle.phase(phase, "start")
        circle.phase(phase, "end")
    circle.phase("consultation", "start")
    api.ok("POST", circle.path("/notes"), circle.consultants[0][1], json={"body": note})
    api.ok("GET", circle.path("/ideas"), circle.facilitator[1])
    api.call("GET", f"/groups/{circle.group_id}/sessions/{CANARIES[1]}", circle.outsider[1])

    # The test's own client (httpx) logs the URLs it asks for: that is not the service.
    records = [r for r in caplog.records if not r.name.startswith("httpx")]
    lines = [record.getMessage() for record in records]
    said = [line for line in lines if any(c in line for c in CANARIES)]
    assert said == []
    assert not [line for line in lines if circle.group_id in line]  # no path, so no id
    access = [r.getMessage() for r in records if r.name == "companion.access"]
    assert "GET /groups/{group_id}/memory/search 200" in " | ".join(access)
    assert any(line.startswith("POST /groups/{group_id}/sessions/") for line in access)
