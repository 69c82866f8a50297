"""Audio made at test time: tones and silence with the standard library, speech with espeak-ng,
other formats with ffmpeg. Nothing is downloaded and no fixture file is kept in the repo."""

from __future__ import annotations

import io
import math
import shutil
import struct
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import pytest

HAVE_SPEECH_TOOLS = bool(shutil.which("espeak-ng") and shutil.which("ffmpeg"))
needs_speech_tools = pytest.mark.skipif(
    not HAVE_SPEECH_TOOLS, reason="needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg)"
)

FORMATS = {  # extension -> ffmpeg output options
    "wav": ["-ar", "16000", "-ac", "1"],
    "mp3": ["-b:a", "48k"],
    "ogg": ["-c:a", "libopus", "-b:a", "24k"],
    "webm": ["-c:a", "libopus", "-b:a", "24k"],
    "m4a": ["-c:a", "aac", "-b:a", "48k"],
}


def wav_bytes(
    seconds: float, freq: float = 440.0, rate: int = 16000, amplitude: float = 0.5
) -> bytes:
    """A mono 16-bit WAV: a sine tone, or digital silence with amplitude 0."""
    frames = int(seconds * rate)
    samples = (
        int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate)) for i in range(frames)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


def speak(text: str, language: str, path: Path, fmt: str = "wav") -> Path:
    """`text` spoken by espeak-ng in `language` (fr | en), converted to `fmt`."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", language, "-s", "150", "-w", str(raw), text], check=True)
    out = convert(raw, fmt, path.with_suffix(f".{fmt}"))
    raw.unlink()
    return out


def convert(source: Path, fmt: str, out: Path | None = None) -> Path:
    """`source` converted by ffmpeg to `fmt` (wav, mp3, ogg, webm, m4a)."""
    out = out or source.with_suffix(f".{fmt}")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), *FORMATS[fmt], str(out)],
        check=True,
    )
    return out


def wait_for_job(api: Any, path: str, token: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.ok("GET", path, token)
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout} s: {job}"
        time.sleep(0.05)
