"""The held-out consultations spoken and heard back: what speech does to the assistance.

    python bench/eval/speech.py [--limit N]   # N consultations a language (default: all)

Each held-out consultation (bench/eval/heldout_consultations.<lang>.json) is said by espeak-ng
in its language (mbrola voices are used too where installed: `espeak-ng --voices=mb`; Debian's
`non-free` component has mbrola-fr1, mbrola-fr4, mbrola-en1, mbrola-us1), then
heard by the service's transcriber with the uploads' decoding (beam search, the guards and
their bounded fallback, the voice-activity filter, heard again without it when it finds
nothing), on the CPU threads the settings give. Printed, per language and voice:

- the exposé (40-70 s): word error rate against its text, and the real-time factor (decoding
  time over audio length), median and worst (target: worst <= 0.3 on 2 cores); the same for
  the questions said alone, where Whisper's fixed cost of a window dominates;
- each clarifying question said alone, as a turn: how many came back empty ("no speech"), and
  the clarity view over the heard turns (companion/assist/clarity.py, cues only): every turn
  in the view, how many undecided, and the recall and precision of the advice and judgment
  flags against the labels (target 0.9 / 0.9, with the model's review).

With `--review`, the clarity view is also made as the service makes it with a model: the
questions no cue decides (undecided turns included) reviewed by the model, one call a
consultation with its exposé as heard and one more for the questions its answer left out
(local model unless COMPANION_LLM_BASE_URL is set).

Held-out: only figures are printed, never the texts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.eval.run import EvalGroup, _state  # the service's own model set-up
from bench.live import wer  # the same word error rate as the live bench
from companion.assist import clarity, clarity_review
from companion.config import Settings
from companion.method.phases import Language
from companion.speech.model import resolve
from companion.speech.transcriber import WhisperTranscriber

HERE = Path(__file__).parent
FLAGS = {"disguised_advice", "judgment"}
MBROLA = {Language.fr: ["mb-fr1", "mb-fr4"], Language.en: ["mb-en1", "mb-us1"]}


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c == "'" else " " for c in text.casefold()).split()


def voices(language: Language) -> list[str]:
    """espeak-ng's own voice for the language, and the mbrola ones installed."""
    listed = subprocess.run(
        ["espeak-ng", "--voices=mb"], capture_output=True, text=True, check=False
    ).stdout
    found = [v for v in MBROLA[language] if f"mb/{v}" in listed and shutil.which("mbrola")]
    return [str(language), *found]


