"""The transcription executor: a small Protocol, and faster-whisper behind it.

Decoding settings measured on these machines (issue 3): greedy decoding with conditioning on
the previous text fell into a repetition loop on French speech, so this uses beam search,
keeps faster-whisper's compression-ratio and no-speech guards (with their temperature
fallback), filters with VAD, forces the group's language, and drops repeated-segment loops
that still get through.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from companion.config import Settings
from companion.speech.model import ModelSpec, ModelUnavailable, resolve
from companion.speech.priority import lower_this_thread

log = logging.getLogger(__name__)

LOOP_RUN = 3  # the same text this many times in a row is a decoding loop, not speech
WHISPER_FRAMES = 3000  # 30 s of features: the longest input of Whisper's encoder
DRAFT_PAD_S = 1.0  # silence after a draft's audio, so that its last word is heard to its end
# The longest text a second of speech can need: twice and more the pace of speech. A decoding
# over short audio writes at most this many tokens a second of it, plus a margin (a pass's for
# its timestamps): a 2-s question Whisper heard as a loop wrote 400 tokens (twice, with the
# fallback) and took 3-5 times its length (issue 13).
TOKENS_PER_S = 10
PASS_TOKENS_MARGIN = 16
DRAFT_TOKENS_MARGIN = 4
# Up to this long, the bound (216 tokens at most) leaves room in Whisper's 448 for the longest
# prompt faster-whisper gives a window (224 tokens of previous text and the start tokens);
# longer audio keeps faster-whisper's own bound.
BOUNDED_UNTIL_S = 20.0
SHORT_S = 10.0  # audio up to this long (and no word timestamps asked) is heard by _short
# What _short pads a short recording to: over the recording's own length the encoder lost
# words (English questions said alone: WER 0.15 against 0.11 in a 30-s window), from 15 s on
# it hears them as well (0.12), at half the encoder's cost.
SHORT_WINDOW_S = 15.0
# faster-whisper's guards, as the passes set them
COMPRESSION_MAX = 2.4
LOGPROB_MIN = -1.0
NO_SPEECH_MIN = 0.6
# A window that fails the guards is decoded once more, warmer: faster-whisper's six steps
# (0.0 to 1.0) made poorly heard French take 0.76 of its length (issue 13); two bound it.
FALLBACK_TEMPERATURES = (0.0, 0.4)
DRAFT_THREADS = 1  # live drafts' model: one core, beside the passes' (speech_cpu_threads)


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
        self, audio: str | BinaryIO, language: str, *, words: bool = False, vad: bool = True
    ) -> Iterator[Segment]: ...


class AudioUndecodable(Exception):
    """The recording could not be decoded; the message says why, in words for a user."""


def pcm_samples(audio: str | BinaryIO, rate: int) -> np.ndarray | str | BinaryIO:
    """A 16-bit mono WAV at `rate` (what live mode hands over) read as float samples here;
    anything else as it was, for faster-whisper to decode.

    faster-whisper's own decoding ends with a full garbage collection (against a leak of its
    resampler): in a service holding models and caches that stops every thread for tens to
    hundreds of milliseconds, and live mode decodes a window every few seconds per stream."""
    if isinstance(audio, str):
        try:
            with Path(audio).open("rb") as f:
                read = pcm_samples(f, rate)
        except OSError:
            return audio
        return read if isinstance(read, np.ndarray) else audio
    if not audio.seekable():
        return audio
    start = audio.tell()
    try:
        with wave.open(audio, "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, rate):
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
                return pcm.astype(np.float32) / 32768.0
    except (wave.Error, EOFError):
        pass  # not a WAV of that kind: faster-whisper decodes it
    audio.seek(start)
    return audio


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

    `greedy` decodes for the live drafts (provisional text): beam 1, no timestamps, and the
    encoder run over the audio's own length instead of the 30 s Whisper pads every window to
    (faster-whisper always pads; CTranslate2 takes shorter input): 4-10 times faster on
    3-15 s of audio on one core, with text of the same quality on our speech (measured).
    VAD first: audio without speech makes no model call."""

    def __init__(self, spec: ModelSpec, *, greedy: bool = False) -> None:
        self.spec = spec
        self.greedy = greedy
        self.name = f"{spec.name} (greedy)" if greedy else spec.name

    def _decoding(self, words: bool) -> dict[str, object]:
        return {
            "beam_size": self.spec.beam_size,
            # The guards: a window whose text compresses too well (a loop) or that is probably
            # not speech is decoded again at a higher temperature or dropped.
            "temperature": list(FALLBACK_TEMPERATURES),
            "condition_on_previous_text": True,
            "word_timestamps": words,
        }

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False, vad: bool = True
    ) -> Iterator[Segment]:
        model = _load(self.spec)
        if self.greedy:
            yield from _draft(model, audio, language)
            return
        rate = model.feature_extractor.sampling_rate  # type: ignore[attr-defined]
        samples = _samples(audio, rate)
        if not words and samples.size / rate <= SHORT_S:
            yield from _short(model, samples, language, self.spec.beam_size, vad=vad)
            return
        try:
            raw, _info = model.transcribe(  # type: ignore[attr-defined]
                samples,
                language=language,
                task="transcribe",
                compression_ratio_threshold=COMPRESSION_MAX,
                log_prob_threshold=LOGPROB_MIN,
                no_speech_threshold=NO_SPEECH_MIN,
                vad_filter=vad,
                max_new_tokens=None if words else pass_tokens(samples.size / rate),
                **self._decoding(words),
            )
        except Exception as exc:  # samples the model cannot take (decoding was _samples')
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


