"""Many people in live sessions at once: throughput, p50/p95/p99 per route, errors.

    python bench/load.py [--clients 20] [--seconds 60] [--warmup 5] [--pause 1.0] [--no-live]
                         [--postgres URL] [--model]

The service runs as `companion serve` in a process of its own on loopback, on a fresh data
dir (embedded defaults: SQLite, Chroma, the transcription queue; `--postgres URL` puts its
database on a fresh database of that server instead). The model is off unless `--model`: the
targets are for the routes that do not wait on it.

People are split into sessions of six (a facilitator, the client, four consultants), each in
the consultation (phase 4). Every person does what their page does:
- keeps the room's event stream open (server-sent events) and reloads a panel when its topic
  moves, as the page does;
- in a loop, with a random pause of 0.5-1.5 x `--pause` seconds between actions: reads the
  session; a consultant adds a note (an idea) and reads the ideas; the client reads the ideas
  and the synthesis; the facilitator reads the ideas and the transcript.
- the facilitator's device streams live audio (espeak-ng speech, 16 kHz PCM16 in 0.25-s
  chunks at real time) for the whole run, unless `--no-live`.
The pages open one by one over the first half of `--warmup` (5 s); a request that ends within
the warm-up is not timed (its errors count), nor is the CPU used then. Every request is timed
from its send to the end of its body; an error is a status >= 400 that the page would not
expect, a timeout (10 s) or a dropped connection. Only loopback is used; the run is bounded by
`--warmup` plus `--seconds` and by 200 actions a person.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from transcription import make_speech  # noqa: E402

API = "/api/v1"
TIMEOUT_S = 10.0
MAX_ACTIONS = 200
RATE = 16000
CHUNK_S = 0.25
NOTES = [
    "Tu pourrais nommer un binôme pour le reporting et relire seulement la synthèse.",
    "Et si tu fixais avec ton équipe les trois décisions qu'elle peut prendre sans toi ?",
    "Moi, j'ai bloqué deux créneaux par semaine sans réunion, ça a tout changé.",
    "Peut-être demander à ton adjointe ce qui l'a empêchée de garder le tableau de bord.",
    "Tu pourrais écrire ce que « qualité » veut dire pour toi, en trois critères.",
    "Une idée : déléguer d'abord une petite partie, puis élargir chaque mois.",
]


@dataclass
class Figures:
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counting_from: float = 0.0  # requests that end before this (the warm-up) are not timed
    # At the end of the warm-up: monotonic time, the service's and this process's CPU seconds.
    counted: tuple[float, float, float] = (0.0, 0.0, 0.0)
    stopped: float = 0.0  # when the people stopped (what was under way still ends)
    trace: list[tuple[float, str, float]] = field(default_factory=list)  # (epoch, route, s)

    def timed(self, route: str, seconds: float) -> None:
        if time.perf_counter() >= self.counting_from:
            self.times[route].append(seconds)
            self.trace.append((time.time(), route, seconds))

    def failed(self, route: str, why: str) -> None:
        self.errors[route].append(why)


@dataclass
class Person:
    role: str  # facilitator, client, consultant
    user_id: str
    token: str
    group_id: str
    session_id: str

    @property
    def room(self) -> str:
        return f"/groups/{self.group_id}/sessions/{self.session_id}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process, every thread (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service(
    data_dir: Path, database_url: str | None, model: bool
) -> Iterator[tuple[str, str, int]]:
    """`companion serve` on a free loopback port; yields its URL, an admin's token, its pid."""
    env = {**os.environ, "COMPANION_DATA_DIR": str(data_dir)}
    if database_url:
        env["COMPANION_DATABASE_URL"] = database_url
    if not model:
        env["COMPANION_LLM_LOCAL_MODEL"] = "off"
    companion = [sys.executable, "-m", "api.cli"]
    made = subprocess.run(
        [*companion, "users", "create-admin"], env=env, capture_output=True, text=True, check=True
    )
    token = re.search(r"token:\s+(\S+)", made.stdout)
    assert token, made.stdout
    port = _free_port()
    proc = subprocess.Popen(
        [*companion, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "serve.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not start: see " + str(data_dir / "serve.log"))
            time.sleep(0.3)
        yield url, token.group(1), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # a stop that hangs is reported, not waited for
            print("the service did not stop within 30 s of SIGTERM; killed")
            proc.kill()
            proc.wait()


def _ok(res: httpx.Response) -> Any:
    assert res.status_code < 300, (res.request.url, res.status_code, res.text)
    return res.json() if res.content else None


def set_up(url: str, admin: str, people: int) -> list[Person]:
    """Groups of six in the consultation, each with its contract confirmed."""
    out: list[Person] = []
    with httpx.Client(base_url=url + API, timeout=30) as http:

        def call(method: str, path: str, token: str, **kw: Any) -> Any:
            return _ok(
                http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
            )

        for g in range((people + 5) // 6):
            users = [call("POST", "/users", admin, json={"name": f"P{g}-{i}"}) for i in range(6)]
            fac, client = users[0], users[1]
            group = call(
                "POST",
                "/groups",
                admin,
                json={"name": f"Groupe {g}", "language": "fr", "facilitator_ids": [fac["id"]]},
            )
            gid = group["id"]
            for u in users[1:]:
                call("POST", f"/groups/{gid}/members", fac["token"], json={"user_id": u["id"]})
            call("POST", f"/groups/{gid}/cycles", fac["token"])
            sid = call(
                "POST", f"/groups/{gid}/sessions", fac["token"], json={"client_id": client["id"]}
            )["id"]
            room = f"/groups/{gid}/sessions/{sid}"
            for phase in ("presentation", "clarification", "contract"):
                call("POST", f"{room}/phases/{phase}/start", fac["token"])
                if phase == "contract":
                    text = "Comment puis-je déléguer le reporting sans perdre la qualité ?"
                    call("PUT", f"{room}/contract", client["token"], json={"text": text})
                call("POST", f"{room}/phases/{phase}/end", fac["token"])
            call("POST", f"{room}/phases/consultation/start", fac["token"])
            roles = ["facilitator", "client"] + ["consultant"] * 4
            out += [
                Person(r, u["id"], u["token"], gid, sid) for r, u in zip(roles, users, strict=True)
            ]
    return out[:people]


async def timed(
    http: httpx.AsyncClient, figures: Figures, route: str, method: str, path: str, ok: set[int],
    **kw: Any,
) -> None:  # fmt: skip
    started = time.perf_counter()
    try:
        res = await http.request(method, path, **kw)
    except httpx.HTTPError as exc:
        figures.failed(route, type(exc).__name__)
        return
    figures.timed(route, time.perf_counter() - started)
    if res.status_code not in ok:
        figures.failed(route, f"{res.status_code} {res.text[:120]}")


# What a page in phase 4 reloads when a topic moves (api/web/templates: hx-trigger="sse:…").
PANELS = {
    "phase": ["phase", "work", "notes"],
    "notes": ["notes"],
    "transcript": ["transcript"],
    "contract": ["contract"],
    "ideas": ["ideas"],
}
FACILITATOR_PANELS = {"clarity": ["clarity?part=alerts"]}


async def page_events(
    http: httpx.AsyncClient, figures: Figures, person: Person, stop: asyncio.Event, opening: float
) -> None:
    """The room's event stream; a panel reload for each topic that moves, as the page does."""
    panels = PANELS | (FACILITATOR_PANELS if person.role == "facilitator" else {})
    await asyncio.sleep(random.uniform(0, opening))  # people open the room one by one
    try:
        async with http.stream("GET", person.room + "/events", timeout=None) as res:
            if res.status_code != 200:
                figures.failed("events", str(res.status_code))
                return
            async for line in res.aiter_lines():
                if stop.is_set():
                    return
                if not line.startswith("event: "):
                    continue
                for panel in panels.get(line[7:].strip(), []):
                    path = f"{person.room}/panels/{panel}"
                    route = "panel " + panel.split("?")[0]
                    await timed(http, figures, route, "GET", path, {200})
    except httpx.HTTPError as exc:
        if not stop.is_set():
            figures.failed("events", type(exc).__name__)


async def actions(
    api: httpx.AsyncClient, figures: Figures, person: Person, pause: float, stop: asyncio.Event
) -> None:
    room = person.room
    for n in range(MAX_ACTIONS):
        if stop.is_set():
            return
        await asyncio.sleep(random.uniform(0.5, 1.5) * pause)
        await timed(api, figures, "GET session", "GET", room, {200})
        if person.role == "consultant":
            body = {"body": f"{random.choice(NOTES)} ({person.user_id[-4:]}-{n})"}
            await timed(api, figures, "POST note", "POST", room + "/notes", {201}, json=body)
        await timed(api, figures, "GET ideas", "GET", room + "/ideas", {200})
        if person.role == "client":
            # Before phase 4 ends there is no draft yet: 404 or 409 is what the page expects.
            await timed(api, figures, "GET synthesis", "GET", room + "/synthesis", {200, 404, 409})
        if person.role == "facilitator":
            await timed(api, figures, "GET transcript", "GET", room + "/transcript", {200})


async def live_audio(
    url: str, figures: Figures, person: Person, pcm: bytes, stop: asyncio.Event
) -> None:
    """The facilitator's device: speech at real time, as the recorder sends it."""
    ws_url = url.replace("http", "ws") + API + person.room + "/phases/consultation/live"
    step = int(RATE * CHUNK_S) * 2
    try:
        async with websockets.connect(ws_url, max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "start", "token": person.token, "format": "pcm16"}))
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                figures.failed("live", str(ready)[:120])
                return
            t0, sent, i = time.monotonic(), 0.0, 0
            while not stop.is_set():
                chunk = pcm[i : i + step] or pcm[:step]
                i = i + step if i + step < len(pcm) else 0
                await ws.send(chunk)
                sent += len(chunk) / 2 / RATE
                await asyncio.sleep(max(0.0, t0 + sent - time.monotonic()))
                while True:  # what came back so far (segments), without waiting
                    try:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                    except TimeoutError:
                        break
                    if msg.get("type") == "segments":
                        figures.timed("live segments", 0.0)
                    elif msg.get("type") == "error":
                        figures.failed("live", msg.get("detail", "")[:120])
            figures.timed("live seconds sent", sent)
    except (OSError, websockets.WebSocketException) as exc:
        if not stop.is_set():
            figures.failed("live", f"{type(exc).__name__}: {exc}"[:120])


