"""Assistance quality on labelled cases (bench/eval/cases.<lang>.json), with figures printed.

Clarity cues are tuned on cases.<lang>.json and dev.<lang>.json (the second, written at stop 9,
widens the cues beyond the first set's phrasings). The figures are also printed for
bench/eval/heldout.<lang>.json: questions written after the cues were first tuned and never used
to tune them (keep it so: a cue added for a held-out question makes its figures meaningless; its
misclassified questions are therefore counted, not printed).

    python bench/eval/run.py                 # clarity cues only (no model)
    python bench/eval/run.py --clarity-model # also the model's review of cue-less questions
    python bench/eval/run.py --contract      # also contract drafts through the configured model
    python bench/eval/run.py --themes        # also ideas and theme grouping (no model)
    python bench/eval/run.py --synthesis 1   # also the draft synthesis: timing, plan, labels (N a set)

Clarity: recall and precision of the flags the facilitator sees (disguised advice and
judgment; targets >= 0.9 / >= 0.8), and accuracy over all five kinds; with --clarity-model, the
same figures once the questions no cue decided are reviewed by the model (the service's
companion/assist/clarity_review.review, one call a case), and for the model alone given every
question (what it is worth on questions the cues miss). Contract: share of drafts
passing the deterministic checks on the model's first answer and after the one regeneration
(target 100 %), and the time to get them. The model is the one the service would use: the
local llama.cpp server by default (COMPANION_LLM_LOCAL_MODEL), or COMPANION_LLM_BASE_URL.
Ideas, themes and the synthesis timing: see bench/eval/consultation.py (--themes, --synthesis N).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# The repository root, for api/ and tests/ (the bench runs from a checkout).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import consultation  # bench/eval/consultation.py, beside this file

from companion.assist import clarity, clarity_review, contract
from companion.method.phases import Language

HERE = Path(__file__).parent
FLAGS = {"disguised_advice", "judgment"}


# Clarity sets: name -> file prefix. "held-out 2" is the clarification of the held-out
# consultations (bench/eval/heldout_consultations.<lang>.json, written at stop 17).
SETS = {
    "tuned": "cases",
    "dev": "dev",
    "held-out": "heldout",
    "held-out 2": "heldout_consultations",
    # The clarification of the tuned consultations (consultations.<lang>.json), written at
    # stop 21 for the memory's recall: 80 questions the cues had never seen.
    "dev 2": "consultations",
}
HIDDEN = {"heldout", "heldout_consultations"}  # sets whose misclassified questions are not printed


def load(language: Language, prefix: str = "cases") -> list[dict]:
    cases = json.loads((HERE / f"{prefix}.{language}.json").read_text(encoding="utf-8"))
    for case in cases:  # a consultation's clarification, as the question sets have it
        if "clarification" in case:
            case["questions"] = [[q["text"], q["label"]] for q in case["clarification"]]
    return cases


class EvalGroup:
    id = "eval"
    policy = "on_prem"


def _score(
    name: str, language: Language, results: list[tuple[str, str, str]], hidden: bool = False
) -> None:
    """Print recall/precision of the flags and 5-kind accuracy of (question, label, kind)."""
    tp = fp = fn = right = 0
    misses = []
    for question, label, kind in results:
        right += kind == label
        predicted, actual = kind in FLAGS, label in FLAGS
        tp += predicted and actual
        fp += predicted and not actual
        fn += actual and not predicted
        if kind != label:
            misses.append(f"    {label:>16} -> {kind:<16} {question}")
    total = len(results)
    recall = tp / (tp + fn) if tp + fn else 1.0
    precision = tp / (tp + fp) if tp + fp else 1.0
    print(
        f"  {language} {name}: advice+judgment recall {recall:.2f} precision {precision:.2f}; "
        f"5-kind accuracy {right}/{total} = {right / total:.2f}"
    )
    if misses and not hidden:
        print("\n".join(misses))


def eval_clarity() -> None:
    print("clarity cues (no model)")
    for name, prefix in SETS.items():
        for language in Language:
            results = []
            for case in load(language, prefix):
                for question, label in case["questions"]:
                    kind, _cue = clarity.classify(question, language)
                    results.append((question, label, str(kind)))
            _score(f"{name}, cues", language, results, prefix in HIDDEN)


def _reviewed(gateway, language: Language, exposé: str, questions: list[str]) -> list[str]:
    """The model's kind for each question ('?' rule where it gave none)."""
    if not questions:
        return []
    batch = clarity_review.review(gateway, EvalGroup(), language, [exposé], questions)
    rule = [
        clarity.Kind.open_question if q.rstrip().endswith("?") else clarity.Kind.closed_question
        for q in questions
    ]
    return [
        str(batch.reviews[i].kind if i in batch.reviews else rule[i]) for i in range(len(questions))
    ]


