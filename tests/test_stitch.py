"""The live stitcher (companion/speech/stitch.py) on its own, with a deterministic executor.

`ToneWords` stands in for Whisper: the "speech" is a run of words, each a block of constant
amplitude that names it (silence between words), so the executor reads exactly which words a
pass got and where they lie. Like Whisper's, its word ends can be reported early: a pass that
starts at the reported end of the last final word then hears that word's last moments again,
which the seam check must drop.
"""

from __future__ import annotations

import itertools
import wave
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np
import pytest

from companion.speech.stitch import Stitcher
from companion.speech.stream import RATE
from companion.speech.transcriber import Segment, Word

VOCAB = (
    "bonjour", "je", "voudrais", "parler", "du", "reporting", "mensuel", "que", "mon", "équipe",
    "prépare", "chaque", "mois", "avec", "beaucoup", "de", "retard", "alors", "nous", "avons",
    "essayé", "une", "autre", "organisation", "mais", "rien", "change", "vraiment", "oui",
    "merci",
)  # fmt: skip
STEP = 700  # int16 amplitude per word number: word i is said at (i + 1) * STEP
SENTENCE_GAP_S = 0.7  # a pause this long ends the executor's segment


@dataclass(frozen=True)
class Said:
    start: float
    end: float
    word: str


def speech(
    words: list[str], durations: tuple[float, ...], gaps: tuple[float, ...]
) -> tuple[np.ndarray, list[Said]]:
    """16 kHz float samples saying `words` (durations and gaps taken in turn), and the truth."""
    parts: list[np.ndarray] = []
    said: list[Said] = []
    at = 0
    for word, duration, gap in zip(words, itertools.cycle(durations), itertools.cycle(gaps)):
        n = round(duration * RATE)
        level = (VOCAB.index(word) + 1) * STEP / 32767
        parts += [np.full(n, level, np.float32), np.zeros(round(gap * RATE), np.float32)]
        said.append(Said(at / RATE, (at + n) / RATE, word))
        at += n + round(gap * RATE)
    return np.concatenate(parts), said


