"""The bundled Whisper model and the real executor, on speech espeak-ng makes at test time.

Kept few and small: one assembly of the model per run (shared by the tests through a cache
directory), a handful of ten-second clips, and one kill-and-resume of a real worker process.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from api.main import create_app
from companion.config import Settings
from companion.speech import model as speech_model
from companion.speech import transcriber
from companion.speech.model import ModelUnavailable, bundled_model_dir, resolve
from companion.speech.transcriber import Segment, WhisperTranscriber, drop_loops, pass_tokens
from companion.store.models import TranscriptionJob, TranscriptSegment, utcnow
from tests.speech_audio import needs_speech_tools, speak, wait_for_job, wav_bytes
from tests.world import Api, Circle, wait_until

FRENCH = (
    "Bonjour à tous. Je voudrais parler de mon équipe. "
    "Je travaille tous les soirs jusqu'à vingt heures, et je suis fatiguée."
)
ENGLISH = (
    "Good morning everyone. My problem is delegation. "
    "I cannot hand over the monthly report to my team, and I work late every evening."
)


def _words(text: str) -> str:
    return text.casefold().replace("’", "'")


def _parts() -> tuple[Path, Path]:
    data1, _ = speech_model._data_dir(*speech_model.PART1)
    data2, _ = speech_model._data_dir(*speech_model.PART2)
    return data1 / "model.bin.part1", data2 / "model.bin.part2"


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled bundled model for the whole run."""
    cache = tmp_path_factory.mktemp("whisper-cache")
    bundled_model_dir(cache)
    return cache


def _settings(data_dir: Path, cache: Path, **extra: object) -> Settings:
    return Settings(data_dir=data_dir, speech_cache_dir=cache, **extra)  # type: ignore[arg-type]


# --- the model ------------------------------------------------------------------------------


def test_assembly_is_atomic_under_concurrent_first_use(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys; from pathlib import Path; "
        "from companion.speech.model import bundled_model_dir; "
        "print(bundled_model_dir(Path(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    results: list[Path | BaseException] = []

    def first_use() -> None:
        try:
            results.append(bundled_model_dir(cache))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)

    [target] = {r for r in results if isinstance(r, Path)}
    assert len(results) == 4
    assert outputs == [str(target)] * 2
    part1, part2 = _parts()
    model = target / "model.bin"
    assert model.stat().st_size == part1.stat().st_size + part2.stat().st_size
    assert _sha256(model) == _sha256(part1, part2)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (target / name).is_file()
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]
    # Assembled once: a later use finds it and writes nothing.
    mtime = model.stat().st_mtime_ns
    assert bundled_model_dir(cache) == target
    assert model.stat().st_mtime_ns == mtime


def test_a_broken_cache_is_assembled_again(tmp_path, model_cache):
    cache = tmp_path / "cache"
    target = bundled_model_dir(cache)
    with (target / "model.bin").open("r+b") as f:
        f.truncate(1000)  # a copy cut short by a crash of some other tool
    assert bundled_model_dir(cache) == target
    part1, part2 = _parts()
    assert (target / "model.bin").stat().st_size == part1.stat().st_size + part2.stat().st_size


def test_a_configured_model_must_be_a_ctranslate2_directory(tmp_path):
    with pytest.raises(ModelUnavailable, match="not a CTranslate2 Whisper directory"):
        resolve(Settings(data_dir=tmp_path, speech_model_dir=tmp_path))


def test_configured_directory_device_and_compute_type(tmp_path, model_cache):
    bundled = bundled_model_dir(model_cache)
    spec = resolve(
        Settings(
            data_dir=tmp_path,
            speech_model_dir=bundled,
            speech_device="cpu",
            speech_compute_type="float32",
            speech_cpu_threads=1,
        )
    )
    assert (spec.path, spec.device, spec.compute_type, spec.cpu_threads) == (
        bundled,
        "cpu",
        "float32",
        1,
    )


def test_repeated_segment_loops_are_dropped():
    said = ["Bonjour.", "Je ne me sens pas capable.", "Oui.", "oui !"]
    loop = ["Je ne me sens pas capable de faire le travail."] * 30
    segments = [Segment(i, i + 1, t) for i, t in enumerate([*said, *loop, "Merci."])]
    kept = [s.text for s in drop_loops(segments)]
    assert kept == [*said, loop[0], "Merci."]  # twice passes; thirty times is a loop
    assert [s.text for s in drop_loops(segments[:3])] == said[:3]


