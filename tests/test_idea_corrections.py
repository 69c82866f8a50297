"""The facilitator corrects the grouping of ideas into themes (phase 4 on): move an idea,
rename a theme, merge two; later ideas follow the corrections.

The embeddings are the real bundled model; each test first checks the grouping it starts from,
so a change of model shows as a failed premise rather than a puzzling result.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.world import Api, Circle

DELEGATION = "Moi je confierais le tableau de bord mensuel à Anatole, pour commencer petit."
DELEGATION_TOO = "Délègue le tableau mensuel à ton adjoint Anatole."
MANAGEMENT = "Je pense que tu devrais expliquer à ta directrice que tu ne tiens plus le rythme."
REST = "Oui, alors… protège tes soirées et ton sommeil avant tout le reste."
SLEEP = "Dors davantage et garde tes soirées pour toi."


def _consultation(api: Api, *texts: str) -> Circle:
    """A session in phase 4 with one note per text, from the consultants in turn."""
    circle = Circle.create(api)
    circle.advance_to("consultation")
    for n, text in enumerate(texts):
        _note(circle, circle.consultants[n % 3], text)
    return circle


def _note(circle: Circle, who: tuple[str, str], body: str) -> None:
    circle.api.ok("POST", circle.path("/notes"), who[1], json={"body": body})


def _ideas(circle: Circle) -> Any:
    return circle.api.ok("GET", circle.path("/ideas"), circle.facilitator[1])


def _theme_of(view: dict[str, Any], text: str) -> Any:
    return next(t for t in view["themes"] if any(i["text"] in text for i in t["ideas"]))


def _idea(view: dict[str, Any], text: str) -> Any:
    return next(i for t in view["themes"] for i in t["ideas"] if i["text"] in text)


def _texts(theme: dict[str, Any]) -> set[str]:
    return {i["text"] for i in theme["ideas"]}


def _ideas_as_said(view: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What a correction must leave alone: each idea's ref, text and source."""
    return {
        i["id"]: (i["ref"], i["text"], i["source_id"], i["start"], i["end"], i["duplicate_of"])
        for t in view["themes"]
        for i in t["ideas"]
    }


def _move(circle: Circle, idea_id: str, theme_id: str | None) -> Any:
    return circle.api.ok(
        "PUT",
        circle.path(f"/ideas/{idea_id}/theme"),
        circle.facilitator[1],
        json={"theme_id": theme_id},
    )


def _rename(circle: Circle, theme_id: str, label: str) -> Any:
    return circle.api.ok(
        "PUT",
        circle.path(f"/themes/{theme_id}/label"),
        circle.facilitator[1],
        json={"label": label},
    )


def _merge(circle: Circle, theme_id: str, into: str) -> Any:
    return circle.api.ok(
        "POST", circle.path(f"/themes/{theme_id}/merge"), circle.facilitator[1], json={"into": into}
    )


def _audited(circle: Circle) -> list[tuple[str, str | None, str | None]]:
    rows = circle.api.ok("GET", f"/groups/{circle.group_id}/audit", circle.facilitator[1])
    return [(r["action"], r["target_type"], r["target_id"]) for r in rows]


def _poked(circle: Circle) -> set[str]:
    return circle.api.client.app.state.assist._poked  # type: ignore[attr-defined,no-any-return]


def test_an_idea_moves_to_another_theme_and_its_emptied_theme_goes(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT, REST)
    before = _ideas(circle)
    assert len(before["themes"]) == 3  # the premise: three themes, one idea each
    rest, management = _theme_of(before, REST), _theme_of(before, MANAGEMENT)
    idea = _idea(before, REST)

    after = _move(circle, idea["id"], management["id"])
    assert [t["id"] for t in after["themes"]] == [
        t["id"] for t in before["themes"] if t["id"] != rest["id"]
    ]
    moved_to = next(t for t in after["themes"] if t["id"] == management["id"])
    assert _texts(moved_to) == {MANAGEMENT, idea["text"]}
    assert moved_to["number"] == management["number"]
    assert _ideas_as_said(after) == _ideas_as_said(before)
    assert ("idea.move", "idea", idea["id"]) in _audited(circle)
    assert circle.session_id in _poked(circle)  # the draft and the labels are redone
    assert _ideas(circle) == after  # a refresh keeps the correction
    assert _move(circle, idea["id"], management["id"]) == after  # there already: no change


def test_an_idea_moves_to_a_new_theme_of_its_own(api):
    circle = _consultation(api, DELEGATION, DELEGATION_TOO, MANAGEMENT)
    before = _ideas(circle)
    shared = _theme_of(before, DELEGATION)
    assert _texts(shared) == {DELEGATION, DELEGATION_TOO}  # the premise
    idea = _idea(before, DELEGATION_TOO)

    after = _move(circle, idea["id"], None)
    assert len(after["themes"]) == len(before["themes"]) + 1
    new = next(t for t in after["themes"] if t["id"] not in {t["id"] for t in before["themes"]})
    assert new["number"] == max(t["number"] for t in before["themes"]) + 1
    assert [i["id"] for i in new["ideas"]] == [idea["id"]]
    assert new["label"]
    assert new["label_source"] == "words"
    kept = next(t for t in after["themes"] if t["id"] == shared["id"])
    assert _texts(kept) == {DELEGATION}
    assert _ideas_as_said(after) == _ideas_as_said(before)
    assert _move(circle, idea["id"], None) == after  # alone already: no new theme


