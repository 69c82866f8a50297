"""What the application holds for its lifetime: settings, database, master key."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.llm.gateway import LLMGateway
from companion.vault import MasterKey


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    master: MasterKey
    gateway: LLMGateway | None = field(default=None)  # made on first use: most routes need none

    def llm(self) -> LLMGateway:
        if self.gateway is None:
            self.gateway = LLMGateway(self.settings, self.sessions)
        return self.gateway

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
        self.engine.dispose()
