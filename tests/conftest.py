"""Fixtures: a fresh app per test on SQLite, and on PostgreSQL when COMPANION_TEST_POSTGRES_URL
names a server (.ci/run starts one). Tests that touch storage take the `backend` fixture.

The schema is migrated once per run into a template (a SQLite file, a PostgreSQL template
database) that each test's database is copied from, so no test pays for the migrations; the
app's own upgrade at start then only reads the version (tests/test_store.py checks both)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from api.main import create_app
from companion.config import Settings
from companion.store import db as store_db
from tests.doubles.openai_double import OpenAIDouble
from tests.world import Api

POSTGRES_URL = os.environ.get("COMPANION_TEST_POSTGRES_URL")


def _postgres_database(template: str | None = None) -> Iterator[str]:
    """A throwaway database on the test server (a copy of `template` when given, else empty),
    dropped afterwards."""
    assert POSTGRES_URL
    name = f"companion_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    """Drop a test database. An autovacuum worker may be in it (the server's own role, which
    ours cannot terminate): it finishes within moments, so try again a few times."""
    for attempt in range(20):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as exc:
            if "InsufficientPrivilege" not in type(exc.orig).__name__ or attempt == 19:
                raise
            time.sleep(0.5)


def _migrate(url: str) -> None:
    engine = store_db.make_engine(url)
    try:
        store_db.upgrade(engine)
    finally:
        engine.dispose()  # no connection left open: a PostgreSQL template must have none


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, once per run (no master key: none of its
    rows is sealed, so each test's app makes its own key as on a first start)."""
    path = tmp_path_factory.mktemp("template") / "companion.db"
    _migrate(f"sqlite:///{path}")  # the last connection's close folds the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per run, that each test's database is made from."""
    for url in _postgres_database():
        _migrate(url)
        yield url.rpartition("/")[2]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not POSTGRES_URL, reason="set COMPANION_TEST_POSTGRES_URL to test PostgreSQL"
                ),
            ],
        ),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on a fresh data dir whose database is already migrated (a template's copy)."""
    data_dir = tmp_path / "data"
    # No test starts a local model by surprise: those that want one say so (test_llm_local).
    # The background assistance runner is off unless a test turns it on (test_ideas), so no
    # test's queued model replies are taken by it.
    quiet = {"llm_local_model": "off", "assist_background": False}
    if backend == "postgres":
        for url in _postgres_database(request.getfixturevalue("postgres_template")):
            yield Settings(data_dir=data_dir, database_url=url, **quiet)
    else:
        settings = Settings(data_dir=data_dir, **quiet)
        data_dir.mkdir(parents=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), data_dir / "companion.db")
        assert (
            settings.resolved_database_url == f"sqlite:///{(data_dir / 'companion.db').resolve()}"
        )
        yield settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient, settings: Settings) -> Api:
    return Api.bootstrap(client, settings)


@pytest.fixture
def model_double() -> Iterator[OpenAIDouble]:
    """An OpenAI-compatible HTTP server (a test double) that answers with queued replies."""
    with OpenAIDouble() as double:
        yield double


@pytest.fixture
def assisted(settings: Settings, model_double: OpenAIDouble) -> Iterator[Api]:
    """The API with its language model pointed at `model_double`."""
    update = {"llm_base_url": model_double.url}
    with TestClient(create_app(settings.updated(**update))) as c:
        yield Api.bootstrap(c, settings)
