"""Check the labelled consultations (bench/eval/consultations.<lang>.json) and summarise them.

    python bench/eval/check_consultations.py

Each file is a list of sessions (at least 4, every title of cases.<lang>.json among them), each
with a contract, 3 to 6 themes t1..tN and 12 to 20 utterances from 3 to 5 consultants holding
20 to 35 ideas in all. An idea is an exact stretch of its utterance's text, whole words, no
overlap, in text order, with a theme of its session; an utterance holds 0 to 3 ideas and at
least a third of a session's utterances hold 2 or 3. Across the files there are openers left
out of the ideas, and at least one prompt-injection turn. Exits non-zero on the first breach.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LANGUAGES = ("fr", "en")
INJECTION = re.compile(r"ignore (les|previous) instructions", re.IGNORECASE)


class Invalid(Exception):
    """A rule of the labelled data is broken."""


def require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise Invalid(f"{where}: {what}")


def spans(utterance: dict[str, Any], themes: set[str], where: str) -> list[tuple[int, int]]:
    """(start, end) of each idea in the utterance's text, checked, in order."""
    text = utterance["text"]
    require(isinstance(text, str) and text.strip() == text != "", where, "text empty or padded")
    found: list[tuple[int, int]] = []
    at = 0
    for pair in utterance["ideas"]:
        require(isinstance(pair, list) and len(pair) == 2, where, f"idea not a pair: {pair!r}")
        idea, theme = pair
        require(theme in themes, where, f"unknown theme {theme!r}")
        require(idea.strip() == idea != "", where, f"idea empty or padded: {idea!r}")
        require(idea in text, where, f"not a substring: {idea!r}")
        start = text.find(idea, at)
        require(start >= 0, where, f"overlaps or out of order: {idea!r}")
        end = start + len(idea)
        require(start == 0 or not text[start - 1].isalnum(), where, f"cut mid-word: {idea!r}")
        require(end == len(text) or not text[end].isalnum(), where, f"cut mid-word: {idea!r}")
        require(idea[0].isalnum() or idea[0] in "«'\"", where, f"starts on punctuation: {idea!r}")
        require(len(idea.split()) >= 4, where, f"too short for an idea: {idea!r}")
        found.append((start, end))
        at = end
    return found


def check_session(session: dict[str, Any], where: str) -> tuple[int, int, int, int, int]:
    """(utterances, ideas, themes, consultants, turns of 2-3 ideas) of a checked session."""
    required = {"title", "contract", "themes", "utterances"}
    optional = {"expose", "clarification"}  # phases 1-2, for bench/eval/recall.py
    require(required <= set(session) <= required | optional, where, "keys")
    contract = session["contract"]
    require(isinstance(contract, str) and contract.rstrip().endswith("?"), where, "contract")
    themes: dict[str, str] = session["themes"]
    require(3 <= len(themes) <= 6, where, f"{len(themes)} themes, want 3 to 6")
    require(list(themes) == [f"t{i}" for i in range(1, len(themes) + 1)], where, "theme ids")
    require(all(label.strip() for label in themes.values()), where, "empty theme label")
    utterances: list[dict[str, Any]] = session["utterances"]
    require(12 <= len(utterances) <= 20, where, f"{len(utterances)} utterances, want 12 to 20")
    speakers = {u["speaker"] for u in utterances}
    require(3 <= len(speakers) <= 5, where, f"{len(speakers)} consultants, want 3 to 5")
    used: dict[str, int] = dict.fromkeys(themes, 0)
    ideas = multi = 0
    for n, utterance in enumerate(utterances):
        require(set(utterance) == {"speaker", "text", "ideas"}, f"{where} #{n}", "keys")
        count = len(spans(utterance, set(themes), f"{where} #{n}"))
        require(count <= 3, f"{where} #{n}", f"{count} ideas, want at most 3")
        ideas += count
        multi += count >= 2
        for _idea, theme in utterance["ideas"]:
            used[theme] += 1
    require(20 <= ideas <= 35, where, f"{ideas} ideas, want 20 to 35")
    require(3 * multi >= len(utterances), where, f"only {multi} turns with 2-3 ideas")
    require(all(c >= 2 for c in used.values()), where, f"a theme with under 2 ideas: {used}")
    return len(utterances), ideas, len(themes), len(speakers), multi


def check_language(language: str) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = json.loads(
        (HERE / f"consultations.{language}.json").read_text(encoding="utf-8")
    )
    cases: list[dict[str, Any]] = json.loads(
        (HERE / f"cases.{language}.json").read_text(encoding="utf-8")
    )
    titles = [s["title"] for s in sessions]
    require(len(sessions) >= 4, language, f"{len(sessions)} sessions, want at least 4")
    require(len(set(titles)) == len(titles), language, "duplicate titles")
    missing = {c["title"] for c in cases} - set(titles)
    require(not missing, language, f"situations of cases.{language}.json missing: {missing}")
    require(len(set(titles) - {c["title"] for c in cases}) >= 1, language, "no new situation")
    print(f"{language}: {len(sessions)} sessions")
    for session in sessions:
        utterances, ideas, themes, speakers, multi = check_session(
            session, f"{language} {session['title']!r}"
        )
        print(
            f"  {session['title']!r}: {utterances} utterances ({multi} with 2-3 ideas), "
            f"{ideas} ideas, {themes} themes, {speakers} consultants"
        )
    return sessions


def main() -> int:
    try:
        everything = [s for language in LANGUAGES for s in check_language(language)]
        turns = [u for s in everything for u in s["utterances"]]
        openers = sum(1 for u in turns if u["ideas"] and not u["text"].startswith(u["ideas"][0][0]))
        injections = [u for u in turns if INJECTION.search(u["text"])]
        require(openers >= 4, "all", f"{openers} turns with an opener, want at least 4")
        require(len(injections) >= 1, "all", "no prompt-injection turn")
    except Invalid as problem:
        print(f"FAILED {problem}")
        return 1
    print(
        f"all: {len(everything)} sessions, {len(turns)} utterances, "
        f"{sum(len(u['ideas']) for u in turns)} ideas, {openers} turns with an opener, "
        f"{len(injections)} prompt-injection turns "
        f"({sum(1 for u in injections if not u['ideas'])} with no idea)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