# --- real speech ----------------------------------------------------------------------------


@needs_speech_tools
@pytest.mark.parametrize(
    ("language", "fmt", "text", "words"),
    [
        ("fr", "ogg", FRENCH, ("bonjour", "parler", "équipe", "fatigu")),
        ("en", "mp3", ENGLISH, ("good morning", "delegation", "monthly report", "team")),
    ],
)
def test_the_bundled_model_transcribes_speech(tmp_path, model_cache, language, fmt, text, words):
    clip = speak(text, language, tmp_path / "clip", fmt)
    whisper = WhisperTranscriber(resolve(_settings(tmp_path, model_cache)))
    with clip.open("rb") as f:
        segments = list(whisper.transcribe(f, language))
    heard = _words(" ".join(s.text for s in segments))
    assert all(w in heard for w in words), heard
    assert all(0 <= s.start < s.end <= 12 for s in segments)


class _Spied:
    """The loaded model's CTranslate2 generator, its calls' length bounds noted and, when
    `doubt` is set, each result's no-speech probability raised to it."""

    def __init__(self, inner: object, doubt: float | None = None) -> None:
        self.inner, self.doubt, self.bounds = inner, doubt, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def generate(self, *args, **kw):
        self.bounds.append(kw["max_length"])
        results = self.inner.generate(*args, **kw)
        if self.doubt is None:
            return results
        return [_Doubted(r, self.doubt) for r in results]


class _Doubted:
    def __init__(self, result: object, no_speech_prob: float) -> None:
        self.no_speech_prob = no_speech_prob
        self.sequences_ids, self.scores = result.sequences_ids, [-1.5]  # a poor hearing


def test_a_window_writes_at_most_what_its_audio_can_hold():
    assert pass_tokens(2.0) == 36  # ten tokens a second, and a margin for the timestamps
    assert pass_tokens(12.5) == 141
    assert pass_tokens(20.0) == 216  # with the longest prompt, within Whisper's 448
    assert pass_tokens(25.0) is None  # longer audio: faster-whisper's own bound


def test_a_wav_file_is_read_here_like_a_stream(tmp_path):
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(1.0))
    samples = transcriber.pcm_samples(str(path), 16000)
    assert isinstance(samples, np.ndarray)
    assert samples.shape == (16000,)


@needs_speech_tools
@pytest.mark.parametrize(
    ("language", "text", "words"),
    [
        ("fr", "As-tu parlé de ce problème avec ton équipe ?", ("problème", "équipe")),
        ("en", "Have you talked to your team about this problem?", ("team", "problem")),
    ],
)
def test_a_question_said_alone_is_heard_in_a_short_window(
    tmp_path, model_cache, monkeypatch, language, text, words
):
    clip = speak(text, language, tmp_path / "question", "wav")
    seconds = (clip.stat().st_size - 44) / 32000
    whisper = WhisperTranscriber(resolve(_settings(tmp_path, model_cache)))
    model = transcriber._load(whisper.spec)
    encoded: list[int] = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda f: encoded.append(f.shape[-1]) or encode(f))
    spied = _Spied(model.model)
    monkeypatch.setattr(model, "model", spied)
    segments = list(whisper.transcribe(str(clip), language))
    assert len(segments) == 1
    assert segments[0].start == 0.0
    assert segments[0].end == pytest.approx(seconds, abs=0.01)
    heard = _words(segments[0].text)
    assert all(w in heard for w in words), heard
    # Half of Whisper's 30-s window, and a decoding bounded by the question's length, so a
    # loop cannot run on to 448 tokens.
    assert encoded == [1500]
    assert spied.bounds
    assert all(b <= 4 + pass_tokens(seconds) for b in spied.bounds)


def test_only_passes_without_word_times_are_bounded_by_their_length(
    tmp_path, model_cache, monkeypatch
):
    whisper = WhisperTranscriber(resolve(_settings(tmp_path, model_cache)))
    model = transcriber._load(whisper.spec)
    asked: list[object] = []
    transcribe = type(model).transcribe

    def spied(self, audio, **kw):
        asked.append(kw["max_new_tokens"])
        return transcribe(self, audio, **kw)

    monkeypatch.setattr(type(model), "transcribe", spied)
    tone = wav_bytes(12.0, amplitude=0.1)  # over SHORT_S: faster-whisper's windows
    list(whisper.transcribe(io.BytesIO(tone), "en", vad=False))
    list(whisper.transcribe(io.BytesIO(tone), "en", vad=False, words=True))  # a live pass
    assert asked == [pass_tokens(12.0), None]


