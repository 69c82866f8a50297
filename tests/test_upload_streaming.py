"""Uploads are sealed while they stream in: nothing of a recording is ever in clear on disk.

A recording over 1 MiB (Starlette's form parser spools such a file in clear to an unlinked
temporary file) carries a canary byte pattern every few KiB. While it arrives (the app is
driven at the ASGI level, the body fed in 64 KiB messages) and after, no file in the temporary
directory (pointed at a fresh one), none in the data dir, and no file the process holds open
(an unlinked spool file is still there, under /proc/self/fd) contains the canary; the sealed
recording opens to exactly the bytes sent, and refuses to open once altered or cut.

Then truncated Ogg: refused with a 422 that says to send the whole file, nothing stored.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from companion.config import Settings
from companion.speech import audio
from companion.speech.queue import TranscriptionService
from companion.speech.transcriber import Segment
from companion.store.keyring import Keyring
from companion.store.models import TranscriptionJob
from companion.vault import IntegrityError
from tests.speech_audio import convert, needs_speech_tools, wait_for_job, wav_bytes
from tests.world import PREFIX, Api, Circle

MESSAGE_BYTES = 64 * 1024  # what a server hands the app at a time
CANARY_EVERY = 4096


class Recorder:
    """A stand-in transcriber that keeps the (unsealed) bytes it was given."""

    name = "recorder"

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def transcribe(
        self, recording: str | BinaryIO, language: str, *, vad: bool = True
    ) -> Iterator[Segment]:
        assert not isinstance(recording, str)
        self.received.append(recording.read())
        yield Segment(0.0, 1.0, "Bonjour.")


@pytest.fixture
def fresh_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temporary directory, pointed at an empty folder for this test."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    assert tempfile.gettempdir() == str(folder)
    return folder


@pytest.fixture
def recorder(client: TestClient) -> Recorder:
    recorder = Recorder()
    service: TranscriptionService = client.app.state.transcription  # type: ignore[attr-defined]
    service.transcriber = recorder
    return recorder


@pytest.fixture
def circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    return circle


def canary_wav(canary: bytes, seconds: float = 40.0, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV of noise with `canary` written into its samples every 4 KiB."""
    samples = bytearray(random.Random(canary).randbytes(int(seconds * rate) * 2))
    for offset in range(0, len(samples) - len(canary), CANARY_EVERY):
        samples[offset : offset + len(canary)] = canary
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + fmt + b"data" + struct.pack("<I", len(samples)) + bytes(samples)


def multipart(data: bytes, filename: str = "phase.wav") -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        f"multipart/form-data; boundary={boundary}",
        head + data + f"\r\n--{boundary}--\r\n".encode(),
    )


def clear_copies(canary: bytes, *folders: Path) -> list[str]:
    """The files under `folders`, and those this process holds open (unlinked ones included),
    that contain `canary`."""
    found: list[str] = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and canary in path.read_bytes():
                found.append(str(path))
    fds = Path("/proc/self/fd")
    if fds.is_dir():
        for fd in list(fds.iterdir()):
            try:
                target = str(fd.readlink())
                if not target.startswith("/") or not fd.is_file():
                    continue
                with fd.open("rb") as file:  # reads an unlinked file too
                    if canary in file.read():
                        found.append(f"fd {fd.name} -> {target}")
            except OSError:
                continue
    return found


def asgi_upload(
    client: TestClient,
    circle: Circle,
    body: bytes,
    content_type: str,
    while_arriving: Any = None,
    declare_length: bool = True,
) -> tuple[int, bytes]:
    """POST the body to the app in 64 KiB messages, as a server does; `while_arriving(sent)` is
    called before each message but the first (the app has handled what came before)."""
    path = f"{PREFIX}{circle.path('/phases/presentation/recordings')}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {circle.client[1]}".encode()),
            (b"content-type", content_type.encode()),
        ],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    if declare_length:
        scope["headers"].append((b"content-length", str(len(body)).encode()))
    pieces = [body[i : i + MESSAGE_BYTES] for i in range(0, len(body), MESSAGE_BYTES)]
    status: list[int] = []
    answer = bytearray()

    async def receive() -> dict[str, Any]:
        if not pieces:
            return {"type": "http.disconnect"}
        sent = len(body) - sum(len(p) for p in pieces)
        if while_arriving is not None and sent > 0:
            while_arriving(sent)
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    async def run() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(run)
    return status[0], bytes(answer)


def _audio_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "audio"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _job_count(client: TestClient) -> int:
    with client.app.state.companion.sessions() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(TranscriptionJob)) or 0)


