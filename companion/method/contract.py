"""The contract is the client's request to the group in exactly one sentence."""

from __future__ import annotations

import re

# A sentence ends with . ! ? or … (French puts a space before ? and !) and the next one starts
# with a capital letter or a digit, so "Wait... what?" stays one sentence.
# Common abbreviations ("M.", "Mme.", "e.g.", "etc.") do not end a sentence.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"»”')\]]*\s+(?=[\"«“'(\[]?[A-ZÀ-ÖØ-Þ0-9])")
_ABBREVIATIONS = re.compile(
    r"(?:\b(?:M|Mme|Mlle|Dr|Pr|St|Mr|Mrs|Ms|etc|e\.g|i\.e|cf|vs|p\.ex|env|resp|n°)\.|\b[A-Z]\.)$",
    re.IGNORECASE,
)


def sentences(text: str) -> list[str]:
    parts: list[str] = []
    for piece in _BOUNDARY.split(text.strip()):
        if parts and _ABBREVIATIONS.search(parts[-1]):
            parts[-1] = f"{parts[-1]} {piece}"
        else:
            parts.append(piece)
    return [p for p in parts if p.strip(" .!?…")]


def one_sentence_problem(text: str) -> str | None:
    """None when `text` is one sentence; otherwise what to fix, quoting the sentences found."""
    found = sentences(text)
    if len(found) == 1:
        return None
    if not found:
        return "The contract is empty; state your request to the group in one sentence."
    quoted = " / ".join(f"«{s}»" for s in found[:4])
    return (
        f"The contract must be exactly one sentence; found {len(found)}: {quoted}. "
        "Keep one request, or merge them into a single sentence."
    )
