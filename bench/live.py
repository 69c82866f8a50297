"""Live-mode figures: the delay from the last chunk to the complete transcript, and the WER of
the live transcript against the whole-file one, on the same speech.

    python bench/live.py [--live-seconds 120] [--chunk 2] [--speed 1] [--language fr]

Speech is made with espeak-ng (looped to the length asked), sent over the live WebSocket as
16 kHz PCM16 chunks at `--speed` times real time (1: as a microphone would), through the
service with its settings (COMPANION_LIVE_WINDOW_S, COMPANION_LIVE_HOLD_S, the bundled
Whisper base). Then the same file is transcribed whole by the same executor. Prints the delay
between sending the last chunk and receiving the final message (the transcript is stored by
then; target <= 5 s for a 10-minute phase on 2 cores), the passes, and the word error rate of
the live transcript with the whole-file transcript as the reference.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench/transcription.py, and the repo
from transcription import SENTENCES, Session, make_speech  # noqa: E402

from api.main import create_app  # noqa: E402
from companion.config import Settings  # noqa: E402
from companion.speech.model import resolve  # noqa: E402
from companion.speech.transcriber import WhisperTranscriber  # noqa: E402

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


def stream(
    session: Session, pcm: bytes, chunk_s: float, speed: float
) -> tuple[float, list[dict[str, Any]], int]:
    """(seconds from the last chunk sent to the final message, the segments, passes)."""
    url = "/api/v1" + session.base + "/phases/presentation/live"
    messages: list[tuple[float, dict[str, Any]]] = []
    with session.client.websocket_connect(url) as ws:
        ws.send_json({"type": "start", "token": session.token, "format": "pcm16"})
        assert ws.receive_json()["type"] == "ready"

        def receive() -> None:
            while True:
                msg = ws.receive_json()
                messages.append((time.perf_counter(), msg))
                if msg["type"] == "final":
                    return

        reader = threading.Thread(target=receive)
        reader.start()
        step = int(chunk_s * RATE) * 2
        started = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), step)):
            wait = started + n * chunk_s / speed - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            ws.send_bytes(pcm[i : i + step])
        last_sent = time.perf_counter()
        ws.send_json({"type": "end"})
        reader.join()
    final_at, final = messages[-1]
    segments = [s for _, m in messages for s in m.get("segments", [])]
    passes = sum(m["type"] == "segments" for _, m in messages)
    assert final["count"] == len(segments), final
    return final_at - last_sent, segments, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live-seconds", type=float, default=120)
    parser.add_argument("--chunk", type=float, default=2.0, help="seconds of audio per frame")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time")
    parser.add_argument("--language", choices=sorted(SENTENCES), default="fr")
    args = parser.parse_args()
    run(args.live_seconds, args.chunk, args.speed, args.language)


def run(live_seconds: float, chunk: float, speed: float, language: str) -> None:
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
            f"beam {spec.beam_size}; window {settings.live_window_s:.0f} s, hold "
            f"{settings.live_hold_s:.0f} s"
        )
        print(
            f"audio: {len(pcm) / 2 / RATE:.0f} s of espeak-ng {language} speech, "
            f"{chunk:g}-s PCM16 chunks at {speed:g}x real time"
        )
        whisper = WhisperTranscriber(spec)
        list(whisper.transcribe(str(clip), language))  # warm-up: the model is loaded
        with TestClient(create_app(settings)) as client:
            session = Session(client, settings, language)
            delay, segments, passes = stream(session, pcm, chunk, speed)
        started = time.perf_counter()
        whole = list(whisper.transcribe(str(clip), language))
        whole_s = time.perf_counter() - started
    live_words = words(" ".join(s["text"] for s in segments))
    whole_words = words(" ".join(s.text for s in whole))
    print(f"live: {len(segments)} segments in {passes} passes before the end, then the final")
    print(f"delay from the last chunk sent to the complete transcript: {delay:.2f} s (target <= 5)")
    print(f"whole-file transcription of the same audio: {whole_s:.2f} s")
    print(
        f"WER live vs whole-file: {wer(whole_words, live_words):.3f} "
        f"({len(live_words)} words live, {len(whole_words)} whole-file)"
    )


if __name__ == "__main__":
    main()
