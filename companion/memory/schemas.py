from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from companion.config import get_settings
from companion.store.outbox import MemoryKind as MemoryKind  # the kinds, for the memory's users
from companion.text import STRIPPED, TextSchema

# A search query or a question: trimmed (str.strip), then 1 to COMPANION_MEMORY_MAX_QUERY_CHARS
# characters; checked where it is used (memory.search, ask.check_question), said here for the
# schema (with the process' settings).
MemoryQuery = Annotated[
    str,
    TextSchema(
        lambda: get_settings().memory.max_query_chars,
        refused="",
        trimmed=STRIPPED,
        rules="the limit is COMPANION_MEMORY_MAX_QUERY_CHARS",
    ),
]


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
