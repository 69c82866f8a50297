"""A theme's label says what its own ideas hold (companion/assist/ideas/labels.py)."""

from collections import Counter

import numpy as np

from companion.assist.ideas import labels


def _v(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


THEMES = {"a": [_v(1, 0, 0), _v(0.9, 0.1, 0)], "b": [_v(0, 1, 0)], "c": [_v(0, 0, 1)]}


def test_a_label_is_kept_only_on_the_theme_it_is_closest_to():
    said = {"a": "near a", "b": "near a too", "c": "near c"}
    vectors = [[1, 0.1, 0], [0.9, 0.2, 0], [0, 0.1, 1]]
    assert labels.fitting(said, THEMES, vectors) == {"a": "near a", "c": "near c"}
    assert labels.fitting({"gone": "x"}, THEMES, [[1, 0, 0]]) == {}  # no such theme any more
    assert labels.closest(_v(1, 1, 0), {"a": [_v(1, 0, 0)], "b": [_v(0, 1, 0)]}) is None  # a tie


def test_key_words_leave_out_what_the_whole_consultation_says():
    themes = [
        ["Confie le reporting mensuel à ton équipe", "Ton équipe peut prendre le reporting"],
        ["Parle de ton équipe à ta directrice"],
        ["Ton équipe te soutient, repose-toi"],
    ]
    said = [[labels.tokens(text) for text in theme] for theme in themes]
    spread = Counter(word for theme in said for word in labels.theme_words(theme))
    assert spread["équipe"] == 3
    assert spread["reporting"] == 1
    words = labels.distinctive_words(said[0], spread, 3, frozenset({"ton", "le", "à"}), 2)
    assert words[0] == "reporting"
    assert "équipe" not in words  # every theme names the team


def test_a_central_idea_gives_its_own_first_words():
    texts = ["Un deux trois quatre cinq six sept huit neuf dix", "autre idée", "proche"]
    vectors = [_v(1, 0.1, 0), _v(0, 1, 0), _v(1, 0, 0.1)]
    assert labels.central(texts, vectors) == "Un deux trois quatre cinq six sept huit …"
    assert labels.central([], []) == ""
