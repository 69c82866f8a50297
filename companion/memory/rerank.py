"""The memory's nearest hits re-ranked: words shared with the question, what answers it, and the
session it is about.

Sentence embeddings rank a question-shaped memory ("Tu as pensé à la formation ?") close to a
question, whatever it is about, and the group's ideas on the topic asked about fall behind it.
So the search takes a wider pool of the nearest memories from Chroma, opens them (they stay
sealed there: only this process reads them), and scores each by
- its cosine similarity to the question,
- plus the share of the question's words it holds, each word weighted by how rare it is in the
  pool (words the whole pool shares say little),
- less a penalty when it is itself a question (a clarifying question of phase 2, a contract,
  anything ending with "?"), which answers nothing, unless the question asks about questions
  or requests (`asking` in prompts/memory/search.<lang>.toml),
- plus a pull towards the session the question is about: each session counts for the mean
  score of its best hits, and a memory loses what its session is behind the best one (a group's
  memory holds many sessions, and an idea of another session that happens to share a word is
  rarely what was asked about).
Measured by bench/eval/recall.py (docs/memory.md).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from companion.memory.schemas import MemoryKind
from companion.method.phases import Language, Phase
from companion.prompts import data
from companion.text import content_word, words

POOL = 48  # nearest memories re-ranked for a search of up to POOL hits
LEXICAL_WEIGHT = 0.5  # the word score (0-1) against the cosine (-1 to 1)
QUESTION_PENALTY = 0.3  # what a question-shaped memory loses: about the spread of the pool
SESSION_WEIGHT = 1.0  # the share of its session's lag behind the best session a memory loses
SESSION_BEST = 3  # a session counts for the mean of its best SESSION_BEST scores
STEM = 6  # words compared on their first letters: "formation" finds "former", "formations"


@dataclass(frozen=True)
class Candidate:
    """One opened memory of the pool."""

    body: str
    similarity: float  # cosine to the question
    session_id: str
    asks: bool  # question-shaped (asks_something)


def asks_something(body: str, *, kind: str, phase: str) -> bool:
    """Whether a memory is a question rather than something said about the problem: a note of
    the clarifying questions (phase 2 is questions, by the method), a contract (a request to
    the group), or any text ending with "?"."""
    if kind == MemoryKind.contract or (kind == MemoryKind.note and phase == Phase.clarification):
        return True
    return body.rstrip().endswith("?")


def stems(text: str) -> set[str]:
    """The content words of `text` (4 letters or more, not a number), cut to STEM letters."""
    found = set()
    for word in map(content_word, words(text)):
        if len(word) >= 4 and not word.isdigit():
            found.add(word[:STEM])
    return found


@cache
def _asking_stems() -> frozenset[str]:
    """The stems of words that ask about questions or requests, in every language (a group may
    ask in either)."""
    found: set[str] = set()
    for language in Language:
        found.update(stems(" ".join(data("memory", "search", language)["asking"])))
    return frozenset(found)


def asks_about_questions(query: str) -> bool:
    """Whether the question is about what was asked or requested (then a question-shaped memory
    may be the answer)."""
    return not stems(query).isdisjoint(_asking_stems())


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


def order(query: str, pool: Sequence[Candidate]) -> list[int]:
    """Indexes of the pool's memories, best first (the module's docstring); the vector order
    breaks ties."""
    if not pool:
        return []
    penalty = 0.0 if asks_about_questions(query) else QUESTION_PENALTY
    lexical = word_scores(query, [c.body for c in pool])
    scores = [
        c.similarity + LEXICAL_WEIGHT * lex - (penalty if c.asks else 0.0)
        for c, lex in zip(pool, lexical, strict=True)
    ]
    by_session: dict[str, list[float]] = defaultdict(list)
    for c, score in zip(pool, scores, strict=True):
        by_session[c.session_id].append(score)
    standing = {
        session: sum(best := sorted(found, reverse=True)[:SESSION_BEST]) / len(best)
        for session, found in by_session.items()
    }
    lead = max(standing.values())
    final = [
        score - SESSION_WEIGHT * (lead - standing[c.session_id])
        for c, score in zip(pool, scores, strict=True)
    ]
    return sorted(range(len(pool)), key=lambda n: (-final[n], n))
