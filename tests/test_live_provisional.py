"""Provisional text of a live stream: between its passes, a quicker draft of the audio not final
yet is stored sealed on the job, shown to every page of the room (the transcript's
`provisional`, the transcript panel), pushed to the speaker's socket when asked for, and
cleared when its text becomes final or the stream ends.

A stand-in executor with a `draft` stand-in for most; one test drafts with the bundled
Whisper (greedy) on espeak-ng speech, as tests/test_speech_live.py does for the passes.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from companion.config import Settings
from companion.sessions.changes import fingerprints
from companion.speech import live
from companion.speech.model import bundled_model_dir
from companion.speech.queue import TranscriptionService
from companion.speech.stitch import Stitcher
from companion.speech.transcriber import ConfiguredWhisper, Segment, Word
from companion.store.models import TranscriptionJob
from tests.speech_audio import convert, needs_speech_tools, speak
from tests.world import PREFIX, Api, Circle, wait_until

RATE = 16000
DRAFT = "brouillon de ce qui se dit"


class Drafts:
    """The draft executor: says DRAFT on its first call, nothing after."""

    name = "drafts"

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        assert not isinstance(audio, str)
        with wave.open(audio) as w:
            seconds = w.getnframes() / w.getframerate()
        self.seconds.append(seconds)
        if len(self.seconds) == 1:
            yield Segment(0.0, seconds, DRAFT)


class Passes:
    """The passes' executor (one segment per pass, with word times), offering `draft`."""

    name = "passes"

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.draft = Drafts()

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        assert not isinstance(audio, str)
        with wave.open(audio) as w:
            seconds = w.getnframes() / w.getframerate()
        self.seconds.append(seconds)
        n, half = len(self.seconds), seconds / 2
        said = (Word(0.0, half, f" passe{n}"), Word(half, seconds, " suite"))
        yield Segment(0.0, seconds, f"passe{n} suite", said)


def pcm(seconds: float, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


@pytest.fixture
def passes(client: TestClient) -> Passes:
    fake = Passes()
    service: TranscriptionService = client.app.state.transcription  # type: ignore[attr-defined]
    service.transcriber = fake
    return fake


@pytest.fixture
def circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    return circle


def _url(circle: Circle) -> str:
    return (
        f"{PREFIX}/groups/{circle.group_id}/sessions/{circle.session_id}/phases/presentation/live"
    )


def _start(ws: Any, token: str, provisional: bool = True) -> dict[str, Any]:
    ws.send_json({"type": "start", "token": token, "format": "pcm16", "provisional": provisional})
    ready: dict[str, Any] = ws.receive_json()
    assert ready["type"] == "ready", ready
    return ready


def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = ws.receive_json()
        if msg["type"] == kind:
            return msg
        assert msg["type"] in ("provisional", "segments"), msg


def _job(client: TestClient, job_id: str) -> TranscriptionJob:
    with client.app.state.companion.sessions() as db:  # type: ignore[attr-defined]
        job = db.get(TranscriptionJob, job_id)
        assert job is not None
        db.expunge(job)
        return job


def test_provisional_text_is_shown_to_the_room_sealed_then_replaced_by_the_final(
    client, api, circle, passes
):
    speaker = circle.consultants[0]
    with client.app.state.companion.sessions() as db:
        before = fingerprints(db, circle.session_id)
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, speaker[1])["job_id"]
        ws.send_bytes(pcm(1.5))
        pushed = _next(ws, "provisional")
        assert pushed == {"type": "provisional", "text": DRAFT, "start": 0.0, "end": 1.5}

        # Everyone in the room reads it from the database, with the speaker's name.
        seen = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])
        assert seen["segments"] == []
        [draft] = seen["provisional"]
        assert (draft["job_id"], draft["speaker"], draft["text"]) == (job_id, "Anatole", DRAFT)
        assert draft["phase"] == "presentation"
        panel = api.browser(circle.facilitator[0])[0].get(
            f"/groups/{circle.group_id}/sessions/{circle.session_id}/panels/transcript"
        )
        assert panel.status_code == 200
        assert f'class="provisional" data-job="{job_id}"' in panel.text
        assert "Anatole" in panel.text
        assert DRAFT in panel.text
        row = _job(client, job_id)
        assert row.provisional_sealed is not None
        assert DRAFT.encode() not in row.provisional_sealed
        assert b"brouillon" not in row.provisional_sealed
        assert row.provisional_at is not None
        with client.app.state.companion.sessions() as db:
            during = fingerprints(db, circle.session_id)
        assert during["transcript"] != before["transcript"]  # open pages reload the panel
        assert during["clarity"] == before["clarity"]  # not the clarity view

        for _ in range(20):  # a window: its final pass replaces the provisional text
            ws.send_bytes(pcm(1.0))
        segments = _next(ws, "segments")
        said = [s["text"] for s in segments["segments"]]
        assert said == ["passe1"]  # its last seconds are held for the next pass
        seen = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])
        assert seen["provisional"] == []
        assert [s["text"] for s in seen["segments"]] == said
        row = _job(client, job_id)
        assert (row.provisional_sealed, row.provisional_at) == (None, None)
        ws.send_json({"type": "end"})
        _next(ws, "final")
    assert passes.draft.seconds[0] == pytest.approx(1.5)
    assert passes.seconds[0] >= 20  # the passes are not the drafts'
    assert _job(client, job_id).status == "done"


