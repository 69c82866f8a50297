"""Recordings: sealed as they arrive, checked, sealed at rest while they wait, deleted when done.

An upload is sealed with the group's data key while it streams in (`SealedWriter`: AES-GCM in
chunks, each bound to the job, its position, and whether it is the last, so a truncated or
reordered file fails to open), straight into the data dir: nothing of it is in clear on disk
at any moment. `probe` then reads it back unsealed (`SealedReader`, chunk by chunk, in memory)
and decodes it once (PyAV, which faster-whisper uses too), so that what can be known at upload
is refused at upload: not audio, no audio stream, corrupt or truncated, only silence, too long.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import av
import numpy as np

from companion.errors import DomainError, Invalid
from companion.speech import truncation
from companion.vault import DataKey, IntegrityError
from companion.vault.envelope import SEALED_OVERHEAD

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"CCA1"  # Codev Companion sealed audio, format 1
CHUNK = 64 * 1024  # clear bytes per sealed chunk (1 MiB in files written before: both open)
PARTIAL_SUFFIX = ".partial"  # a recording still being sealed as it arrives
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
    name = (container.format.name or "audio").split(",")[0]
    cut = truncation.cut(file, name)
    if cut is not None:
        raise Invalid(
            f"The recording is truncated: {cut} (after {seconds:.1f} s of sound). Send the "
            "whole file, once the recording has been stopped."
        )
    if peak < SILENCE_PEAK:
        raise Invalid("The recording holds only silence; check the microphone and record again.")
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
#
# A sealed recording is MAGIC, then chunks each as a 4-byte big-endian length and the chunk
# sealed with the group's key (AES-256-GCM, its own nonce), bound to the job, its index and
# whether it is the last (`_field`): an altered, reordered, cut or moved file fails to open. The
# chunk size is not part of the format (each chunk says its length): files written before in
# 1 MiB chunks open the same way.


def _field(index: int, last: bool) -> str:
    return f"audio.{index}.{'last' if last else 'more'}"


class SealedWriter:
    """Seals a recording as it arrives, chunk by chunk, straight into the data dir.

    It is written under a hidden partial name beside `path` (`.{name}.{random}.partial`) and
    moved to `path` by `commit`; `discard` (or leaving the `with` block) deletes what was not
    committed. No byte of it is ever in clear on disk: at most two chunks wait in memory (a
    chunk is sealed once it is known whether more follows it).
    """

    def __init__(self, path: Path, key: DataKey, job_id: str) -> None:
        self.path, self.key, self.job_id = path, key, job_id
        path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        self._out = self.partial.open("xb")
        self._out.write(MAGIC)
        self._pending = bytearray()
        self._index = 0
        self.size = 0  # clear bytes written
        self.finished = False

    def write(self, data: bytes) -> None:
        if self.finished:
            raise ValueError("the sealed recording is finished")
        self._pending += data
        self.size += len(data)
        while len(self._pending) > CHUNK:  # more follows this chunk
            self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]

    def finish(self) -> None:
        """Seal the last chunk and make the file durable (still under its partial name)."""
        if self.finished:
            return
        self._seal(bytes(self._pending), last=True)
        self._pending = bytearray()
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        self.finished = True

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        sealed = self.key.seal(chunk, RECORD_TYPE, self.job_id, _field(self._index, last))
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def reader(self) -> io.BufferedReader:
        """The finished recording, read back (unsealed as it is read)."""
        return io.BufferedReader(SealedReader(self.partial, self.key, self.job_id), CHUNK)

    def commit(self) -> None:
        """Move the finished recording to `path`."""
        if not self.finished:
            raise ValueError("finish the sealed recording before committing it")
        self.partial.replace(self.path)

    def discard(self) -> None:
        """Delete the recording unless it was committed."""
        self._out.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.discard()


def seal_to(path: Path, source: BinaryIO, key: DataKey, job_id: str) -> None:
    """Write `source` sealed to `path` (under a partial name, then renamed)."""
    source.seek(0)
    with SealedWriter(path, key, job_id) as writer:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
        writer.finish()
        writer.commit()


class SealedReader(io.RawIOBase):
    """A sealed recording, unsealed chunk by chunk as it is read; seekable, one chunk in clear
    (in memory) at a time.

    The file's structure (no chunk cut off) and its last chunk are checked on opening, every
    other chunk when it is first read: IntegrityError if it was altered, cut, reordered or
    moved to another job.
    """

    def __init__(self, path: Path, key: DataKey, job_id: str) -> None:
        super().__init__()
        self.key, self.job_id, self.name = key, job_id, path.name
        self._file = path.open("rb")
        self._offsets: list[int] = []  # where each sealed chunk starts in the file
        self._sizes: list[int] = []  # its sealed length
        self._starts: list[int] = []  # where its clear bytes start in the recording
        self._pos = 0
        self._cached: tuple[int, bytes] = (-1, b"")
        try:
            self._size = self._index()
            self._load(len(self._offsets) - 1)  # a file cut at a chunk's end fails here
        except BaseException:
            self._file.close()
            raise

    def _index(self) -> int:
        file = self._file
        if file.read(len(MAGIC)) != MAGIC:
            raise IntegrityError(f"{self.name} is not a sealed recording")
        total = file.seek(0, io.SEEK_END)
        offset, clear = len(MAGIC), 0
        while offset < total:
            file.seek(offset)
            header = file.read(4)
            (size,) = struct.unpack(">I", header) if len(header) == 4 else (-1,)
            if size < SEALED_OVERHEAD or offset + 4 + size > total:
                raise IntegrityError(
                    f"{self.name} is cut off or altered (chunk {len(self._sizes)})"
                )
            self._offsets.append(offset + 4)
            self._sizes.append(size)
            self._starts.append(clear)
            clear += size - SEALED_OVERHEAD
            offset += 4 + size
        if not self._offsets:
            raise IntegrityError(f"{self.name} holds no sealed audio")
        return clear

    def _load(self, index: int) -> bytes:
        if self._cached[0] != index:
            self._file.seek(self._offsets[index])
            sealed = self._file.read(self._sizes[index])
            last = index == len(self._offsets) - 1
            self._cached = (
                index,
                self.key.open(sealed, RECORD_TYPE, self.job_id, _field(index, last)),
            )
        return self._cached[1]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None or base + offset < 0:
            raise ValueError(f"cannot seek to {offset} from {whence}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        index = bisect.bisect_right(self._starts, self._pos) - 1
        clear = self._load(index)
        at = self._pos - self._starts[index]
        count = min(len(view), len(clear) - at)
        view[:count] = clear[at : at + count]
        self._pos += count
        return count

    def readall(self) -> bytes:
        parts = []
        while self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            parts.append(self._load(index)[self._pos - self._starts[index] :])
            self._pos = self._starts[index] + len(self._load(index))
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()
        self._cached = (-1, b"")
        super().close()

    def __enter__(self) -> SealedReader:
        return self


def open_sealed(path: Path, key: DataKey, job_id: str) -> io.BytesIO:
    """The recording, in memory; IntegrityError if it was altered, truncated or moved."""
    with SealedReader(path, key, job_id) as reader:
        return io.BytesIO(reader.read())


def audio_path(data_dir: Path, group_id: str, job_id: str) -> Path:
    return data_dir / "audio" / group_id / f"{job_id}.sealed"
