"""Incremental transcription of a growing stream, with its seams de-duplicated.

Audio is transcribed in passes over the part of the stream that is not final yet. A pass
starts once `window_s` seconds wait; it makes final what ends before its last `hold_s`
seconds, cut in a pause between two words (word timestamps), and the next pass starts exactly
at the end of the last final word, so what lies after it is heard again with what follows. A word is therefore final
in exactly one pass: none is said twice and none falls between two passes. Whisper's word
times are approximate, so the words a new pass hears within a second of its start are also
checked against the last final words and dropped when they repeat them. No pass is given
the previous text as a prompt: on repetitive speech Whisper echoed the prompt in place of
20 s of audio (measured); a segment with more words than its time allows is dropped too.
At the end the rest
(under a window) is transcribed once: the phase is never transcribed again as a whole.

Meanwhile, `draft` gives provisional text for the audio not final yet (at most its last
`window_s`), by a cheaper executor; it changes nothing of what becomes final, and may run while
a pass does: a draft says which cut it started from (`cuts`), so a draft that a pass made
stale (its start is final now) can be told, and cut after the pass's last final words.
"""

from __future__ import annotations

import io
import re
import threading
import wave
from dataclasses import dataclass

import numpy as np

from companion.speech.audio import SILENCE_PEAK
from companion.speech.stream import EMPTY, RATE, peak
from companion.speech.transcriber import Segment, Transcriber

PAUSE_S = 0.3  # a gap between two words this long is a good place to cut
SEAM_S = 1.0  # words a pass hears this close to its start may repeat the ones before the cut
SEAM_WORDS = 3
REBASE_WORDS = 2  # a stale draft is cut after at least this many of the last final words
MADE_UP_WORDS = 4  # a segment this long...
MAX_WORDS_PER_S = 8.0  # ...said faster than this is text Whisper made up over silence
MIN_PASS_S = 0.3  # less audio than this is not worth a pass


@dataclass(frozen=True)
class _Unit:
    """A word (or a whole segment when the executor gives no word times), in stream seconds."""

    start: float
    end: float
    text: str
    segment: int  # which segment of the pass it belongs to


