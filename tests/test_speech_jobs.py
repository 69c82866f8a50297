"""Recordings, jobs and transcripts through the API, with a stand-in transcriber (fast).

The real model runs in tests/test_speech_model.py; here the executor is replaced so the queue,
the recovery, the sealing, the retention of audio and the refusals are tested on both backends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, update

from api.main import create_app
from companion.config import Settings
from companion.speech import audio as speech_audio
from companion.speech import jobs
from companion.speech import queue as speech_queue
from companion.speech.order import fair_order
from companion.speech.queue import TranscriptionService
from companion.speech.schemas import JobKind
from companion.speech.transcriber import AudioUndecodable, Segment
from companion.store.keyring import Keyring
from companion.store.models import (
    AuditEvent,
    Group,
    TranscriptionJob,
    TranscriptSegment,
    new_id,
    utcnow,
)
from tests.speech_audio import convert, needs_speech_tools, wait_for_job, wav_bytes
from tests.world import Api, Circle, wait_until

SECRET_WORDS = ("Confidentiel", "licenciement", "Bérénice")


class FakeTranscriber:
    """Reads the (unsealed) recording and says what it was told to."""

    name = "fake"

    def __init__(
        self,
        segments: list[Segment] | None = None,
        fail: Exception | None = None,
        delay: float = 0.0,
    ) -> None:
        self.segments = (
            segments
            if segments is not None
            else [
                Segment(0.0, 1.5, f"{SECRET_WORDS[0]} : le plan de {SECRET_WORDS[1]}."),
                Segment(1.5, 3.0, f"{SECRET_WORDS[2]} veut déléguer le reporting."),
            ]
        )
        self.fail = fail
        self.delay = delay
        self.calls: list[tuple[str, bytes]] = []
        self.vad: list[bool] = []

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, vad: bool = True
    ) -> Iterator[Segment]:
        assert not isinstance(audio, str)
        self.calls.append((language, audio.read()))
        self.vad.append(vad)
        if self.fail is not None:
            raise self.fail
        for seg in self.segments:
            time.sleep(self.delay)
            yield seg


def _speech(client: TestClient) -> TranscriptionService:
    service: TranscriptionService = client.app.state.transcription  # type: ignore[attr-defined]
    return service


def _quiet(api: Api) -> None:
    """The `api` fixture's own app (same database) keeps its worker out of a test's jobs."""
    _speech(api.client).ctx.stopping.set()


@pytest.fixture
def fake(client: TestClient) -> FakeTranscriber:
    fake = FakeTranscriber()
    _speech(client).transcriber = fake
    return fake


@pytest.fixture
def circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    return circle


def upload(
    circle: Circle,
    data: bytes,
    token: str | None = None,
    phase: str = "presentation",
    name: str = "phase.wav",
) -> Any:
    return circle.api.call(
        "POST",
        circle.path(f"/phases/{phase}/recordings"),
        token or circle.client[1],
        files={"file": (name, data, "application/octet-stream")},
    )


def _audio_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "audio"
    return sorted(root.glob("*/*.sealed")) if root.exists() else []


def _count(client: TestClient, model: Any) -> int:
    with client.app.state.companion.sessions() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


# --- the path that works ---------------------------------------------------------------------


def test_upload_is_transcribed_sealed_and_its_audio_deleted(client, settings, circle, fake):
    res = upload(circle, wav_bytes(3.0))
    assert res.status_code == 202, res.text
    job = res.json()
    assert job["status"] in ("queued", "running", "done")
    assert job["audio_seconds"] == pytest.approx(3.0, abs=0.05)
    assert job["audio_format"] == "wav/pcm_s16le"
    job_path = circle.path(f"/transcription-jobs/{job['id']}")
    with client.app.state.companion.sessions() as db:
        assert db.get(TranscriptionJob, job["id"]).kind == JobKind.upload

    done = wait_for_job(circle.api, job_path, circle.consultants[0][1])
    assert done["status"] == "done", done
    assert done["percent"] == 100
    assert done["eta_seconds"] is None
    assert done["segments"] == 2
    assert done["attempts"] == 1
    assert done["audio_kept"] is False
    assert _audio_files(settings) == []  # transient audio is gone once the transcript is stored
    assert fake.calls[0][0] == "fr"  # the group's language, forced
    assert fake.calls[0][1][:4] == b"RIFF"  # the worker got the recording back, unsealed

    transcript = circle.api.ok("GET", circle.path("/transcript"), circle.consultants[1][1])
    assert transcript["pending_jobs"] == 0
    texts = [s["text"] for s in transcript["segments"]]
    assert texts == [s.text for s in fake.segments]
    first = transcript["segments"][0]
    assert (first["start"], first["end"], first["speaker"], first["index"]) == (0.0, 1.5, None, 0)
    assert first["phase"] == "presentation"
    assert first["edited"] is False
    by_phase = circle.api.ok(
        "GET", circle.path("/transcript?phase=clarification"), circle.client[1]
    )
    assert by_phase["segments"] == []

    listed = circle.api.ok("GET", circle.path("/transcription-jobs"), circle.client[1])
    assert [j["id"] for j in listed] == [job["id"]]


def test_participants_correct_a_segment(client, circle, fake):
    job = upload(circle, wav_bytes(1.0)).json()
    wait_for_job(circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1])
    segment = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"][1]
    path = circle.path(f"/transcript/segments/{segment['id']}")

    edited = circle.api.ok("PATCH", path, circle.consultants[0][1], json={"text": "  Corrigé.  "})
    assert edited["text"] == "Corrigé."
    assert edited["edited"] is True
    again = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"][1]
    assert again["text"] == "Corrigé."
    assert again["edited"] is True

    assert circle.api.call("PATCH", path, circle.client[1], json={"text": ""}).status_code == 422
    missing = circle.path(f"/transcript/segments/{new_id()}")
    assert (
        circle.api.call("PATCH", missing, circle.client[1], json={"text": "x"}).status_code == 404
    )


def test_transcripts_and_audio_are_sealed_at_rest(client, settings, backend, api, fake):
    circle = Circle.create(api)
    api.ok("PATCH", f"/groups/{circle.group_id}", circle.facilitator[1], json={"keep_audio": True})
    circle.phase("presentation", "start")
    job = upload(circle, wav_bytes(1.0)).json()
    done = wait_for_job(
        circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1]
    )
    assert done["status"] == "done"
    assert done["audio_kept"] is True

    [kept] = _audio_files(settings)  # the group opted in: kept, sealed
    raw = kept.read_bytes()
    assert raw[:4] == speech_audio.MAGIC
    assert b"RIFF" not in raw
    assert b"WAVE" not in raw
    with client.app.state.companion.sessions() as db:
        row = db.get(TranscriptionJob, job["id"])
        key = Keyring(db, client.app.state.companion.master).get(circle.group_id)
    assert speech_audio.open_sealed(kept, key, job["id"]).read()[:4] == b"RIFF"

    if backend == "sqlite":
        client.app.state.companion.engine.dispose()  # fold the WAL into the file
        store = (settings.data_dir / "companion.db").read_bytes()
        for word in SECRET_WORDS:
            assert word.encode() not in store, word
    else:
        with client.app.state.companion.sessions() as db:
            sealed = db.scalars(select(TranscriptSegment.text_sealed)).all()
        assert sealed
        assert all(w.encode() not in b"".join(sealed) for w in SECRET_WORDS)
    assert row is not None


def test_a_failed_job_says_why_and_drops_its_audio(client, settings, circle, fake):
    fake.fail = AudioUndecodable("The recording could not be decoded (corrupt frame at 2.1 s).")
    job = upload(circle, wav_bytes(1.0)).json()
    done = wait_for_job(
        circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1]
    )
    assert done["status"] == "failed"
    assert "could not be decoded" in done["error"]
    assert _audio_files(settings) == []
    assert circle.api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"] == []


def test_noise_without_speech_fails_with_a_reason(client, circle, fake):
    fake.segments = []
    job = upload(circle, wav_bytes(1.0)).json()
    done = wait_for_job(
        circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1]
    )
    assert done["status"] == "failed"
    assert "No speech" in done["error"]
    # Heard again without the voice-activity filter before saying so, the same recording.
    assert fake.vad == [True, False]
    assert fake.calls[0] == fake.calls[1]


# --- refusals ---------------------------------------------------------------------------------


def test_bad_recordings_are_refused_and_change_nothing(client, settings, circle, fake):
    three = wav_bytes(3.0)
    truncated = three[: 44 + 16000]  # the header announces 3 s, half a second follows
    cases = {
        "empty": (b"", 422, "empty"),
        "random bytes": (os.urandom(4096), 422, "not a recording"),
        "text": (b"hello world " * 400, 422, ""),
        "truncated": (truncated, 422, "truncated"),
        "silence": (wav_bytes(2.0, amplitude=0.0), 422, "silence"),
    }
    for name, (data, status, words) in cases.items():
        res = upload(circle, data)
        assert res.status_code == status, (name, res.text)
        assert words in res.json()["detail"], (name, res.json())

    no_file = circle.api.call(
        "POST", circle.path("/phases/presentation/recordings"), circle.client[1], json={}
    )
    assert no_file.status_code == 422
    assert "'file'" in no_file.json()["detail"]
    other_phase = upload(circle, three, phase="clarification")
    assert other_phase.status_code == 409, other_phase.text
    outsider = upload(circle, three, token=circle.outsider[1])
    assert outsider.status_code == 404

    assert _count(client, TranscriptionJob) == 0
    assert _audio_files(settings) == []
    assert fake.calls == []


@needs_speech_tools
@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("mp3", "mp3/mp3"), ("ogg", "ogg/opus"), ("webm", "matroska/opus"), ("m4a", "mov/aac")],
)
def test_what_browsers_and_phones_record_is_accepted(tmp_path, fmt, expected):
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(2.0))
    with convert(source, fmt).open("rb") as f:
        probe = speech_audio.probe(f, max_seconds=60)
    assert probe.seconds == pytest.approx(2.0, abs=0.1)
    assert probe.format.split("/")[0] == expected.split("/")[0]
    assert probe.format.split("/")[1].startswith(expected.split("/")[1])


def test_limits_of_size_and_duration(settings, api):
    _quiet(api)
    limited = settings.updated(**{"max_upload_bytes": 40_000, "max_audio_seconds": 1.0})
    with TestClient(create_app(limited)) as client:
        small = Api(client, api.admin_token, api.tokens)
        _speech(client).transcriber = FakeTranscriber()
        circle = Circle.create(small)
        circle.phase("presentation", "start")
        big = upload(circle, wav_bytes(2.0))  # 64 kB > 40 kB
        assert big.status_code == 413, big.text
        assert "40000 bytes" in big.json()["detail"]
        long = upload(circle, wav_bytes(1.1, rate=8000))  # 17.6 kB but 1.1 s > 1 s
        assert long.status_code == 413, long.text
        assert "longer than the limit" in long.json()["detail"]
        assert upload(circle, wav_bytes(0.9, rate=8000)).status_code == 202
        assert _count(client, TranscriptionJob) == 1


# --- durability -------------------------------------------------------------------------------


def _seed_abandoned_job(settings: Settings, circle: Circle, client: TestClient) -> str:
    """A job as a killed worker leaves it: running, a stale heartbeat, a stale partial segment."""
    state = client.app.state.companion
    job_id = upload(circle, wav_bytes(1.0)).json()["id"]
    with state.sessions() as db, db.begin():
        db.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == job_id)
            .values(
                status="running",
                attempts=1,
                progress=0.4,
                started_at=utcnow() - timedelta(minutes=10),
                heartbeat_at=utcnow() - timedelta(minutes=10),
            )
        )
        job = db.get(TranscriptionJob, job_id)
        assert job is not None
        stale = TranscriptSegment(
            id=new_id(),
            job_id=job_id,
            session_id=job.session_id,
            phase=job.phase,
            position=0,
            start_s=0.0,
            end_s=1.5,
            edited=False,
        )
        Keyring(db, state.master).seal(circle.group_id, stale, "text", "stale half")
        db.add(stale)
    return job_id


def test_a_job_abandoned_by_a_killed_worker_resumes_at_start_without_duplicates(
    settings, api, monkeypatch
):
    _quiet(api)
    paused = settings.updated(**{"transcription_worker": False})
    with TestClient(create_app(paused)) as client:  # a process whose worker then dies
        circle = Circle.create(Api(client, api.admin_token, api.tokens))
        circle.phase("presentation", "start")
        job_id = _seed_abandoned_job(settings, circle, client)

    fake = FakeTranscriber()  # what the restarted process transcribes with, from its start
    monkeypatch.setattr(speech_queue, "ConfiguredWhisper", lambda _settings: fake)
    with TestClient(create_app(settings)) as client:  # the restart: recovery, then the worker
        again = Api(client, api.admin_token, api.tokens)
        done = wait_for_job(again, circle.path(f"/transcription-jobs/{job_id}"), circle.client[1])
        assert done["status"] == "done", done
        assert done["attempts"] == 2
        with client.app.state.companion.sessions() as db:
            rows = db.execute(
                select(TranscriptSegment.position)
                .where(TranscriptSegment.job_id == job_id)
                .order_by(TranscriptSegment.position)
            ).all()
        assert [r[0] for r in rows] == [0, 1]  # one copy of each, the stale one replaced
        texts = [
            s["text"]
            for s in again.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
        ]
        assert texts == [s.text for s in fake.segments]
        assert _audio_files(settings) == []


def test_a_job_that_keeps_killing_its_worker_is_failed(client, settings, circle, fake):
    service = _speech(client)
    service.ctx.stopping.set()  # keep this test's own worker out of it
    paused_job = _seed_abandoned_job(settings, circle, client)
    with client.app.state.companion.sessions() as db, db.begin():
        db.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == paused_job)
            .values(attempts=jobs.MAX_ATTEMPTS)
        )
    jobs.recover(service.ctx)
    view = circle.api.ok("GET", circle.path(f"/transcription-jobs/{paused_job}"), circle.client[1])
    assert view["status"] == "failed"
    assert "stopped 3 times" in view["error"]
    assert _audio_files(settings) == []


def test_a_worker_that_loses_its_claim_writes_nothing(client, circle, fake):
    service = _speech(client)
    service.ctx.stopping.set()  # no background worker: this test drives the job by hand
    job_id = upload(circle, wav_bytes(1.0)).json()["id"]
    claimed = jobs.claim_next(service.ctx.sessions)
    assert claimed == (job_id, 1)
    with client.app.state.companion.sessions() as db, db.begin():  # re-queued and re-claimed
        db.execute(update(TranscriptionJob).values(attempts=2))
    service.ctx.stopping.clear()
    service.ctx.transcriber = FakeTranscriber()
    jobs.run_claimed(service.ctx, job_id, 1)
    assert _count(client, TranscriptSegment) == 0


def test_stopping_puts_the_running_job_back_in_the_queue(settings, api):
    _quiet(api)
    with TestClient(create_app(settings)) as client:
        slow = FakeTranscriber(delay=0.3)
        _speech(client).transcriber = slow
        circle = Circle.create(Api(client, api.admin_token, api.tokens))
        circle.phase("presentation", "start")
        job_id = upload(circle, wav_bytes(1.0)).json()["id"]
        wait_until(lambda: slow.calls, what="the transcriber's first call")
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        status, attempts = conn.execute(
            select(TranscriptionJob.status, TranscriptionJob.attempts).where(
                TranscriptionJob.id == job_id
            )
        ).one()
    engine.dispose()
    assert (status, attempts) == ("queued", 1)


def test_groups_take_turns_in_the_queue(client, api, fake):
    service = _speech(client)
    service.ctx.stopping.set()
    busy, quiet = Circle.create(api, group_name="Busy"), Circle.create(api, group_name="Quiet")
    for circle in (busy, quiet):
        circle.phase("presentation", "start")
    first = [upload(busy, wav_bytes(0.5)).json()["id"] for _ in range(3)]
    late = upload(quiet, wav_bytes(0.5)).json()["id"]
    with client.app.state.companion.sessions() as db:
        order = fair_order(db)
    assert order == [first[0], late, first[1], first[2]]
    view = quiet.api.ok("GET", quiet.path(f"/transcription-jobs/{late}"), quiet.client[1])
    assert view["status"] == "queued"
    assert view["queue_position"] == 1
    assert view["eta_seconds"] is not None
    assert view["eta_seconds"] > 0
    with client.app.state.companion.sessions() as db:  # the busy group was served: quiet next
        claimed = jobs.claim_next(service.ctx.sessions)
        assert claimed is not None
        assert claimed[0] == first[0]
        assert fair_order(db)[0] == late


def test_store_transcript_is_idempotent(client, circle, fake):
    service = _speech(client)
    service.ctx.stopping.set()
    job_id = upload(circle, wav_bytes(0.5)).json()["id"]
    segments = [Segment(0.0, 1.0, "un"), Segment(1.0, 2.0, "deux")]
    for _ in range(3):
        with service.ctx.sessions() as db, db.begin():
            job = db.get(TranscriptionJob, job_id)
            assert job is not None
            jobs.store_transcript(db, Keyring(db, service.ctx.master), job, segments)
    assert _count(client, TranscriptSegment) == 2
    with service.ctx.sessions() as db:
        group = db.get(Group, circle.group_id)
        events = db.scalars(select(AuditEvent.action).where(AuditEvent.group_id == circle.group_id))
        assert group is not None
        assert "recording.upload" in set(events)


# --- the same code on Redis -----------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (the Debian package), stopped after."""
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_redis_queue_runs_the_same_jobs(settings, api, redis_url):
    _quiet(api)
    on_redis = settings.updated(**{"redis_url": redis_url})
    with TestClient(create_app(on_redis)) as client:
        assert type(_speech(client).huey).__name__ == "RedisHuey"
        _speech(client).transcriber = FakeTranscriber()
        circle = Circle.create(Api(client, api.admin_token, api.tokens))
        circle.phase("presentation", "start")
        job = upload(circle, wav_bytes(1.0)).json()
        done = wait_for_job(
            circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1]
        )
        assert done["status"] == "done", done
        assert done["segments"] == 2
        assert _speech(client).queue_depth()["done"] == 1


def test_deleting_the_group_removes_its_transcripts_and_then_its_audio(
    client, settings, api, fake, monkeypatch
):
    circle = Circle.create(api)
    api.ok("PATCH", f"/groups/{circle.group_id}", circle.facilitator[1], json={"keep_audio": True})
    circle.phase("presentation", "start")
    job = upload(circle, wav_bytes(1.0)).json()
    wait_for_job(circle.api, circle.path(f"/transcription-jobs/{job['id']}"), circle.client[1])
    assert len(_audio_files(settings)) == 1

    api.ok("DELETE", f"/groups/{circle.group_id}", circle.facilitator[1])
    assert _count(client, TranscriptionJob) == 0
    assert _count(client, TranscriptSegment) == 0
    monkeypatch.setattr(jobs, "ORPHAN_AGE_S", -1)  # the sweep spares files of uploads in flight
    jobs.recover(_speech(client).ctx)
    assert _audio_files(settings) == []
