"""Transcription figures on this machine: bare faster-whisper vs the service path, same audio.

    python bench/transcription.py [--seconds 60] [--format ogg] [--language fr] [--runs 3]

Speech is made with espeak-ng (then ffmpeg to the chosen format). Both sides use the bundled
Whisper base with the service's decoding settings (beam 5, VAD, guards, forced language) and
COMPANION_SPEECH_CPU_THREADS threads (default 2), after one warm-up each:

- bare: `WhisperModel.transcribe` on the file, all segments consumed;
- service: HTTP upload (multipart) -> probe, seal, job row -> huey wake-up -> in-process worker
  -> decode, transcribe, seal and store the segments -> the client sees `done` (polling every
  50 ms) and reads the transcript.

Prints the median of each and their ratio (target <= 1.10). With `--live-seconds N` it then
measures live mode on N seconds of the same kind of speech (bench/live.py): the delay from the
last chunk to the complete transcript, and the WER of the live vs the whole-file transcript.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient
from faster_whisper import WhisperModel
from httpx import Response

from api.main import create_app
from companion.accounts import service as accounts
from companion.config import Settings
from companion.runtime import open_store
from companion.speech.model import resolve
from companion.store.keyring import Keyring

SENTENCES = {
    "fr": (
        "Je dirige une équipe de huit personnes dans une usine de Lyon. "
        "Depuis six mois, je fais tout le reporting moi-même et je n'arrive plus à déléguer. "
        "Mes soirées y passent et mon équipe attend mes décisions pour avancer. "
        "J'ai essayé de confier le tableau de bord à mon adjointe, mais j'ai tout repris. "
        "Ma question au groupe est simple : comment puis-je lâcher prise sans perdre la qualité ? "
    ),
    "en": (
        "I lead a team of eight people in a factory near Leeds. "
        "For six months I have done all the reporting myself and I can no longer delegate. "
        "My evenings go into it and my team waits for my decisions before moving on. "
        "I tried to hand the dashboard to my deputy, but I took everything back. "
        "My question to the group is simple: how can I let go without losing quality? "
    ),
}
FORMATS = {"wav": ["-ar", "16000", "-ac", "1"], "ogg": ["-c:a", "libopus", "-b:a", "24k"]}
POLL_S = 0.2  # how often the client asks; polling competes with the worker for the cores
FORMATS |= {"webm": FORMATS["ogg"], "mp3": ["-b:a", "48k"]}


def make_speech(directory: Path, seconds: float, language: str, fmt: str) -> Path:
    raw, out = directory / "speech.wav", directory / f"speech.{fmt}"
    text = SENTENCES[language]
    subprocess.run(["espeak-ng", "-v", language, "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(raw),
            "-t",
            str(seconds),
            *FORMATS[fmt],
            str(out),
        ],
        check=True,
    )
    return out


def bare(model: WhisperModel, path: Path, language: str, beam: int) -> float:
    started = time.perf_counter()
    segments, _ = model.transcribe(
        str(path),
        language=language,
        task="transcribe",
        beam_size=beam,
        temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        compression_ratio_threshold=2.4,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        condition_on_previous_text=True,
        vad_filter=True,
    )
    count = sum(1 for _ in segments)
    assert count > 0
    return time.perf_counter() - started


class Session:
    """A group, its members and a session with the presentation phase running, over HTTP."""

    def __init__(self, client: TestClient, settings: Settings, language: str) -> None:
        self.client = client
        store = open_store(settings)
        with store.sessions() as db, db.begin():
            admin = accounts.create_user(db, Keyring(db, store.master), "Admin", is_admin=True)
            admin_token = accounts.issue_token(db, admin)
        store.engine.dispose()
        fac = self.ok("POST", "/users", admin_token, json={"name": "Faustine"})
        client_user = self.ok("POST", "/users", admin_token, json={"name": "Bérénice"})
        body = {"name": "Bench", "language": language, "facilitator_ids": [fac["id"]]}
        group = self.ok("POST", "/groups", admin_token, json=body)["id"]
        self.ok(
            "POST", f"/groups/{group}/members", fac["token"], json={"user_id": client_user["id"]}
        )
        self.ok("POST", f"/groups/{group}/cycles", fac["token"])
        body = {"client_id": client_user["id"]}
        session = self.ok("POST", f"/groups/{group}/sessions", fac["token"], json=body)["id"]
        self.base = f"/groups/{group}/sessions/{session}"
        self.ok("POST", f"{self.base}/phases/presentation/start", fac["token"])
        self.token = client_user["token"]

    def call(self, method: str, path: str, token: str, **kwargs: object) -> Response:
        headers = {"Authorization": f"Bearer {token}"}
        return self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)  # type: ignore[arg-type]

    def ok(self, method: str, path: str, token: str, **kwargs: object) -> dict:
        res = self.call(method, path, token, **kwargs)
        assert res.status_code < 300, res.text
        return res.json()


def service(s: Session, path: Path, breakdown: list[str]) -> float:
    data = path.read_bytes()
    started = time.perf_counter()
    res = s.call(
        "POST",
        f"{s.base}/phases/presentation/recordings",
        s.token,
        files={"file": (path.name, data, "application/octet-stream")},
    )
    assert res.status_code == 202, res.text
    uploaded = time.perf_counter() - started
    job_path = f"{s.base}/transcription-jobs/{res.json()['id']}"
    while (job := s.ok("GET", job_path, s.token))["status"] not in ("done", "failed"):
        time.sleep(POLL_S)
    assert job["status"] == "done", job
    transcript = s.ok("GET", f"{s.base}/transcript?phase=presentation", s.token)
    assert transcript["segments"]
    total = time.perf_counter() - started
    created, begun, finished = (
        datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")
    )
    breakdown.append(
        f"upload request {uploaded:.2f} s, queued {(begun - created).total_seconds():.2f} s, "
        f"worker {(finished - begun).total_seconds():.2f} s, total {total:.2f} s"
    )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--format", choices=sorted(FORMATS), default="ogg")
    parser.add_argument("--language", choices=sorted(SENTENCES), default="fr")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--live-seconds", type=float, default=0, help="then live mode on this much speech"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        settings = Settings(data_dir=directory / "data")
        clip = make_speech(directory, args.seconds, args.language, args.format)
        started = time.perf_counter()
        spec = resolve(settings)
        print(
            f"model: {spec.name}, assembled/found in {time.perf_counter() - started:.2f} s; "
            f"{spec.device}/{spec.compute_type}, {spec.cpu_threads} threads, beam {spec.beam_size}"
        )
        model = WhisperModel(
            str(spec.path),
            device=spec.device,
            compute_type=spec.compute_type,
            cpu_threads=spec.cpu_threads,
            num_workers=1,
            local_files_only=True,
        )
        print(
            f"audio: {args.seconds:.0f} s of espeak-ng {args.language} speech as {args.format} "
            f"({clip.stat().st_size} bytes)"
        )
        with TestClient(create_app(settings)) as client:
            session = Session(client, settings, args.language)
            bare(model, clip, args.language, spec.beam_size)  # warm-ups
            breakdown: list[str] = []
            service(session, clip, breakdown)
            bare_times, service_times = [], []
            for _ in range(args.runs):
                bare_times.append(bare(model, clip, args.language, spec.beam_size))
                service_times.append(service(session, clip, breakdown))
        b, s = statistics.median(bare_times), statistics.median(service_times)
        print(
            f"bare faster-whisper: {b:.2f} s (median of {args.runs}: "
            f"{', '.join(f'{t:.2f}' for t in bare_times)}); RTF {b / args.seconds:.3f}"
        )
        print(
            f"service path:        {s:.2f} s (median of {args.runs}: "
            f"{', '.join(f'{t:.2f}' for t in service_times)}); RTF {s / args.seconds:.3f}"
        )
        print("service breakdown:\n  " + "\n  ".join(breakdown[1:]))
        print(f"ratio service/bare:  {s / b:.3f} (target <= 1.10)")
    if args.live_seconds:
        import live  # bench/live.py, next to this file (it imports this one)

        print(f"\nlive mode, {args.live_seconds:.0f} s:")
        live.run(args.live_seconds, 2.0, 1.0, args.language)


if __name__ == "__main__":
    main()
