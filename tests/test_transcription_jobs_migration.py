"""Migration 0010 on each backend: the jobs stored before it get their kind from the
`live/` prefix of their audio format, and their transcripts stay."""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, inspect, select, text, update

from companion.config import Settings
from companion.store import db as store_db
from companion.store.models import TranscriptionJob, TranscriptSegment
from tests.world import Api, Circle


def _migrate(settings: Settings, revision: str, *, down: bool = False) -> None:
    url = settings.resolved_database_url
    engine = store_db.make_engine(url)
    cfg = store_db.alembic_config(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()


def test_existing_jobs_get_their_kind_from_their_audio_format(api: Api, settings: Settings):
    circle = Circle.create(api)
    upload = circle.recorded("presentation", ["Bonjour."], circle.client[0])
    live = circle.recorded("presentation", ["Je suis fatiguée.", "Bon."], circle.client[0])
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db, db.begin():  # as a live connection stored it
        db.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == live)
            .values(audio_format="live/pcm16", kind="live")
        )
    state.engine.dispose()  # no pooled connection in the way of the schema changes

    _migrate(settings, "0009", down=True)
    engine = store_db.make_engine(settings.resolved_database_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("transcription_jobs")}
        assert "kind" not in columns
        _migrate(settings, "head")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, kind, audio_format FROM transcription_jobs")).all()
            segments = conn.scalar(select(func.count()).select_from(TranscriptSegment))
    finally:
        engine.dispose()
    assert {job_id: (kind, fmt) for job_id, kind, fmt in rows} == {
        upload: ("upload", "ogg/opus"),
        live: ("live", "live/pcm16"),
    }
    assert segments == 3  # neither change rebuilt the table (its segments would cascade)

    transcript = api.ok("GET", circle.path("/transcript"), circle.client[1])
    assert [s["text"] for s in transcript["segments"]] == ["Bonjour.", "Je suis fatiguée.", "Bon."]
