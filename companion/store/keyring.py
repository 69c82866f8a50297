"""Data keys per scope (each group, plus 'system' for account names), wrapped by the master key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.store.models import Base, DataKeyRow, new_id
from companion.vault import DataKey, MasterKey, open_text, seal_text

SYSTEM_SCOPE = "system"


class KeyGone(Exception):
    """The scope's data key does not exist (never created, or shredded)."""


class Keyring:
    """Unwraps data keys on demand for one database session and caches them for its life."""

    def __init__(self, db: Session, master: MasterKey) -> None:
        self.db = db
        self.master = master
        self._cache: dict[str, DataKey] = {}

    def create(self, scope: str) -> DataKey:
        key = DataKey.generate(scope)
        row = DataKeyRow(id=new_id(), scope=scope, master_key_id=self.master.key_id)
        row.wrapped = key.wrap(self.master, row.id)
        self.db.add(row)
        self._cache[scope] = key
        return key

    def get(self, scope: str) -> DataKey:
        if scope in self._cache:
            return self._cache[scope]
        # No autoflush: a caller may hold a half-built row that is sealed right after this.
        with self.db.no_autoflush:
            row = self.db.scalar(select(DataKeyRow).where(DataKeyRow.scope == scope))
        if row is None:
            if scope == SYSTEM_SCOPE:
                return self.create(scope)
            raise KeyGone(f"no data key for {scope}: it was never created or has been shredded")
        key = DataKey.unwrap(self.master, scope, row.id, row.wrapped)
        self._cache[scope] = key
        return key

    def shred(self, scope: str) -> None:
        """Destroy the scope's key: whatever was sealed with it can never be opened again."""
        row = self.db.scalar(select(DataKeyRow).where(DataKeyRow.scope == scope))
        if row is not None:
            self.db.delete(row)
        self._cache.pop(scope, None)

    # Sealing a column of a row: the associated data is (scope, table, row id, column).
    def seal(self, scope: str, row: Base, field: str, text: str) -> None:
        record_id = getattr(row, "id", None)
        if not record_id:
            raise ValueError("give the row its id before sealing: the id is bound into the seal")
        sealed = seal_text(self.get(scope), text, row.__tablename__, str(record_id), field)
        setattr(row, f"{field}_sealed", sealed)

    def fingerprint(self, scope: str, purpose: str, text: str) -> str:
        """A fingerprint of a text that does not reveal it (an HMAC under the scope's key), to
        find a stored row by its content without storing the content in clear."""
        return self.get(scope).fingerprint(purpose, text.encode("utf-8"))

    def open(self, scope: str, row: Base, field: str) -> str:
        sealed: bytes = getattr(row, f"{field}_sealed")
        record_id = str(getattr(row, "id", ""))
        return open_text(self.get(scope), sealed, row.__tablename__, record_id, field)


def rewrap_all(db: Session, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every data key under `new`; the data sealed with them is not touched."""
    rows = db.scalars(select(DataKeyRow)).all()
    for row in rows:
        key = DataKey.unwrap(old, row.scope, row.id, row.wrapped)
        row.wrapped = key.wrap(new, row.id)
        row.master_key_id = new.key_id
    return len(rows)
