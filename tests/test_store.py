"""Schema, migrations, health checks and the CLI on each backend."""

from __future__ import annotations

import stat

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, inspect, text
from typer.testing import CliRunner

from api.main import create_app
from companion.cli import app as cli
from companion.config import Settings
from companion.runtime import open_store
from companion.store import db as store_db
from companion.store.models import Base
from tests.world import wait_until

WRITES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


def test_migrations_build_exactly_the_models(settings):
    store = open_store(settings)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    tables = set(inspect(store.engine).get_table_names())
    store.engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_opening_a_migrated_store_only_reads_the_version(settings):
    """The tests' databases are copies of one migrated template, and every start upgrades:
    on a database at the newest revision that is one read, no schema change."""
    open_store(settings).engine.dispose()  # at head already (a copy of the template)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        store = open_store(settings)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    url = settings.resolved_database_url
    head = ScriptDirectory.from_config(store_db.alembic_config(url)).get_current_head()
    with store.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    store.engine.dispose()
    assert versions == [head]
    writes = [s for s in statements if s.lstrip().upper().startswith(WRITES)]
    assert writes == []
    assert any("alembic_version" in s for s in statements)


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = wait_until(
        lambda: (r := client.get("/readyz")).json()["memory"]["checked"] and r,
        what="the start's memory check",
    )
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "master_key": "loaded",
        "database": "ok",
        "llm": "off",
        # Its collections matched the database at start: nothing was missing.
        "memory": {"checked": True, "reindexed_at_start": 0, "reindexing": 0},
    }


def test_readiness_fails_when_the_database_is_gone(client):
    bad = client.app.state.companion
    original = bad.engine
    bad.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        res = client.get("/readyz")
    finally:
        bad.engine = original
    assert res.status_code == 503
    assert res.json()["ready"] is False
    assert res.json()["database"].startswith("unreachable")


def test_openapi_lists_the_domain_resources(client):
    paths = client.get("/openapi.json").json()["paths"]
    for resource in (
        "groups",
        "members",
        "cycles",
        "sessions",
        "phases",
        "notes",
        "contract",
        "action-plan",
        "learnings",
        "audit",
    ):
        assert any(f"/{resource}" in p and p.startswith("/api/v1/") for p in paths), resource


def test_cli_creates_an_admin_whose_token_works(tmp_path, client):
    data_dir = tmp_path / "cli-data"
    result = CliRunner().invoke(
        cli, ["users", "create-admin", "--name", "Root", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    token = next(
        line.split()[-1] for line in result.output.splitlines() if line.startswith("token:")
    )
    key_file = data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    with TestClient(create_app(Settings(data_dir=data_dir))) as other:
        me = other.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["name"] == "Root"
        assert me.json()["is_admin"] is True
        bad = other.get("/api/v1/users/me", headers={"Authorization": "Bearer cc_x_y"})
        assert bad.status_code == 401
        assert "unknown" in bad.json()["detail"]


def test_settings_come_from_companion_env_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path / "env-dir"))
    monkeypatch.setenv("COMPANION_PORT", "9123")
    settings = Settings()
    assert settings.data_dir == tmp_path / "env-dir"
    assert settings.port == 9123
    assert settings.resolved_database_url.endswith("env-dir/companion.db")
