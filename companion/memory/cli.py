"""`companion memory ...`: rebuild, retry and inspect the groups' memories."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select

from companion.config import Settings
from companion.groups.service import forget_orphan_audio
from companion.memory.service import Memory
from companion.runtime import open_store
from companion.store.models import MemoryOutbox

app = typer.Typer(
    help="Each group's sealed memory (embedded Chroma: stop the service first).",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None, typer.Option(help="Data directory (env COMPANION_DATA_DIR).", show_default=False)
]


@contextmanager
def _memory(data_dir: Path | None) -> Iterator[Memory]:
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    store = open_store(settings)
    memory = Memory(settings, store.sessions, store.master)
    try:
        yield memory
    finally:
        memory.close()
        store.engine.dispose()


@app.command("reindex")
def reindex(
    group: Annotated[str | None, typer.Option(help="The group id to rebuild.")] = None,
    all_groups: Annotated[bool, typer.Option("--all", help="Rebuild every group.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Rebuild a group's memory (or every group's) from the database; with --all, also drop
    and shred what deleted groups left (collections, Chroma's free pages and index
    directories, recordings directories)."""
    if (group is None) == (not all_groups):
        raise typer.BadParameter("give either --group ID or --all")
    with _memory(data_dir) as memory:
        targets = memory.group_ids() if all_groups else [group or ""]
        if not all_groups and targets[0] not in memory.group_ids():
            typer.echo(f"No group with id {group}.", err=True)
            raise typer.Exit(1)
        for gid in targets:
            count = memory.reindex(gid)
            typer.echo(f"group {gid}: {count} memories")
        if all_groups:
            for orphan in memory.orphans():
                memory.drop_group(orphan, shred=False)  # one shred below serves them all
                typer.echo(f"dropped the memory of deleted group {orphan}")
            # Older versions dropped collections without this: their bytes stay in Chroma's
            # free pages and their HNSW directories on disk until shredded.
            if memory.store.url:
                typer.echo("a Chroma server's files are shredded on its side (docs/memory.md)")
            else:
                removed = memory.shred()
                typer.echo(f"shredded the memory store ({len(removed)} index directories removed)")
            with memory.sessions() as db:
                for gone in forget_orphan_audio(db, memory.settings.data_dir):
                    typer.echo(f"removed the recordings directory of deleted group {gone}")


@app.command("retry")
def retry(data_dir: DataDir = None) -> None:
    """Index what waits in the outbox (content stored while the memory was unavailable)."""
    with _memory(data_dir) as memory:
        indexed = failed = 0
        while True:
            report = memory.index_pending(limit=500)
            indexed += report.indexed + report.removed
            failed += report.failed
            if report.failed or report.indexed + report.removed == 0:
                break
        typer.echo(f"indexed {indexed}, still waiting {failed}")
        if failed:
            raise typer.Exit(1)


@app.command("status")
def status(data_dir: DataDir = None) -> None:
    """What waits in the outbox, per group (ids and counts only)."""
    with _memory(data_dir) as memory:
        with memory.sessions() as db:
            rows = db.execute(
                select(
                    MemoryOutbox.group_id,
                    func.count(),
                    func.max(MemoryOutbox.attempts),
                    func.max(MemoryOutbox.last_error),
                ).group_by(MemoryOutbox.group_id)
            ).all()
        if not rows:
            typer.echo("Nothing waits: every group's memory is up to date.")
        for gid, count, attempts, error in rows:
            typer.echo(f"group {gid}: {count} waiting, {attempts} attempt(s), last error {error}")
