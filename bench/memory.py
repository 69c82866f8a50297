"""Memory benchmark: add throughput and query latency in one group, sealed and not.

    python bench/memory.py                      # 10k memories, sealing compared at 10k
    python bench/memory.py --sizes 10000,100000 # and 100k (a few minutes on 2 cores)

For each size N, in a fresh embedded Chroma under a temporary data dir:
- embed: the bundled model over N distinct French sentences (texts/s);
- bulk add: rotate + seal + upsert in batches of 256, as `companion memory reindex` does,
  with the vectors computed above (memories/s), and the end-to-end figure with embedding;
- add one: a single memory as when a note is stored (embed + rotate + seal + upsert), p50/p95;
- query: 200 searches through Memory.search (outbox check, embed the query, rotate, Chroma
  query, open the 10 hits), p50/p95.
The same run without sealing (documents stored as base64 plaintext, bench only) gives the cost
of sealing as a ratio (sealed / unsealed; 1.00 = free).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from companion.config import Settings
from companion.memory.chroma import SEALED_PREFIX, StoredHit
from companion.memory.embeddings import Embedder, make_embedder
from companion.memory.schemas import MemoryKind
from companion.memory.service import Memory
from companion.memory.sources import MemoryItem
from companion.runtime import open_store
from companion.store.keyring import Keyring
from companion.store.models import new_id, utcnow
from companion.vault import DataKey

SUBJECTS = [
    "Mon équipe", "Ma directrice", "Le comité de direction", "Un client important",
    "Notre service", "Le nouveau stagiaire", "Mon associé", "La responsable RH",
    "Le chef de projet", "Un fournisseur", "Le conseil d'administration", "Ma collègue",
    "Le syndicat", "Notre partenaire", "La filiale", "Le directeur financier",
    "L'équipe commerciale", "Le service qualité", "Mon manager", "Le groupe de travail",
]  # fmt: skip
VERBS = [
    "refuse", "repousse", "conteste", "prépare", "oublie", "accélère", "bloque",
    "réorganise", "délègue", "critique", "soutient", "abandonne", "négocie", "retarde",
    "simplifie", "annonce", "évalue", "confie", "partage", "remet en cause",
]  # fmt: skip
OBJECTS = [
    "le budget annuel", "le plan de formation", "les entretiens individuels",
    "la migration informatique", "le recrutement", "les objectifs trimestriels",
    "la réorganisation", "le télétravail", "la prime collective", "le reporting mensuel",
    "le lancement du produit", "la démarche qualité", "le déménagement", "la stratégie",
    "les horaires", "le projet européen", "la relation client", "les priorités",
    "le tableau de bord", "la réunion hebdomadaire", "la charge de travail",
    "le contrat cadre", "la transition écologique", "les achats", "la sécurité",
]  # fmt: skip
WHEN = [
    "depuis mars", "avant l'été", "chaque lundi", "sans prévenir personne",
    "malgré nos alertes", "pour la troisième fois", "en pleine crise", "à la dernière minute",
    "depuis la fusion", "sans consulter l'équipe", "avec enthousiasme", "en silence",
    "pendant les congés", "dès la rentrée", "à contrecœur", "après l'audit",
    "sous la pression du siège", "pour gagner du temps", "faute de moyens", "en douceur",
]  # fmt: skip
QUERIES = [
    "conflit avec ma hiérarchie sur les priorités",
    "manque de moyens financiers",
    "je n'arrive pas à déléguer",
    "réunions trop longues",
    "difficultés de recrutement",
    "résistance au changement dans l'équipe",
    "surcharge de travail",
    "relation difficile avec un client",
]


def sentences(n: int, seed: int = 7) -> list[str]:
    combos = [f"{s} {v} {o} {w}." for s in SUBJECTS for v in VERBS for o in OBJECTS for w in WHEN]
    if n > len(combos):
        raise SystemExit(f"at most {len(combos)} distinct sentences")
    random.Random(seed).shuffle(combos)
    return combos[:n]


class Cached:
    """Bulk texts from vectors computed beforehand; anything else from the real model."""

    def __init__(self, real: Embedder, cache: dict[str, list[float]]) -> None:
        self.real = real
        self.cache = cache
        self.name = real.name

    @property
    def dimension(self) -> int:
        return self.real.dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if all(t in self.cache for t in texts):
            return [self.cache[t] for t in texts]
        return self.real.embed(texts)  # queries and single adds: always the real model


class Unsealed(Memory):
    """Bench only: the same pipeline with plaintext documents, to price the sealing."""

    def seal(self, key: DataKey, item: MemoryItem) -> str:
        payload = json.dumps({"text": item.text, "author_id": item.author_id}, ensure_ascii=False)
        return SEALED_PREFIX + base64.b64encode(payload.encode()).decode("ascii")

    def open(self, key: DataKey, hit: StoredHit) -> tuple[str, str | None]:
        payload = json.loads(base64.b64decode(hit.document.removeprefix(SEALED_PREFIX)))
        return str(payload["text"]), payload.get("author_id")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(n: int, texts: list[str], embedder: Embedder, *, sealed: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = open_store(settings)
        group_id = new_id()
        with store.sessions() as db:
            Keyring(db, store.master).create(group_id)
            db.commit()
        kind = Memory if sealed else Unsealed
        memory = kind(settings, store.sessions, store.master, embedder=embedder)
        session_id = new_id()
        now = utcnow()
        items = [
            MemoryItem(
                group_id, MemoryKind.note, new_id(), session_id, "consultation", None, now, t
            )
            for t in texts[:n]
        ]
        try:
            with store.sessions() as db:
                keys = Keyring(db, store.master)
                started = time.perf_counter()
                for start in range(0, n, 256):
                    memory.index(keys, group_id, items[start : start + 256])
                bulk = time.perf_counter() - started
                assert memory.store.count(group_id) == n

                singles: list[float] = []
                extra = [f"Note ajoutée {i} : {q}" for i, q in enumerate(QUERIES * 13)][:100]
                for text in extra:
                    item = MemoryItem(
                        group_id,
                        MemoryKind.note,
                        new_id(),
                        session_id,
                        "synthesis",
                        None,
                        now,
                        text,
                    )
                    t0 = time.perf_counter()
                    memory.index(keys, group_id, [item])
                    singles.append(time.perf_counter() - t0)

                latencies: list[float] = []
                for i in range(200):
                    q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" ({i})")
                    t0 = time.perf_counter()
                    result = memory.search(db, keys, group_id=group_id, query=q, limit=10)
                    latencies.append(time.perf_counter() - t0)
                    assert len(result.hits) == 10
        finally:
            memory.close()
            store.engine.dispose()
        return {
            "bulk_per_s": n / bulk,
            "one_p50": pct(singles, 0.5) * 1000,
            "one_p95": pct(singles, 0.95) * 1000,
            "q_p50": pct(latencies, 0.5) * 1000,
            "q_p95": pct(latencies, 0.95) * 1000,
        }


def main() -> None:
    logging.getLogger("companion.vault.master").setLevel(logging.ERROR)  # fresh keys: expected
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated memory counts")
    parser.add_argument(
        "--compare", default="first", choices=["first", "all", "none"], help="unsealed runs"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = Settings()
    real = make_embedder(settings)
    print(
        f"embedder: {real.name} ({real.dimension} dims, {settings.memory.embedding_threads} thread)"
    )
    texts = sentences(max(sizes))
    real.embed(["warm-up"])
    started = time.perf_counter()
    vectors: list[list[float]] = []
    for start in range(0, len(texts), 256):
        vectors += real.embed(texts[start : start + 256])
    embed_s = time.perf_counter() - started
    embed_rate = len(texts) / embed_s
    print(f"embed: {len(texts)} texts in {embed_s:.1f} s = {embed_rate:.0f} texts/s")
    cached = Cached(real, dict(zip(texts, vectors, strict=True)))
    del vectors

    run(300, texts, cached, sealed=True)  # warm-up: Chroma's import and first client
    for i, n in enumerate(sizes):
        sealed = run(n, texts, cached, sealed=True)
        end_to_end = 1 / (1 / embed_rate + 1 / sealed["bulk_per_s"])
        print(f"\n== {n} memories in one group (sealed)")
        print(
            f"bulk add (rotate+seal+upsert): {sealed['bulk_per_s']:.0f} memories/s; "
            f"with embedding: {end_to_end:.0f} memories/s"
        )
        print(
            f"add one (embed+seal+upsert): p50 {sealed['one_p50']:.1f} ms, p95 {sealed['one_p95']:.1f} ms"
        )
        print(f"query (top 10, opened): p50 {sealed['q_p50']:.1f} ms, p95 {sealed['q_p95']:.1f} ms")
        if args.compare == "all" or (args.compare == "first" and i == 0):
            # Alternate the runs so that load on the machine falls on both alike.
            plains = [run(n, texts, cached, sealed=False)]
            seals = [sealed, run(n, texts, cached, sealed=True)]
            plains.append(run(n, texts, cached, sealed=False))

            def med(runs: list[dict[str, float]], name: str) -> float:
                return statistics.median(r[name] for r in runs)

            print(
                "sealing cost, medians of alternated runs (sealed/unsealed): "
                f"bulk add time x{med(plains, 'bulk_per_s') / med(seals, 'bulk_per_s'):.3f}, "
                f"add one p50 x{med(seals, 'one_p50') / med(plains, 'one_p50'):.3f}, "
                f"query p50 x{med(seals, 'q_p50') / med(plains, 'q_p50'):.3f}, "
                f"query p95 x{med(seals, 'q_p95') / med(plains, 'q_p95'):.3f}"
            )
            print(
                f"  unsealed: bulk {med(plains, 'bulk_per_s'):.0f}/s, add one p50 "
                f"{med(plains, 'one_p50'):.1f} ms, query p50 {med(plains, 'q_p50'):.1f} ms "
                f"p95 {med(plains, 'q_p95'):.1f} ms"
            )
            seal_us, open_us = sealing_alone(texts[:2000])
            print(
                f"sealing alone: {seal_us:.1f} us to seal a memory, {open_us:.1f} us to open one "
                f"(x{(sealed['one_p50'] * 1000 + seal_us) / (sealed['one_p50'] * 1000):.4f} on "
                f"add one, x{(sealed['q_p50'] * 1000 + 10 * open_us) / (sealed['q_p50'] * 1000):.4f}"
                " on a 10-hit query)"
            )


def sealing_alone(texts: list[str]) -> tuple[float, float]:
    """Microseconds to seal one memory and to open one, measured apart from everything else."""
    key = DataKey.generate(new_id())
    memory = Memory(Settings(), None, None)  # type: ignore[arg-type]  # sealing needs no store
    now = utcnow()
    items = [
        MemoryItem(key.scope, MemoryKind.note, new_id(), "s", "consultation", None, now, t)
        for t in texts
    ]
    t0 = time.perf_counter()
    docs = [memory.seal(key, item) for item in items]
    seal_s = time.perf_counter() - t0
    hits = [
        StoredHit(item.memory_id, doc, {"kind": "note"}, 0.0)
        for item, doc in zip(items, docs, strict=True)
    ]
    t0 = time.perf_counter()
    for hit in hits:
        memory.open(key, hit)
    open_s = time.perf_counter() - t0
    return seal_s / len(items) * 1e6, open_s / len(items) * 1e6


if __name__ == "__main__":
    main()
