"""The clarity cues on the labelled questions they were written from (bench/eval cases and dev
sets): every flag the facilitator should see is raised, and no information question is flagged.
The held-out set is left to bench/eval/run.py: a test on it would tune the cues to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from companion.assist import clarity
from companion.method.phases import Language

EVAL = Path(__file__).parent.parent / "bench" / "eval"


def _labelled(language: Language) -> list[tuple[str, str]]:
    found = []
    for prefix in ("cases", "dev"):
        for case in json.loads((EVAL / f"{prefix}.{language}.json").read_text(encoding="utf-8")):
            found += [(question, label) for question, label in case["questions"]]
    return found


@pytest.mark.parametrize("language", list(Language))
def test_cues_flag_what_the_labelled_sets_flag(language: Language) -> None:
    wrong = []
    for question, label in _labelled(language):
        kind, _cue = clarity.classify(question, language)
        expected = clarity.Kind(label)
        if (kind in clarity.FLAGGED or expected in clarity.FLAGGED) and kind != expected:
            wrong.append(f"{question!r}: {kind} instead of {expected}")
    assert wrong == []


@pytest.mark.parametrize(
    ("language", "question", "kind"),
    [
        # What the client thinks or tried is asked for, not suggested.
        ("en", "What do you think you should do next?", "open_question"),
        ("en", "What have you considered?", "open_question"),
        ("en", "Have you considered a deputy?", "disguised_advice"),
        ("fr", "Qu'est-ce que tu penses qu'il faudrait changer ?", "open_question"),
        ("fr", "Quelles pistes as-tu envisagées ?", "open_question"),
        ("fr", "Tu as pensé à lui écrire ?", "disguised_advice"),
        # A judgment stays a judgment, even phrased as what the client thinks.
        ("fr", "Tu ne trouves pas que tu as été un peu trop gentille ?", "judgment"),
        ("en", "Aren't you being far too lenient with him?", "judgment"),
    ],
)
def test_information_cues_come_after_judgments_and_before_advice(
    language: str, question: str, kind: str
) -> None:
    assert clarity.classify(question, Language(language))[0] == clarity.Kind(kind)


def test_a_turn_with_no_question_recognised_goes_to_the_model_whole() -> None:
    turn = clarity.Utterance("n1", "u1", "Donc l'équipe ne sait rien encore.")
    assert clarity.undecided([turn], Language.fr) == ["Donc l'équipe ne sait rien encore."]
    answer = clarity.Utterance("n2", "client", "Non, pas encore.", client=True)
    assert clarity.undecided([answer], Language.fr) == []
    asked = clarity.Utterance("n3", "u1", "I was wondering what your manager thinks.")
    assert clarity.classify(asked.text, Language.en)[0] is clarity.Kind.open_question
