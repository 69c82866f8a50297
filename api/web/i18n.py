"""The pages' strings, from one message file per language (`messages/<lang>.toml`).

A key is a dotted path (`room.start_phase`); placeholders are `{name}`. A key missing in one
language falls back to the other, then to the key itself, so a gap shows, it never breaks.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
MESSAGES = Path(__file__).parent / "messages"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalogue(lang: str) -> dict[str, str]:
    with (MESSAGES / f"{lang}.toml").open("rb") as f:
        return _flatten(tomllib.load(f))


class Translator:
    """`t(key, **values)` in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._other = next(other for other in LANGUAGES if other != self.lang)

    def __call__(self, key: str, **values: object) -> str:
        text = catalogue(self.lang).get(key) or catalogue(self._other).get(key) or key
        return text.format(**values) if values else text


def preferred(cookie: str | None, group_language: str | None, accept: str | None) -> str:
    """The person's own switch first, then the group's language, then the browser's."""
    if cookie in LANGUAGES:
        return cookie
    if group_language in LANGUAGES:
        return group_language
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE
