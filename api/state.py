"""What the application holds for its lifetime: settings, database, master key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.vault import MasterKey


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    master: MasterKey
