"""Theme labels that say what their own theme holds.

A label is shown on a theme only when it fits: by the sentence embeddings the ideas were
grouped with, it is closer on average to that theme's ideas than to any other theme's. A small
model labelling themes by number often writes the label of one theme on another (the label of
theme k made from idea Ik), which misleads the client more than no label: such a label is
dropped and the theme keeps its key words. The key words are the theme's own: words shared by
the whole consultation (the client's situation, named in every theme) rank below the words
only this theme's ideas use.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from companion.assist.ideas.grouping import unit
from companion.text import content_counts, content_word, words


def closeness(vector: np.ndarray, members: Sequence[np.ndarray]) -> float:
    """Mean cosine of a unit vector to a theme's ideas (unit vectors)."""
    return float(np.mean(np.stack(members) @ vector)) if members else -1.0


def closest(vector: np.ndarray, themes: Mapping[str, Sequence[np.ndarray]]) -> str | None:
    """The theme whose ideas `vector` is closest to on average; None on a tie or no theme."""
    scores = sorted(((closeness(vector, v), t) for t, v in themes.items()), reverse=True)
    if not scores or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        return None
    return scores[0][1]


def fitting(
    labels: Mapping[str, str],
    themes: Mapping[str, Sequence[np.ndarray]],
    vectors: Sequence[Sequence[float]],
) -> dict[str, str]:
    """The `labels` (theme id -> label, with `vectors` their embeddings in the same order) that
    are closest to their own theme's ideas among `themes` (theme id -> its ideas' unit
    vectors). The same label on two themes fits at most one of them."""
    kept: dict[str, str] = {}
    for (theme_id, label), raw in zip(labels.items(), vectors, strict=True):
        if theme_id not in themes:
            continue
        if closest(unit(np.asarray(raw, dtype=np.float32)), themes) == theme_id:
            kept[theme_id] = label
    return kept


def theme_words(texts: Sequence[str]) -> frozenset[str]:
    """The words a theme's `texts` use, as distinctive_words compares them."""
    return frozenset(content_word(w) for text in texts for w in words(text))


def distinctive_words(
    texts: Sequence[str],
    others: Sequence[Collection[str]],
    stopwords: Collection[str],
    limit: int,
) -> list[str]:
    """The content words (4 letters or more, not a stopword, not a number) of a theme's
    `texts`, ranked by how often they come in it and how few of the `others` themes use them
    (each other theme given by its theme_words; tf-idf over the consultation's themes);
    first-seen order breaks ties."""
    counts, first = content_counts(texts, stopwords)
    used_by = Counter(word for theme in others for word in theme if word in counts)
    themes = len(others) + 1

    def score(word: str) -> float:
        return counts[word] * math.log((1 + themes) / (1 + used_by[word]))

    ranked = sorted(counts, key=lambda w: (-score(w), first[w]))
    return ranked[:limit]


CENTRAL_WORDS = 8  # a label made of an idea keeps its first words


def central(texts: Sequence[str], vectors: Sequence[np.ndarray]) -> str:
    """The first words of the idea closest on average to the theme's others (its own words:
    nothing reworded), or "" for an empty theme."""
    if not texts:
        return ""
    best = int(np.argmax(np.stack(vectors) @ np.mean(np.stack(vectors), axis=0)))
    cut = texts[best].split()
    return " ".join(cut[:CENTRAL_WORDS]) + (" …" if len(cut) > CENTRAL_WORDS else "")
