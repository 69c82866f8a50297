"""Memory retrieval recall on labelled sessions, through the real service.

    python bench/eval/recall.py            # recall@8 and @20, ranks of the tuned answers
    python bench/eval/recall.py --k 5      # recall@5 and @20
    python bench/eval/recall.py --hits     # also the top K hits of each tuned question

Two sets a language, each in one group of its own (a group's memory holds several past
sessions, and a question must find its own session's ideas among all of them):

- tuned: the sessions of consultations.<lang>.json with the questions of
  memory_questions.<lang>.json (written to tune the search; their answers are printed);
- held-out: heldout_consultations.<lang>.json and the questions in its sessions' `memory`
  (never to tune against: only its figures are printed, never its questions nor ranks).
  Skipped, with a line saying so, when the file is missing.

Each session runs as in the room, on an in-process app (SQLite in a temp dir, the bundled
embeddings, no language model): the client's exposé is a note of phase 1 and the clarifying
questions notes of phase 2 by their consultants (every held-out session has them, and the
tuned ones since stop 21: without them the tuned set never showed the questions crowding out
the ideas that the held-out set did), the contract is
confirmed by the client in phase 3 (what tests.world's Circle.consult_on does), each utterance
is a note of its speaker in phase 4, the ideas are read once (GET .../ideas, which groups them
into themes) and phase 4 ends. The themes reach the memory at the group's next write or search.

Each question is asked once, as a member: GET /api/v1/groups/{g}/memory/search?q=...&limit=20.
An answer idea is found in the top K when one of those hits is the note that holds it (its
source_id) or has a snippet holding the idea (its first 60 characters). Printed, per set and
language: recall@K and recall@20 (found answers / answers, per question, then averaged), and
what the top 8 hits of a question are on average (clarification notes of phase 2, consultation
notes of phase 4, themes, contracts, exposés of phase 1, the rest), since question-shaped notes
crowding out the ideas was the failure reported; for the tuned set also each answer's rank (its
first hit, or '-'), and with --hits the top K hits (kind, score, own or other session, snippet).
A run takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The repository root, for api/ and tests/ (the bench runs from a checkout).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastapi.testclient import TestClient

from api.main import create_app
from companion.config import Settings
from companion.method.phases import Language
from tests.world import Api, Circle

HERE = Path(__file__).parent
PREFIX_CHARS = 60  # an answer is in a snippet when its first PREFIX_CHARS characters are
DEEP = 20  # every question is searched once, this deep
CROWD = 8  # the hits whose kinds are counted

Hit = Mapping[str, Any]  # one hit of GET .../memory/search, as JSON


# --- scoring (pure) ------------------------------------------------------------------------


def holds(answer: str, hit: Hit, note_ids: Collection[str]) -> bool:
    """Whether the hit holds the answer idea: it is one of the notes the idea was said in, or
    its snippet holds the idea (its first PREFIX_CHARS characters, for a cut snippet)."""
    if hit.get("source_id") in note_ids:
        return True
    text = answer.strip()
    return bool(text) and text[:PREFIX_CHARS] in str(hit.get("snippet", ""))


def rank(answer: str, hits: Sequence[Hit], note_ids: Collection[str]) -> int | None:
    """The rank (1 = first) of the first hit holding the answer; None if none does."""
    for n, hit in enumerate(hits, start=1):
        if holds(answer, hit, note_ids):
            return n
    return None


def found(answer: str, hits: Sequence[Hit], note_ids: Collection[str]) -> bool:
    """Whether one of the hits (the top K, as given) holds the answer."""
    return rank(answer, hits, note_ids) is not None


def recall(per_question: Sequence[Sequence[bool]]) -> float:
    """Found answers over answers for each question, averaged over the questions (a question
    without answers counts as fully found; no questions: 0)."""
    if not per_question:
        return 0.0
    return statistics.mean(sum(q) / len(q) if q else 1.0 for q in per_question)


def category(hit: Hit) -> str:
    """What a hit is, for the crowding count: 'clarification' (a note of phase 2),
    'consultation' (a note of phase 4), 'theme', 'contract', 'exposé' (a note of phase 1), or
    'other'."""
    kind, phase = hit.get("kind"), hit.get("phase")
    if kind == "note":
        if phase in ("clarification", "consultation"):
            return str(phase)
        return "exposé" if phase == "presentation" else "other"
    return str(kind) if kind in ("theme", "contract") else "other"


CATEGORIES = ("clarification", "consultation", "theme", "contract", "exposé", "other")


# --- driving the service -------------------------------------------------------------------


@dataclass
class Question:
    title: str
    text: str
    answers: list[str]
    note_ids: list[set[str]]  # per answer: the notes that hold it
    hits: list[Hit] = field(default_factory=list)


@dataclass
class SetResult:
    name: str
    language: Language
    sessions: int
    questions: list[Question]
    missing: int  # answers in no utterance of their session
    seconds: float
    where: dict[str, str]  # session id -> title

    def recall_at(self, k: int) -> float:
        return recall(
            [
                [found(a, q.hits[:k], ids) for a, ids in zip(q.answers, q.note_ids, strict=True)]
                for q in self.questions
            ]
        )

    def crowding(self) -> dict[str, float]:
        """Average count of each category among the top CROWD hits of a question."""
        total: Counter[str] = Counter()
        for q in self.questions:
            total.update(category(h) for h in q.hits[:CROWD])
        n = max(len(self.questions), 1)
        return {c: total[c] / n for c in CATEGORIES}


def _read(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def tuned(language: Language) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The tuned sessions and their questions (each with its session's title)."""
    path = HERE / f"memory_questions.{language}.json"
    if not path.exists():
        return None
    return _read(HERE / f"consultations.{language}.json"), _read(path)