class ToneWords:
    """A Transcriber that hears the words of `speech` exactly, but for `early_s`: each word's
    end is reported that much early (at most half the word)."""

    name = "tone-words"

    def __init__(self, early_s: float = 0.0) -> None:
        self.early_s = early_s
        self.passes: list[float] = []  # seconds of audio each call got
        self.heard: list[list[str]] = []  # the words each call heard

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        assert not isinstance(audio, str)
        with wave.open(audio) as w:
            assert (w.getframerate(), w.getnchannels()) == (RATE, 1)
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int32)
        self.passes.append(samples.size / RATE)
        heard = self._words(samples)
        self.heard.append([w.text.strip() for w in heard])
        sentence: list[Word] = []
        for word in heard:
            if sentence and word.start - sentence[-1].end >= SENTENCE_GAP_S:
                yield self._segment(sentence, words)
                sentence = []
            sentence.append(word)
        if sentence:
            yield self._segment(sentence, words)

    def _words(self, samples: np.ndarray) -> list[Word]:
        loud = np.flatnonzero(np.abs(samples) > STEP // 2)
        if not loud.size:
            return []
        breaks = np.flatnonzero(np.diff(loud) > 1)
        starts = np.concatenate(([loud[0]], loud[breaks + 1]))
        ends = np.concatenate((loud[breaks], [loud[-1]])) + 1
        out = []
        for start, end in zip(starts, ends, strict=True):
            number = round(float(np.median(samples[start:end])) / STEP) - 1
            t0, t1 = start / RATE, end / RATE
            out.append(Word(t0, max(t1 - self.early_s, (t0 + t1) / 2), f" {VOCAB[number]}"))
        return out

    @staticmethod
    def _segment(sentence: list[Word], words: bool) -> Segment:
        text = "".join(w.text for w in sentence).strip()
        return Segment(sentence[0].start, sentence[-1].end, text, tuple(sentence) if words else ())


def live(
    stitcher: Stitcher, samples: np.ndarray, chunk_s: float = 0.25
) -> tuple[list[Segment], int]:
    """Feed `samples` in chunks as a browser does, run a pass whenever one is ready, then the
    last one: (every segment made final, in order; how many passes ran before the end)."""
    final: list[Segment] = []
    passes = 0
    n = round(chunk_s * RATE)
    for i in range(0, samples.size, n):
        stitcher.add(samples[i : i + n])
        if stitcher.ready():
            final += stitcher.step()
            passes += 1
    final += stitcher.step(final=True)
    return final, passes


def _words_of(segments: list[Segment]) -> list[str]:
    return " ".join(s.text for s in segments).split()


SCRIPT = [VOCAB[i % len(VOCAB)] for i in range(3 * len(VOCAB))]
DURATIONS = (0.3, 0.45, 0.6, 0.35, 0.5)
GAPS = (0.15, 0.4, 0.2, 0.8, 0.25, 0.35)


@pytest.mark.parametrize("early_s", [0.0, 0.08, 0.2])
def test_every_word_is_final_once_across_the_passes(early_s):
    samples, said = speech(SCRIPT, DURATIONS, GAPS)
    executor = ToneWords(early_s=early_s)
    stitcher = Stitcher(executor, "fr", window_s=8, hold_s=2)
    final, passes = live(stitcher, samples)
    assert passes >= 5  # the stream (about a minute) took many passes, each with its seams
    assert _words_of(final) == SCRIPT
    assert stitcher.offset == pytest.approx(stitcher.heard) == pytest.approx(samples.size / RATE)
    assert stitcher.pending_s == pytest.approx(0.0)
    # Segments in stream seconds, in order, each starting where its first word was said.
    starts = {round(s.start, 3) for s in said}
    assert all(round(s.start, 3) in starts for s in final)
    assert all(a.end <= b.start for a, b in itertools.pairwise(final))
    # No pass went over more than the window and what arrived while it waited.
    assert max(executor.passes) < 8 + 2 * 0.25 + max(DURATIONS)


def test_a_pass_waits_for_a_window_then_for_new_audio():
    samples, _ = speech(SCRIPT, DURATIONS, GAPS)
    stitcher = Stitcher(ToneWords(), "fr", window_s=8, hold_s=2)
    stitcher.add(samples[: 8 * RATE - 1])
    assert not stitcher.ready()
    stitcher.add(samples[8 * RATE - 1 : 8 * RATE])
    assert stitcher.ready()
    first = stitcher.step()
    assert first  # words that end before the last 2 s are final
    assert stitcher.offset <= 8 - 2 + 1e-9  # what lies in the last 2 s is heard again
    assert stitcher.heard == 8
    assert not stitcher.ready()  # no window waits any more
    stitcher.add(samples[8 * RATE : 16 * RATE])
    assert stitcher.ready()


def test_the_last_final_words_heard_again_at_a_seam_are_dropped():
    """Words of 0.5 s, 0.3 s apart; the executor reports their ends 0.2 s early. The first
    pass (4 s, the last 2 s held) makes "je voudrais parler" final and the next one starts at
    the reported end of "parler", so it hears the word's last 0.2 s again: dropped, only it."""
    words = ["je", "voudrais", "parler", "du", "reporting", "mensuel", "que", "mon", "équipe"]
    samples, said = speech(words, (0.5,), (0.3,))
    executor = ToneWords(early_s=0.2)
    stitcher = Stitcher(executor, "fr", window_s=4, hold_s=2)
    stitcher.add(samples[: 4 * RATE])
    assert stitcher.ready()
    first = stitcher.step()
    assert _words_of(first) == words[:3]  # "du" ends at 2.9 s, in the last 2 s: held
    assert stitcher.offset == pytest.approx(said[2].end - 0.2, abs=1 / RATE)
    stitcher.add(samples[4 * RATE :])
    rest = stitcher.step(final=True)
    assert _words_of(rest) == words[3:]
    assert len(executor.passes) == 2
    assert executor.heard[1][:2] == ["parler", "du"]  # the second pass did hear it again


def test_a_word_really_said_twice_is_kept():
    words = ["oui", "oui", "merci", "merci", "oui"]
    samples, _ = speech(words, (0.4,), (0.3,))
    stitcher = Stitcher(ToneWords(early_s=0.1), "fr", window_s=8, hold_s=2)
    final, passes = live(stitcher, samples)
    assert passes == 0  # under a window: the end transcribes it once
    assert _words_of(final) == words


def test_silence_makes_no_model_call_and_keeps_only_the_last_seconds():
    executor = ToneWords()
    stitcher = Stitcher(executor, "fr", window_s=8, hold_s=2)
    stitcher.add(np.zeros(10 * RATE, np.float32))
    assert stitcher.ready()
    assert stitcher.step() == []
    assert executor.passes == []  # digital silence: no model call
    assert stitcher.offset == pytest.approx(8.0)  # the last hold_s may hold a word's start
    assert stitcher.step(final=True) == []
    assert stitcher.offset == pytest.approx(10.0)


def test_a_word_longer_than_the_cut_waits_then_is_not_held_for_ever():
    """One sound across the cut makes nothing final until two windows wait; then it is."""
    samples, _ = speech(["reporting"], (13.0,), (0.0,))
    executor = ToneWords()
    stitcher = Stitcher(executor, "fr", window_s=6, hold_s=2)
    made: list[list[str]] = []
    for second in range(13):
        stitcher.add(samples[second * RATE : (second + 1) * RATE])
        if stitcher.ready():
            made.append(_words_of(stitcher.step()))
    assert made[0] == []  # the word goes on past the cut: wait for more
    assert ["reporting"] in made  # the pending audio reached two windows: made final anyway
    assert stitcher.pending_s < 2 * 6


def test_a_draft_made_stale_by_a_pass_keeps_what_follows_its_final_words():
    """A draft that began at a cut, while a pass made part of its audio final, is cut after
    the pass's last final words; a draft two passes old, or without them, is dropped."""
    samples, _ = speech(SCRIPT, DURATIONS, GAPS)
    executor = ToneWords()
    stitcher = Stitcher(executor, "fr", window_s=8, hold_s=2)
    stitcher.add(samples[: 8 * RATE])
    draft = stitcher.draft(executor)  # begins at the cut (0 s), as the pass does
    assert stitcher.rebase(draft) is draft  # nothing changed meanwhile
    made_final = _words_of(stitcher.step())
    rebased = stitcher.rebase(draft)
    assert rebased is not None
    assert rebased.start == stitcher.offset
    assert rebased.end == draft.end
    assert (made_final + rebased.text.split()) == draft.text.split()

    unknown = replace(draft, text="rien que des mots inconnus ici")
    assert stitcher.rebase(unknown) is None
    stitcher.add(samples[8 * RATE : 16 * RATE])
    stitcher.step()
    assert stitcher.rebase(draft) is None  # two passes old
