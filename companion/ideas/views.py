from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from companion.sessions.views import Person


class SourceKind(StrEnum):
    note = "note"
    segment = "segment"


class LabelSource(StrEnum):
    model = "model"
    words = "words"


class IdeaView(BaseModel):
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
    id: str
    number: int
    label: str
    label_source: LabelSource = Field(
        description="'model': written by the language model; 'words': the ideas' key words "
        "(until the model has labelled the theme, or when no model is configured)."
    )
    label_current: bool = Field(description="False while ideas came in after the label.")
    ideas: list[IdeaView]


class IdeasView(BaseModel):
    session_id: str
    themes: list[ThemeView]
    ideas: int = Field(description="Ideas in all themes, near-duplicates included.")
    sources: int = Field(description="Notes and transcript segments they come from.")
    updated_at: datetime | None
