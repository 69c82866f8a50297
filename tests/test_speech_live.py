"""Live transcription over the WebSocket, and the queue's depth.

Most tests use a stand-in executor (fast, both backends): access, refusals, storage, what a
dropped connection keeps. Two use the bundled Whisper base on espeak-ng speech streamed in
chunks: key words, no word twice or lost at the seams, the speaker label, webm/opus chunks.
"""

from __future__ import annotations

import itertools
import wave
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from starlette.websockets import WebSocketDisconnect

from api.main import create_app
from companion.config import Settings
from companion.speech import audio as speech_audio
from companion.speech import jobs
from companion.speech.model import bundled_model_dir
from companion.speech.queue import TranscriptionService
from companion.speech.schemas import JobKind
from companion.speech.transcriber import Segment, Word
from companion.store.keyring import Keyring
from companion.store.models import TranscriptionJob, TranscriptSegment, utcnow
from tests.speech_audio import convert, needs_speech_tools, speak, wav_bytes
from tests.world import PREFIX, Api, Circle, wait_until

RATE = 16000


class EchoTranscriber:
    """Says one segment per pass, and keeps how much audio each pass got."""

    name = "echo"

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        assert not isinstance(audio, str)
        with wave.open(audio) as w:
            seconds = w.getnframes() / w.getframerate()
        self.seconds.append(seconds)
        n, half = len(self.seconds), seconds / 2
        words = (Word(0.0, half, f" passe{n}"), Word(half, seconds, " suite"))
        yield Segment(0.0, seconds, f"passe{n} suite", words)


def pcm(seconds: float, freq: float = 440.0) -> bytes:
    """Raw 16 kHz mono PCM16: what a browser's AudioWorklet sends."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


def _speech(client: TestClient) -> TranscriptionService:
    service: TranscriptionService = client.app.state.transcription  # type: ignore[attr-defined]
    return service


def _url(circle: Circle, phase: str = "presentation", session_id: str | None = None) -> str:
    session = session_id or circle.session_id
    return f"{PREFIX}/groups/{circle.group_id}/sessions/{session}/phases/{phase}/live"


def _start(ws: Any, token: str | None, fmt: str = "pcm16") -> dict[str, Any]:
    ws.send_json({"type": "start", "token": token, "format": fmt})
    ready: dict[str, Any] = ws.receive_json()
    assert ready["type"] == "ready", ready
    return ready


def _until_final(ws: Any) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(segments pushed before the end, the final message, errors)."""
    pushed: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    while True:
        msg = ws.receive_json()
        if msg["type"] == "final":
            return pushed, msg, errors
        (pushed.extend(msg["segments"]) if msg["type"] == "segments" else errors.append(msg))


def _closed(ws: Any) -> WebSocketDisconnect:
    """Read until the server closes; the close frame's code and reason."""
    while True:
        try:
            ws.receive_json()
        except WebSocketDisconnect as closed:
            return closed


def _count(client: TestClient, model: Any) -> int:
    with client.app.state.companion.sessions() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def echo(client: TestClient) -> EchoTranscriber:
    fake = EchoTranscriber()
    _speech(client).transcriber = fake
    return fake


@pytest.fixture
def circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    return circle


# --- the stream, with a stand-in executor ----------------------------------------------------


def test_a_stream_is_transcribed_by_passes_stored_sealed_with_its_speaker(
    client, settings, circle, echo
):
    consultant_id, token = circle.consultants[0]
    with client.websocket_connect(_url(circle)) as ws:
        ready = _start(ws, token)
        assert ready["speaker"] == "Anatole"
        assert ready["sample_rate"] == RATE
        for _ in range(25):  # 25 s in 1-s frames: one pass at 20 s, the rest at the end
            ws.send_bytes(pcm(1.0))
        ws.send_json({"type": "end"})
        pushed, final, errors = _until_final(ws)
        closed = _closed(ws)
    assert closed.code == 1000
    assert errors == []
    assert echo.seconds[0] >= settings.live.window_s  # the first pass, on a full window
    assert echo.seconds[-1] < 25 - settings.live.hold_s  # never the whole phase again
    every = pushed + final["segments"]
    assert final["count"] == len(every) >= 2
    assert [s["index"] for s in every] == list(range(len(every)))
    assert all(s["speaker"] == "Anatole" for s in every)
    assert final["heard"] == pytest.approx(25.0)

    transcript = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])
    assert [s["text"] for s in transcript["segments"]] == [s["text"] for s in every]
    assert {s["speaker"] for s in transcript["segments"]} == {"Anatole"}
    assert transcript["pending_jobs"] == 0
    job = circle.api.ok(
        "GET", circle.path(f"/transcription-jobs/{final['job_id']}"), circle.client[1]
    )
    assert (job["status"], job["audio_format"], job["percent"]) == ("done", "live/pcm16", 100)
    assert job["audio_kept"] is False  # the group does not keep audio
    assert job["audio_seconds"] == pytest.approx(25.0)
    with client.app.state.companion.sessions() as db:
        row = db.get(TranscriptionJob, final["job_id"])
        uploaded_by, kind = row.uploaded_by, row.kind
        sealed = db.scalars(select(TranscriptSegment.speaker_sealed)).all()
    assert kind == JobKind.live
    assert uploaded_by == consultant_id  # the assistance attributes the segments to them
    assert all(s is not None and b"Anatole" not in s for s in sealed)
    assert not (settings.data_dir / "audio").exists()  # live audio never touches the disk