def pass_tokens(seconds: float) -> int | None:
    """The most tokens a window of a pass may write: bounded by the audio's length when it is
    short (it is then heard in one window, or two when a segment runs over the first's end),
    else faster-whisper's own bound. Not for live passes (word times): there a pass cut short
    left its window's end unplaced, and half the segments came back (bench/load.py)."""
    return None if seconds > BOUNDED_UNTIL_S else token_bound(seconds)


def token_bound(seconds: float, margin: int = PASS_TOKENS_MARGIN) -> int:
    """The most tokens `seconds` of speech can need, and `margin`."""
    return round(TOKENS_PER_S * seconds) + margin


def _samples(audio: str | BinaryIO, rate: int) -> np.ndarray:
    """The recording as float samples at `rate`: a PCM WAV read here, anything else decoded."""
    from faster_whisper.audio import decode_audio  # type: ignore[import-untyped]

    try:
        samples = pcm_samples(audio, rate)
        if not isinstance(samples, np.ndarray):
            samples = decode_audio(samples, sampling_rate=rate)
    except Exception as exc:  # av raises on what it cannot read
        raise AudioUndecodable(f"The recording could not be decoded ({exc}).") from exc
    return samples


@dataclass(frozen=True)
class _Heard:
    """One decoding of a short recording: its text and faster-whisper's measures of it."""

    text: str
    logprob: float  # mean log probability of its tokens
    no_speech: float  # the model's probability that the audio holds no speech

    @property
    def loops(self) -> bool:
        from faster_whisper.transcribe import get_compression_ratio  # type: ignore[import-untyped]

        return bool(get_compression_ratio(self.text) > COMPRESSION_MAX)


