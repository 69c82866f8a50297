"""Opening the store: database, migrations, master key; and rotating the master key.

Shared by the API and the CLI so both see the same checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.store import db as store_db
from companion.store.keyring import rewrap_all
from companion.store.models import DataKeyRow
from companion.vault import MasterKey, MasterKeyError
from companion.vault.master import load_or_create

log = logging.getLogger(__name__)


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]
    master: MasterKey


def pending_key_file(key_file: Path) -> Path:
    """Where a rotation puts the new key until the database has switched to it."""
    return key_file.with_name(key_file.name + ".next")


def _key_ids_in_use(factory: sessionmaker[Session]) -> set[str]:
    with factory() as db:
        return set(db.scalars(select(DataKeyRow.master_key_id).distinct()))


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = store_db.make_engine(settings.resolved_database_url, settings.request_threads)
    if migrate:
        store_db.upgrade(engine)
    factory = store_db.make_sessionmaker(engine)
    key_file = settings.resolved_master_key_file
    given = settings.master_key.get_secret_value() if settings.master_key else None
    master = load_or_create(given, key_file)
    in_use = _key_ids_in_use(factory)
    if in_use and in_use != {master.key_id}:
        pending = pending_key_file(key_file)
        if not settings.master_key and pending.exists():
            # A rotation committed the database but stopped before swapping the key file.
            candidate = MasterKey.read(pending)
            if in_use == {candidate.key_id}:
                pending.replace(key_file)
                log.warning("Finished an interrupted master key rotation (%s).", key_file)
                return Store(engine, factory, candidate)
        engine.dispose()
        raise MasterKeyError(
            f"The master key in use (id {master.key_id}) is not the one the data keys are "
            f"wrapped with (id {', '.join(sorted(in_use))}). Supply the right key with "
            "COMPANION_MASTER_KEY or COMPANION_MASTER_KEY_FILE."
        )
    if pending_key_file(key_file).exists() and not settings.master_key:
        pending_key_file(key_file).unlink()  # a rotation that never committed: drop its key
    return Store(engine, factory, master)


def rotate_master_key(
    settings: Settings, new_key_file: Path | None = None
) -> tuple[MasterKey, int]:
    """Re-wrap every data key under a fresh master key; no sealed content is rewritten.

    The new key is written beside the old one first, then the database switches in one
    transaction, then the file is swapped: a crash at any point leaves a readable store.
    """
    store = open_store(settings)
    try:
        return _rotate(settings, store, new_key_file)
    finally:
        store.engine.dispose()


def _rotate(settings: Settings, store: Store, new_key_file: Path | None) -> tuple[MasterKey, int]:
    new = MasterKey.generate()
    if settings.master_key:
        if new_key_file is None:
            raise MasterKeyError(
                "The master key comes from COMPANION_MASTER_KEY: give --new-key-file so the "
                "new key is saved before the data keys move to it."
            )
        new.write(new_key_file)
        target = None
    else:
        target = settings.resolved_master_key_file
        new.write(pending_key_file(target))
    with store.sessions() as db, db.begin():
        count = rewrap_all(db, store.master, new)
    if target is not None:
        pending_key_file(target).replace(target)
        if new_key_file is not None:
            new.write(new_key_file)
    return new, count