def test_provisional_text_is_cleared_when_the_stream_ends(client, circle, passes):
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(2.0))
        assert _next(ws, "provisional")["text"] == DRAFT
        assert _job(client, job_id).provisional_sealed is not None
        ws.send_json({"type": "end"})
        final = _next(ws, "final")
    assert final["count"] == 1
    row = _job(client, job_id)
    assert (row.status, row.provisional_sealed, row.provisional_at) == ("done", None, None)
    transcript = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])
    assert transcript["provisional"] == []
    assert [s["speaker"] for s in transcript["segments"]] == ["Bérénice"]


def test_a_client_that_did_not_ask_gets_no_provisional_message(client, circle, passes):
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1], provisional=False)["job_id"]
        ws.send_bytes(pcm(2.0))
        # The room has its draft all the same (stored on the job).
        wait_until(lambda: _job(client, job_id).provisional_sealed, what="the draft")
        ws.send_json({"type": "end"})
        assert ws.receive_json()["type"] == "final"  # nothing in between
    assert passes.draft.seconds == [pytest.approx(2.0)]


def test_a_draft_runs_while_a_pass_does(client, circle, passes):
    """What is said while a pass runs is drafted before the pass ends (a pass takes seconds)."""
    gate = threading.Event()
    quick = passes.transcribe

    def slow_pass(audio: str | BinaryIO, language: str, *, words: bool = False):
        assert gate.wait(10), "no draft came while the pass ran"
        return quick(audio, language, words=words)

    passes.transcribe = slow_pass  # type: ignore[method-assign]
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(20.0))  # a window: its pass starts and waits for the gate
        assert _next(ws, "provisional")["text"] == DRAFT
        assert live.FINALS.running == 1  # the pass is still under way
        assert _job(client, job_id).provisional_sealed is not None
        gate.set()
        assert [s["text"] for s in _next(ws, "segments")["segments"]] == ["passe1"]
        ws.send_json({"type": "end"})
        _next(ws, "final")
    assert _job(client, job_id).status == "done"


