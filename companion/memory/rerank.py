"""The memory's nearest hits re-ranked by the words they share with the question.

Sentence embeddings rank a question-shaped memory ("Tu as pensé à la formation ?") close to a
question, whatever it is about, and the group's ideas on the topic asked about fall behind it;
the topic's own words find them. So the search takes a wider pool of the nearest memories from
Chroma, opens them (they stay sealed there: only this process reads them), and ranks them by
the vector score plus the share of the question's words they hold, each word weighted by how
rare it is in the pool (words the whole pool shares say little).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from companion.text import content_word, words

POOL = 48  # nearest memories re-ranked for a search of up to POOL hits
LEXICAL_WEIGHT = 0.5  # the word score (0-1) against the cosine (-1 to 1)
STEM = 6  # words compared on their first letters: "formation" finds "former", "formations"


def stems(text: str) -> set[str]:
    """The content words of `text` (4 letters or more, not a number), cut to STEM letters."""
    found = set()
    for word in map(content_word, words(text)):
        if len(word) >= 4 and not word.isdigit():
            found.add(word[:STEM])
    return found


def word_scores(query: str, bodies: Sequence[str]) -> list[float]:
    """For each body, the idf-weighted share of the query's words it holds (0 to 1)."""
    asked = stems(query)
    held = [stems(body) for body in bodies]
    if not asked or not held:
        return [0.0] * len(bodies)
    df = Counter(s for h in held for s in h & asked)
    idf = {s: math.log(1 + len(held) / (1 + df[s])) for s in asked}
    total = sum(idf.values())
    return [sum(idf[s] for s in asked & h) / total for h in held]


def order(query: str, bodies: Sequence[str], similarities: Sequence[float]) -> list[int]:
    """Indexes of the hits, best first: cosine similarity plus LEXICAL_WEIGHT times the word
    score; the vector order breaks ties."""
    lexical = word_scores(query, bodies)
    scored = [
        (sim + LEXICAL_WEIGHT * lex, -n)
        for n, (sim, lex) in enumerate(zip(similarities, lexical, strict=True))
    ]
    return [-n for _, n in sorted(scored, reverse=True)]