def test_two_participants_interleave_in_the_transcript(client, circle, echo):
    first, second = circle.client, circle.consultants[1]
    with (
        client.websocket_connect(_url(circle)) as a,
        client.websocket_connect(_url(circle)) as b,
    ):
        _start(a, first[1])
        _start(b, second[1])
        a.send_bytes(pcm(1.0))
        b.send_bytes(pcm(1.0))
        a.send_json({"type": "end"})
        b.send_json({"type": "end"})
        _until_final(a)
        _until_final(b)
    segments = circle.api.ok("GET", circle.path("/transcript"), first[1])["segments"]
    assert sorted(s["speaker"] for s in segments) == ["Bérénice", "Zoé"]
    queue = circle.api.ok("GET", f"/groups/{circle.group_id}/transcription-queue", first[1])
    assert (queue["live"], queue["queued"], queue["running"]) == (0, 0, 0)


def test_a_dropped_connection_keeps_what_was_said(client, circle, echo):
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(3.0))
        _read_so_far(ws)  # the frame is in before the socket goes
    job = _wait_done(circle, job_id)
    assert job["status"] == "done"
    assert job["segments"] == 1
    assert echo.seconds == [pytest.approx(3.0)]


def _read_so_far(ws: Any) -> None:
    """Wait until the server has taken every frame sent so far: it handles messages in order
    and answers one that is neither audio nor `end` with an error."""
    ws.send_json({"type": "sync"})
    while ws.receive_json()["type"] != "error":
        pass


def _wait_done(circle: Circle, job_id: str) -> dict[str, Any]:
    path = circle.path(f"/transcription-jobs/{job_id}")

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = circle.api.ok("GET", path, circle.client[1])
        return job if job["status"] != "running" else None

    return wait_until(ended, timeout=30, what=f"the end of job {job_id}")


