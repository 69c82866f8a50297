from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from companion.sessions.schemas import Person
from companion.text import TextSchema


class SourceKind(StrEnum):
    note = "note"
    segment = "segment"


class LabelSource(StrEnum):
    model = "model"
    words = "words"
    edited = "edited"  # a person's: never replaced by the key words or the model


class IdeaView(BaseModel):
    model_config = ConfigDict(frozen=True)  # one view serves every reader (service.view)

    id: str
    ref: str = Field(description="Short reference used in citations, e.g. I7.")
    text: str = Field(description="Exactly as said: a stretch of the source, never reworded.")
    author: Person | None = Field(description="The consultant (note author or recorder).")
    speaker: str | None = Field(description="The transcript's speaker label, when known.")
    source_kind: SourceKind
    source_id: str
    start: int = Field(description="Offset of the idea in its source text.")
    end: int
    start_s: float | None = Field(description="For a transcript: seconds in the recording.")
    end_s: float | None
    duplicate_of: str | None = Field(description="The earlier idea this one repeats, if any.")


class ThemeView(BaseModel):
    model_config = ConfigDict(frozen=True)  # one view serves every reader (service.view)

    id: str
    number: int
    label: str
    label_source: LabelSource = Field(
        description="'model': written by the language model; 'words': the ideas' key words "
        "(until the model has labelled the theme, or when no model is configured); 'edited': "
        "named by the facilitator, kept whatever ideas come."
    )
    label_current: bool = Field(
        description="False while the theme's ideas changed after its label was made; always "
        "true for an 'edited' label (a person's name for the theme holds as it grows)."
    )
    ideas: list[IdeaView]


class IdeasView(BaseModel):
    model_config = ConfigDict(frozen=True)  # one view serves every reader (service.view)

    session_id: str
    themes: list[ThemeView]
    ideas: int = Field(description="Ideas in all themes, near-duplicates included.")
    sources: int = Field(description="Notes and transcript segments they come from.")
    updated_at: datetime | None


# --- the facilitator's corrections ---------------------------------------------------------

LABEL_MAX = 80
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")


def _label(value: str) -> str:
    if not value:
        raise ValueError("is empty; write a name for the theme")
    if len(value) > LABEL_MAX:
        raise ValueError(f"is {len(value)} characters long; a label has at most {LABEL_MAX}")
    if _NOT_ONE_LINE.search(value):
        raise ValueError("must be plain text on one line; remove line breaks and tabs")
    return value


ThemeLabel = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_label),
    TextSchema(lambda: LABEL_MAX, refused=r"\x00-\x1f\x7f\u2028\u2029", rules="on one line"),
]


class IdeaMove(BaseModel):
    theme_id: str | None = Field(
        description="The theme of this session the idea goes to; null: a new theme of its own."
    )


class ThemeRename(BaseModel):
    label: ThemeLabel = Field(description="1 to 80 characters on one line; kept as written.")


class ThemeMerge(BaseModel):
    into: str = Field(description="The theme that takes the ideas and keeps its id and label.")
