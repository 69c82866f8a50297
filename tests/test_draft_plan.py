"""The draft action plan held to the ideas it cites (companion/assist/synthesis/plan.py)."""

import json

import numpy as np

from companion.assist.synthesis import plan
from tests.test_ideas import _ready


def _v(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _support(vectors: dict[str, np.ndarray], texts: dict[str, str]) -> plan.Support:
    return plan.Support(vectors=vectors, texts=texts, contract="alléger le reporting", embed=list)


def test_a_cited_idea_stays_only_if_the_action_is_made_of_it():
    vectors = {f"I{n}": _v(1, n / 10, 0) for n in range(1, 7)}  # six ideas near the action
    vectors["I7"] = _v(0, 0, 1)  # and one about something else
    support = _support(vectors, dict.fromkeys(vectors, ""))
    assert support.made_of(_v(1, 0, 0), ["I1", "I7"]) == ["I1"]
    assert support.made_of(_v(1, 0, 0), ["I9"]) == []  # not an idea of the list


def test_a_field_nothing_said_supports_is_left_to_the_client():
    support = _support({}, {"I1": "Confie le tableau de bord à Anatole."})
    assert support.supported("Des appareils de communication", ["I1"]) == ""
    assert support.supported("None.", ["I1"]) == ""
    assert support.supported("Le tableau de bord", ["I1"]) == "Le tableau de bord"
    assert support.supported("Un reporting plus court", ["I1"]) == "Un reporting plus court"


def test_delays_all_alike_are_spread_by_size():
    assert plan.spread([4, 4, 4], [3, 1, 2]) == [6, 2, 4]
    assert plan.spread([2, 6], [1, 1]) == [2, 6]  # the model's own, when they differ
    assert plan.largest_likeness([_v(1, 0), _v(1, 0.1), _v(0, 1)]) > 0.99
    assert plan.largest_likeness([_v(1, 0)]) is None


def test_the_draft_keeps_one_of_two_alike_actions_and_no_filler(assisted, model_double):
    circle = _ready(assisted)
    action = {
        "objective": "Confier le tableau de bord mensuel à Anatole",
        "first_step": "Lui montrer le tableau de bord",
        "resources": "Des appareils de communication",
        "indicator": "Le tableau de bord rendu à temps",
        "weeks": 4,
        "ideas": ["I1"],
    }
    rest = {
        **action,
        "objective": "Protéger ses soirées et son sommeil",
        "first_step": "Finir à 19 h deux soirs par semaine",
        "resources": "None",
        "ideas": ["I3"],
    }
    again = {**action, "objective": "Confier le tableau de bord mensuel à Anatole."}
    model_double.reply(
        json.dumps(
            {
                "labels": [],
                "questions": [{"text": "Qu'est-ce qui te retient ?", "ideas": ["I1"]}],
                "actions": [action, again, rest],
            },
            ensure_ascii=False,
        )
    )
    made = assisted.ok("POST", circle.path("/synthesis"), circle.client[1])
    assert [a["objective"] for a in made["actions"]] == [action["objective"], rest["objective"]]
    first, second = made["actions"]
    assert first["resources"] is None  # nothing said supports it: the client's to fill
    assert second["resources"] is None  # "None" is no resource
    assert first["indicator"] == "Le tableau de bord rendu à temps"  # its words were said
    assert second["indicator"] == ""
    assert first["due_date"] != second["due_date"]  # the copied 4 weeks are spread


def test_an_action_alike_an_earlier_one_is_left_out_and_named():
    from companion.assist.synthesis.drafting import _distinct

    same, other = _v(1, 0), _v(0, 1)
    usable = [
        ("backlog", ["I1"], same),
        ("backlog again", ["I2"], _v(1, 0.1)),
        ("rest", ["I3"], other),
    ]
    kept, repeats = _distinct(usable)  # type: ignore[arg-type]
    assert [u[0] for u in kept] == ["backlog", "rest"]
    assert repeats == [(1, 0)]  # the second repeats the first
    kept, repeats = _distinct(usable[:2])  # type: ignore[arg-type]
    assert [u[0] for u in kept] == ["backlog"]  # a plan of one, not two alike


def test_two_alike_actions_are_sent_back_rather_than_shown(assisted, model_double):
    circle = _ready(assisted)
    action = {
        "objective": "Confier le tableau de bord mensuel à Anatole",
        "first_step": "Lui montrer le tableau de bord",
        "resources": "Le tableau de bord",
        "indicator": "Le tableau de bord rendu à temps",
        "weeks": 4,
        "ideas": ["I1"],
    }
    again = {**action, "objective": "Confier le tableau de bord mensuel à Anatole."}
    rest = {
        **action,
        "objective": "Protéger ses soirées et son sommeil",
        "first_step": "Finir à 19 h deux soirs par semaine",
        "ideas": ["I3"],
    }

    def answer(actions: list[dict[str, object]]) -> str:
        question = {"text": "Qu'est-ce qui te retient ?", "ideas": ["I1"]}
        return json.dumps(
            {"labels": [], "questions": [question], "actions": actions}, ensure_ascii=False
        )

    model_double.reply(answer([action, again]))
    model_double.reply(answer([action, rest]))
    made = assisted.ok("POST", circle.path("/synthesis"), circle.client[1])
    assert [a["objective"] for a in made["actions"]] == [action["objective"], rest["objective"]]
    retry = model_double.received[1].body["messages"][-1]["content"]
    assert "action 2 says what action 1 says" in retry
