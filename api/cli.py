"""The `companion` command: the domain's commands (companion/cli.py) and `serve`, which runs the
web service and so lives on the api side."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn

from api.main import create_app
from companion.accounts import signin
from companion.cli import DataDir, app, settings_for
from companion.config import Settings
from companion.runtime import open_store


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (env COMPANION_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env COMPANION_PORT).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the web app and the API (the pages at /, OpenAPI at /docs)."""
    settings = settings_for(data_dir, host=host, port=port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _print_setup_link(settings)
    # access_log off: its lines carry paths and query strings (api/access_log.py writes ours).
    # Keep-alive longer than a page's pause between calls: a connection the server closes
    # just as the page reuses it fails that request (uvicorn's default is 5 s).
    uvicorn.run(
        create_app(settings, freeze_heap=True),
        host=settings.host,
        port=settings.port,
        access_log=False,
        timeout_keep_alive=75,
    )


def _print_setup_link(settings: Settings) -> None:
    """With no administrator yet, a one-time link that creates the first one in the browser."""
    store = open_store(settings)
    try:
        with store.sessions() as db, db.begin():
            issued = signin.setup_link(db, timedelta(days=settings.invitation_days))
    finally:
        store.engine.dispose()
    if issued is not None:
        url = f"{settings.resolved_public_url}/setup/{issued.token}"
        typer.echo(f"\nNo administrator yet. Open this one-time link to create one:\n  {url}\n")
    else:
        typer.echo(f"\nCodev Companion: {settings.resolved_public_url}/\n")


if __name__ == "__main__":
    app()
