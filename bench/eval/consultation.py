"""Consultation figures on labelled sessions (bench/eval/consultations.<lang>.json).

Ideas and themes (no language model): each utterance is posted as a consultant's note in
phase 4 of a real session (the service's API, SQLite, the bundled embeddings), the ideas are
read back from GET .../ideas and matched to the labelled ones by overlap. Printed:

- ideas lost: a labelled idea less than half covered by the service's ideas (target 0);
- ideas invented: a service idea that is not a stretch of its note (target 0);
- merged: service ideas that hold two labelled ideas or more (the cut is coarser);
- adjusted Rand index of the theme grouping over the labelled ideas (target >= 0.7), and a
  sweep of the grouping threshold (same embeddings, same cut) to show the trade-off;
- the facilitator's corrections (PUT .../ideas/{id}/theme, POST .../themes/{id}/merge) that
  turn the found grouping into the labelled one: moves and merges.

Synthesis timing (with --synthesis; the model the service would use): the draft is made once
during phase 4 with all ideas but the last two (what the background runner does), then the
last two arrive, phase 4 ends and the clock starts: time to the outline (first content, no
model; target <= 5 s) and to the complete draft (target <= 30 s), and the same from cold.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from companion.assist import contract
from companion.assist.ideas import grouping, labels
from companion.assist.ideas.split import split
from companion.assist.synthesis import drafting, plan
from companion.config import Settings
from companion.memory.embeddings import make_embedder
from companion.method.phases import Language
from companion.store.models import ModelCall
from companion.text import words
from tests.world import Api, Circle

HERE = Path(__file__).parent


# Sessions by set: "tuned" (the grouping and labels were tuned on them) and "held-out" (written
# after, in other domains, never tuned against: only their figures are printed).
SETS = {"tuned": "consultations", "held-out": "heldout_consultations"}


def load(language: Language, name: str = "tuned") -> list[dict[str, Any]]:
    path = HERE / f"{SETS[name]}.{language}.json"
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def misplaced_labels(view: dict[str, Any], embedder: Any) -> tuple[int, int]:
    """(labels shown, labels closer to another theme's ideas than to their own), by the
    service's sentence embeddings: the check a model label passes before it is shown."""
    themes = [t for t in view["themes"] if t["ideas"] and t["label"]]  # "": no label shown
    if len(themes) < 2:
        return len(themes), 0
    vectors = {
        t["id"]: [
            grouping.unit(np.asarray(v, np.float32))
            for v in embedder.embed([i["text"] for i in t["ideas"]])
        ]
        for t in themes
    }
    said = embedder.embed([t["label"] for t in themes])
    wrong = sum(
        labels.closest(grouping.unit(np.asarray(v, np.float32)), vectors) != t["id"]
        for t, v in zip(themes, said, strict=True)
    )
    return len(themes), wrong


def adjusted_rand(truth: list[str], found: list[str]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labellings of the same items."""
    n = len(truth)
    if n < 2:
        return 1.0
    table = Counter(zip(truth, found, strict=True))
    rows, cols = Counter(truth), Counter(found)
    index = sum(comb(c, 2) for c in table.values())
    row_sum = sum(comb(c, 2) for c in rows.values())
    col_sum = sum(comb(c, 2) for c in cols.values())
    expected = row_sum * col_sum / comb(n, 2)
    top = (row_sum + col_sum) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def corrections(truth: list[str], found: list[str]) -> tuple[int, int]:
    """What the facilitator does to turn the found grouping into the labelled one with the
    service's corrections: (moves, merges). Each found theme keeps the ideas of its most common
    labelled theme and the rest move; found themes kept for the same labelled theme merge; a
    labelled theme kept by none is a new theme (its first idea's move makes it)."""
    by_found: dict[str, Counter[str]] = {}
    for t, f in zip(truth, found, strict=True):
        by_found.setdefault(f, Counter())[t] += 1
    kept = Counter(c.most_common(1)[0][0] for c in by_found.values())
    moves = len(truth) - sum(c.most_common(1)[0][1] for c in by_found.values())
    return moves, sum(n - 1 for n in kept.values())


def _gold(utterance: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(start, end, theme) of each labelled idea in the utterance's text."""
    spans, at = [], 0
    for text, theme in utterance["ideas"]:
        start = utterance["text"].index(text, at)
        spans.append((start, start + len(text), theme))
        at = start + len(text)
    return spans


def _match(gold: tuple[int, int, str], found: list[tuple[int, int, str]]) -> str | None:
    """The service idea (its theme) covering most of a labelled idea; None if under half."""
    start, end, _ = gold
    best, cover = None, 0
    for f_start, f_end, theme in found:
        overlap = min(end, f_end) - max(start, f_start)
        if overlap > cover:
            best, cover = theme, overlap
    return best if cover * 2 >= end - start else None


def _say(api: Api, circle: Circle, token: str, text: str) -> dict[str, Any]:
    """A note of the running phase by whoever holds `token`, as stored."""
    note: dict[str, Any] = api.ok("POST", circle.path("/notes"), token, json={"body": text})
    return note


def _circle(api: Api, language: Language, consultants: int) -> Circle:
    names = ("Client", *(f"Consultant{i}" for i in range(consultants)))
    return Circle.create(api, names=names, language=language)


def eval_themes(settings: Settings) -> None:
    print("ideas and themes (no model)")
    embedder = make_embedder(settings)
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        for name, language in ((n, lang) for n in SETS for lang in Language):
            if not (HERE / f"{SETS[name]}.{language}.json").exists():
                continue
            aris, lost, invented, merged, total, units = [], 0, 0, 0, 0, 0
            moves = merges = near = shown = wrong = 0
            cases = load(language, name)
            for case in cases:
                speakers = sorted({u["speaker"] for u in case["utterances"]})
                circle = _circle(api, language, len(speakers))
                circle.advance_to("consultation")
                who = dict(zip(speakers, circle.consultants, strict=True))
                notes = []
                for utterance in case["utterances"]:
                    note = _say(api, circle, who[utterance["speaker"]][1], utterance["text"])
                    notes.append(note["id"])
                view = api.ok("GET", circle.path("/ideas"), circle.facilitator[1])
                by_note: dict[str, list[tuple[int, int, str]]] = {}
                texts = {n: u["text"] for n, u in zip(notes, case["utterances"], strict=True)}
                for theme in view["themes"]:
                    for idea in theme["ideas"]:
                        by_note.setdefault(idea["source_id"], []).append(
                            (idea["start"], idea["end"], theme["id"])
                        )
                        invented += (
                            texts[idea["source_id"]][idea["start"] : idea["end"]] != (idea["text"])
                        )
                        units += 1
                truth, found = [], []
                for note, utterance in zip(notes, case["utterances"], strict=True):
                    service = by_note.get(note, [])
                    golds = _gold(utterance)
                    for gold in golds:
                        theme = _match(gold, service)
                        total += 1
                        if theme is None:
                            lost += 1
                            continue
                        truth.append(gold[2])
                        found.append(theme)
                    for f_start, f_end, _ in service:
                        inside = [g for g in golds if g[0] < f_end and f_start < g[1]]
                        merged += len(inside) >= 2
                aris.append(adjusted_rand(truth, found))
                moved, joined = corrections(truth, found)
                moves, merges = moves + moved, merges + joined
                near += abs(len(view["themes"]) - len(case["themes"])) <= 1
                seen, off = misplaced_labels(view, embedder)
                shown, wrong = shown + seen, wrong + off
                if name == "tuned":
                    print(
                        f"  {language} {case['title']!r}: {len(case['themes'])} themes labelled, "
                        f"{len(view['themes'])} found; ARI {aris[-1]:.2f}; the facilitator's "
                        f"corrections to the labels: {moved} moves, {joined} merges; key-word "
                        f"labels closer to another theme: {off} of {seen}"
                    )
            print(
                f"  {name} {language} ({len(cases)} consultations): ARI mean "
                f"{statistics.mean(aris):.2f}, median {statistics.median(aris):.2f}; themes "
                f"within 1 of people's: {near}/{len(cases)}; labelled ideas {total}, service "
                f"ideas {units}, lost {lost}, invented {invented}, merged {merged}; corrections "
                f"{moves} moves + {merges} merges for {total - lost} ideas; key-word labels "
                f"closer to another theme: {wrong} of {shown}"
            )
    sweep(settings)


def sweep(settings: Settings) -> None:
    """ARI for other grouping thresholds (the service's cut and embeddings, no database)."""
    embedder = make_embedder(settings)
    thresholds = [0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50]
    print("  threshold sweep (mean ARI fr / en):")
    scores: dict[float, list[float]] = {t: [] for t in thresholds}
    for language in Language:
        per: dict[float, list[float]] = {t: [] for t in thresholds}
        for case in load(language):
            units: list[tuple[int, int, int]] = []  # utterance, start, end
            for n, utterance in enumerate(case["utterances"]):
                units += [(n, s.start, s.end) for s in split(utterance["text"], language)]
            texts = [case["utterances"][n]["text"][a:b] for n, a, b in units]
            vectors = [grouping.unit(np.asarray(v, np.float32)) for v in embedder.embed(texts)]
            for threshold in thresholds:
                slots: list[grouping.ThemeSlot] = []
                placed: list[Any] = []
                labels: list[str] = []
                for vector in vectors:
                    where = grouping.place(vector, slots, placed, threshold)
                    if where.theme is None:
                        slots.append(grouping.ThemeSlot(str(len(slots))))
                        index = len(slots) - 1
                    else:
                        index = where.theme
                    slots[index].vectors.append(vector)
                    placed.append(vector)
                    labels.append(str(index))
                truth, found = [], []
                for n, utterance in enumerate(case["utterances"]):
                    mine = [
                        (a, b, lab) for (m, a, b), lab in zip(units, labels, strict=True) if m == n
                    ]
                    for gold in _gold(utterance):
                        theme = _match(gold, mine)
                        if theme is not None:
                            truth.append(gold[2])
                            found.append(theme)
                per[threshold].append(adjusted_rand(truth, found))
        for threshold in thresholds:
            scores[threshold].append(statistics.mean(per[threshold]))
    for threshold in thresholds:
        fr, en = scores[threshold]
        mark = "  <- default" if threshold == grouping.THEME_THRESHOLD else ""
        print(f"    {threshold:.2f}: {fr:.2f} / {en:.2f}{mark}")


def eval_synthesis(settings: Settings, runs: int) -> None:
    print("draft synthesis timing (model: local unless COMPANION_LLM_BASE_URL is set)")
    embedder = make_embedder(settings)
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        for name, language in ((n, lang) for n in SETS for lang in Language):
            if not (HERE / f"{SETS[name]}.{language}.json").exists():
                continue
            for case in load(language, name)[:runs]:
                speakers = sorted({u["speaker"] for u in case["utterances"]})
                circle = _circle(api, language, len(speakers))
                circle.consult_on(case["contract"])
                who = dict(zip(speakers, circle.consultants, strict=True))
                utterances = case["utterances"]
                for utterance in utterances[:-2]:
                    _say(api, circle, who[utterance["speaker"]][1], utterance["text"])
                client_token = circle.client[1]
                t = time.monotonic()
                res = api.call("POST", circle.path("/synthesis"), client_token)
                cold = time.monotonic() - t
                for utterance in utterances[-2:]:
                    _say(api, circle, who[utterance["speaker"]][1], utterance["text"])
                circle.phase("consultation", "end")
                t = time.monotonic()
                outline = api.ok("GET", circle.path("/synthesis"), client_token)
                first = time.monotonic() - t
                res2 = api.call("POST", circle.path("/synthesis"), client_token)
                complete = time.monotonic() - t
                body = res2.json()
                title = case["title"] if name == "tuned" else "(held-out)"
                print(
                    f"  {name} {language} {title!r}: {outline['themes'].__len__()} themes; "
                    f"during phase 4 (cold, {len(utterances) - 2} turns): {cold:.1f} s "
                    f"({res.status_code}); after the end: outline {first:.2f} s, complete "
                    f"{complete:.1f} s ({res2.status_code}, "
                    f"{len(body.get('actions', []))} actions, "
                    f"{len(body.get('questions', []))} questions)"
                )
                with client.app.state.companion.sessions() as db:
                    calls = db.scalars(select(ModelCall).order_by(ModelCall.at)).all()
                cold_call, last = calls[-2] if len(calls) > 1 else None, calls[-1]
                for when, call in (("cold", cold_call), ("after the end", last)):
                    if call is not None:
                        print(
                            f"      model call {when}: {call.prompt_tokens} prompt + "
                            f"{call.completion_tokens} completion tokens, "
                            f"{call.duration_ms / 1000:.1f} s"
                        )
                if res2.status_code != 200:
                    print(f"      {body.get('detail')}")
                    continue
                print_plan(body, embedder, examples=name == "tuned")


def eval_steady(
    settings: Settings, runs: int, pace_s: float, languages: Sequence[Language] = tuple(Language)
) -> None:
    """The draft when ideas keep coming up to the end: the background runner on (as `companion
    serve` runs it), the turns of a consultation posted `pace_s` apart, the last one just
    before phase 4 ends; then the time until the draft covers every idea (`current`), polled
    every 0.25 s, and the model calls the session made (outcome, tokens, whether an update)."""
    print(
        f"draft synthesis with ideas at a steady pace (a turn every {pace_s:g} s up to the end, "
        f"background runner every {settings.assist.poll_s:g} s)"
    )
    limit_s = 600.0
    handler = logging.StreamHandler(sys.stdout)  # which runs were updates, which whole drafts
    handler.setFormatter(logging.Formatter("      %(message)s"))
    runs_log = logging.getLogger("companion.assist.synthesis")
    runs_log.addHandler(handler)
    runs_log.setLevel(logging.INFO)
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        for language in languages:
            finished: list[float] = []
            for n, case in enumerate(load(language, "tuned")[:runs]):
                speakers = sorted({u["speaker"] for u in case["utterances"]})
                circle = _circle(api, language, len(speakers))
                circle.consult_on(case["contract"])
                who = dict(zip(speakers, circle.consultants, strict=True))
                with client.app.state.companion.sessions() as db:
                    before = db.scalar(select(func.count()).select_from(ModelCall)) or 0
                for m, utterance in enumerate(case["utterances"]):
                    if m:
                        time.sleep(pace_s)
                    _say(api, circle, who[utterance["speaker"]][1], utterance["text"])
                circle.phase("consultation", "end")  # right after the last turn
                t = time.monotonic()
                first = None
                while time.monotonic() - t < limit_s:
                    body = api.ok("GET", circle.path("/synthesis"), circle.client[1])
                    first = first if first is not None else time.monotonic() - t
                    if body["current"] and body["status"] == "ready":
                        break
                    time.sleep(0.25)
                took = time.monotonic() - t
                done = body["current"] and body["status"] == "ready"
                if done:
                    finished.append(took)
                with client.app.state.companion.sessions() as db:
                    calls = db.scalars(select(ModelCall).order_by(ModelCall.at).offset(before))
                    told = [
                        f"{c.outcome} {c.prompt_tokens or 0}+{c.completion_tokens or 0} "
                        f"{c.duration_ms / 1000:.0f}s"
                        for c in calls
                        if c.purpose == drafting.PURPOSE
                    ]
                print(
                    f"  {language} {case['title']!r}: {len(case['utterances'])} turns; after the "
                    f"end: first content {first or 0:.2f} s, "
                    + (f"complete {took:.1f} s" if done else f"not complete in {limit_s:.0f} s")
                    + f" ({len(body['actions'])} actions); draft calls: {'; '.join(told)}"
                )
                if n == 0 and done:
                    print_plan(body, make_embedder(settings), examples=False)
            if finished:
                print(
                    f"  {language}: complete after the end, median {statistics.median(finished):.1f}"
                    f" s of {len(finished)} ({', '.join(f'{x:.1f}' for x in finished)})"
                )


def _solution_in(candidate: str, solution: list[str]) -> bool:
    """Whether the candidate holds every word of a labelled solution (compared as the contract
    checks compare words: "médiation" in "médiateur")."""
    held = {contract._stem(w) for w in words(candidate)}
    return all(contract._stem(w) in held for w in solution)


def _from_nowhere(candidate: str, said: list[str], language: Language) -> list[str]:
    """The candidate's content words whose first four letters no word of phases 1-3 has (the
    verbs any request may use, `request_words`, aside): the contract checks' own rule, applied
    to what the client is shown."""
    known = contract.said_in(said, [], [], language).prefixes
    request = contract.rules(language).request_words
    return [
        w
        for w in contract._content(candidate, language)
        if w[:4] not in known and contract._stem(w) not in request
    ]


def eval_contract_heldout(settings: Settings) -> None:
    """Contract drafts on the held-out consultations, through the API as in the room: the
    client's exposé a note of phase 1, the clarifying questions notes of phase 2 by their
    consultants and reviewed by the model (as the background runner does during phase 2),
    POST .../contract/drafts in phase 3. Counted on what the client is shown
    (and, apart, on what the checks rejected): candidates that build in a labelled solution (a
    consultant's proposal or what the client tried, `solutions`), and candidates with a
    content word said nowhere in phases 1-3. Only figures and the words said nowhere print
    (never the held-out text)."""
    print("contract drafts on the held-out consultations (model: local unless set)")
    with TestClient(create_app(settings)) as client:
        api = Api.bootstrap(client, settings)
        for language in Language:
            shown = built = nowhere = rejected = rejected_built = failed = 0
            took: list[float] = []
            for case in load(language, "held-out"):
                speakers = sorted({q["speaker"] for q in case["clarification"]})
                circle = _circle(api, language, len(speakers))
                who = dict(zip(speakers, circle.consultants, strict=True))
                circle.phase("presentation", "start")
                _say(api, circle, circle.client[1], case["expose"])
                circle.phase("presentation", "end")
                circle.phase("clarification", "start")
                for q in case["clarification"]:
                    _say(api, circle, who[q["speaker"]][1], q["text"])
                # What the background runner does while phase 2 runs: the model reviews the
                # questions no cue decided, so the advice it finds counts as a solution.
                api.call("POST", circle.path("/clarity/review"), circle.facilitator[1])
                circle.phase("clarification", "end")
                circle.phase("contract", "start")
                t = time.monotonic()
                res = api.call("POST", circle.path("/contract/drafts"), circle.client[1])
                took.append(time.monotonic() - t)
                if res.status_code != 200:
                    failed += 1
                    print(f"  {language} (held-out): {res.status_code} {res.json().get('detail')}")
                    continue
                body = res.json()
                said = [case["expose"], *(q["text"] for q in case["clarification"])]
                solutions = [s["words"] for s in case["solutions"]]
                for c in body["candidates"]:
                    shown += 1
                    built += any(_solution_in(c["text"], sol) for sol in solutions)
                    stray = _from_nowhere(c["text"], said, language)
                    if stray:  # the model's words, not the held-out text
                        nowhere += 1
                        print(f"  {language} (held-out) words said nowhere: {stray}")
                for c in body["rejected"]:
                    rejected += 1
                    rejected_built += any(_solution_in(c["text"], sol) for sol in solutions)
            print(
                f"  {language} held-out: {shown} candidates shown for {len(took)} sessions "
                f"({failed} failed), {built} building in a solution, {nowhere} with words said "
                f"nowhere; {rejected} rejected by the checks ({rejected_built} of them building "
                f"in a labelled solution); {statistics.median(took):.0f} s a session (median)"
            )


def print_plan(body: dict[str, Any], embedder: Any, *, examples: bool) -> None:
    """The draft plan's figures: actions, the closest two, fields left to the client, delays,
    and the labels (the model's, and any closer to another theme than to its own)."""
    actions = body["actions"]
    vectors = [
        grouping.unit(np.asarray(v, np.float32))
        for v in embedder.embed([f"{a['objective']}. {a['first_step']}" for a in actions] or ["-"])
    ][: len(actions)]
    likeness = plan.largest_likeness(vectors)
    shown, wrong = misplaced_labels(body, embedder)
    model_labels = sum(t["label_source"] == "model" for t in body["themes"])
    print(
        f"      plan: {len(actions)} actions; closest two {likeness or 0:.2f}; "
        f"{sum(len(a['refs']) for a in actions)} citations; resources left to the client "
        f"{sum(a['resources'] is None for a in actions)}, indicators "
        f"{sum(not a['indicator'] for a in actions)}; "
        f"{len({a['due_date'] for a in actions})} distinct due dates; labels: {model_labels} "
        f"of the model's of {len(body['themes'])} themes, {wrong} of {shown} shown closer to "
        "another theme"
    )
    if examples:
        for a in actions:
            print(
                f"      action: {a['objective']} | first step: {a['first_step']} | resources: "
                f"{a['resources'] or '-'} | indicator: {a['indicator'] or '-'} | "
                f"{a['due_date']} <- {', '.join(a['refs'])}"
            )


def settings_for_eval(**update: Any) -> Settings:
    base = Settings(data_dir=Path(tempfile.mkdtemp(prefix="eval-")), assist_background=False)
    return base.updated(**update)
