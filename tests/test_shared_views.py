"""What open pages share under load: one reading of a change for every viewer, and only the
changes a panel shows reload it (bench/load.py measures the effect; these check the behaviour).
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.web import render
from api.web.watch import SLOTS, SPREAD_S, Watch
from companion.memory.embeddings import UniversalSentenceEncoder
from companion.sessions.changes import fingerprints
from tests.test_ideas import _consultation, _note
from tests.world import Api, Circle

IDEA = "Tu pourrais confier le tableau de bord à ton adjointe pendant un mois."
OTHER = "Et si tu bloquais deux créneaux sans réunion chaque semaine ?"


def _panel(browser: TestClient, circle: Circle, name: str) -> str:
    res = browser.get(circle.path(f"/panels/{name}"), headers={"hx-request": "true"})
    assert res.status_code == 200, res.text
    return res.text


def test_a_panel_is_the_same_for_every_viewer_and_follows_each_change(api: Api) -> None:
    circle = _consultation(api)
    first, second = circle.consultants[0], circle.consultants[1]
    _note(circle, first, IDEA)
    page_a, _ = api.browser(first[0])
    page_b, _ = api.browser(second[0])
    facilitator, _ = api.browser(circle.facilitator[0])
    notes = _panel(page_a, circle, "notes")
    assert "tableau" in notes
    assert _panel(page_b, circle, "notes") == notes
    ideas = _panel(page_a, circle, "ideas")
    assert _panel(page_b, circle, "ideas") == ideas
    assert "idea-move" not in ideas  # a consultant's copy has no correction tools
    assert "idea-move" in _panel(facilitator, circle, "ideas")  # the facilitator's has

    _note(circle, second, OTHER)  # a change: every viewer sees it, none the old rendering
    assert "créneaux" in _panel(page_b, circle, "notes")
    assert "créneaux" in _panel(page_a, circle, "notes")
    api.ok("GET", circle.path("/ideas"), first[1])  # brought up to date
    assert "créneaux" in _panel(page_a, circle, "ideas")
    assert "créneaux" in _panel(page_b, circle, "ideas")


def test_a_shared_panel_is_refused_to_whoever_may_not_see_the_room(api: Api) -> None:
    circle = _consultation(api)
    _note(circle, circle.consultants[0], IDEA)
    member, _ = api.browser(circle.consultants[0][0])
    assert "tableau" in _panel(member, circle, "notes")  # rendered and kept
    _, token = api.user("Olga")
    res = api.client.get(
        circle.path("/panels/notes"),
        headers={"hx-request": "true", "Authorization": f"Bearer {token}"},
    )
    assert res.status_code in (403, 404)
    assert "tableau" not in res.text


def test_shared_templates_get_nothing_of_the_viewer(api: Api) -> None:
    seen: dict[str, object] = {}

    class Spy:
        def render(self, context: dict[str, object]) -> str:
            seen.update(context)
            return "<p>ok</p>"

    circle = _consultation(api)
    page, _ = api.browser(circle.consultants[0][0])
    real = render.templates.get_template
    render.templates.get_template = lambda name: Spy()  # type: ignore[assignment,return-value]
    try:
        _panel(page, circle, "notes")
    finally:
        render.templates.get_template = real  # type: ignore[method-assign]
    assert not {"me", "csrf", "request"} & set(seen)
    assert {"t", "lang", "notes"} <= set(seen)


def test_consultants_notes_of_phase_4_do_not_reload_the_clarity_panel(
    client: TestClient, api: Api
) -> None:
    circle = _consultation(api)

    def now() -> dict[str, str]:
        with client.app.state.companion.sessions() as db:  # type: ignore[attr-defined]
            return fingerprints(db, circle.session_id)

    before = now()
    _note(circle, circle.consultants[0], IDEA)
    after = now()
    assert after["notes"] != before["notes"]
    assert after["clarity"] == before["clarity"]
    _note(circle, circle.client, "Oui, j'ai déjà essayé une fois.")  # the client speaks: alert
    assert now()["clarity"] != after["clarity"]


def test_pages_of_a_session_take_turns_after_a_change() -> None:
    watch = Watch()
    delays = [watch.slot() for _ in range(SLOTS + 2)]
    assert delays[0] == 0.0
    assert sorted(set(delays)) == [n * SPREAD_S / SLOTS for n in range(SLOTS)]
    assert max(delays) < SPREAD_S


def test_a_text_embedded_lately_is_not_embedded_again_and_callers_get_copies() -> None:
    encoder = UniversalSentenceEncoder()
    calls: list[list[str]] = []
    real = encoder._encode

    def counting(model: object, texts: list[str]) -> object:
        calls.append(list(texts))
        return real(model, texts)

    encoder._encode = counting  # type: ignore[method-assign]
    first = encoder.embed([IDEA, OTHER, IDEA])
    assert calls == [[IDEA, OTHER]]  # each text once
    assert first[0] == first[2]
    first[0][0] = 99.0  # what a caller does with its copy changes nothing kept
    again = encoder.embed([OTHER, IDEA])
    assert calls == [[IDEA, OTHER]]  # nothing embedded again
    assert again[1][0] != 99.0
    assert again[1] == first[2]
