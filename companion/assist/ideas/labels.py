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
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from companion.assist.ideas.grouping import unit
from companion.text import content_word, counts_of, words

Tokens = tuple[str, ...]  # a text's words, each without its elided article or pronoun


Members = Sequence[np.ndarray] | np.ndarray  # a theme's ideas' unit vectors, or them stacked


def closeness(vector: np.ndarray, members: Members) -> float:
    """Mean cosine of a unit vector to a theme's ideas (unit vectors)."""
    if len(members) == 0:
        return -1.0
    stacked = members if isinstance(members, np.ndarray) else np.stack(members)
    return float(np.mean(stacked @ vector))


def closest(vector: np.ndarray, themes: Mapping[str, Members]) -> str | None:
    """The theme whose ideas `vector` is closest to on average; None on a tie or no theme."""
    scores = sorted(((closeness(vector, v), t) for t, v in themes.items()), reverse=True)
    if not scores or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        return None
    return scores[0][1]


def fitting(
    labels: Mapping[str, str],
    themes: Mapping[str, Members],
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


def tokens(text: str) -> Tokens:
    """A text's words as labels compare them, in order."""
    return tuple(content_word(w) for w in words(text))


def theme_words(said: Sequence[Tokens]) -> frozenset[str]:
    """The words a theme's ideas use (each idea's `tokens`), as distinctive_words counts
    themes by them."""
    return frozenset(word for idea in said for word in idea)


def distinctive_words(
    said: Sequence[Tokens],
    spread: Mapping[str, int],
    themes: int,
    stopwords: Collection[str],
    limit: int,
) -> list[str]:
    """The content words (4 letters or more, not a stopword, not a number) of a theme's ideas
    (each idea's `tokens`), ranked by how often they come in it and how few of the
    consultation's other themes use them (`spread`: how many of all `themes` use each word,
    this one among them, by theme_words; tf-idf over the themes); first-seen order breaks
    ties."""
    counts, first = counts_of(said, stopwords)

    def score(word: str) -> float:
        return counts[word] * math.log((1 + themes) / spread.get(word, 1))

    ranked = sorted(counts, key=lambda w: (-score(w), first[w]))
    return ranked[:limit]


CENTRAL_WORDS = 8  # a label made of an idea keeps its first words


def central(texts: Sequence[str], vectors: Members) -> str:
    """The first words of the idea closest on average to the theme's others (its own words:
    nothing reworded), or "" for an empty theme."""
    if not texts:
        return ""
    stacked = vectors if isinstance(vectors, np.ndarray) else np.stack(vectors)
    best = int(np.argmax(stacked @ np.mean(stacked, axis=0)))
    cut = texts[best].split()
    return " ".join(cut[:CENTRAL_WORDS]) + (" …" if len(cut) > CENTRAL_WORDS else "")