def test_a_group_that_keeps_audio_keeps_live_audio_sealed_like_an_upload(
    client, settings, circle, echo
):
    circle.api.ok(
        "PATCH", f"/groups/{circle.group_id}", circle.facilitator[1], json={"keep_audio": True}
    )
    with client.websocket_connect(_url(circle)) as ws:
        ended = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(2.0))
        ws.send_bytes(pcm(1.0))
        ws.send_json({"type": "end"})
        _until_final(ws)
    with client.websocket_connect(_url(circle)) as ws:  # dropped: kept when it is finalised
        dropped = _start(ws, circle.consultants[0][1])["job_id"]
        ws.send_bytes(pcm(2.0))
        ws.send_text("ping")  # answered once the frame before it was taken
        assert ws.receive_json()["type"] == "error"
    for job_id, seconds in ((ended, 3.0), (dropped, 2.0)):
        job = _wait_done(circle, job_id)
        assert (job["status"], job["audio_kept"]) == ("done", True)
        path = speech_audio.audio_path(settings.data_dir, circle.group_id, job_id)
        raw = path.read_bytes()  # where an upload's recording is kept
        assert raw[:4] == speech_audio.MAGIC
        assert b"RIFF" not in raw
        assert b"WAVE" not in raw
        with client.app.state.companion.sessions() as db:
            key = Keyring(db, client.app.state.companion.master).get(circle.group_id)
        with wave.open(speech_audio.open_sealed(path, key, job_id)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
            assert w.getnframes() / RATE == pytest.approx(seconds)
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert np.abs(samples.astype(np.int32) - np.frombuffer(pcm(seconds), "<i2")).max() <= 1
    assert len(list((settings.data_dir / "audio").glob("*/*.sealed"))) == 2


def test_a_live_job_whose_process_died_is_closed_with_what_it_stored(client, circle, echo):
    service = _speech(client)
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        for _ in range(21):
            ws.send_bytes(pcm(1.0))
        pushed = ws.receive_json()  # the first pass is stored
        assert pushed["type"] == "segments"
        service.ctx.stopping.set()  # no worker may take it in the meantime
        with service.ctx.sessions() as db, db.begin():  # as a killed process leaves it
            db.execute(
                update(TranscriptionJob)
                .where(TranscriptionJob.id == job_id)
                .values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
        assert jobs.recover(service.ctx) == 0  # closed, not queued for a worker
        ws.send_bytes(pcm(1.0))
        ws.send_bytes(pcm(1.0))
        closed = _closed(ws)
    assert closed.code == 4409
    job = circle.api.ok("GET", circle.path(f"/transcription-jobs/{job_id}"), circle.client[1])
    assert job["status"] == "done"
    assert job["segments"] == len(pushed["segments"])


# --- refusals --------------------------------------------------------------------------------


def test_who_may_stream_is_checked_like_an_upload(client, api, circle, echo):
    other = Circle.create(api, group_name="Autre cercle")
    bystander = api.user("Bastien Bystander")
    api.ok(
        "POST",
        f"/groups/{circle.group_id}/members",
        circle.facilitator[1],
        json={"user_id": bystander[0]},
    )
    policy = {
        "no token": (_url(circle), None),
        "an unknown token": (_url(circle), "cc_nope_nope"),
        "an outsider": (_url(circle), circle.outsider[1]),
        "a member who is not a participant": (_url(circle), bystander[1]),
        "another group's session": (_url(circle, session_id=other.session_id), circle.client[1]),
        "a phase that does not exist": (_url(circle, phase="lunch"), circle.client[1]),
        "a group that does not exist": (
            _url(circle).replace(circle.group_id, "00000000-0000-4000-8000-000000000000"),
            circle.client[1],
        ),
    }
    for name, (url, token) in policy.items():
        with client.websocket_connect(url) as ws:
            ws.send_json({"type": "start", "token": token})
            closed = _closed(ws)
        assert closed.code == 1008, (name, closed.code, closed.reason)
        assert closed.reason, name

    with client.websocket_connect(_url(circle, phase="clarification")) as ws:
        ws.send_json({"type": "start", "token": circle.client[1]})
        closed = _closed(ws)
    assert closed.code == 4409
    assert "'presentation' is running" in closed.reason
    with client.websocket_connect(_url(circle)) as ws:  # audio before the start message
        ws.send_bytes(pcm(1.0))
        closed = _closed(ws)
    assert closed.code == 1003
    assert "start" in closed.reason
    headers = {"Authorization": f"Bearer {circle.client[1]}"}  # non-browser clients
    with client.websocket_connect(_url(circle), headers=headers) as ws:
        ws.send_json({"type": "start", "format": "pcm16"})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "end"})
        _, final, _ = _until_final(ws)
    assert final["count"] == 0
    with client.app.state.companion.sessions() as db:  # only the last one opened a job
        assert db.scalars(select(TranscriptionJob.status)).all() == ["failed"]
    assert _count(client, TranscriptSegment) == 0
    assert echo.seconds == []


def test_bad_frames_are_refused_and_the_stream_goes_on(client, settings, circle, echo):
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, circle.client[1])
        ws.send_bytes(pcm(1.0)[:-1])  # half a sample
        ws.send_bytes(wav_bytes(1.0))  # a file, not raw samples
        ws.send_bytes(b"\x00" * (settings.live.max_frame_bytes + 2))
        ws.send_text("hello")
        ws.send_bytes(pcm(2.0))
        ws.send_json({"type": "end"})
        _, final, errors = _until_final(ws)
    details = [e["detail"] for e in errors]
    assert len(details) == 4, details
    assert "whole 2-byte samples" in details[0]
    assert "WAV file" in details[1]
    assert f"limited to {settings.live.max_frame_bytes} bytes" in details[2]
    assert "binary frames" in details[3]
    assert echo.seconds == [pytest.approx(2.0)]  # only the good frame was heard
    assert final["heard"] == pytest.approx(2.0)


def test_a_phase_that_stops_running_closes_the_stream_after_what_came_before(client, circle, echo):
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, circle.client[1])
        ws.send_bytes(pcm(2.0))
        circle.phase("presentation", "end")
        ws.send_bytes(pcm(5.0))
        _, final, _ = _until_final(ws)
        closed = _closed(ws)
    assert closed.code == 4409
    assert "No phase is running" in closed.reason
    assert final["heard"] == pytest.approx(2.0)
    assert echo.seconds == [pytest.approx(2.0)]  # the late frame changed nothing


