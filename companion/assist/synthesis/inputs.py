"""What a draft is made from: the contract, the ideas by theme, and the basis that names them.

The basis fingerprints the contract, the prompt files and which idea sits in which theme, so a
stored draft made from other inputs is recognised as stale without opening anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.assist.ideas import service as ideas
from companion.assist.ideas.schemas import IdeasView, IdeaView
from companion.errors import Conflict
from companion.method.phases import Language
from companion.prompts import prompt
from companion.store.keyring import Keyring
from companion.store.models import CodevSession, Contract


@dataclass(frozen=True)
class Inputs:
    contract: str | None
    contract_id: str | None
    ideas: IdeasView
    basis: str
    language: Language

    @property
    def all_ideas(self) -> list[IdeaView]:
        found = [i for t in self.ideas.themes for i in t.ideas]
        return sorted(found, key=lambda i: int(i.ref[1:]))


def read(db: Session, keys: Keyring, session: CodevSession, language: Language) -> Inputs:
    """The session's contract and ideas as stored now, with their basis."""
    row = db.scalar(select(Contract).where(Contract.session_id == session.id))
    text = keys.open(session.group_id, row, "text") if row is not None else None
    view = ideas.view(db, keys, session)
    version = prompt_version(language)
    parts = [
        f"contract:{row.id}:{row.confirmed_at.isoformat()}" if row else "contract:-",
        f"prompt:{language}:{version}",
        *sorted(f"{i.id}:{t.id}" for t in view.themes for i in t.ideas),
    ]
    return Inputs(
        contract=text,
        contract_id=row.id if row else None,
        ideas=view,
        basis=hashlib.sha256("\n".join(parts).encode()).hexdigest(),
        language=language,
    )


def prompt_version(language: Language) -> str:
    """The versions of the prompt files a draft was made with (draft, task, update), e.g.
    'd1.t5.u1' (the column holds 20 characters)."""
    draft, task = prompt("synthesis", "draft", language), prompt("synthesis", "task", language)
    update = prompt("synthesis", "update", language)
    return f"d{draft.version}.t{task.version}.u{update.version}"


def require_ideas(found: Inputs) -> None:
    if not found.ideas.ideas:
        raise Conflict(
            "There is nothing to synthesise yet: the consultation (phase 4) has no ideas from "
            "consultants. Add notes or recordings to phase 4 first."
        )