@dataclass(frozen=True)
class Draft:
    """Provisional text of the stream from `start` to `end` (stream seconds)."""

    start: float
    end: float
    text: str
    cuts: int = 0  # the stitcher's `cuts` when the draft started


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def wav(samples: np.ndarray) -> io.BytesIO:
    """16 kHz mono float samples as a WAV file in memory (what every executor reads)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    out.seek(0)
    return out


class Stitcher:
    """The audio not yet final, and the passes over it. `add` may run while a pass does."""

    def __init__(
        self, transcriber: Transcriber, language: str, window_s: float, hold_s: float
    ) -> None:
        self.transcriber = transcriber
        self.language = language
        self.window_s = window_s
        self.hold_s = min(hold_s, window_s / 2)
        self.offset = 0.0  # stream seconds of the first sample not final yet
        self.cuts = 0  # passes that moved `offset`
        self.heard = 0.0  # stream seconds received
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._tail: list[str] = []  # the last final words, normalised (for the seam check)
        self._last_end = float("-inf")  # where the audio of the last pass ended

    def add(self, samples: np.ndarray) -> None:
        if samples.size:
            with self._lock:
                self._chunks.append(samples)
                self.heard += samples.size / RATE

    @property
    def pending_s(self) -> float:
        with self._lock:
            return self.heard - self.offset

    def ready(self) -> bool:
        """A window waits, and something new since the last pass (which may have made
        nothing final: one long word across its cut)."""
        with self._lock:
            pending = self.heard - self.offset
            fresh = self.heard - self._last_end
        return pending >= self.window_s and fresh >= self.hold_s

    def step(self, final: bool = False) -> list[Segment]:
        """One pass (blocking: it runs the model): the segments it made final, in order."""
        with self._lock:
            audio = np.concatenate(self._chunks) if self._chunks else EMPTY
            self._chunks = [audio]
            start = self.offset
        end = start + audio.size / RATE
        self._last_end = end
        units = self._transcribe(audio, start)
        units = self._deseam(units, start)
        if final:
            kept, cut = units, end
        else:
            kept, cut = self._cut(units, start, end)
        with self._lock:
            drop = min(round((cut - start) * RATE), audio.size)
            rest = np.concatenate(self._chunks)[drop:]
            self._chunks = [rest] if rest.size else []
            self.offset = start + drop / RATE
            self.cuts += 1
            self._tail = (self._tail + [_norm(u.text) for u in kept])[-SEAM_WORDS:]
        return _segments(kept)

    def draft(self, transcriber: Transcriber) -> Draft:
        """Provisional text of the audio not final yet, at most its last `window_s` (blocking:
        it runs `transcriber`, meant to be a cheaper setting than the passes'). May run while
        `step` does (one draft at a time); stale once `cuts` moved past the draft's."""
        with self._lock:
            audio = np.concatenate(self._chunks) if self._chunks else EMPTY
            self._chunks = [audio] if audio.size else []
            start, cuts, tail = self.offset, self.cuts, self._tail
        end = start + audio.size / RATE
        window = int(self.window_s * RATE)
        at_cut = audio.size <= window
        if not at_cut:
            audio, start = audio[-window:], end - window / RATE
        if audio.size < MIN_PASS_S * RATE or peak(audio) < SILENCE_PEAK:
            return Draft(start, end, "", cuts)
        said = transcriber.transcribe(wav(audio), self.language)
        text = re.sub(r"\s+", " ", " ".join(s.text for s in said if not _made_up(s))).strip()
        if at_cut and tail:  # the last final words heard again at the cut
            heard = text.split()
            lead = [_norm(w) for w in heard[:SEAM_WORDS]]
            for n in range(min(len(lead), len(tail)), 0, -1):
                if tail[-n:] == lead[:n]:
                    text = " ".join(heard[n:])
                    break
        return Draft(start, end, text, cuts)

    def rebase(self, draft: Draft) -> Draft | None:
        """`draft` made current after the pass that ran beside it: what follows the last final
        words in its text (it began at the previous cut, so it holds them), or None when they
        cannot be found in it or more than one pass ran meanwhile."""
        with self._lock:
            cuts, offset, tail = self.cuts, self.offset, self._tail
        if draft.cuts == cuts:
            return draft
        if draft.cuts != cuts - 1 or not tail:
            return None
        heard = draft.text.split()
        said = [_norm(w) for w in heard]
        for n in range(min(SEAM_WORDS, len(tail)), REBASE_WORDS - 1, -1):
            for i in range(len(said) - n, -1, -1):
                if said[i : i + n] == tail[-n:]:
                    return Draft(offset, draft.end, " ".join(heard[i + n :]), cuts)
        return None

    def _transcribe(self, audio: np.ndarray, start: float) -> list[_Unit]:
        if audio.size < MIN_PASS_S * RATE or peak(audio) < SILENCE_PEAK:
            return []  # digital silence: no model call
        units: list[_Unit] = []
        said = self.transcriber.transcribe(wav(audio), self.language, words=True)
        for i, seg in enumerate(said):
            if _made_up(seg):
                continue
            if seg.words:
                parts = [_Unit(start + w.start, start + w.end, w.text, i) for w in seg.words]
            else:
                parts = [_Unit(start + seg.start, start + seg.end, seg.text, i)]
            units += [u for u in parts if _norm(u.text)]
        return units

    def _deseam(self, units: list[_Unit], start: float) -> list[_Unit]:
        """Drop the first words of a pass when they repeat the last final ones."""
        if start <= 0 or not self._tail:
            return units
        lead = [_norm(u.text) for u in units[:SEAM_WORDS] if u.start < start + SEAM_S]
        for n in range(min(len(lead), len(self._tail)), 0, -1):
            if self._tail[-n:] == lead[:n]:
                return units[n:]
        return units

    def _cut(self, units: list[_Unit], start: float, end: float) -> tuple[list[_Unit], float]:
        """(the units made final, where the next pass starts)."""
        cutoff = end - self.hold_s
        if not units:  # nothing said: keep only the last seconds, a word may be starting
            return [], max(start, cutoff)
        final = [i for i, u in enumerate(units) if u.end <= cutoff]
        if not final:
            if end - start < 2 * self.window_s:
                return [], start  # one long unit across the cut: wait for more
            final = list(range(len(units)))  # never let the pending audio grow for ever

        def gap(i: int) -> float:
            following = units[i + 1].start if i + 1 < len(units) else end
            return max(following - units[i].end, 0.0)

        pauses = [i for i in final if gap(i) >= PAUSE_S]
        late = cutoff - self.window_s / 2
        k = pauses[-1] if pauses and units[pauses[-1]].end >= late else final[-1]
        # The next pass starts where the last final word ends: the pause before the next word
        # is its lead-in (Whisper drops a first word that starts right at the edge).
        return units[: k + 1], units[k].end


def _made_up(seg: Segment) -> bool:
    """More words than could be said in the segment's time (Whisper does that over a
    window's trailing silence)."""
    words = len(_norm(seg.text).split())
    return words >= MADE_UP_WORDS and words > MAX_WORDS_PER_S * (seg.end - seg.start)


def _segments(units: list[_Unit]) -> list[Segment]:
    """Units back into segments (a segment cut by the pass keeps its final words)."""
    out: list[Segment] = []
    i = 0
    while i < len(units):
        j = i
        while j < len(units) and units[j].segment == units[i].segment:
            j += 1
        group = units[i:j]
        text = re.sub(r"\s+", " ", "".join(u.text for u in group)).strip()
        out.append(Segment(group[0].start, group[-1].end, text))
        i = j
    return out
