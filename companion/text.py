"""Validated text types shared by every request: trimmed, non-empty, bounded, printable."""

from __future__ import annotations

import re
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
