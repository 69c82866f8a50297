"""Validated text types shared by every request (trimmed, non-empty, bounded, printable), and
the word helpers the assistance features share."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from contextvars import ContextVar
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from companion.config import get_settings

# The app sets this per request from the Settings it was created with; outside a request the
# process-wide settings apply.
text_limit: ContextVar[int | None] = ContextVar("text_limit", default=None)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(
            "contains control characters or unpaired surrogates; send plain UTF-8 text "
            "(line breaks and tabs are fine)"
        )
    return value


def _within_limit(value: str) -> str:
    limit = text_limit.get() or get_settings().max_text_chars
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; the limit is {limit}")
    return value


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("is empty; write some text")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200),
    AfterValidator(_not_blank),
    AfterValidator(_printable),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_not_blank),
    AfterValidator(_within_limit),
    AfterValidator(_printable),
]


# --- words ---------------------------------------------------------------------------------

# Curly apostrophes are normalised so that rules written with ' match "l’impression".
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "‘": "'"})
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
_ELIDED = re.compile(r"^(qu|[a-z])'|'s$")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).translate(_APOSTROPHES).strip()


def words(text: str) -> list[str]:
    return [w.lower().strip("'-") for w in _WORD.findall(normalise(text))]


def content_word(word: str) -> str:
    """The word without an elided article or pronoun ("l'équipe", "j'ai") or a possessive 's."""
    return _ELIDED.sub("", word)


def content_counts(
    texts: Sequence[str], stopwords: Collection[str]
) -> tuple[Counter[str], dict[str, int]]:
    """How often each content word of `texts` comes (4 letters or more, not a stopword, not a
    number), and the order they first came in."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for text in texts:
        for word in map(content_word, words(text)):
            if len(word) >= 4 and word not in stopwords and not word.isdigit():
                counts[word] += 1
                first.setdefault(word, len(first))
    return counts, first


def key_words(texts: Sequence[str], stopwords: Collection[str], limit: int) -> list[str]:
    """The most used content words of `texts`, first-seen order breaking ties."""
    counts, first = content_counts(texts, stopwords)
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    return ranked[:limit]
