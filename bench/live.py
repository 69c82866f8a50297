"""Live-mode figures: how late the room reads what is said (as provisional text, then final),
the CPU it takes, the delay from the last chunk to the complete transcript, and the WER of the
live transcript against the whole-file one, on the same speech.

    python bench/live.py [--live-seconds 120] [--chunk 2] [--speed 1] [--language fr]
                         [--streams 1] [--stagger 3] [--no-drafts]

Speech is made with espeak-ng (looped to the length asked), sent over the live WebSocket as
16 kHz PCM16 chunks at `--speed` times real time (1: as a microphone would: a chunk leaves once
its audio has been said; the browser's AudioWorklet sends 0.25-s chunks), through the service
with its settings (COMPANION_LIVE_WINDOW_S, COMPANION_LIVE_HOLD_S, the bundled Whisper base).
`--streams N` runs N such streams at once in the same session (the same audio, each started
`--stagger` seconds after the one before), asking for the provisional text; `--no-drafts`
turns the draft passes off (for a comparison: no provisional text then).

The lags, per stream and over all of them, p50 and p95 **over the words of the final
transcript**: a final segment's words are spread evenly over its time span, a word being said
at its end (stream time tau, said at the stream's start + tau / speed on the wall clock).
Its lag to the final text is when the message holding its segment arrived minus when it was
said; its lag to the provisional text is when the first non-empty `provisional` message
covering it (its `end` >= tau) arrived, or its final segment if that came first, minus when it
was said. The provisional text is stored (and the panel's fingerprint moved) before the
message is sent, so other pages show it about 0.3 s later (their event stream's poll).
CPU: the process's CPU seconds (every thread: the service and the bench's client) over the
wall seconds of the streaming, on this machine's cores (2 here: 2.0 is all of them).
Then the first stream's text is compared with the same file transcribed whole by the same
executor, and the delay between sending the last chunk and receiving the final message is
printed (the transcript is stored by then; target <= 5 s for a 10-minute phase on 2 cores).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench/transcription.py, and the repo
from transcription import SENTENCES, Session, make_speech  # noqa: E402

from api.main import create_app  # noqa: E402
from companion.config import Settings  # noqa: E402
from companion.speech import live  # noqa: E402
from companion.speech.model import resolve  # noqa: E402
from companion.speech.transcriber import Transcriber, WhisperTranscriber  # noqa: E402

RATE = 16000


def words(text: str) -> list[str]:
    return re.sub(r"[\W_]+", " ", text.casefold()).split()


def wer(reference: list[str], hypothesis: list[str]) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1] / max(len(reference), 1)


@dataclass
class Stream:
    """What one stream sent and received (wall times from time.perf_counter)."""

    started: float = 0.0  # when its audio began to be said
    last_sent: float = 0.0
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def segments(self) -> list[dict[str, Any]]:
        return [s for _, m in self.messages for s in m.get("segments", [])]

    def lags(self, speed: float) -> tuple[list[float], list[float]]:
        """(lag to provisional text, lag to final text) of each word, in seconds."""
        drafts = [
            (at, m["end"]) for at, m in self.messages if m["type"] == "provisional" and m["text"]
        ]
        first, final = [], []
        for at, msg in self.messages:
            for seg in msg.get("segments", []):
                n = len(words(seg["text"]))
                for i in range(n):
                    tau = seg["start"] + (i + 1) / n * (seg["end"] - seg["start"])
                    said = self.started + tau / speed
                    shown = min([a for a, end in drafts if end >= tau - 1e-6] + [at])
                    first.append(shown - said)
                    final.append(at - said)
        return first, final


def stream(
    session: Session, pcm: bytes, chunk_s: float, speed: float, delay_s: float = 0.0
) -> Stream:
    """Stream `pcm` as a microphone would, `delay_s` from now; what came back."""
    url = "/api/v1" + session.base + "/phases/presentation/live"
    out = Stream()
    time.sleep(delay_s)
    with session.client.websocket_connect(url) as ws:
        start = {"type": "start", "token": session.token, "format": "pcm16", "provisional": True}
        ws.send_json(start)
        assert ws.receive_json()["type"] == "ready"

        def receive() -> None:
            while True:
                msg = ws.receive_json()
                out.messages.append((time.perf_counter(), msg))
                if msg["type"] == "final":
                    return

        reader = threading.Thread(target=receive)
        reader.start()
        step = int(chunk_s * RATE) * 2
        out.started = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), step)):
            said = len(pcm[i : i + step]) / 2 / RATE
            wait = out.started + (n * chunk_s + said) / speed - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # the chunk leaves once it has been said
            ws.send_bytes(pcm[i : i + step])
        out.last_sent = time.perf_counter()
        ws.send_json({"type": "end"})
        reader.join()
    final = out.messages[-1][1]
    assert final["count"] == len(out.segments), final
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live-seconds", type=float, default=120)
    parser.add_argument("--chunk", type=float, default=2.0, help="seconds of audio per frame")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time")
    parser.add_argument("--language", choices=sorted(SENTENCES), default="fr")
    parser.add_argument("--streams", type=int, default=1, help="live streams at once")
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds between starts")
    parser.add_argument("--no-drafts", action="store_true", help="no provisional text")
    args = parser.parse_args()
    if args.no_drafts:
        live.drafter = _no_draft  # what the WebSocket route asks for
    run(args.live_seconds, args.chunk, args.speed, args.language, args.streams, args.stagger)


def _no_draft(transcriber: Transcriber) -> Transcriber | None:
    return None


def _p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _lags(name: str, first: list[float], final: list[float]) -> str:
    early = sum(a < b - 1e-6 for a, b in zip(first, final, strict=True))
    return (
        f"{name}: {len(final)} words; lag to provisional text p50 {_p(first, 50):.1f} s, "
        f"p95 {_p(first, 95):.1f} s; to final text p50 {_p(final, 50):.1f} s, "
        f"p95 {_p(final, 95):.1f} s; {early / max(len(final), 1):.0%} of the words were "
        "provisional first"
    )


def run(
    live_seconds: float,
    chunk: float,
    speed: float,
    language: str,
    streams: int = 1,
    stagger: float = 3.0,
) -> None:
    """Stream `live_seconds` of speech and print the figures (also `transcription.py --live`)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        settings = Settings(data_dir=directory / "data", llm_local_model="off")
        ogg = make_speech(directory, live_seconds, language, "ogg")
        clip = directory / "speech16k.wav"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(ogg), "-ar", "16000", "-ac", "1", str(clip)],
            check=True,
        )
        with wave.open(str(clip)) as w:
            assert (w.getframerate(), w.getnchannels()) == (RATE, 1)
            pcm = w.readframes(w.getnframes())
        spec = resolve(settings)
        print(
            f"model: {spec.name}, {spec.device}/{spec.compute_type}, {spec.cpu_threads} threads, "
            f"beam {spec.beam_size} (drafts: greedy); window {settings.live.window_s:.0f} s, "
            f"hold {settings.live.hold_s:.0f} s"
        )
        print(
            f"audio: {streams} stream(s) of {len(pcm) / 2 / RATE:.0f} s of espeak-ng {language} "
            f"speech, {chunk:g}-s PCM16 chunks at {speed:g}x real time"
            + (f", started {stagger:g} s apart" if streams > 1 else "")
        )
        whisper = WhisperTranscriber(spec)
        list(whisper.transcribe(str(clip), language))  # warm-up: the model is loaded
        with TestClient(create_app(settings)) as client:
            session = Session(client, settings, language)
            results: list[Stream | None] = [None] * streams

            def one(i: int) -> None:
                results[i] = stream(session, pcm, chunk, speed, i * stagger)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
            cpu, wall = time.process_time(), time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = [r for r in results if r is not None]
        assert len(done) == streams, "a stream failed"
        started = time.perf_counter()
        whole = list(whisper.transcribe(str(clip), language))
        whole_s = time.perf_counter() - started
    every_first: list[float] = []
    every_final: list[float] = []
    for i, r in enumerate(done, 1):
        first, final = r.lags(speed)
        every_first += first
        every_final += final
        passes = sum(m["type"] == "segments" for _, m in r.messages)
        drafts = sum(m["type"] == "provisional" for _, m in r.messages)
        print(
            f"stream {i}: {len(r.segments)} segments in {passes} passes before the end, then "
            f"the final; {drafts} provisional messages; the complete transcript "
            f"{r.messages[-1][0] - r.last_sent:.2f} s after the last chunk"
        )
        print("  " + _lags(f"stream {i}", first, final))
    if streams > 1:
        print(_lags("all streams", every_first, every_final))
    print(
        f"CPU: {cpu:.0f} s of process CPU in {wall:.0f} s of wall time = {cpu / wall:.2f} "
        "(2 cores: 2.00 is all of them)"
    )
    live_words = words(" ".join(s["text"] for s in done[0].segments))
    whole_words = words(" ".join(s.text for s in whole))
    print(f"whole-file transcription of the same audio: {whole_s:.2f} s")
    print(
        f"WER live (stream 1) vs whole-file: {wer(whole_words, live_words):.3f} "
        f"({len(live_words)} words live, {len(whole_words)} whole-file)"
    )


if __name__ == "__main__":
    main()