def _key(client: TestClient, group_id: str) -> Any:
    state = client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db:
        return Keyring(db, state.master).get(group_id)


# --- nothing in clear, even for a moment ------------------------------------------------------


def test_an_upload_is_sealed_while_it_streams_in(client, settings, circle, recorder, fresh_tmp):
    canary = b"CANARY-" + uuid.uuid4().hex.encode()
    recording = canary_wav(canary, seconds=80.0)
    assert len(recording) > 2 * 1024 * 1024
    assert canary in recording
    content_type, body = multipart(recording)
    looked: list[int] = []

    def look(sent: int) -> None:
        looked.append(sent)
        leaks = clear_copies(canary, fresh_tmp, settings.data_dir)
        assert leaks == [], f"in clear after {sent} bytes: {leaks}"
        assert list(fresh_tmp.iterdir()) == []  # nothing spooled at all
        partial = [p for p in _audio_files(settings) if p.name.endswith(audio.PARTIAL_SUFFIX)]
        assert len(partial) == 1  # the recording, being sealed as it comes

    status, answer = asgi_upload(client, circle, body, content_type, while_arriving=look)
    assert status == 202, answer
    assert len(looked) == len(body) // MESSAGE_BYTES  # at every message, well past the first MiB
    assert looked[-1] > 2 * 1024 * 1024
    assert clear_copies(canary, fresh_tmp, settings.data_dir) == []

    job_id = json.loads(answer)["id"]
    job = wait_for_job(circle.api, circle.path(f"/transcription-jobs/{job_id}"), circle.client[1])
    assert job["status"] == "done", job
    assert recorder.received == [recording]  # the worker opened exactly the bytes sent
    assert clear_copies(canary, fresh_tmp, settings.data_dir) == []


