from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from companion.assist.ideas.schemas import ThemeView


class DraftStatus(StrEnum):
    ready = "ready"  # the model's part is there (see `current`)
    pending = "pending"  # not made yet: the background runner or POST .../synthesis makes it
    failed = "failed"  # the last try failed; `error` says why, the inputs are kept
    no_model = "no_model"  # no language model is configured: the outline only


class Citing(BaseModel):
    ideas: list[str] = Field(description="Ids of the ideas this statement comes from.")
    refs: list[str] = Field(description="Their short references (I3, I7), as in the themes.")
    broad: bool = Field(
        default=False, description="Cites so many ideas that its sources say little."
    )


class RelevantIdea(Citing):
    text: str
    theme_number: int
    score: float = Field(description="Closeness to the contract, -1 to 1 (embeddings).")


class ThemeRelevance(BaseModel):
    theme_id: str
    number: int
    label: str
    score: float = Field(description="Closeness of the theme's ideas to the contract.")


class Question(Citing):
    text: str


class DraftAction(Citing):
    """Shaped like the action plan's ActionCreate, so the client can edit and post it."""

    objective: str
    first_step: str
    resources: str
    indicator: str
    due_date: date


class SynthesisView(BaseModel):
    session_id: str
    contract: str | None
    themes: list[ThemeView]
    relevance: list[ThemeRelevance] = Field(description="Themes, closest to the contract first.")
    most_relevant: list[RelevantIdea]
    questions: list[Question] = Field(description="Questions for the client to ponder.")
    actions: list[DraftAction] = Field(description="A draft action plan of 2-4 actions.")
    status: DraftStatus
    current: bool = Field(description="False when ideas arrived after the model's part was made.")
    error: str | None
    prompt_version: str | None
    model_seconds: float | None = Field(description="How long the model's part took.")
    updated_at: datetime | None
