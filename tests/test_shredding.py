"""Deleting a group leaves nothing of it in Chroma's files: not its sealed documents, its
vectors, its ids, its collection's index directory; nor its recordings directory. And
`companion memory reindex --all` cleans what older versions left behind."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from companion.cli import app as cli
from companion.config import Settings
from companion.memory.chroma import SEALED_PREFIX, SQLITE_FILE, VectorStore, collection_name
from tests.test_memory import NOTES, hits, memory_of, serving, with_notes
from tests.world import Api, Circle

MORE = [
    "La directrice financière refuse toute embauche avant la fin du trimestre.",
    "Je n'ose pas dire non aux demandes urgentes du siège.",
    "Notre plan de formation a pris six mois de retard.",
]
SPOKEN = ["Mon équipe ne délègue jamais le rapport trimestriel.", "Je relis tout le soir."]


@dataclass
class Canaries:
    """What Chroma held of one group before its deletion, as bytes to look for in files."""

    group_id: str
    collection_id: str
    segment_ids: list[str]
    strings: list[str]  # sealed documents, memory ids, source ids
    vector_bytes: list[bytes]  # a few 16-byte windows of each stored vector

    def found_in(self, data: bytes) -> list[str]:
        found = [
            s for s in [self.group_id, self.collection_id, *self.strings] if s.encode() in data
        ]
        return found + [f"vector bytes {w.hex()}" for w in self.vector_bytes if w in data]


def canaries_of(settings: Settings, store: VectorStore, group_id: str) -> Canaries:
    """Read from Chroma's own file what it holds of the group (the store is closed first, so
    that its files are flushed and not in use)."""
    got = store.client().get_collection(collection_name(group_id), embedding_function=None)
    stored = got.get(include=["documents", "metadatas", "embeddings"])
    store.close()
    db = sqlite3.connect(settings.resolved_chroma_path / SQLITE_FILE)
    try:
        (collection_id,) = db.execute(
            "SELECT id FROM collections WHERE name = ?", (collection_name(group_id),)
        ).fetchone()
        segments = [
            r[0]
            for r in db.execute("SELECT id FROM segments WHERE collection = ?", (collection_id,))
        ]
        documents = [
            r[0]
            for r in db.execute(
                "SELECT m.string_value FROM embedding_metadata m "
                "JOIN embeddings e ON e.id = m.id JOIN segments s ON s.id = e.segment_id "
                "WHERE s.collection = ? AND m.key = 'chroma:document'",
                (collection_id,),
            )
        ]
    finally:
        db.close()
    assert sorted(documents) == sorted(stored["documents"])
    assert documents
    assert all(d.startswith(SEALED_PREFIX) for d in documents)
    windows: list[bytes] = []
    for vector in np.asarray(stored["embeddings"], dtype=np.float32):
        for row in (vector, vector / np.linalg.norm(vector)):  # HNSW keeps cosine's unit vectors
            raw = row.astype(np.float32).tobytes()
            windows += [raw[at : at + 16] for at in (0, 512, 1024, 2032)]
    sources = [str(m["source_id"]) for m in stored["metadatas"]]
    return Canaries(
        group_id, collection_id, segments, [*documents, *stored["ids"], *sources], windows
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def leftovers(settings: Settings, canaries: Canaries) -> dict[str, list[str]]:
    """Where the group still shows: canaries in any file under the Chroma directory, its
    segments' directories, any path of the data dir named after the group."""
    root = settings.resolved_chroma_path
    found = {name: f for name, data in files_under(root).items() if (f := canaries.found_in(data))}
    found |= {f"{s}/": ["segment directory"] for s in canaries.segment_ids if (root / s).exists()}
    named = [p for p in settings.data_dir.rglob("*") if canaries.group_id in p.name]
    found |= {str(p.relative_to(settings.data_dir)): ["named after the group"] for p in named}
    return found