def test_later_ideas_follow_the_corrections(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT, REST)
    before = _ideas(circle)
    management, rest = _theme_of(before, MANAGEMENT), _theme_of(before, REST)
    assert len(before["themes"]) == 3  # the premise
    # Rest and workload go together, says the facilitator: the next idea on sleep joins them.
    _move(circle, _idea(before, REST)["id"], management["id"])
    _note(circle, circle.consultants[1], SLEEP)
    after = _ideas(circle)
    assert _theme_of(after, SLEEP)["id"] == management["id"]
    assert rest["id"] not in {t["id"] for t in after["themes"]}

    # An idea put apart: the next one close to it joins it there, not its old theme.
    circle = _consultation(api, DELEGATION, DELEGATION_TOO)
    before = _ideas(circle)
    assert len(before["themes"]) == 1  # the premise
    apart = _move(circle, _idea(before, DELEGATION_TOO)["id"], None)
    own = _theme_of(apart, DELEGATION_TOO)
    _note(circle, circle.consultants[2], "Délègue donc ce tableau mensuel à ton adjoint.")
    after = _ideas(circle)
    assert _theme_of(after, "Délègue donc ce tableau mensuel à ton adjoint.")["id"] == own["id"]


def test_a_theme_is_renamed_and_the_key_words_never_replace_that_label(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT)
    theme = _theme_of(_ideas(circle), DELEGATION)
    assert theme["label_source"] == "words"

    view = _rename(circle, theme["id"], "  Déléguer pas à pas  ")
    renamed = next(t for t in view["themes"] if t["id"] == theme["id"])
    assert renamed["label"] == "Déléguer pas à pas"  # trimmed, otherwise as written
    assert renamed["label_source"] == "edited"
    assert renamed["label_current"]
    assert ("theme.rename", "theme", theme["id"]) in _audited(circle)

    _note(circle, circle.consultants[1], DELEGATION_TOO)  # a new idea joins the theme
    grown = _ideas(circle)
    joined = _theme_of(grown, DELEGATION_TOO)
    assert joined["id"] == theme["id"]  # the premise
    assert len(joined["ideas"]) == 2
    assert joined["label"] == "Déléguer pas à pas"
    assert joined["label_source"] == "edited"
    assert joined["label_current"]  # a person's label holds as the theme grows

    # Ideas leaving it change nothing either.
    moved = _move(circle, _idea(grown, DELEGATION_TOO)["id"], None)
    assert _theme_of(moved, DELEGATION)["label"] == "Déléguer pas à pas"


def _model_draft(labels: dict[int, str]) -> str:
    return json.dumps(
        {
            "labels": [{"theme": n, "label": label} for n, label in labels.items()],
            "questions": [{"text": "Qu'est-ce qui te retient de lâcher ?", "ideas": ["I1"]}],
            "actions": [
                {
                    "objective": f"Action {n}",
                    "first_step": ("Choisir un tableau", "Finir tôt deux soirs")[n - 1],
                    "resources": "Une heure par semaine",
                    "indicator": "Soirées libres",
                    "weeks": 2,
                    "ideas": [f"I{n}"],
                }
                for n in (1, 2)
            ],
        },
        ensure_ascii=False,
    )


def test_the_model_never_replaces_a_persons_label(assisted, model_double):
    circle = Circle.create(assisted)
    client = circle.client
    circle.consult_on("Comment puis-je alléger mon reporting mensuel sans perdre la qualité ?")
    _note(circle, circle.consultants[0], DELEGATION)
    _note(circle, circle.consultants[1], REST)
    themes = _ideas(circle)["themes"]
    assert [t["number"] for t in themes] == [1, 2]  # the premise
    _rename(circle, themes[0]["id"], "Lâcher le reporting")

    model_double.reply(_model_draft({1: "Déléguer pas à pas", 2: "Se reposer"}))
    made = assisted.ok("POST", circle.path("/synthesis"), client[1])
    assert made["status"] == "ready"
    labels = {t["number"]: (t["label"], t["label_source"]) for t in _ideas(circle)["themes"]}
    assert labels == {1: ("Lâcher le reporting", "edited"), 2: ("Se reposer", "model")}


