"""Recordings: checked when they arrive, sealed at rest while they wait, deleted when done.

`probe` decodes the whole upload once (PyAV, which faster-whisper uses too) so that what can be
known at upload is refused at upload: not audio, no audio stream, corrupt or truncated, only
silence, too long. The file is then sealed with the group's data key in chunks (AES-GCM each,
bound to the job, its position, and whether it is the last), so a truncated or reordered file
fails to open.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from companion.errors import DomainError, Invalid
from companion.vault import DataKey, IntegrityError

MAGIC = b"CCA1"  # Codev Companion sealed audio, format 1
CHUNK = 1024 * 1024
SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS: nothing above this is digital silence
TRUNCATION_SLACK_S = 1.0  # a declared duration this much (and 5 %) longer than decoded
RECORD_TYPE = "transcription_jobs"


class TooLarge(DomainError):
    status = 413


@dataclass(frozen=True)
class Probe:
    seconds: float
    format: str  # container/codec, e.g. "ogg/opus"
    peak: float  # 0..1 of full scale


def _peak(frame: av.AudioFrame) -> float:
    samples = frame.to_ndarray()
    if samples.size == 0:
        return 0.0
    if samples.dtype == np.uint8:  # unsigned 8-bit PCM centres on 128
        return float(np.abs(samples.astype(np.int16) - 128).max()) / 128
    peak = float(np.abs(samples).max())
    if np.issubdtype(samples.dtype, np.integer):
        return peak / float(2 ** (samples.dtype.itemsize * 8 - 1))
    return peak


def probe(file: BinaryIO, max_seconds: float) -> Probe:
    """Decode the recording once; raise Invalid / TooLarge with what to fix."""
    file.seek(0, io.SEEK_END)
    if file.tell() == 0:
        raise Invalid("The recording is empty (0 bytes); send the audio file.")
    file.seek(0)
    try:
        container = av.open(file, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, EOFError, ValueError) as exc:
        raise Invalid(
            "This is not a recording in a known audio format, or it is truncated before its "
            "first sound (send wav, mp3, m4a/aac, ogg/opus or webm/opus)."
        ) from exc
    try:
        if not container.streams.audio:
            raise Invalid("The file has no audio stream; send an audio recording.")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        declared = _declared_seconds(container, stream)
        seconds = 0.0
        peak = 0.0
        try:
            for frame in container.decode(stream):
                if frame.sample_rate:
                    seconds += frame.samples / frame.sample_rate
                peak = max(peak, _peak(frame))
                if seconds > max_seconds:
                    raise TooLarge(
                        f"The recording is longer than the limit of {_hms(max_seconds)}; "
                        "split it or raise COMPANION_MAX_AUDIO_SECONDS."
                    )
        except (av.FFmpegError, EOFError, ValueError) as exc:
            raise Invalid(
                f"The recording is corrupt or truncated: decoding failed after "
                f"{seconds:.1f} s ({exc.__class__.__name__})."
            ) from exc
    finally:
        container.close()
    if seconds <= 0:
        raise Invalid("The recording holds no decodable sound.")
    declared = _wav_declared_seconds(file, seconds) or declared
    if declared is not None and declared - seconds > max(TRUNCATION_SLACK_S, 0.05 * declared):
        raise Invalid(
            f"The recording is truncated: its header says {declared:.1f} s but only "
            f"{seconds:.1f} s could be decoded. Send the whole file."
        )
    if peak < SILENCE_PEAK:
        raise Invalid("The recording holds only silence; check the microphone and record again.")
    name = (container.format.name or "audio").split(",")[0]
    return Probe(seconds=round(seconds, 3), format=f"{name}/{codec}"[:60], peak=peak)


def _declared_seconds(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _wav_declared_seconds(file: BinaryIO, decoded: float) -> float | None:
    """What a WAV header's data chunk announces (ffmpeg trusts the file size instead), so a
    cut-off WAV is caught; None when it is not a WAV or the size is left open (streamed)."""
    file.seek(0)
    head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    file.seek(0, io.SEEK_END)
    total = file.tell()
    offset = 12
    while offset + 8 <= total:
        file.seek(offset)
        chunk, size = struct.unpack("<4sI", file.read(8))
        size = int(size)
        if chunk == b"data":
            available = total - offset - 8
            if size in (0, 0xFFFFFFFF) or available <= 0 or size <= available:
                return None
            return float(decoded * size / available)  # the same byte rate, announced size
        offset += 8 + size + (size & 1)
    return None


def _hms(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


# --- sealed at rest -------------------------------------------------------------------------


def _field(index: int, last: bool) -> str:
    return f"audio.{index}.{'last' if last else 'more'}"


def seal_to(path: Path, source: BinaryIO, key: DataKey, job_id: str) -> None:
    """Write `source` sealed to `path` (through a temporary file and a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    source.seek(0)
    try:
        with tmp.open("wb") as out:
            out.write(MAGIC)
            index = 0
            chunk = source.read(CHUNK)
            while True:
                following = source.read(CHUNK)
                last = not following
                sealed = key.seal(chunk, RECORD_TYPE, job_id, _field(index, last))
                out.write(struct.pack(">I", len(sealed)) + sealed)
                if last:
                    break
                chunk, index = following, index + 1
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _chunks(path: Path, key: DataKey, job_id: str) -> Iterator[bytes]:
    with path.open("rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            raise IntegrityError(f"{path.name} is not a sealed recording")
        index = 0
        header = file.read(4)
        while header:
            (size,) = struct.unpack(">I", header)
            sealed = file.read(size)
            following = file.read(4)
            yield key.open(sealed, RECORD_TYPE, job_id, _field(index, not following))
            header, index = following, index + 1
        if index == 0:
            raise IntegrityError(f"{path.name} holds no sealed audio")


def open_sealed(path: Path, key: DataKey, job_id: str) -> io.BytesIO:
    """The recording, in memory; IntegrityError if it was altered, truncated or moved."""
    return io.BytesIO(b"".join(_chunks(path, key, job_id)))


def audio_path(data_dir: Path, group_id: str, job_id: str) -> Path:
    return data_dir / "audio" / group_id / f"{job_id}.sealed"