async def drive(
    url: str, pid: int, people: list[Person], args: argparse.Namespace, pcm: bytes
) -> Figures:
    figures = Figures()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    clients = [
        httpx.AsyncClient(
            base_url=url + API,
            headers={"Authorization": f"Bearer {p.token}"},
            timeout=TIMEOUT_S,
            limits=limits,
        )
        for p in people
    ]
    pages = [
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {p.token}"},
                          timeout=TIMEOUT_S, limits=limits)
        for p in people
    ]  # fmt: skip
    tasks = [
        asyncio.create_task(actions(c, figures, p, args.pause, stop))
        for c, p in zip(clients, people, strict=True)
    ]
    tasks += [
        asyncio.create_task(page_events(c, figures, p, stop, args.warmup / 2))
        for c, p in zip(pages, people, strict=True)
    ]
    if not args.no_live:
        tasks += [
            asyncio.create_task(live_audio(url, figures, p, pcm, stop))
            for p in people
            if p.role == "facilitator"
        ]
    figures.counting_from = time.perf_counter() + args.warmup
    await asyncio.sleep(args.warmup)
    figures.counted = (time.monotonic(), cpu_seconds(pid), time.process_time())
    await asyncio.sleep(args.seconds)
    figures.stopped = time.monotonic()
    stop.set()
    await asyncio.wait(tasks, timeout=TIMEOUT_S + 5)
    for t in tasks:
        t.cancel()
    for c in clients + pages:
        await c.aclose()
    return figures


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(figures: Figures, seconds: float) -> None:
    requests = sum(len(v) for k, v in figures.times.items() if not k.startswith("live"))
    errors = sum(len(v) for v in figures.errors.values())
    print(f"{requests} requests in {seconds:.0f} s ({requests / seconds:.1f}/s), {errors} errors")
    print(f"{'route':<16}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    every: list[float] = []
    for route in sorted(figures.times):
        if route.startswith("live"):
            continue
        t = figures.times[route]
        every += t
        row = [_pct(t, q) * 1000 for q in (0.5, 0.95, 0.99, 1.0)]
        print(f"{route:<16}{len(t):>6}" + "".join(f"{v:>9.1f}" for v in row)
              + f"{len(figures.errors.get(route, [])):>8}")  # fmt: skip
    if every:
        row = [_pct(every, q) * 1000 for q in (0.5, 0.95, 0.99, 1.0)]
        print(f"{'all':<16}{len(every):>6}" + "".join(f"{v:>9.1f}" for v in row) + f"{errors:>8}")
    if "live seconds sent" in figures.times:
        sent = figures.times["live seconds sent"]
        print(
            f"live: {len(sent)} stream(s), {statistics.mean(sent):.0f} s of audio each, "
            f"{len(figures.times.get('live segments', []))} segment messages back"
        )
    for route, why in figures.errors.items():
        print(f"errors on {route}: {len(why)}, e.g. {why[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument(
        "--warmup", type=float, default=5.0,
        help="seconds before timing starts; the pages open over the first half of it",
    )  # fmt: skip
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument("--postgres", help="a PostgreSQL server URL; a fresh database on it")
    parser.add_argument("--model", action="store_true", help="leave the configured model on")
    parser.add_argument(
        "--trace", type=Path, help="write each timed request (end s, route, ms) to this file"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        pcm = b""
        if not args.no_live:
            ogg = make_speech(directory, 60, "fr", "ogg")
            clip = directory / "speech16k.wav"
            subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(ogg), "-ar", "16000",
                            "-ac", "1", str(clip)], check=True)  # fmt: skip
            with wave.open(str(clip)) as w:
                pcm = w.readframes(w.getnframes())
        with (
            postgres_database(args.postgres) as database_url,
            service(directory / "data", database_url, args.model) as (url, admin, pid),
        ):
            people = set_up(url, admin, args.clients)
            sessions = len({p.session_id for p in people})
            print(
                f"{len(people)} people in {sessions} session(s), pause {args.pause} s, "
                f"{'live audio on' if not args.no_live else 'no live audio'}, "
                f"{'PostgreSQL' if database_url else 'SQLite'}, {args.seconds:.0f} s"
            )
            figures = asyncio.run(drive(url, pid, people, args, pcm))
            started, server_cpu, bench_cpu = figures.counted  # after the warm-up
            wall = figures.stopped - started
            report(figures, wall)
            if args.trace:
                args.trace.write_text(
                    "".join(f"{t:.3f}\t{r}\t{s * 1000:.1f}\n" for t, r, s in figures.trace)
                )
            log = (directory / "data" / "serve.log").read_text(errors="replace")
            errors = [line for line in log.splitlines() if line.startswith("ERROR")]
            kinds = {m.group(0) for m in re.finditer(r"^[\w.]+(Error|Exception)\b", log, re.M)}
            if errors:  # the service's own account of its 5xx (kinds of exceptions)
                print(f"service log: {len(errors)} error(s): {', '.join(sorted(kinds))}")
                lines = log.splitlines()
                first = next(n for n, line in enumerate(lines) if line.startswith("ERROR"))
                print("\n".join(lines[first : first + 40]))  # the first one's traceback
            served = sum(len(v) for k, v in figures.times.items() if not k.startswith("live"))
            used = cpu_seconds(pid) - server_cpu
            print(
                f"CPU: the service {used:.1f} s ({used / wall:.2f} cores, "
                f"{1000 * used / max(served, 1):.1f} ms a request), this bench's clients "
                f"{time.process_time() - bench_cpu:.1f} s; load average {os.getloadavg()[0]:.1f}"
            )


@contextmanager
def postgres_database(server: str | None) -> Iterator[str | None]:
    """A fresh database on `server` for the run, dropped after; None without a server."""
    if not server:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"load_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
