"""Validated text types shared by every request (trimmed, non-empty, bounded, printable), the
JSON integer they share, and the word helpers the assistance features share."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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
    limit = text_max()
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; the limit is {limit}")
    return value


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("is empty; write some text")
    return value


# --- what the JSON schema says of them ---------------------------------------------------
# The schema must refuse exactly what the validators refuse, or a request valid by the spec is
# refused (and one the spec calls invalid accepted). Strings are trimmed before they are
# checked, so a length or a forbidden character only counts between the first and the last
# character kept: a pattern says that, `maxLength` cannot.

# What `strip_whitespace` trims: Unicode White_Space (pydantic's; \x1c-\x1f stay, and are
# refused as control characters).
TRIMMED = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# What Python's str.strip() trims: the same and \x1c-\x1f.
STRIPPED = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# _CONTROL without the surrogates, which UTF-8 JSON text cannot carry.
CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"


def trimmed_pattern(most: int | None, refused: str = CONTROL, trimmed: str = TRIMMED) -> str:
    """The strings that, once `trimmed` is trimmed off both ends, keep 1 to `most` characters
    (any number when None), none of them in `refused` (character class ranges)."""
    kept = f"[^{trimmed}{refused}]"
    inner = f"[^{refused}]" if refused else r"[\s\S]"
    if most == 1:
        return f"^[{trimmed}]*{kept}[{trimmed}]*$"
    repeat = "*" if most is None else f"{{0,{most - 2}}}"
    return f"^[{trimmed}]*{kept}(?:{inner}{repeat}{kept})?[{trimmed}]*$"


@dataclass(frozen=True)
class TextSchema:
    """Annotated metadata: the JSON schema of a trimmed text type says what it refuses (the
    validators keep their own messages). `most` is read when the schema is made: the app makes
    its OpenAPI spec in a request, where `text_limit` is its own."""

    most: Callable[[], int | None]
    refused: str = CONTROL
    trimmed: str = TRIMMED
    rules: str = "no control characters (line breaks and tabs are fine)"

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        most = self.most()
        schema.pop("maxLength", None)  # counted before trimming: the pattern says it exactly
        schema["pattern"] = trimmed_pattern(most, self.refused, self.trimmed)
        length = f"1 to {most}" if most is not None else "at least 1"
        schema.setdefault("description", f"{length} characters once trimmed; {self.rules}.")
        return schema


NAME_MAX = 200


def text_max() -> int:
    return text_limit.get() or get_settings().max_text_chars


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=NAME_MAX),
    AfterValidator(_not_blank),
    AfterValidator(_printable),
    TextSchema(lambda: NAME_MAX),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_not_blank),
    AfterValidator(_within_limit),
    AfterValidator(_printable),
    TextSchema(text_max),
]


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number, not text or true/false")
    return value  # 3.0 is JSON Schema's integer 3; 3.5 is refused as a fraction


# A request's integer as JSON Schema's `integer` means it: 3 or 3.0, never true or "3" (which
# pydantic alone would take).
Integer = Annotated[int, BeforeValidator(_json_integer)]


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
    return counts_of((map(content_word, words(text)) for text in texts), stopwords)


def counts_of(
    said: Iterable[Iterable[str]], stopwords: Collection[str]
) -> tuple[Counter[str], dict[str, int]]:
    """content_counts of texts already cut into words (each without its elided article)."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for text in said:
        for word in text:
            if len(word) >= 4 and word not in stopwords and not word.isdigit():
                counts[word] += 1
                first.setdefault(word, len(first))
    return counts, first


def key_words(texts: Sequence[str], stopwords: Collection[str], limit: int) -> list[str]:
    """The most used content words of `texts`, first-seen order breaking ties."""
    counts, first = content_counts(texts, stopwords)
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    return ranked[:limit]