def test_a_kept_recording_opens_to_the_bytes_sent_and_not_once_altered(
    client, settings, circle, api, fresh_tmp
):
    service: TranscriptionService = client.app.state.transcription  # type: ignore[attr-defined]
    service.ctx.stopping.set()  # no worker takes the job: its recording stays as uploaded
    canary = b"CANARY-" + uuid.uuid4().hex.encode()
    recording = canary_wav(canary, seconds=70.0)  # over 2 MiB: many chunks
    res = api.call(
        "POST",
        circle.path("/phases/presentation/recordings"),
        circle.client[1],
        files={"file": ("phase.wav", recording, "audio/wav")},
    )
    assert res.status_code == 202, res.text
    job_id = res.json()["id"]
    assert res.json()["audio_seconds"] == pytest.approx(70.0, abs=0.01)
    (path,) = _audio_files(settings)
    assert path == audio.audio_path(settings.data_dir, circle.group_id, job_id)
    assert clear_copies(canary, fresh_tmp, settings.data_dir) == []
    key = _key(client, circle.group_id)
    assert audio.open_sealed(path, key, job_id).getvalue() == recording
    with audio.SealedReader(path, key, job_id) as reader:
        assert reader.read() == recording
        reader.seek(1_000_003)
        assert reader.read(10) == recording[1_000_003:1_000_013]

    sealed = path.read_bytes()
    chunks = _split(sealed)
    assert len(chunks) > 10
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 0x01
    altered = {
        "a flipped bit": bytes(flipped),
        "cut in a chunk": sealed[: len(sealed) // 2],
        "cut at a chunk's end": audio.MAGIC + b"".join(chunks[:-1]),
        "two chunks swapped": audio.MAGIC + b"".join([chunks[1], chunks[0], *chunks[2:]]),
        "a chunk left out": audio.MAGIC + b"".join([chunks[0], *chunks[2:]]),
        "not sealed": recording,
    }
    for name, data in altered.items():
        path.write_bytes(data)
        assert _refused(lambda: audio.open_sealed(path, key, job_id)), name
        assert _refused(lambda: _read_through(path, key, job_id)), name
    path.write_bytes(sealed)
    with pytest.raises(IntegrityError):  # another job's recording
        audio.open_sealed(path, key, "another-job")

    # The worker refuses it too, and says why.
    path.write_bytes(sealed[: len(sealed) // 2])
    service.ctx.stopping.clear()
    service.transcriber = Recorder()
    service.wake()
    job = wait_for_job(circle.api, circle.path(f"/transcription-jobs/{job_id}"), circle.client[1])
    assert job["status"] == "failed"
    assert "integrity check" in job["error"]


def _refused(opening: Any) -> bool:
    try:
        opening()
    except IntegrityError:
        return True
    return False


def _read_through(path: Path, key: Any, job_id: str) -> bytes:
    with audio.SealedReader(path, key, job_id) as reader:
        return reader.read()


def _split(sealed: bytes) -> list[bytes]:
    """The length-prefixed chunks of a sealed recording, each with its prefix."""
    chunks, offset = [], len(audio.MAGIC)
    while offset < len(sealed):
        (size,) = struct.unpack(">I", sealed[offset : offset + 4])
        chunks.append(sealed[offset : offset + 4 + size])
        offset += 4 + size
    return chunks


def test_recordings_sealed_before_streaming_still_open(tmp_path):
    """The format is unchanged (CCA1, length-prefixed chunks): files sealed in 1 MiB chunks by
    the earlier writer open with the reader of today, and files written today are the same."""
    from companion.vault import DataKey

    key = DataKey.generate("group-1")
    data = os.urandom(2 * 1024 * 1024 + 12345)
    path = tmp_path / "old.sealed"
    out = io.BytesIO(audio.MAGIC)
    out.seek(0, io.SEEK_END)
    old_chunk = 1024 * 1024
    pieces = [data[i : i + old_chunk] for i in range(0, len(data), old_chunk)]
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        sealed = key.seal(
            piece, audio.RECORD_TYPE, "job-1", f"audio.{index}.{'last' if last else 'more'}"
        )
        out.write(struct.pack(">I", len(sealed)) + sealed)
    path.write_bytes(out.getvalue())
    assert audio.open_sealed(path, key, "job-1").getvalue() == data
    with audio.SealedReader(path, key, "job-1") as reader:
        assert reader.read() == data

    new = tmp_path / "new.sealed"
    audio.seal_to(new, io.BytesIO(data), key, "job-1")
    assert audio.open_sealed(new, key, "job-1").getvalue() == data
    empty = tmp_path / "empty.sealed"
    audio.seal_to(empty, io.BytesIO(b""), key, "job-1")
    assert audio.open_sealed(empty, key, "job-1").getvalue() == b""


def test_a_cut_upload_or_one_over_the_limit_leaves_nothing(settings, api, fresh_tmp):
    service: TranscriptionService = api.client.app.state.transcription  # type: ignore[attr-defined]
    service.ctx.stopping.set()
    limited = settings.updated(**{"max_upload_bytes": 1_500_000})
    from api.main import create_app

    with TestClient(create_app(limited)) as client:
        small = Api(client, api.admin_token, api.tokens)
        circle = Circle.create(small)
        circle.phase("presentation", "start")
        canary = b"CANARY-" + uuid.uuid4().hex.encode()
        content_type, body = multipart(canary_wav(canary, seconds=60.0))
        # No content-length: the limit is found while the body streams in.
        status, answer = asgi_upload(client, circle, body, content_type, declare_length=False)
        assert status == 413, answer
        assert b"1500000 bytes" in answer
        # The body ends before the multipart's closing boundary.
        content_type, body = multipart(canary_wav(canary, seconds=10.0))
        status, answer = asgi_upload(client, circle, body[: len(body) // 2], content_type)
        assert status == 422, answer
        assert b"multipart" in answer
        assert _job_count(client) == 0
        assert _audio_files(limited) == []
        assert clear_copies(canary, fresh_tmp, limited.data_dir) == []


def test_the_form_contract_is_kept(client, settings, circle, api):
    path = circle.path("/phases/presentation/recordings")
    token = circle.client[1]
    wav = wav_bytes(1.0)
    not_multipart = api.call("POST", path, token, json={})
    assert not_multipart.status_code == 422
    assert "'file'" in not_multipart.json()["detail"]
    other_field = api.call("POST", path, token, files={"audio": ("a.wav", wav, "audio/wav")})
    assert other_field.status_code == 422
    assert "'file'" in other_field.json()["detail"]
    as_text = api.call("POST", path, token, data={"file": "not a file"})
    assert as_text.status_code == 422
    two_files = api.call(
        "POST",
        path,
        token,
        files=[("file", ("a.wav", wav, "audio/wav")), ("file", ("b.wav", wav, "audio/wav"))],
    )
    assert two_files.status_code == 422
    assert "multipart" in two_files.json()["detail"]
    no_boundary = api.call(
        "POST", path, token, content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 422
    with_fields = api.call(
        "POST", path, token, data={"note": "x"}, files={"file": ("a.wav", wav, "audio/wav")}
    )
    assert with_fields.status_code == 202, with_fields.text
    assert _job_count(client) == 1
    assert len(_audio_files(settings)) == 1


# --- truncated Ogg --------------------------------------------------------------------------


@needs_speech_tools
def test_a_truncated_ogg_is_refused_and_the_whole_file_accepted(
    tmp_path, client, settings, circle, api, recorder
):
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(6.0))
    whole = convert(source, "ogg").read_bytes()
    path = circle.path("/phases/presentation/recordings")
    for cut in (len(whole) // 2, len(whole) - 10):
        res = api.call(
            "POST", path, circle.client[1], files={"file": ("phase.ogg", whole[:cut], "audio/ogg")}
        )
        assert res.status_code == 422, res.text
        detail = res.json()["detail"]
        assert "truncated" in detail, detail
        assert "whole file" in detail, detail
        assert _job_count(client) == 0
        assert _audio_files(settings) == []
    res = api.call(
        "POST", path, circle.client[1], files={"file": ("phase.ogg", whole, "audio/ogg")}
    )
    assert res.status_code == 202, res.text
    assert res.json()["audio_format"] == "ogg/opus"
    job = wait_for_job(
        api, circle.path(f"/transcription-jobs/{res.json()['id']}"), circle.client[1]
    )
    assert job["status"] == "done", job
    assert recorder.received == [whole]


@needs_speech_tools
def test_probe_finds_an_ogg_cut_at_a_page_boundary(tmp_path):
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(6.0))
    whole = convert(source, "ogg").read_bytes()
    pages = [i for i in range(len(whole)) if whole.startswith(b"OggS", i)]
    assert len(pages) > 3
    assert audio.probe(io.BytesIO(whole), 60).format == "ogg/opus"
    with pytest.raises(audio.Invalid, match="whole file"):
        audio.probe(io.BytesIO(whole[: pages[-1]]), 60)  # the last page left out


def _live_webm(seconds: float) -> bytes:
    """A WebM/Opus file as a browser's MediaRecorder writes it: segment and clusters of
    unknown size (ffmpeg's muxer in live mode), so only the blocks' own sizes tell a cut."""
    import av
    import numpy as np

    out_buffer = io.BytesIO()
    rate = 48000
    with av.open(out_buffer, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        for at in range(0, len(tone), 960):
            frame = av.AudioFrame.from_ndarray(tone[None, at : at + 960], "fltp", "mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return _clusters_of_unknown_size(out_buffer.getvalue())


def _clusters_of_unknown_size(webm: bytes) -> bytes:
    """The same file with each cluster's size written as unknown (all ones), as Chrome does."""
    data = bytearray(webm)
    at = data.find(bytes.fromhex("18538067")) + 4 + 8  # into the segment (of unknown size)
    while at < len(data):
        id_length = 9 - data[at].bit_length()
        size_length = 9 - data[at + id_length].bit_length()
        sized = data[at + id_length : at + id_length + size_length]
        size = int.from_bytes(sized, "big") & ((1 << (7 * size_length)) - 1)
        if data[at : at + id_length] == bytes.fromhex("1F43B675"):  # a cluster
            unknown = (1 << (7 * size_length + 1)) - 1  # the length marker, then all ones
            data[at + id_length : at + id_length + size_length] = unknown.to_bytes(size_length)
        at += id_length + size_length + size
    return bytes(data)


@needs_speech_tools
@pytest.mark.parametrize("fmt", ["webm", "mp3", "live webm"])
def test_probe_finds_a_webm_or_mp3_cut_anywhere(tmp_path, fmt):
    """A cut a few percent short passes the declared-duration check; the container's framing
    (a block's, a frame's size) still tells it. 20 random cuts, all refused; the whole kept."""
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(6.0))
    whole = _live_webm(6.0) if fmt == "live webm" else convert(source, fmt).read_bytes()
    assert audio.probe(io.BytesIO(whole), 60).seconds > 5.5
    chance = random.Random(fmt)
    for _ in range(20):
        cut = chance.randrange(len(whole) // 3, len(whole) - 1)
        with pytest.raises(audio.Invalid, match="truncated"):
            audio.probe(io.BytesIO(whole[:cut]), 60)


@needs_speech_tools
def test_a_cut_webm_upload_gets_422_and_nothing_is_stored(tmp_path, client, settings, circle, api):
    whole = _live_webm(6.0)
    res = api.call(
        "POST",
        circle.path("/phases/presentation/recordings"),
        circle.client[1],
        files={"file": ("phase.webm", whole[: len(whole) - 7], "audio/webm")},
    )
    assert res.status_code == 422, res.text
    assert "WebM block is cut off" in res.json()["detail"]
    assert _job_count(client) == 0
    assert _audio_files(settings) == []