def say(text: str, voice: str, path: Path) -> float:
    """`text` said by espeak-ng into a 16 kHz mono WAV at `path`; its length in seconds."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(raw),
            "-ar",
            "16000",
            "-ac",
            "1",
            str(path),
        ],
        check=True,
    )
    raw.unlink()
    return (path.stat().st_size - 44) / 32000


def heard(transcriber: WhisperTranscriber, path: Path, language: Language) -> tuple[str, float]:
    """The text heard and the seconds it took, as an upload is heard."""
    started = time.perf_counter()
    segments = list(transcriber.transcribe(str(path), str(language)))
    if not segments:
        segments = list(transcriber.transcribe(str(path), str(language), vad=False))
    return " ".join(s.text for s in segments).strip(), time.perf_counter() - started


def _utterances(turns: list[tuple[str, str]]) -> list[clarity.Utterance]:
    return [clarity.Utterance(f"t{n}", "consultant", text) for n, (text, _) in enumerate(turns)]


def reviewed(
    gateway: Any, language: Language, exposé: str, turns: list[tuple[str, str]]
) -> dict[str, clarity.Reviewed]:
    """The model's reviews of the questions of one consultation's turns that no cue decides,
    by question key, as the service stores them: one call, and one more for the questions its
    answer left out (the service tries those again after COMPANION_ASSIST_RETRY_S)."""
    found: dict[str, clarity.Reviewed] = {}
    questions = clarity.undecided(_utterances(turns), language)
    for _attempt in range(2):
        if not questions:
            break
        batch = clarity_review.review(gateway, EvalGroup(), language, [exposé], questions)
        found |= {clarity.question_key(questions[i]): r for i, r in batch.reviews.items()}
        questions = [q for i, q in enumerate(questions) if i not in batch.reviews]
    return found


def flag_scores(
    turns: list[tuple[str, str]],
    language: Language,
    reviews: dict[str, clarity.Reviewed] | None = None,
) -> dict[str, float]:
    """Recall and precision of the advice and judgment flags over heard turns (text, label),
    each turn flagged when any of its entries in the clarity view is; and how many were
    undecided or missing from the view."""
    utterances = _utterances(turns)
    view = clarity.analyse([], utterances, language, reviewed=reviews)
    by_turn: dict[str, list[clarity.Flag]] = {}
    for flag in view.questions:
        by_turn.setdefault(flag.source_id, []).append(flag)
    tp = fp = fn = 0
    for n, (_text, label) in enumerate(turns):
        flagged = any(f.kind.value in FLAGS for f in by_turn.get(f"t{n}", []))
        tp += flagged and label in FLAGS
        fp += flagged and label not in FLAGS
        fn += not flagged and label in FLAGS
    heard_turns = [u for u in utterances if u.text]
    return {
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "missing": sum(1 for u in heard_turns if u.source_id not in by_turn),
        "undecided": sum(f.kind is clarity.Kind.undecided for f in view.questions),
    }


def run(
    language: Language, voice: str, cases: list[dict[str, Any]], tmp: Path, gateway: Any = None
) -> None:
    transcriber = WhisperTranscriber(resolve(Settings(data_dir=tmp)))
    errors, factors, short, empty, asked = [], [], [], 0, 0
    turns: list[tuple[str, str]] = []
    typed: list[tuple[str, str]] = []
    typed_reviews: dict[str, clarity.Reviewed] = {}
    spoken_reviews: dict[str, clarity.Reviewed] = {}
    calls, model_s = 0, 0.0
    for n, case in enumerate(cases):
        seconds = say(case["expose"], voice, tmp / f"expose{n}.wav")
        exposé, took = heard(transcriber, tmp / f"expose{n}.wav", language)
        errors.append(wer(words(case["expose"]), words(exposé)))
        factors.append(took / seconds)
        spoken_turns: list[tuple[str, str]] = []
        typed_turns: list[tuple[str, str]] = []
        for m, question in enumerate(case["clarification"]):
            path = tmp / f"q{n}-{m}.wav"
            seconds = say(question["text"], voice, path)
            text, took = heard(transcriber, path, language)
            short.append(took / seconds)
            asked += 1
            empty += not text
            spoken_turns.append((text, question["label"]))
            typed_turns.append((question["text"], question["label"]))
        turns += spoken_turns
        typed += typed_turns
        if gateway is not None:
            started = time.perf_counter()
            typed_reviews |= reviewed(gateway, language, case["expose"], typed_turns)
            spoken_reviews |= reviewed(gateway, language, exposé, spoken_turns)
            calls += 2
            model_s += time.perf_counter() - started
    spoken, written = flag_scores(turns, language), flag_scores(typed, language)
    print(
        f"  {language} voice {voice} ({len(cases)} consultations): exposé WER median "
        f"{statistics.median(errors):.2f}, worst {max(errors):.2f}; real-time factor of the "
        f"exposés median {statistics.median(factors):.2f}, worst {max(factors):.2f} (of a "
        f"question said alone, 1-4 s: median {statistics.median(short):.2f}, worst "
        f"{max(short):.2f}); questions heard empty {empty} of {asked}"
    )
    for name, scores in (("typed", written), ("spoken", spoken)):
        print(
            f"    clarity, {name} (cues only): advice+judgment recall {scores['recall']:.2f}, "
            f"precision {scores['precision']:.2f}; turns missing from the view "
            f"{scores['missing']:.0f}, undecided entries {scores['undecided']:.0f}"
        )
    if gateway is None:
        return
    print(
        f"    the model's review: {calls} reviews (typed and spoken, a consultation each), "
        f"{model_s / max(calls, 1):.1f} s each (with the second call where one was needed)"
    )
    for name, said, reviews in (
        ("typed", typed, typed_reviews),
        ("spoken", turns, spoken_reviews),
    ):
        scores = flag_scores(said, language, reviews)
        print(
            f"    clarity, {name} (cues + the model's review): advice+judgment recall "
            f"{scores['recall']:.2f}, precision {scores['precision']:.2f}; turns missing from "
            f"the view {scores['missing']:.0f}, undecided entries {scores['undecided']:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--limit", type=int, default=None, help="consultations a language")
    parser.add_argument("--review", action="store_true", help="also with the model's review")
    args = parser.parse_args()
    state = _state() if args.review else None
    gateway = state.llm() if state is not None else None
    print("held-out consultations, spoken (espeak-ng) and heard (the uploads' decoding)")
    try:
        for language in Language:
            path = HERE / f"heldout_consultations.{language}.json"
            cases = json.loads(path.read_text(encoding="utf-8"))[: args.limit]
            for voice in voices(language):
                with tempfile.TemporaryDirectory(prefix="speech-eval-") as tmp:
                    run(language, voice, cases, Path(tmp), gateway)
    finally:
        if state is not None:
            state.close()


if __name__ == "__main__":
    main()