def two_groups(api: Api) -> tuple[Circle, Circle, Canaries]:
    """A group that stays and one to delete, with notes and transcript segments; a recording
    waits for the second one. The canaries of the second, once they are all in Chroma's files."""
    keep, _ = with_notes(api, NOTES[:2], group_name="Cercle qui reste")
    gone, _ = with_notes(api, [*NOTES, *MORE])
    gone.recorded("presentation", SPOKEN, gone.client[0])
    assert len(hits(api, gone, "rapport trimestriel", limit=20)) == len(NOTES + MORE + SPOKEN)
    settings: Settings = api.client.app.state.companion.settings  # type: ignore[attr-defined]
    recording = settings.data_dir / "audio" / gone.group_id / "0.sealed"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"CCA1 sealed audio under the group's key")
    canaries = canaries_of(settings, memory_of(api).store, gone.group_id)
    assert len(canaries.strings) == 3 * len(NOTES + MORE + SPOKEN)
    # Before the deletion, the scan sees them all: documents, ids and vectors.
    everywhere = b"".join(files_under(settings.resolved_chroma_path).values())
    assert set(canaries.strings) <= set(canaries.found_in(everywhere))
    assert any(w in everywhere for w in canaries.vector_bytes)
    return keep, gone, canaries


def test_deleting_a_group_leaves_no_byte_of_it_in_chroma_files(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    with serving(settings) as api:
        keep, gone, canaries = two_groups(api)
        # The other group's memory is read all along: the shredding waits for calls in
        # flight and holds new ones while it rewrites the file, none of them fails.
        store, seen, done = memory_of(api).store, [], threading.Event()

        def read_the_other_group() -> None:
            while not done.is_set():
                try:
                    seen.append(sorted(store.ids(keep.group_id)))
                except Exception as exc:  # the test reports any failure
                    seen.append([repr(exc)])

        reader = threading.Thread(target=read_the_other_group)
        reader.start()
        try:
            api.ok("DELETE", f"/groups/{gone.group_id}", api.admin_token)
        finally:
            done.set()
            reader.join()
        assert len(seen) > 1
        assert all(ids == seen[0] for ids in seen), {repr(ids) for ids in seen}
        assert len(seen[0]) == 2

        assert leftovers(settings, canaries) == {}
        assert not (settings.data_dir / "audio" / gone.group_id).exists()
        # The other group's memory answers as before, and still takes new memories.
        assert {h["snippet"] for h in hits(api, keep, "budget")} == set(NOTES[:2])
        api.ok("POST", keep.path("/notes"), keep.client[1], json={"body": MORE[0]})
        assert hits(api, keep, "embauche", limit=1)[0]["snippet"] == MORE[0]

    with serving(settings) as api:  # a restart: nothing of the group comes back
        assert {h["snippet"] for h in hits(api, keep, "budget", limit=3)} == {*NOTES[:2], MORE[0]}
    assert leftovers(settings, canaries) == {}


def test_reindex_all_cleans_what_older_versions_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = Settings(data_dir=tmp_path / "data")
    with serving(settings) as api:
        keep, gone, canaries = two_groups(api)
        # An older version: the collection dropped without shredding, the recordings'
        # directory emptied but left.
        with monkeypatch.context() as older:
            older.setattr(VectorStore, "shred", lambda self: [])
            older.setattr("companion.groups.service.shutil.rmtree", lambda *a, **k: None)
            api.ok("DELETE", f"/groups/{gone.group_id}", api.admin_token)
        (settings.data_dir / "audio" / gone.group_id / "0.sealed").unlink()
        # And a collection a deletion could not reach Chroma for.
        orphan = "00000000-0000-4000-8000-0000000000ff"
        memory = memory_of(api)
        memory.store.upsert(
            orphan,
            ["note-orphan"],
            np.ones((1, 512), dtype=np.float32),
            [SEALED_PREFIX + "T3JwaGFuZWQgbm90ZQ=="],
            [{"kind": "note"}],
            embedder=memory.embedder.name,
        )
    left = leftovers(settings, canaries)
    assert "chroma.sqlite3" in left  # the sealed documents, in free pages
    assert any(d.endswith("/") for d in left)  # the collection's index directory
    assert f"audio/{gone.group_id}" in left

    result = CliRunner().invoke(
        cli, ["memory", "reindex", "--all", "--data-dir", str(settings.data_dir)]
    )
    assert result.exit_code == 0, result.output
    assert f"dropped the memory of deleted group {orphan}" in result.output
    assert f"removed the recordings directory of deleted group {gone.group_id}" in result.output
    assert leftovers(settings, canaries) == {}
    chroma = b"".join(files_under(settings.resolved_chroma_path).values())
    assert b"note-orphan" not in chroma
    assert orphan.encode() not in chroma

    with serving(settings) as api:
        assert {h["snippet"] for h in hits(api, keep, "budget")} == set(NOTES[:2])
