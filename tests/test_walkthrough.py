"""The README's walkthrough, run for real: `companion serve` in a subprocess, then curl."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_walkthrough_runs_against_a_served_instance(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # The walkthrough is text only. Where a local model is installed, the background review
        # of its clarifying questions would load it, and a stop waits for a load under way (so
        # no model server outlives the service): seconds on a busy machine.
        env={**os.environ, "COMPANION_LLM_LOCAL_MODEL": "off"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the service did not become ready")
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "walkthrough.sh"), base, str(data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == [
            "closed",
            "Comment puis-je confier le reporting mensuel à mon équipe d’ici l’été ?",
            "Confier le reporting",
        ]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert "Created a new master key" in output
