"""Local model figures on this machine: load time, prompt and generation tokens per second.

    python bench/llm.py [--models smollm2-135m qwen2.5-1.5b] [--threads 1]

Uses llama.cpp's own timings from each answer (prompt_per_second, predicted_per_second); the
median of three requests with a French co-development prompt, after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from companion.config import Settings
from companion.llm.local import MODELS, LocalServer, resolve

PROMPT = (
    "Voici l'exposé d'une cliente en séance de codéveloppement : « Je dirige une équipe de huit "
    "personnes. Je fais tout le reporting moi-même et je n'arrive plus à déléguer ; mes soirées y "
    "passent et mon équipe attend mes décisions. » Propose trois formulations de sa demande au "
    "groupe, chacune en une phrase commençant par « Comment puis-je »."
)


def bench(name: str, threads: int, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, llm_local_model=name)
    started = time.monotonic()
    gguf = resolve(settings)
    assert gguf is not None
    assembled = time.monotonic() - started
    server = LocalServer(gguf, threads=threads, ctx=4096)
    started = time.monotonic()
    url = server.start()
    load = time.monotonic() - started
    prompt_tps, gen_tps, walls = [], [], []
    try:
        for i in range(4):
            body = {
                "model": "local",
                "messages": [{"role": "user", "content": PROMPT + " " * i}],  # defeat the cache
                "max_completion_tokens": 96,
                "temperature": 0,
            }
            t = time.monotonic()
            answer = httpx.post(f"{url}/chat/completions", json=body, timeout=600).json()
            if i == 0:
                continue  # warm-up
            walls.append(time.monotonic() - t)
            prompt_tps.append(answer["timings"]["prompt_per_second"])
            gen_tps.append(answer["timings"]["predicted_per_second"])
    finally:
        server.stop()
    print(
        f"{name:14s} threads={threads} file={gguf.stat().st_size / 1e6:7.0f} MB "
        f"resolve={assembled:5.1f} s load={load:5.1f} s "
        f"prompt={statistics.median(prompt_tps):6.1f} tok/s gen={statistics.median(gen_tps):5.1f} tok/s "
        f"answer(96 tok)={statistics.median(walls):5.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=[m for m in MODELS if MODELS[m].installed()])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-llm-"))
    for name in args.models:
        bench(name, args.threads, data_dir)


if __name__ == "__main__":
    main()
