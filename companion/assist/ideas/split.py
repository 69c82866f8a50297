"""Cut a consultation turn (a note or a transcript segment) into idea units.

An idea is a stretch [start, end) of its source text, never reworded: nothing can be invented,
and every idea points back to where it was said. A turn is cut at sentence ends; an opener
("Oui, alors…", "Well,") is left out, and a sentence too short to be an idea on its own ("Two
things.") is joined to the next one. The rules are data: prompts/ideas/split.<lang>.toml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from companion.method.phases import Language
from companion.prompts import data

# A sentence ends at . ! ? or … followed by a space (French puts a space before ? and !).
_SENTENCE_END = re.compile(r"[.!?…]+[\"»”)]*(?=\s|$)")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class SplitRules:
    fillers: tuple[re.Pattern[str], ...]
    min_words: int


@cache
def rules(language: Language) -> SplitRules:
    raw = data("ideas", "split", language)
    return SplitRules(
        fillers=tuple(re.compile(p, re.IGNORECASE) for p in raw["fillers"]),
        min_words=int(raw["min_words"]),
    )


def _sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _trim(text: str, start: int, end: int, fillers: tuple[re.Pattern[str], ...]) -> int:
    """The start of the span once blanks and openers are skipped."""
    moved = True
    while moved and start < end:
        moved = False
        while start < end and not text[start].isalnum():
            start += 1
        for filler in fillers:
            match = filler.match(text, start, end)
            if match and match.end() > start:
                start, moved = match.end(), True
    return start


def split(text: str, language: Language) -> list[Span]:
    """The ideas of one turn, in order; a turn with no words has none."""
    rule = rules(language)
    pieces: list[tuple[int, int]] = []
    for start, end in _sentences(text):
        start = _trim(text, start, end, rule.fillers)
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and _WORD.search(text, start, end):
            pieces.append((start, end))
    merged: list[tuple[int, int]] = []
    pending: int | None = None  # the start of a short lead-in sentence waiting for the next one
    for start, end in pieces:
        begin = start if pending is None else pending
        if len(_WORD.findall(text, start, end)) < rule.min_words:
            pending = begin
            continue
        merged.append((begin, end))
        pending = None
    if pending is not None:  # a short sentence closes the turn: it belongs to the idea before
        if merged:
            merged[-1] = (merged[-1][0], pieces[-1][1])
        else:
            merged.append((pending, pieces[-1][1]))
    return [Span(start, end, text[start:end]) for start, end in merged]
