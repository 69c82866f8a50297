"""The transcription executor: a small Protocol, and faster-whisper behind it.

Decoding settings measured on these machines (issue 3): greedy decoding with conditioning on
the previous text fell into a repetition loop on French speech, so this uses beam search,
keeps faster-whisper's compression-ratio and no-speech guards (with their temperature
fallback), filters with VAD, forces the group's language, and drops repeated-segment loops
that still get through.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from companion.config import Settings
from companion.speech.model import ModelSpec, resolve

LOOP_RUN = 3  # the same text this many times in a row is a decoding loop, not speech


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # as Whisper spells it, with its leading space


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the recording
    end: float
    text: str
    words: tuple[Word, ...] = ()  # only when asked for (live mode cuts its windows by them)


class Transcriber(Protocol):
    """Turns a recording into segments, in order, as they are decoded (so callers see progress:
    the end of the latest segment against the recording's duration). With `words`, segments
    carry word timestamps where the executor can give them."""

    name: str

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]: ...


class AudioUndecodable(Exception):
    """The recording could not be decoded; the message says why, in words for a user."""


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def drop_loops(segments: Iterable[Segment], run: int = LOOP_RUN) -> Iterator[Segment]:
    """Drop the repeats of a text said `run` times or more in a row, keeping its first say.

    Twice in a row passes ("Oui. Oui."); from the third time the repeats are a loop. Works on a
    stream: repeats are held back until the run is known to be short or long.
    """
    first: Segment | None = None
    held: list[Segment] = []
    looping = False
    for seg in segments:
        if first is not None and _norm(seg.text) == _norm(first.text):
            if looping:
                continue
            held.append(seg)
            if 1 + len(held) >= run:
                looping, held = True, []
            continue
        yield from held
        held, looping = [], False
        first = seg
        yield seg
    yield from held


_models: dict[tuple[str, str, str, int], object] = {}
_models_lock = threading.Lock()


def _load(spec: ModelSpec) -> object:
    """One loaded model per (directory, device, compute type, threads) in a process."""
    key = (str(spec.path), spec.device, spec.compute_type, spec.cpu_threads)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            from faster_whisper import WhisperModel  # type: ignore[import-untyped]

            model = WhisperModel(
                str(spec.path),
                device=spec.device,
                compute_type=spec.compute_type,
                cpu_threads=spec.cpu_threads,
                num_workers=1,
                local_files_only=True,
            )
            _models[key] = model
        return model


class WhisperTranscriber:
    """faster-whisper over a local CTranslate2 model; safe to share between worker threads.

    `greedy` decodes for the live drafts (provisional text): beam 1, one temperature, no
    timestamps, the same loaded model (its load key ignores the decoding), guards and VAD."""

    def __init__(self, spec: ModelSpec, *, greedy: bool = False) -> None:
        self.spec = spec
        self.greedy = greedy
        self.name = f"{spec.name} (greedy)" if greedy else spec.name

    def _decoding(self, words: bool) -> dict[str, object]:
        if self.greedy:
            return {
                "beam_size": 1,
                "temperature": 0.0,
                "condition_on_previous_text": False,
                "without_timestamps": True,
            }
        return {
            "beam_size": self.spec.beam_size,
            # The guards: a window whose text compresses too well (a loop) or that is probably
            # not speech is decoded again at a higher temperature or dropped.
            "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            "condition_on_previous_text": True,
            "word_timestamps": words,
        }

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        model = _load(self.spec)
        try:
            raw, _info = model.transcribe(  # type: ignore[attr-defined]
                audio,
                language=language,
                task="transcribe",
                compression_ratio_threshold=2.4,
                log_prob_threshold=-1.0,
                no_speech_threshold=0.6,
                vad_filter=True,
                **self._decoding(words),
            )
        except Exception as exc:  # decoding starts here: av raises on what it cannot read
            raise AudioUndecodable(f"The recording could not be decoded ({exc}).") from exc
        texts = (
            Segment(
                float(s.start),
                float(s.end),
                s.text.strip(),
                tuple(Word(float(w.start), float(w.end), w.word) for w in s.words or ()),
            )
            for s in raw
        )
        yield from drop_loops(s for s in texts if s.text)


class ConfiguredWhisper:
    """The transcriber the settings name, resolved (and the bundled model assembled) on first
    use, so that starting the service costs nothing."""

    def __init__(self, settings: Settings, *, greedy: bool = False) -> None:
        self.settings = settings
        self.greedy = greedy
        self.name = str(settings.speech_model_dir or "whisper-base (bundled)")
        self._inner: WhisperTranscriber | None = None
        self._lock = threading.Lock()

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False
    ) -> Iterator[Segment]:
        with self._lock:
            if self._inner is None:
                self._inner = WhisperTranscriber(resolve(self.settings), greedy=self.greedy)
        return self._inner.transcribe(audio, language, words=words)
