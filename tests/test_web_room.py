"""The session room's pages show each role what the API lets it read, nothing more."""

from __future__ import annotations

from companion.sessions import changes
from companion.store.models import TranscriptionJob, utcnow
from tests.world import Api, Circle


def _room(circle: Circle, rest: str = "") -> str:
    return f"/groups/{circle.group_id}/sessions/{circle.session_id}{rest}"


def test_an_outsider_gets_no_room_and_no_name(api: Api) -> None:
    circle = Circle.create(api, group_name="Cercle très discret")
    outsider = api.browser(circle.outsider[0])[0]
    for rest in ("", "/panels/phase", "/panels/notes", "/panels/transcript", "/events"):
        page = outsider.get(_room(circle, rest))
        assert page.status_code == 404, rest
        assert "Cercle très discret" not in page.text
        assert "Bérénice" not in page.text


def test_the_room_follows_the_roles(api: Api) -> None:
    circle = Circle.create(api)
    circle.consult_on("Comment puis-je déléguer le reporting à mon équipe ?")
    api.ok(
        "POST",
        circle.path("/notes"),
        circle.consultants[0][1],
        json={"body": "Tu pourrais confier le reporting à Zoé une semaine sur deux."},
    )
    circle.phase("consultation", "end")
    consultant = api.browser(circle.consultants[0][0])[0]
    client = api.browser(circle.client[0])[0]
    facilitator = api.browser(circle.facilitator[0])[0]

    assert consultant.get(_room(circle, "/panels/synthesis")).status_code == 403
    assert consultant.get(_room(circle, "/panels/clarity")).status_code == 403
    work = consultant.get(_room(circle, "/panels/work")).text
    assert "/panels/synthesis" not in work
    assert "/panels/clarity" not in work
    assert "/panels/synthesis" in client.get(_room(circle, "/panels/work")).text
    assert client.get(_room(circle, "/panels/synthesis")).status_code == 200

    phase = consultant.get(_room(circle, "/panels/phase")).text
    assert "/phases/synthesis/start" not in phase
    assert "Entre deux phases : la suivante est « Synthèse et plan d&#39;action »." in phase
    assert "pas encore commencé" not in phase
    assert "/phases/synthesis/start" in facilitator.get(_room(circle, "/panels/phase")).text
    ideas = consultant.get(_room(circle, "/panels/ideas")).text
    assert "une semaine sur deux" in ideas
    assert "movable-themes" not in ideas
    assert "movable-themes" in facilitator.get(_room(circle, "/panels/ideas")).text


def test_the_room_speaks_the_group_language(api: Api) -> None:
    circle = Circle.create(api, language="en", group_name="Leaders circle")
    consultant = api.browser(circle.consultants[0][0])[0]
    page = consultant.get(_room(circle))
    assert page.status_code == 200
    assert "Bérénice&#39;s session" in page.text
    assert 'lang="en"' in page.text


def test_the_transcript_panel_is_shared_and_follows_each_change(api: Api) -> None:
    """One rendering for everyone who may correct it, made again when the transcript moves."""
    circle = Circle.create(api)
    circle.advance_to("presentation")
    circle.recorded("presentation", ["Je n'arrive pas à déléguer."], uploaded_by=circle.client[0])
    consultant = api.browser(circle.consultants[0][0])[0]
    client = api.browser(circle.client[0])[0]
    first = consultant.get(_room(circle, "/panels/transcript"))
    assert first.status_code == 200
    assert "Je n&#39;arrive pas à déléguer." in first.text
    assert first.text.count("seg-edit") == 1  # participants may correct it
    assert client.get(_room(circle, "/panels/transcript")).text == first.text

    [segment] = api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
    api.ok(
        "PATCH",
        circle.path(f"/transcript/segments/{segment['id']}"),
        circle.client[1],
        json={"text": "Je n'arrive pas à déléguer le reporting."},
    )
    assert "déléguer le reporting." in consultant.get(_room(circle, "/panels/transcript")).text
    circle.recorded(
        "presentation", ["Mon équipe attend mes décisions."], uploaded_by=circle.client[0]
    )
    again = client.get(_room(circle, "/panels/transcript")).text
    assert "Mon équipe attend mes décisions." in again
    assert again.count("seg-edit") == 2

    circle.phase("presentation", "end")
    circle.phase("clarification", "start")  # then to the end of the last phase: closed
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    api.ok("PUT", circle.path("/contract"), circle.client[1], json={"text": "Comment déléguer ?"})
    circle.phase("contract", "end")
    for phase in ("consultation", "synthesis", "learning"):
        circle.phase(phase, "start")
        circle.phase(phase, "end")
    closed = client.get(_room(circle, "/panels/transcript")).text
    assert "Mon équipe attend mes décisions." in closed
    assert "seg-edit" not in closed  # a closed session's transcript stands as it is


def test_a_live_draft_moves_the_transcript_but_not_what_the_ideas_are_made_from(api: Api) -> None:
    """A live stream's provisional text changes every few seconds and makes no idea: the ideas
    are not refreshed for it (the runner and every reader of the ideas would be)."""
    circle = Circle.create(api)
    circle.consult_on("Comment puis-je déléguer le reporting à mon équipe ?")
    consultant = circle.consultants[0][0]
    job_id = circle.recorded("consultation", ["Tu pourrais confier le reporting."], consultant)
    state = api.client.app.state.companion  # type: ignore[attr-defined]

    def now() -> tuple[str, str]:
        with state.sessions() as db:
            sid = circle.session_id
            return changes.transcript_fingerprint(db, sid), changes.said(db, sid)

    transcript, said = now()
    with state.sessions() as db, db.begin():
        job = db.get(TranscriptionJob, job_id)
        assert job is not None
        job.provisional_at = utcnow()  # what a draft pass stamps
    drafted = now()
    assert drafted[0] != transcript  # open pages reload the transcript panel
    assert drafted[1] == said  # the ideas stand
    circle.recorded("consultation", ["Et un binôme pour le reporting ?"], consultant)
    assert now()[1] != said
    said = now()[1]
    api.ok("POST", circle.path("/notes"), circle.consultants[1][1], json={"body": "Et Zoé ?"})
    assert now()[1] != said