def test_a_theme_merges_into_another_that_keeps_its_id_number_and_label(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT, REST)
    before = _ideas(circle)
    assert len(before["themes"]) == 3  # the premise
    target, merged = _theme_of(before, MANAGEMENT), _theme_of(before, REST)
    _rename(circle, target["id"], "Tenir le rythme")

    after = _merge(circle, merged["id"], target["id"])
    assert merged["id"] not in {t["id"] for t in after["themes"]}
    kept = next(t for t in after["themes"] if t["id"] == target["id"])
    assert kept["number"] == target["number"]
    assert kept["label"] == "Tenir le rythme"
    assert _texts(kept) == _texts(target) | _texts(merged)
    assert _ideas_as_said(after) == _ideas_as_said(before)
    assert ("theme.merge", "theme", merged["id"]) in _audited(circle)

    res = api.call(
        "POST",
        circle.path(f"/themes/{target['id']}/merge"),
        circle.facilitator[1],
        json={"into": target["id"]},
    )
    assert res.status_code == 422
    assert "itself" in res.json()["detail"]


def test_only_the_facilitator_corrects(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT)
    view = _ideas(circle)
    theme, idea = view["themes"][0], view["themes"][0]["ideas"][0]
    calls = [
        ("PUT", f"/ideas/{idea['id']}/theme", {"theme_id": None}),
        ("PUT", f"/themes/{theme['id']}/label", {"label": "Déléguer"}),
        ("POST", f"/themes/{theme['id']}/merge", {"into": view["themes"][1]["id"]}),
    ]
    for who in (circle.client, circle.consultants[0]):
        for method, rest, body in calls:
            res = api.call(method, circle.path(rest), who[1], json=body)
            assert res.status_code == 403, (rest, res.text)
    assert _ideas(circle) == view


def test_ids_of_another_session_or_none_are_not_found(api):
    circle = _consultation(api, DELEGATION, MANAGEMENT)
    view = _ideas(circle)
    theme, idea = view["themes"][0], view["themes"][0]["ideas"][0]
    other = api.ok(
        "POST",
        f"/groups/{circle.group_id}/sessions",
        circle.facilitator[1],
        json={"client_id": circle.consultants[0][0]},
    )
    elsewhere = dataclasses.replace(circle, session_id=other["id"])
    elsewhere.advance_to("consultation")
    _note(elsewhere, circle.consultants[1], REST)
    foreign = _ideas(elsewhere)["themes"][0]
    nowhere = "00000000-0000-4000-8000-000000000000"
    calls = [
        ("PUT", f"/ideas/{nowhere}/theme", {"theme_id": None}),
        ("PUT", f"/ideas/{foreign['ideas'][0]['id']}/theme", {"theme_id": theme["id"]}),
        ("PUT", f"/ideas/{idea['id']}/theme", {"theme_id": foreign["id"]}),
        ("PUT", f"/themes/{foreign['id']}/label", {"label": "Ailleurs"}),
        ("POST", f"/themes/{theme['id']}/merge", {"into": foreign["id"]}),
        ("POST", f"/themes/{nowhere}/merge", {"into": theme["id"]}),
    ]
    for method, rest, body in calls:
        res = api.call(method, circle.path(rest), circle.facilitator[1], json=body)
        assert res.status_code == 404, (rest, res.text)
        assert "in this session" in res.json()["detail"]
    assert _ideas(circle) == view
    assert _ideas(elsewhere)["themes"][0] == foreign


def test_corrections_wait_for_phase_4_and_stop_when_the_session_closes(api):
    circle = Circle.create(api)
    circle.advance_to("contract")
    res = api.call(
        "PUT", circle.path("/ideas/x/theme"), circle.facilitator[1], json={"theme_id": None}
    )
    assert res.status_code == 409
    assert "phase 4" in res.json()["detail"]

    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    _note(circle, circle.consultants[0], f"{DELEGATION} {MANAGEMENT}")
    view = _ideas(circle)
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")  # still open: corrections are taken
    theme = view["themes"][0]
    assert _rename(circle, theme["id"], "Déléguer")["themes"][0]["label"] == "Déléguer"
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    circle.phase("learning", "end")  # the session is closed
    calls = [
        ("PUT", f"/ideas/{theme['ideas'][0]['id']}/theme", {"theme_id": None}),
        ("PUT", f"/themes/{theme['id']}/label", {"label": "Autre"}),
        ("POST", f"/themes/{theme['id']}/merge", {"into": theme["id"]}),
    ]
    for method, rest, body in calls:
        res = api.call(method, circle.path(rest), circle.facilitator[1], json=body)
        assert res.status_code == 409, (rest, res.text)
        assert "closed" in res.json()["detail"]


def test_a_label_is_one_line_of_1_to_80_characters(api):
    circle = _consultation(api, DELEGATION)
    theme = _ideas(circle)["themes"][0]
    path = circle.path(f"/themes/{theme['id']}/label")
    for label, says in [
        ("   ", "empty"),
        ("Déléguer\npas à pas", "one line"),
        ("x" * 81, "at most 80"),
    ]:
        res = api.call("PUT", path, circle.facilitator[1], json={"label": label})
        assert res.status_code == 422, label
        assert says in res.json()["detail"]
    res = api.call("PUT", path, circle.facilitator[1], json={})
    assert res.status_code == 422
    assert "label" in res.json()["detail"]
    assert _rename(circle, theme["id"], "é" * 80)["themes"][0]["label"] == "é" * 80
