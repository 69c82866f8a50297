from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class MemoryKind(StrEnum):
    """What a memory comes from. The client's draft synthesis is not one: it is the client's
    alone until they share what they keep (their contract, action plan, learning)."""

    note = "note"
    contract = "contract"
    action = "action"
    learning = "learning"
    segment = "segment"  # a transcript segment (its corrected text when edited)
    theme = "theme"  # a consultation theme: its label and its ideas, as grouped
    regulation = "regulation"  # a session's regulation points (keep / change), as last made


class MemoryHit(BaseModel):
    memory_id: str = Field(description="Stable id: '<kind>-<source id>'.")
    kind: MemoryKind
    source_id: str = Field(description="The note, contract, action or learning it comes from.")
    session_id: str
    phase: str
    author_id: str | None
    at: datetime = Field(description="When the source was written or last changed.")
    snippet: str = Field(description="The text, shortened to COMPANION_MEMORY_SNIPPET_CHARS.")
    score: float = Field(description="Cosine similarity to the query, higher is closer.")


class MemorySearchView(BaseModel):
    query: str
    hits: list[MemoryHit]
    pending: int = Field(
        description="Items of this group still waiting to be indexed (0 when memory is complete)."
    )
