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
from typing import Any, BinaryIO, Protocol

import numpy as np

from companion.config import Settings
from companion.speech.model import ModelSpec, ModelUnavailable, resolve
from companion.speech.priority import lower_this_thread

log = logging.getLogger(__name__)

LOOP_RUN = 3  # the same text this many times in a row is a decoding loop, not speech
WHISPER_FRAMES = 3000  # 30 s of features: the longest input of Whisper's encoder
DRAFT_PAD_S = 1.0  # silence after a draft's audio, so that its last word is heard to its end
DRAFT_TOKENS_PER_S = 10  # a draft's longest text: twice and more the pace of speech
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
    if isinstance(audio, str) or not audio.seekable():
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
        try:
            raw, _info = model.transcribe(  # type: ignore[attr-defined]
                pcm_samples(audio, model.feature_extractor.sampling_rate),  # type: ignore[attr-defined]
                language=language,
                task="transcribe",
                compression_ratio_threshold=2.4,
                log_prob_threshold=-1.0,
                no_speech_threshold=0.6,
                vad_filter=vad,
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


def _draft(model: Any, audio: str | BinaryIO, language: str) -> Iterator[Segment]:
    """One greedy segment over the whole audio (at most 30 s), the encoder over its length."""
    from faster_whisper.audio import decode_audio  # type: ignore[import-untyped]
    from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
    from faster_whisper.transcribe import get_suppressed_tokens  # type: ignore[import-untyped]
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # type: ignore[import-untyped]

    rate = model.feature_extractor.sampling_rate
    try:
        samples = pcm_samples(audio, rate)
        if not isinstance(samples, np.ndarray):
            samples = decode_audio(samples, sampling_rate=rate)
    except Exception as exc:
        raise AudioUndecodable(f"The recording could not be decoded ({exc}).") from exc
    if not get_speech_timestamps(samples, VadOptions()):
        return
    seconds = samples.size / rate
    padded = np.concatenate([samples, np.zeros(round(DRAFT_PAD_S * rate), np.float32)])
    features = model.feature_extractor(padded)
    frames = min(features.shape[-1] // 2 * 2, WHISPER_FRAMES)  # the encoder halves its input
    encoded = model.encode(features[:, :frames])
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
    )
    result = model.model.generate(
        encoded,
        [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
        beam_size=1,
        max_length=round(DRAFT_TOKENS_PER_S * seconds) + 8,  # a loop ends there
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
    )[0]
    text = tokenizer.decode(result.sequences_ids[0]).strip()
    if text:
        yield Segment(0.0, seconds, text)


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