def eval_clarity_model() -> None:
    """The cues, then the model on what they left undecided (the service's pipeline); and the
    model alone on every question."""
    print("clarity with the model's review (model: local unless COMPANION_LLM_BASE_URL is set)")
    state = _state()
    try:
        started = time.monotonic()
        gateway = state.llm()
        print(f"  model {gateway.settings.llm.model} ready in {time.monotonic() - started:.1f} s")
        for (name, prefix), language in ((s, lang) for s in SETS.items() for lang in Language):
            both, alone = [], []
            undecided = calls = 0
            seconds = 0.0
            for case in load(language, prefix):
                questions = [q for q, _ in case["questions"]]
                labels = [label for _, label in case["questions"]]
                cues = [clarity.classify(q, language) for q in questions]
                open_ = [i for i, (_k, cue) in enumerate(cues) if cue is None]
                undecided += len(open_)
                kinds = [str(k) for k, _cue in cues]
                started = time.monotonic()
                for i, kind in zip(
                    open_,
                    _reviewed(gateway, language, case["expose"], [questions[i] for i in open_]),
                    strict=True,
                ):
                    kinds[i] = kind
                calls += bool(open_)
                both += list(zip(questions, labels, kinds, strict=True))
                alone += list(
                    zip(
                        questions,
                        labels,
                        _reviewed(gateway, language, case["expose"], questions),
                        strict=True,
                    )
                )
                calls += 1
                seconds += time.monotonic() - started
            print(
                f"  {language} {name}: {undecided} of {len(both)} questions left undecided by the cues; "
                f"{calls} model calls, {seconds / calls:.1f} s a call"
            )
            _score(f"{name}, cues + model review", language, both, prefix in HIDDEN)
            _score(f"{name}, model alone, every question", language, alone, prefix in HIDDEN)
    finally:
        state.close()


def _state():  # the service's own model set-up, on a throwaway store
    from api.state import AppState
    from companion.config import Settings
    from companion.runtime import open_store

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="eval-")))
    store = open_store(settings)
    return AppState(settings, store.engine, store.sessions, store.master)


def eval_contract() -> None:
    state = _state()
    print("contract drafts (model: local unless COMPANION_LLM_BASE_URL is set)")
    try:
        started = time.monotonic()
        gateway = state.llm()
        print(f"  model ready in {time.monotonic() - started:.1f} s")
        for language in Language:
            proposed = final = 0
            for case in load(language):
                questions = [q for q, _ in case["questions"]]
                started = time.monotonic()
                try:
                    drafts = contract.draft(
                        gateway,
                        EvalGroup(),
                        language=language,
                        exposé=[case["expose"]],
                        clarification=questions,
                        client_texts=[case["expose"]],
                    )
                except Exception as exc:
                    print(f"  {language} {case['title']!r}: failed: {exc}")
                    continue
                took = time.monotonic() - started
                proposed += len(drafts.candidates) + len(drafts.rejected)
                final += len(drafts.candidates)
                print(
                    f"  {language} {case['title']!r}: {len(drafts.candidates)}/3 valid candidates, "
                    f"{len(drafts.rejected)} rejected, {took:.1f} s"
                )
                for c in drafts.candidates:
                    print(f"      ok  {c.text}")
                for c in drafts.rejected:
                    print(f"      bad {c.text}  <- {'; '.join(c.problems)}")
            if proposed:
                print(
                    f"  {language}: {final} valid candidates delivered of {3 * len(load(language))} "
                    f"wanted; {final}/{proposed} of the model's proposals passed the checks"
                )
    finally:
        state.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contract", action="store_true", help="also draft contracts")
    parser.add_argument(
        "--clarity-model",
        action="store_true",
        help="also review the questions no cue decided with the model (and the model alone)",
    )
    parser.add_argument("--themes", action="store_true", help="also ideas and theme grouping")
    parser.add_argument(
        "--synthesis",
        type=int,
        default=0,
        metavar="N",
        help="also time N draft syntheses a language",
    )
    parser.add_argument(
        "--steady",
        type=int,
        default=0,
        metavar="N",
        help="also N drafts a language with ideas at a steady pace up to the end (--pace)",
    )
    parser.add_argument(
        "--pace", type=float, default=5.0, metavar="S", help="seconds between turns (--steady)"
    )
    parser.add_argument(
        "--language", choices=[lang.value for lang in Language], help="--steady in one language"
    )
    args = parser.parse_args()
    eval_clarity()
    if args.clarity_model:
        eval_clarity_model()
    if args.contract:
        eval_contract()
        consultation.eval_contract_heldout(consultation.settings_for_eval())
    if args.themes:
        consultation.eval_themes(consultation.settings_for_eval(llm_local_model="off"))
    if args.synthesis:
        consultation.eval_synthesis(consultation.settings_for_eval(), args.synthesis)
    if args.steady:
        steady = consultation.settings_for_eval(assist_background=True)
        languages = [Language(args.language)] if args.language else list(Language)
        consultation.eval_steady(steady, args.steady, args.pace, languages)


if __name__ == "__main__":
    main()