def heldout(language: Language) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The held-out sessions and the questions of their `memory`, if the file is there."""
    path = HERE / f"heldout_consultations.{language}.json"
    if not path.exists():
        return None
    sessions = _read(path)
    questions = [
        {"title": s["title"], "question": m["question"], "answers": m["answers"]}
        for s in sessions
        for m in s.get("memory", [])
    ]
    return sessions, questions


def _note(api: Api, circle: Circle, token: str, text: str) -> str:
    return str(api.ok("POST", circle.path("/notes"), token, json={"body": text})["id"])


def _holders(case: dict[str, Any], notes: list[str], answer: str) -> set[str]:
    """The phase-4 notes of the session whose labelled ideas (else whose text) hold `answer`."""
    pairs = list(zip(notes, case["utterances"], strict=True))
    by_idea = {n for n, u in pairs if any(text == answer for text, _ in u["ideas"])}
    return by_idea or {n for n, u in pairs if answer in u["text"]}


def run_set(
    api: Api,
    name: str,
    language: Language,
    sessions: list[dict[str, Any]],
    asked: list[dict[str, Any]],
) -> SetResult:
    """All `sessions` in one new group, then each question of `asked` searched once."""
    start = time.monotonic()
    speakers = sorted(
        {u["speaker"] for s in sessions for u in s["utterances"]}
        | {c["speaker"] for s in sessions for c in s.get("clarification", [])}
    )
    facilitator = api.user("Facilitator")
    people = {who: api.user(who) for who in speakers}
    clients = [api.user(f"Client {n}") for n in range(1, len(sessions) + 1)]
    group = api.ok(
        "POST",
        "/groups",
        api.admin_token,
        json={"name": f"Recall {name}", "language": language, "facilitator_ids": [facilitator[0]]},
    )
    gid = group["id"]
    for uid, _ in [*clients, *people.values()]:
        api.ok("POST", f"/groups/{gid}/members", facilitator[1], json={"user_id": uid})
    cycle = api.ok("POST", f"/groups/{gid}/cycles", facilitator[1])
    holders: dict[str, list[str]] = {}  # title -> phase-4 note ids, one per utterance
    where: dict[str, str] = {}
    by_title = {s["title"]: s for s in sessions}
    for case, client in zip(sessions, clients, strict=True):
        names = sorted(
            {u["speaker"] for u in case["utterances"]}
            | {c["speaker"] for c in case.get("clarification", [])}
        )
        consultants = [people[n] for n in names]
        session = api.ok(
            "POST",
            f"/groups/{gid}/sessions",
            facilitator[1],
            json={"client_id": client[0], "consultant_ids": [c[0] for c in consultants]},
        )
        where[session["id"]] = case["title"]
        circle = Circle(
            api, gid, facilitator, [client, *consultants], facilitator, cycle["id"], session["id"]
        )
        # Circle.consult_on, with the exposé and the clarifying questions said in their phases.
        circle.phase("presentation", "start")
        if case.get("expose"):
            _note(api, circle, client[1], case["expose"])
        circle.phase("presentation", "end")
        circle.phase("clarification", "start")
        for asking in case.get("clarification", []):
            _note(api, circle, people[asking["speaker"]][1], asking["text"])
        circle.phase("clarification", "end")
        circle.phase("contract", "start")
        api.ok("PUT", circle.path("/contract"), client[1], json={"text": case["contract"]})
        circle.phase("contract", "end")
        circle.phase("consultation", "start")
        holders[case["title"]] = [
            _note(api, circle, people[u["speaker"]][1], u["text"]) for u in case["utterances"]
        ]
        api.ok("GET", circle.path("/ideas"), facilitator[1])  # groups the ideas into themes
        circle.phase("consultation", "end")
    member = clients[0][1]
    questions, missing = [], 0
    for q in asked:
        case = by_title[q["title"]]
        ids = [_holders(case, holders[q["title"]], a) for a in q["answers"]]
        missing += sum(not i for i in ids)
        body = api.ok(
            "GET",
            f"/groups/{gid}/memory/search",
            member,
            params={"q": q["question"], "limit": DEEP},
        )
        if body.get("pending"):
            print(f"  ({name} {language}: {body['pending']} memories still waiting to be indexed)")
        questions.append(Question(q["title"], q["question"], q["answers"], ids, body["hits"]))
    return SetResult(
        name, language, len(sessions), questions, missing, time.monotonic() - start, where
    )


def _describe(hit: Hit, result: SetResult, own: str) -> str:
    title = result.where.get(str(hit.get("session_id")), "?")
    session = "own" if title == own else f"other: {title[:24]}"
    snippet = " ".join(str(hit.get("snippet", "")).split())
    return f"{category(hit):<13} {hit.get('score', 0):.3f} ({session}) {snippet[:70]}"


def report(result: SetResult, k: int, *, details: bool, hits: bool) -> None:
    crowd = result.crowding()
    n_answers = sum(len(q.answers) for q in result.questions)
    print(
        f"{result.name} {result.language}: {result.sessions} sessions in one group, "
        f"{len(result.questions)} questions, {n_answers} answers ({result.seconds:.1f} s)"
    )
    if result.missing:
        print(f"  {result.missing} answers are in no utterance of their session (snippets only)")
    if details:
        for q in result.questions:
            print(f"  [{q.title}] {q.text}")
            for answer, ids in zip(q.answers, q.note_ids, strict=True):
                r = rank(answer, q.hits, ids)
                mark = "-" if r is None else str(r)
                print(f"    {mark:>2}  {answer[:90]}")
            if hits:
                for n, hit in enumerate(q.hits[:k], start=1):
                    print(f"      #{n:<2} {_describe(hit, result, q.title)}")
    print(
        f"  recall@{k} {result.recall_at(k):.2f}, recall@{DEEP} {result.recall_at(DEEP):.2f}; "
        f"top {CROWD} hits per question: " + ", ".join(f"{c} {v:.1f}" for c, v in crowd.items())
    )


def settings_for_recall(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, assist_background=False).updated(llm_local_model="off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--k", type=int, default=8, help="recall@K besides @20 (default 8)")
    parser.add_argument("--hits", action="store_true", help="print each tuned question's top K")
    args = parser.parse_args()
    if not 1 <= args.k <= DEEP:
        parser.error(f"--k must be between 1 and {DEEP}")
    started = time.monotonic()
    results: list[SetResult] = []
    with tempfile.TemporaryDirectory(prefix="recall-") as tmp:
        settings = settings_for_recall(Path(tmp))
        print(f"memory recall (embedder {settings.memory.embedder}, no language model)")
        with TestClient(create_app(settings)) as client:
            api = Api.bootstrap(client, settings)
            for language in Language:
                for name, loader in (("tuned", tuned), ("held-out", heldout)):
                    data = loader(language)
                    if data is None:
                        print(f"{name} {language}: no file, skipped")
                        continue
                    result = run_set(api, name, language, *data)
                    report(result, args.k, details=name == "tuned", hits=args.hits)
                    results.append(result)
    print("summary")
    for result in results:
        print(
            f"  {result.name:<8} {result.language}: recall@{args.k} "
            f"{result.recall_at(args.k):.2f}, recall@{DEEP} {result.recall_at(DEEP):.2f}, "
            f"phase-2 notes in the top {CROWD}: {result.crowding()['clarification']:.1f}"
        )
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