@needs_speech_tools
def test_speech_the_voice_detector_heard_is_kept_when_the_model_doubts(
    tmp_path, model_cache, monkeypatch
):
    clip = speak("Bonjour, je voudrais parler de mon équipe.", "fr", tmp_path / "q", "wav")
    whisper = WhisperTranscriber(resolve(_settings(tmp_path, model_cache)))
    model = transcriber._load(whisper.spec)
    monkeypatch.setattr(model, "model", _Spied(model.model, doubt=0.9))
    assert list(whisper.transcribe(str(clip), "fr"))  # the detector found speech: kept
    # Heard without the detector (the second try after it found none), the doubt decides.
    assert list(whisper.transcribe(str(clip), "fr", vad=False)) == []


@needs_speech_tools
def test_upload_through_the_service_with_the_real_model(tmp_path, model_cache):
    settings = _settings(tmp_path / "data", model_cache)
    clip = speak(ENGLISH, "en", tmp_path / "clip", "webm")
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        circle = Circle.create(api, language="en")
        circle.phase("presentation", "start")
        res = api.call(
            "POST",
            circle.path("/phases/presentation/recordings"),
            circle.client[1],
            files={"file": ("phase.webm", clip.read_bytes(), "audio/webm")},
        )
        assert res.status_code == 202, res.text
        assert res.json()["audio_format"] == "matroska/opus"
        job = wait_for_job(
            api, circle.path(f"/transcription-jobs/{res.json()['id']}"), circle.client[1]
        )
        assert job["status"] == "done", job
        segments = api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
    heard = _words(" ".join(s["text"] for s in segments))
    assert "delegation" in heard, heard
    assert "monthly report" in heard, heard
    assert not list((settings.data_dir / "audio").glob("*/*.sealed"))


@needs_speech_tools
def test_a_killed_worker_process_is_resumed_with_one_copy_of_each_segment(tmp_path, model_cache):
    """`companion worker` is killed (SIGKILL) mid-job; the API's start picks the job up again."""
    settings = _settings(tmp_path / "data", model_cache, transcription_lease_s=1.0)
    clip = speak(FRENCH, "fr", tmp_path / "clip", "ogg")
    with TestClient(create_app(settings.updated(**{"transcription_worker": False}))) as c:
        api = Api.bootstrap(c, settings)
        circle = Circle.create(api)
        circle.phase("presentation", "start")
        res = api.call(
            "POST",
            circle.path("/phases/presentation/recordings"),
            circle.client[1],
            files={"file": ("phase.ogg", clip.read_bytes(), "audio/ogg")},
        )
        assert res.status_code == 202, res.text
        job_id = res.json()["id"]
        job_path = circle.path(f"/transcription-jobs/{job_id}")
        env = {
            **os.environ,
            "COMPANION_DATA_DIR": str(settings.data_dir),
            "COMPANION_SPEECH_CACHE_DIR": str(model_cache),
            "COMPANION_TRANSCRIPTION_LEASE_S": "1",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "companion", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def taken() -> bool:
            assert worker.poll() is None, "the worker died on its own"
            return bool(api.ok("GET", job_path, circle.client[1])["status"] != "queued")

        try:
            wait_until(taken, timeout=60, what="the worker taking the job")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        interrupted = api.ok("GET", job_path, circle.client[1])
        assert interrupted["status"] == "running", interrupted
    engine = create_engine(settings.resolved_database_url)

    def lease_ran_out() -> bool:  # what the next start's recovery looks for
        with Session(engine) as db:
            job = db.get(TranscriptionJob, job_id)
            assert job is not None
            stale = utcnow() - timedelta(seconds=settings.speech.lease_s)
            return job.heartbeat_at is None or job.heartbeat_at < stale

    wait_until(lease_ran_out, timeout=10, what="the dead worker's lease running out")
    engine.dispose()

    with TestClient(create_app(settings)) as c:
        api = Api(c, "", {})
        job = wait_for_job(api, job_path, circle.client[1])
        assert job["status"] == "done", job
        assert job["attempts"] == 2
        with c.app.state.companion.sessions() as db:
            positions = db.scalars(
                select(TranscriptSegment.position).where(TranscriptSegment.job_id == job["id"])
            ).all()
        assert sorted(positions) == list(range(len(positions))) == list(range(job["segments"]))
        segments = api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
    heard = _words(" ".join(s["text"] for s in segments))
    assert heard.count("bonjour") == 1, heard