def test_a_draft_that_a_pass_made_stale_is_dropped(client, circle, passes):
    """A draft that began before a pass's cut and ends after it would show words that are
    final already: it is not stored, nor sent."""
    began, gate, drafted = threading.Event(), threading.Event(), threading.Event()
    quick = passes.transcribe

    def pass_after_the_draft_began(audio: str | BinaryIO, language: str, *, words: bool = False):
        assert began.wait(10)
        return quick(audio, language, words=words)

    def slow_draft(audio: str | BinaryIO, language: str, *, words: bool = False):
        if drafted.is_set():  # the drafts after the pass
            yield Segment(0.0, 1.0, "brouillon frais")
            return
        began.set()
        assert gate.wait(10)
        yield Segment(0.0, 1.0, "brouillon périmé")
        drafted.set()

    passes.transcribe = pass_after_the_draft_began  # type: ignore[method-assign]
    passes.draft.transcribe = slow_draft  # type: ignore[method-assign]
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(20.0))  # a draft starts, then the pass, which ends first
        assert [s["text"] for s in _next(ws, "segments")["segments"]] == ["passe1"]
        gate.set()
        assert drafted.wait(10)
        wait_until(lambda: not live.DRAFTING.locked(), what="the draft's end")
        ws.send_json({"type": "end"})
        messages = []
        while (msg := ws.receive_json())["type"] != "final":
            messages.append(msg)
    assert "brouillon périmé" not in str(messages)
    assert _job(client, job_id).provisional_sealed is None


def test_no_draft_for_audio_that_arrives_faster_than_it_is_said(client, circle, passes):
    with client.websocket_connect(_url(circle)) as ws:
        _start(ws, circle.client[1])
        ws.send_bytes(pcm(0.5))  # under a second: no draft yet
        ws.send_bytes(pcm(3.0))  # 3 s more at once: a backlog, which the passes take soon
        ws.send_json({"type": "end"})
        assert ws.receive_json()["type"] == "final"
    assert passes.draft.seconds == []


def test_an_executor_without_a_draft_makes_no_provisional_text(client, settings, circle):
    class Plain:
        name = "plain"

        def transcribe(
            self, audio: str | BinaryIO, language: str, *, words: bool = False
        ) -> Iterator[Segment]:
            yield Segment(0.0, 1.0, "dit")

    client.app.state.transcription.transcriber = Plain()
    assert live.drafter(Plain()) is None
    greedy = live.drafter(ConfiguredWhisper(settings))
    assert isinstance(greedy, ConfiguredWhisper)
    assert greedy.greedy
    with client.websocket_connect(_url(circle)) as ws:
        job_id = _start(ws, circle.client[1])["job_id"]
        ws.send_bytes(pcm(2.0))
        ws.send_json({"type": "end"})
        assert _next(ws, "final")["count"] == 1
    with client.app.state.companion.sessions() as db:
        stored = db.scalar(
            select(TranscriptionJob.provisional_sealed).where(TranscriptionJob.id == job_id)
        )
    assert stored is None


# --- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("whisper-cache")
    bundled_model_dir(cache)
    return cache


@needs_speech_tools
def test_greedy_whisper_drafts_what_is_being_said(tmp_path, model_cache):
    said = "My first elephant lives in Paris. The second elephant eats green leaves."
    with wave.open(
        str(convert(speak(said, "en", tmp_path / "e"), "wav", tmp_path / "e16.wav"))
    ) as w:
        audio = w.readframes(w.getnframes())
    settings = Settings(data_dir=tmp_path / "data", speech_cache_dir=model_cache)
    greedy = live.drafter(ConfiguredWhisper(settings))
    assert greedy is not None
    stitcher = Stitcher(greedy, "en", window_s=20, hold_s=4)
    stitcher.add(np.frombuffer(audio, "<i2").astype(np.float32) / 32768)
    draft = stitcher.draft(greedy)
    assert draft.start == 0.0
    assert draft.end == pytest.approx(len(audio) / 2 / RATE)
    assert "elephant" in draft.text.casefold(), draft.text
    assert "paris" in draft.text.casefold(), draft.text
    assert stitcher.offset == 0.0  # a draft makes nothing final
    assert stitcher.pending_s == pytest.approx(draft.end)
