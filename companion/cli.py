"""The `companion` command: workers, accounts, keys, migrations (the web service's `serve` is
added on the api side, api/cli.py, since nothing under companion/ imports the app)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from companion.accounts import service as accounts
from companion.audit import service as audit
from companion.config import Settings
from companion.memory.cli import app as memory_app
from companion.runtime import open_store, rotate_master_key
from companion.store.keyring import Keyring

app = typer.Typer(
    help="Codev Companion: the co-development session companion.", no_args_is_help=True
)
users_app = typer.Typer(help="Accounts and tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="The master key.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
llm_app = typer.Typer(help="The local language model.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(memory_app, name="memory")
app.add_typer(llm_app, name="llm")

DataDir = Annotated[
    Path | None, typer.Option(help="Data directory (env COMPANION_DATA_DIR).", show_default=False)
]


def settings_for(data_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def worker(
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (env COMPANION_TRANSCRIPTION_WORKERS).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run transcription workers apart from the API (Ctrl-C stops them; jobs resume later)."""
    from companion.speech.queue import TranscriptionService

    settings = settings_for(data_dir, transcription_workers=threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = open_store(settings)
    try:
        TranscriptionService(settings, store.sessions, store.master).run_forever()
    finally:
        store.engine.dispose()


def _create_user(data_dir: Path | None, name: str, *, is_admin: bool) -> None:
    store = open_store(settings_for(data_dir))
    with store.sessions() as db, db.begin():
        user = accounts.create_user(db, Keyring(db, store.master), name, is_admin=is_admin)
        token = accounts.issue_token(db, user)
        audit.record(db, None, None, "user.create", "user", user.id)
    typer.echo(f"user id: {user.id}")
    typer.echo(f"token:   {token}")
    typer.echo("The token is shown once; keep it safe.", err=True)


@users_app.command("create-admin")
def create_admin(
    name: Annotated[str, typer.Option(help="Display name.")] = "Admin", data_dir: DataDir = None
) -> None:
    """Create an administrator and print its token once."""
    _create_user(data_dir, name, is_admin=True)


@users_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Display name.")],
    data_dir: DataDir = None,
) -> None:
    """Create an account and print its token once."""
    _create_user(data_dir, name, is_admin=False)


@keys_app.command("rotate")
def rotate(
    data_dir: DataDir = None,
    new_key_file: Annotated[
        Path | None, typer.Option(help="Also write the new key here (required with an env key).")
    ] = None,
) -> None:
    """Re-wrap every data key under a new master key, without rewriting any data."""
    new, count = rotate_master_key(settings_for(data_dir), new_key_file)
    typer.echo(f"Re-wrapped {count} data keys under the new master key {new.key_id}.")


@db_app.command("upgrade")
def upgrade(data_dir: DataDir = None) -> None:
    """Apply the database migrations (the service also does it at start)."""
    open_store(settings_for(data_dir)).engine.dispose()
    typer.echo("The database schema is up to date.")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[
        str | None,
        typer.Option(help="A .gguf path; default: the packaged model chosen by settings."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (env COMPANION_LLM_LOCAL_THREADS).")
    ] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Context length in tokens (env COMPANION_LLM_LOCAL_CTX).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Run the local OpenAI-compatible llama.cpp server on 127.0.0.1 (no hub download).

    Requests must carry COMPANION_LLM_API_KEY when it is set (other than 'none')."""
    from companion.llm.errors import ModelUnavailable
    from companion.llm.local import resolve, serve_forever

    settings = settings_for(data_dir)
    try:
        gguf = Path(model) if model else resolve(settings)
    except ModelUnavailable as exc:
        raise typer.BadParameter(str(exc)) from None
    if gguf is None:
        raise typer.BadParameter("No local model is installed: pip install -e '.[local-llm]'.")
    secret = settings.llm.api_key.get_secret_value()
    key = secret if secret not in ("", "none") else None
    serve_forever(
        gguf,
        threads or settings.llm.local_threads,
        ctx or settings.llm.local_ctx,
        port,
        api_key=key,
    )