class _Window:
    """A recording shorter than Whisper's window, encoded over its own length plus silence (a
    second at least, so that its last word is heard to its end; up to `at_least_s` in all)
    rather than padded to 30 s: CTranslate2 takes the shorter input, and the encoder's cost
    falls with it."""

    def __init__(
        self, model: Any, samples: np.ndarray, language: str, *, at_least_s: float = 0.0
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
        from faster_whisper.transcribe import get_suppressed_tokens

        rate = model.feature_extractor.sampling_rate
        self.model = model
        self.seconds = samples.size / rate
        pad = max(DRAFT_PAD_S, at_least_s - self.seconds)
        padded = np.concatenate([samples, np.zeros(round(pad * rate), np.float32)])
        features = model.feature_extractor(padded)
        frames = min(features.shape[-1] // 2 * 2, WHISPER_FRAMES)  # the encoder halves its input
        self.encoded = model.encode(features[:, :frames])
        self.tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.suppressed = list(get_suppressed_tokens(self.tokenizer, [-1]))

    def decode(self, new_tokens: int, **how: Any) -> _Heard:
        """One generation of at most `new_tokens` tokens (`how`: beam or sampling)."""
        result = self.model.model.generate(
            self.encoded,
            [self.prompt],
            max_length=len(self.prompt) + new_tokens,  # a loop ends there
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppressed,
            **how,
        )[0]
        tokens = result.sequences_ids[0]
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper does
        return _Heard(self.tokenizer.decode(tokens).strip(), logprob, result.no_speech_prob)


def _has_speech(samples: np.ndarray) -> bool:
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # type: ignore[import-untyped]

    return bool(get_speech_timestamps(samples, VadOptions()))


def _short(
    model: Any, samples: np.ndarray, language: str, beam_size: int, *, vad: bool
) -> Iterator[Segment]:
    """A short recording (a question, a turn said alone) as one segment, by beam search over
    the encoder run on SHORT_WINDOW_S rather than 30 s: for 1-4 s of speech this takes half the
    time of a 30-s window, or less (bench/eval/speech.py, docs/transcription.md).

    faster-whisper's guards, bounded: a text that loops (compresses too well) is decoded once
    more, warmer, and the better of the two kept; a text heard with low confidence is kept as
    it is (decoded again at random, poorly heard French came out no better and took twice as
    long). When voice detection found speech, it is believed: the model's own no-speech guard
    applies only to audio heard without it (it made a clear 5-second sentence 'no speech')."""
    if vad and not _has_speech(samples):
        return
    window = _Window(model, samples, language, at_least_s=SHORT_WINDOW_S)
    budget = token_bound(window.seconds)
    heard = window.decode(budget, beam_size=beam_size)
    if heard.loops:
        warmer = window.decode(
            budget, beam_size=1, num_hypotheses=5, sampling_topk=0,
            sampling_temperature=FALLBACK_TEMPERATURES[-1],
        )  # fmt: skip
        heard = min((heard, warmer), key=lambda h: (h.loops, -h.logprob))
    if not vad and heard.no_speech > NO_SPEECH_MIN and heard.logprob < LOGPROB_MIN:
        return
    if heard.text:
        yield Segment(0.0, window.seconds, heard.text)


def _draft(model: Any, audio: str | BinaryIO, language: str) -> Iterator[Segment]:
    """One greedy segment over the whole audio (at most 30 s), the encoder over its length."""
    rate = model.feature_extractor.sampling_rate
    samples = _samples(audio, rate)
    if not _has_speech(samples):
        return
    window = _Window(model, samples, language)
    heard = window.decode(token_bound(window.seconds, DRAFT_TOKENS_MARGIN), beam_size=1)
    if heard.text:
        yield Segment(0.0, window.seconds, heard.text)


class ConfiguredWhisper:
    """The transcriber the settings name, resolved (and the bundled model assembled) on first
    use, so that starting the service costs nothing."""

    def __init__(
        self, settings: Settings, *, greedy: bool = False, threads: int | None = None
    ) -> None:
        self.settings = settings
        self.greedy = greedy
        self.threads = threads  # None: the settings' speech_cpu_threads
        self.name = str(settings.speech.model_dir or "whisper-base (bundled)")
        self._inner: WhisperTranscriber | None = None
        self._lock = threading.Lock()

    def transcribe(
        self, audio: str | BinaryIO, language: str, *, words: bool = False, vad: bool = True
    ) -> Iterator[Segment]:
        with self._lock:
            if self._inner is None:
                spec = resolve(self.settings)
                if self.threads is not None:
                    spec = replace(spec, cpu_threads=self.threads)
                self._inner = WhisperTranscriber(spec, greedy=self.greedy)
        return self._inner.transcribe(audio, language, words=words, vad=vad)


def _silence(seconds: float, rate: int = 16000) -> io.BytesIO:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * round(seconds * rate))
    out.seek(0)
    return out


def preload(settings: Settings) -> threading.Thread:
    """Load the passes' and the drafts' models in a thread behind the requests, and run each
    once, so that the first recording of the day does not load them while pages are served.

    Measured under bench/load.py with live audio: the first pass of the first stream loaded
    its model (and the voice detector, and their libraries) for 1-1.5 s, during which every
    open page's requests took up to 1.4 s. The thread is lowered before it loads anything:
    the model's own worker threads are started by it and inherit its rank."""

    def load() -> None:
        lower_this_thread()
        try:
            spec = resolve(settings)
            for transcriber in (
                WhisperTranscriber(spec),
                WhisperTranscriber(replace(spec, cpu_threads=DRAFT_THREADS), greedy=True),
            ):
                # Without voice detection the passes' model decodes once; with it (the
                # drafts), the detector is loaded and finds nothing to decode.
                list(transcriber.transcribe(_silence(1.0), "en", vad=transcriber.greedy))
        except (ModelUnavailable, AudioUndecodable, ImportError, RuntimeError) as exc:
            log.warning("The Whisper models were not loaded in advance: %s", exc)
        else:
            log.info("Whisper models loaded (%s).", spec.name)

    thread = threading.Thread(target=load, name="speech-preload", daemon=True)
    thread.start()
    return thread
