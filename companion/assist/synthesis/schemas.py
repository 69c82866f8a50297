"""The synthesis' shapes: the view the API answers with, the model's answer, what is sealed."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from companion.assist.ideas.schemas import ThemeView

# --- the view the API answers with -----------------------------------------------------------


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
    resources: str | None = Field(description="None: nothing said supports one; the client's.")
    indicator: str = Field(description='"" when nothing said supports one: the client writes it.')
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


# --- the model's answer --------------------------------------------------------------------


class ModelLabel(BaseModel):
    theme: int
    label: str = Field(min_length=1, max_length=80)


class ModelQuestion(BaseModel):
    text: str = Field(min_length=3, max_length=300)
    ideas: list[str]


class ModelAction(BaseModel):
    """Lengths as the action plan takes them, so the client can post a draft action as is."""

    objective: str = Field(min_length=3, max_length=200)
    first_step: str = Field(min_length=3, max_length=200)
    resources: str = Field(max_length=200)
    indicator: str = Field(min_length=3, max_length=200)
    weeks: int = Field(ge=1, le=12)
    ideas: list[str]


MAX_QUESTIONS = 4
MAX_ACTIONS = 4


class ModelDraft(BaseModel):
    labels: list[ModelLabel] = Field(max_length=20)
    questions: list[ModelQuestion] = Field(min_length=1, max_length=MAX_QUESTIONS)
    actions: list[ModelAction] = Field(min_length=2, max_length=MAX_ACTIONS)


class ModelUpdate(ModelDraft):
    """The model's addendum to a draft for the ideas that came after it: labels for new themes
    and at most one action drawn from the new ideas (no question: every token counts here)."""

    questions: list[ModelQuestion] = Field(default=[], max_length=0)
    actions: list[ModelAction] = Field(max_length=1)


# --- what is sealed --------------------------------------------------------------------------


class StoredDraft(BaseModel):
    """What is sealed in syntheses.body: the checked model part, citing idea ids."""

    labels: dict[str, str]  # theme id -> label
    questions: list[Question]
    actions: list[DraftAction]
    # The ideas the draft covers, and those its last full run saw (an update adds to a draft
    # only while most of its ideas had a full run); empty in older drafts, made again in full.
    made_from: list[str] = []
    full_from: list[str] = []
    contract_id: str | None = None
    # The themes whose label the model was asked for, with their basis then: a label that
    # failed its check is not asked again for the same ideas (drafting._unlabelled).
    label_tried: dict[str, str] = {}
