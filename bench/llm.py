"""Local model figures on this machine: load time, prompt and generation tokens per second.

    python bench/llm.py [--models smollm2-135m qwen2.5-1.5b] [--threads 1] [--runs 3]

For each model: the time to resolve it (joining packaged parts the first time, into a fresh data
dir unless --data-dir), the time from spawning the server to its ready line (what the first
call that needs a model waits), the server's resident memory, then llama.cpp's own timings
(prompt_per_second, predicted_per_second) as medians over --runs requests after one warm-up:

- short: a ~150-token French co-development prompt, 96 tokens generated;
- long: a ~1,300-token consultation transcript, 32 tokens generated (prompt throughput on the
  size assistance sends), then the same prompt with one more idea appended: how much the
  server's prefix cache saves when prompts are append-only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from companion.config import Settings
from companion.llm.local import MODELS, LocalServer, resolve

PROMPT = (
    "Voici l'exposé d'une cliente en séance de codéveloppement : « Je dirige une équipe de huit "
    "personnes. Je fais tout le reporting moi-même et je n'arrive plus à déléguer ; mes soirées y "
    "passent et mon équipe attend mes décisions. » Propose trois formulations de sa demande au "
    "groupe, chacune en une phrase commençant par « Comment puis-je »."
)
IDEAS = [
    "Tu pourrais commencer par confier un seul tableau de bord à une personne volontaire.",
    "Moi, dans une situation proche, j'ai ressenti de la culpabilité à lâcher le contrôle.",
    "Une idée : fixer un créneau hebdomadaire de relecture plutôt que tout refaire toi-même.",
    "Je me demande ce que ton équipe sait déjà faire sans toi, as-tu fait l'inventaire ?",
    "Peut-être que ta direction attend moins de précision que ce que tu t'imposes.",
    "J'ai vécu la même chose ; c'est en acceptant une version imparfaite que j'ai avancé.",
]


def transcript(n_ideas: int) -> str:
    lines = [
        f"Consultant {i % 6 + 1} : {IDEAS[i % len(IDEAS)]} (idée {i + 1})" for i in range(n_ideas)
    ]
    return (
        "Transcription de la phase de consultation. Regroupe les idées par thèmes.\n"
        + "\n".join(lines)
    )


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ask(url: str, key: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": prompt}],
        "max_completion_tokens": max_tokens,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=900)
    answer.raise_for_status()
    return answer.json()["timings"]  # type: ignore[no-any-return]


def bench(name: str, threads: int, runs: int, data_dir: Path, long_ideas: int) -> None:
    settings = Settings(data_dir=data_dir, llm_local_model=name)
    started = time.monotonic()
    gguf = resolve(settings)
    assert gguf is not None
    resolved = time.monotonic() - started
    server = LocalServer(gguf, threads=threads, ctx=4096)
    started = time.monotonic()
    url = server.start()
    load = time.monotonic() - started
    rss_loaded = rss_mb(server.pid)
    short_p, short_g, short_wall = [], [], []
    long_p, long_wall, cached_wall, cached_n = [], [], [], []
    try:
        for i in range(runs + 1):
            t = time.monotonic()
            timings = ask(url, server.api_key, f"[{i}] {PROMPT}", 96)  # [i]: defeats the cache
            if i == 0:
                continue  # warm-up
            short_wall.append(time.monotonic() - t)
            short_p.append(timings["prompt_per_second"])
            short_g.append(timings["predicted_per_second"])
        long_prompt = transcript(long_ideas)
        for i in range(runs):
            t = time.monotonic()
            timings = ask(url, server.api_key, f"[{i}] {long_prompt}", 32)
            long_wall.append(time.monotonic() - t)
            long_p.append(timings["prompt_per_second"])
            n_long = timings["prompt_n"]
            t = time.monotonic()
            timings = ask(url, server.api_key, f"[{i}] {long_prompt}\n{IDEAS[0]} (idée +1)", 32)
            cached_wall.append(time.monotonic() - t)
            cached_n.append(timings["cache_n"])
        rss_after = rss_mb(server.pid)
    finally:
        server.stop()
    med = statistics.median
    print(
        f"{name}: file {gguf.stat().st_size / 1e6:.0f} MB, threads={threads}, "
        f"resolve {resolved:.1f} s, load {load:.2f} s, RSS {rss_loaded:.0f} MB loaded / "
        f"{rss_after:.0f} MB after the runs"
    )
    print(
        f"  short prompt: prompt {med(short_p):6.1f} tok/s, generation {med(short_g):5.1f} tok/s, "
        f"answer of 96 tokens in {med(short_wall):.1f} s"
    )
    print(
        f"  long prompt ({n_long} tokens): prompt {med(long_p):6.1f} tok/s, "
        f"answer in {med(long_wall):.1f} s; the same with one idea appended: "
        f"{med(cached_wall):.1f} s ({med(cached_n):.0f} tokens from the cache)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=[m for m in MODELS if MODELS[m].installed()])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-ideas", type=int, default=30, help="ideas in the long prompt")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-llm-"))
    for name in args.models:
        bench(name, args.threads, args.runs, data_dir, args.long_ideas)


if __name__ == "__main__":
    main()