def test_ending_the_phase_closes_a_quiet_stream_within_its_next_check(client, circle, echo):
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(2.0))
        ws.send_text("ping")  # answered once the frame before it was taken
        assert ws.receive_json()["type"] == "error"
        circle.phase("presentation", "end")
        _, final, errors = _until_final(ws)  # no other chunk: the connection looked itself
        closed = _closed(ws)
    assert closed.code == 4409
    assert "No phase is running" in closed.reason
    assert errors == []
    assert (final["count"], final["heard"]) == (1, pytest.approx(2.0))
    assert echo.seconds == [pytest.approx(2.0)]
    job = circle.api.ok("GET", circle.path(f"/transcription-jobs/{job_id}"), circle.client[1])
    assert (job["status"], job["segments"]) == ("done", 1)
    transcript = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])
    assert [s["text"] for s in transcript["segments"]] == [final["segments"][0]["text"]]


def test_a_person_removed_from_the_group_stops_streaming_within_a_check(client, circle, echo):
    anatole = circle.consultants[0]
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, anatole[1])
        ws.send_bytes(pcm(2.0))
        ws.send_text("ping")  # answered once the frame before it was taken
        assert ws.receive_json()["type"] == "error"
        removed = circle.api.call(
            "DELETE", f"/groups/{circle.group_id}/members/{anatole[0]}", circle.facilitator[1]
        )
        assert removed.status_code == 204
        _, final, _ = _until_final(ws)  # no other chunk: the connection looked itself
        closed = _closed(ws)
    assert closed.code == 1008
    assert final["heard"] == pytest.approx(2.0)  # what was said before is kept
    assert echo.seconds == [pytest.approx(2.0)]


def test_a_deactivated_persons_stream_closes_within_a_check(client, circle, echo):
    anatole = circle.consultants[0]
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, anatole[1])
        ws.send_bytes(pcm(2.0))
        ws.send_text("ping")
        assert ws.receive_json()["type"] == "error"
        circle.api.ok("POST", f"/api/v1/users/{anatole[0]}/deactivate", circle.api.admin_token)
        _, final, _ = _until_final(ws)
        closed = _closed(ws)
    assert closed.code == 1008
    assert "deactivated" in closed.reason
    assert final["heard"] == pytest.approx(2.0)


def test_too_long_a_stream_is_closed_at_the_limit(settings, api):
    api.client.app.state.transcription.ctx.stopping.set()  # type: ignore[attr-defined]
    short = settings.updated(**{"live_max_seconds": 2.5})
    with TestClient(create_app(short)) as client:
        echo = EchoTranscriber()
        _speech(client).transcriber = echo
        circle = Circle.create(Api(client, api.admin_token, api.tokens))
        circle.phase("presentation", "start")
        with client.websocket_connect(_url(circle)) as ws:
            _start(ws, circle.client[1])
            ws.send_bytes(pcm(1.0))
            ws.send_bytes(pcm(1.0))
            ws.send_bytes(pcm(1.0))  # 3 s > 2.5 s
            _, final, _ = _until_final(ws)
            closed = _closed(ws)
    assert closed.code == 4413
    assert "limited to 2 s" in closed.reason or "limited to 3 s" in closed.reason
    assert final["heard"] == pytest.approx(2.0)
    assert echo.seconds == [pytest.approx(2.0)]


@needs_speech_tools
def test_webm_chunks_of_a_media_recorder_stream_are_decoded(client, tmp_path, circle, echo):
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(6.0))
    data = convert(source, "webm").read_bytes()
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, circle.client[1], fmt="webm")
        for i in range(0, len(data), 2000):  # the first chunk holds the header
            ws.send_bytes(data[i : i + 2000])
        ws.send_json({"type": "end"})
        _, final, errors = _until_final(ws)
    assert errors == []
    assert final["heard"] == pytest.approx(6.0, abs=0.1)
    with client.websocket_connect(_url(circle)) as ws:  # a stream without its header
        _start(ws, circle.client[1], fmt="webm")
        ws.send_bytes(data[4000:6000])
        _, final, _ = _until_final(ws)
        closed = _closed(ws)
    assert closed.code == 1003
    assert "header" in closed.reason
    assert final["count"] == 0


# --- the queue's depth -----------------------------------------------------------------------


