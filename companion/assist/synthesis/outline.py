"""The outline's ranking, made with no language model: the themes and ideas closest to the
contract, by the sentence embeddings the ideas were grouped with. It is there within a second,
before the model's part."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from companion.assist.ideas import service as ideas
from companion.assist.ideas.grouping import unit
from companion.assist.ideas.schemas import IdeaView, ThemeView
from companion.assist.synthesis.inputs import Inputs
from companion.assist.synthesis.schemas import RelevantIdea, ThemeRelevance
from companion.store.keyring import Keyring
from companion.store.models import CodevSession

MOST_RELEVANT = 3


def relevance(
    db: Session,
    keys: Keyring,
    session: CodevSession,
    found: Inputs,
    embed: ideas.Embed,
) -> tuple[list[ThemeRelevance], list[RelevantIdea]]:
    """Themes and ideas by closeness to the contract (none without a contract)."""
    if not found.contract or not found.ideas.ideas:
        return [], []
    target = unit(np.asarray(ideas.embedded(embed, [found.contract])[0], dtype=np.float32))
    vectors = ideas.vectors(db, keys, session)
    themes: list[ThemeRelevance] = []
    scored: list[tuple[float, IdeaView, ThemeView]] = []
    for theme in found.ideas.themes:
        scores = [float(vectors[i.id] @ target) for i in theme.ideas if i.id in vectors]
        if not scores:
            continue
        themes.append(
            ThemeRelevance(
                theme_id=theme.id,
                number=theme.number,
                label=theme.label,
                score=round(float(np.mean(scores)), 3),
            )
        )
        scored += [
            (float(vectors[i.id] @ target), i, theme)
            for i in theme.ideas
            if i.id in vectors and i.duplicate_of is None
        ]
    themes.sort(key=lambda t: -t.score)
    scored.sort(key=lambda s: -s[0])
    top = [
        RelevantIdea(
            text=idea.text,
            theme_number=theme.number,
            score=round(score, 3),
            ideas=[idea.id],
            refs=[idea.ref],
        )
        for score, idea, theme in scored[:MOST_RELEVANT]
    ]
    return themes, top
