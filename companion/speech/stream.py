"""Live audio in: binary frames turned into 16 kHz mono float32 samples as they arrive.

- `pcm16`: raw little-endian 16-bit mono at 16 kHz (what an AudioWorklet can send).
- `webm`: a MediaRecorder stream (webm/opus, or anything else ffmpeg demuxes): the chunks are
  slices of one byte stream, only the first holds the header, so one demuxer reads them all
  through a blocking pipe in its own thread instead of decoding each chunk alone.
"""

from __future__ import annotations

import threading
from typing import Protocol

import av
import numpy as np

RATE = 16000
MAGICS = {
    b"RIFF": "a WAV file",
    b"OggS": "an Ogg file",
    b"\x1a\x45\xdf\xa3": "a WebM/Matroska file",
    b"ID3": "an MP3 file",
    b"fLaC": "a FLAC file",
}
EMPTY = np.zeros(0, dtype=np.float32)


class BadChunk(Exception):
    """This frame is refused; the stream goes on (the message says why)."""


class StreamBroken(Exception):
    """The stream cannot be decoded any further (the message says why)."""


class Decoder(Protocol):
    format: str

    def feed(self, data: bytes) -> np.ndarray: ...

    def close(self) -> np.ndarray: ...


class Pcm16Decoder:
    format = "live/pcm16"

    def feed(self, data: bytes) -> np.ndarray:
        if len(data) % 2:
            raise BadChunk(
                f"A PCM16 frame holds whole 2-byte samples; this one has {len(data)} bytes."
            )
        for magic, what in MAGICS.items():
            if data.startswith(magic):
                raise BadChunk(
                    f"This frame looks like {what}, not raw PCM16 (16 kHz mono); send raw "
                    "samples, or start the connection with format 'webm'."
                )
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0

    def close(self) -> np.ndarray:
        return EMPTY


class _Pipe:
    """A file for PyAV whose reads wait for the next chunk (or the end of the stream)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self._ended = False

    def write(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._buffer and not self._ended:
                self._cond.wait()
            size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
            out = bytes(self._buffer[:size])
            del self._buffer[:size]
            return out


class ContainerDecoder:
    """A MediaRecorder stream (webm/opus, ogg/opus...), demuxed and decoded in one thread."""

    format = "live/webm"

    def __init__(self) -> None:
        self._pipe = _Pipe()
        self._out: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._error: str | None = None
        self._started = False
        self._thread = threading.Thread(target=self._run, name="live-decoder", daemon=True)

    def _run(self) -> None:
        try:
            with av.open(self._pipe, mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise StreamBroken("The stream has no audio track.")
                resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
                for frame in container.decode(container.streams.audio[0]):
                    self._emit(resampler.resample(frame))
                self._emit(resampler.resample(None))
        except StreamBroken as exc:
            self._error = str(exc)
        except Exception as exc:  # av raises many kinds on bytes it cannot read
            self._error = (
                "The stream is not audio in a known container, or it is corrupt "
                f"({exc.__class__.__name__}); send webm/opus from MediaRecorder, the first "
                "chunk first."
            )
        finally:
            self._pipe.end()  # nobody waits on a decoder that has stopped

    def _emit(self, frames: list[av.AudioFrame]) -> None:
        samples = [f.to_ndarray().reshape(-1).astype(np.float32) for f in frames]
        with self._lock:
            self._out += samples

    def _take(self) -> np.ndarray:
        with self._lock:
            out, self._out = self._out, []
        if self._error is not None and not out:
            raise StreamBroken(self._error)
        return np.concatenate(out) if out else EMPTY

    def feed(self, data: bytes) -> np.ndarray:
        """What has been decoded so far (decoding lags a chunk or so behind)."""
        if self._error is not None:
            raise StreamBroken(self._error)
        if not self._started:  # the demuxer would wait for a header that is not coming
            if not any(data.startswith(magic) for magic in MAGICS):
                raise StreamBroken(
                    "The first chunk of a webm stream must hold its header (MediaRecorder's "
                    "first chunk); this one does not start like an audio container."
                )
            self._started = True
            self._thread.start()
        self._pipe.write(data)
        return self._take()

    def close(self) -> np.ndarray:
        """Everything left, once the demuxer has read the end of the stream."""
        self._pipe.end()
        if not self._started:
            return EMPTY
        self._thread.join(timeout=30)
        return self._take()


def decoder(fmt: str) -> Decoder:
    if fmt == "pcm16":
        return Pcm16Decoder()
    if fmt == "webm":
        return ContainerDecoder()
    raise BadChunk(f"Unknown audio format {fmt!r}; use 'pcm16' (16 kHz mono) or 'webm'.")


def peak(samples: np.ndarray) -> float:
    return float(np.abs(samples).max()) if samples.size else 0.0
