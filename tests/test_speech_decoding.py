"""What the transcription threads do before and beside Whisper: live mode's WAV read here (no
full garbage collection per window), other audio left to faster-whisper, and the threads'
scheduling behind the requests."""

from __future__ import annotations

import io
import os
import sys
import threading
import wave

import numpy as np
import pytest

from companion.speech import priority
from companion.speech.stitch import wav
from companion.speech.transcriber import pcm_samples

RATE = 16000


def test_live_windows_are_read_as_samples():
    said = np.sin(np.linspace(0, 200 * np.pi, RATE)).astype(np.float32) * 0.5
    samples = pcm_samples(wav(said), RATE)
    assert isinstance(samples, np.ndarray)
    assert samples.dtype == np.float32
    assert samples.shape == said.shape
    assert np.abs(samples - said).max() < 1e-3  # PCM16's step, nothing more


@pytest.mark.parametrize(
    ("channels", "rate"),
    [(2, RATE), (1, 8000)],
    ids=["stereo", "another rate"],
)
def test_other_wavs_are_left_to_faster_whisper_from_where_they_were(channels, rate):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * channels * rate)
    out.seek(0)
    assert pcm_samples(out, RATE) is out
    assert out.tell() == 0


def test_what_is_not_a_wav_is_left_as_it_was():
    ogg = io.BytesIO(b"OggS\0\2" + bytes(200))
    ogg.seek(0)
    assert pcm_samples(ogg, RATE) is ogg
    assert ogg.tell() == 0
    assert pcm_samples("/some/recording.ogg", RATE) == "/some/recording.ogg"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread policy: Linux")
def test_transcription_threads_run_behind_the_requests():
    seen: dict[str, int] = {}

    def transcription_thread() -> None:
        priority.lower_this_thread()
        seen["own"] = os.sched_getscheduler(threading.get_native_id())

        def model_thread() -> None:  # what Whisper's own pool starts from here inherits it
            seen["started"] = os.sched_getscheduler(threading.get_native_id())

        inner = threading.Thread(target=model_thread)
        inner.start()
        inner.join()

    outer = threading.Thread(target=transcription_thread)
    outer.start()
    outer.join()
    assert seen == {"own": os.SCHED_IDLE, "started": os.SCHED_IDLE}
    # The thread that asked is untouched: requests keep the normal policy.
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread policy: Linux")
def test_serve_loads_both_models_at_start_behind_the_requests(tmp_path_factory, monkeypatch):
    from companion.config import Settings
    from companion.speech import transcriber

    loaded: list[tuple[int, int]] = []
    load = transcriber._load

    def spied(spec):  # the model's worker threads start here: they inherit this policy
        loaded.append((spec.cpu_threads, os.sched_getscheduler(threading.get_native_id())))
        return load(spec)

    monkeypatch.setattr(transcriber, "_load", spied)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), speech_cache_dir=tmp_path_factory.mktemp("m")
    )
    thread = transcriber.preload(settings)
    thread.join(120)
    assert not thread.is_alive()
    assert loaded == [
        (settings.speech.cpu_threads, os.SCHED_IDLE),
        (transcriber.DRAFT_THREADS, os.SCHED_IDLE),
    ]