def test_queue_depth_for_members_and_operators(client, api, circle, echo):
    _speech(client).ctx.stopping.set()  # uploads stay queued
    busy = Circle.create(api, group_name="Busy")
    busy.phase("presentation", "start")
    for c in (busy, busy, circle):
        res = api.call(
            "POST",
            c.path("/phases/presentation/recordings"),
            c.client[1],
            files={"file": ("a.wav", wav_bytes(0.5), "audio/wav")},
        )
        assert res.status_code == 202, res.text
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, circle.consultants[0][1])
        mine = api.ok("GET", f"/groups/{circle.group_id}/transcription-queue", circle.client[1])
        ops = api.ok("GET", f"{PREFIX}/transcription-queue", api.admin_token)
        ws.send_json({"type": "end"})
        _until_final(ws)
    assert (mine["queued"], mine["running"], mine["live"]) == (1, 0, 1)
    assert (mine["queued_all"], mine["running_all"]) == (3, 0)
    [live, upload] = mine["jobs"]
    assert (live["live"], live["position"]) == (True, None)
    assert upload["position"] == 1  # after the busy group's first, before its second
    assert {j["session_id"] for j in mine["jobs"]} == {circle.session_id}
    assert (ops["queued"], ops["running"], ops["live"]) == (3, 0, 1)
    assert ops["oldest_queued_s"] >= 0
    refused = api.call("GET", f"{PREFIX}/transcription-queue", circle.client[1])
    assert refused.status_code == 403


# --- the real model --------------------------------------------------------------------------

ELEPHANTS = (
    "My first elephant lives in Paris. The second elephant eats green leaves at noon. "
    "A third elephant sleeps under the bridge. Then the fourth elephant runs to the river. "
    "The fifth elephant drinks cold water. Finally, the sixth elephant says goodbye to everyone."
)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("whisper-cache")
    bundled_model_dir(cache)
    return cache


def _pcm_of(path: Path) -> bytes:
    with wave.open(str(convert(path, "wav", path.with_suffix(".16k.wav")))) as w:
        assert (w.getframerate(), w.getnchannels()) == (RATE, 1)
        return w.readframes(w.getnframes())


def _real_app(tmp_path: Path, cache: Path, language: str) -> tuple[TestClient, Circle]:
    settings = Settings(
        data_dir=tmp_path / "data",
        speech_cache_dir=cache,
        live_window_s=8,  # short passes, so 17 s of speech has several seams
        live_hold_s=2,
        llm_local_model="off",
    )
    client = TestClient(create_app(settings))
    client.__enter__()
    circle = Circle.create(Api.bootstrap(client, settings), language=language)
    circle.phase("presentation", "start")
    return client, circle


@needs_speech_tools
def test_live_speech_through_the_bundled_model_has_clean_seams(tmp_path, model_cache):
    audio = _pcm_of(speak(ELEPHANTS, "en", tmp_path / "elephants"))
    client, circle = _real_app(tmp_path, model_cache, "en")
    try:
        with client.websocket_connect(_url(circle)) as ws:
            _start(ws, circle.client[1])
            step = 2 * RATE * 2  # 2-s chunks
            for i in range(0, len(audio), step):
                ws.send_bytes(audio[i : i + step])
            ws.send_json({"type": "end"})
            pushed, _, errors = _until_final(ws)
        segments = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
    finally:
        client.__exit__(None, None, None)
    assert errors == []
    assert pushed, "no segment was final before the end: no seam was crossed"
    heard = " ".join(s["text"] for s in segments).casefold()
    assert heard.count("elephant") == 6, heard  # each said once: none doubled, none lost
    assert all(word in heard for word in ("paris", "leaves", "bridge", "river", "water")), heard
    assert {s["speaker"] for s in segments} == {"Bérénice"}
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert all(a["end"] <= b["start"] + 0.05 for a, b in itertools.pairwise(segments))


@needs_speech_tools
def test_live_french_from_a_media_recorder_stream(tmp_path, model_cache):
    text = "Bonjour à tous. Je voudrais parler de mon équipe, je suis fatiguée."
    data = speak(text, "fr", tmp_path / "fr", "webm").read_bytes()
    client, circle = _real_app(tmp_path, model_cache, "fr")
    try:
        with client.websocket_connect(_url(circle)) as ws:
            _start(ws, circle.consultants[0][1], fmt="webm")
            for i in range(0, len(data), 3000):
                ws.send_bytes(data[i : i + 3000])
            ws.send_json({"type": "end"})
            pushed, final, _ = _until_final(ws)
    finally:
        client.__exit__(None, None, None)
    heard = " ".join(s["text"] for s in pushed + final["segments"]).casefold()
    assert all(w in heard for w in ("bonjour", "parler", "équipe")), heard
    assert {s["speaker"] for s in pushed + final["segments"]} == {"Anatole"}
