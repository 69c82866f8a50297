"""The room's live figure: from a transcript segment becoming final to it showing in another
participant's open page, measured in Chromium.

    python bench/page.py [--segments 20] [--pages 4]

A served instance on loopback (embedded defaults, no model) and `--pages` signed-in browser
contexts on the session room. Each segment is stored exactly as a live pass stores one (a job's
transcript, sealed, committed); the clock starts at the commit and stops when the segment's text
is in every open page (a MutationObserver in the page records when; the page and this script
share the machine's clock through `performance.timeOrigin`). Prints p50/p95/max over the
segments, for the first page and for the slowest; target <= 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from playwright.sync_api import sync_playwright  # noqa: E402

from companion.speech.transcriber import Segment  # noqa: E402
from companion.store.keyring import Keyring  # noqa: E402
from companion.store.models import TranscriptionJob, new_id  # noqa: E402
from tests.web.conftest import CHROMIUM, FLAGS, serve  # noqa: E402
from tests.world import Circle  # noqa: E402

# Records in window.shownAt when the marker's text first appears in the transcript panel.
WATCH = """(marker) => {
  window.shownAt = null;
  const seen = () => document.querySelector('#transcript') &&
    document.querySelector('#transcript').textContent.includes(marker);
  const obs = new MutationObserver(() => {
    if (seen()) { obs.disconnect(); window.shownAt = performance.timeOrigin + performance.now(); }
  });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def store(circle: Circle, text: str) -> float:
    """One final segment, stored as the live worker stores it; returns the commit's time (ms)."""
    state = circle.api.client.app.state.companion  # type: ignore[attr-defined]
    from companion.speech.jobs import store_transcript

    with state.sessions() as db, db.begin():
        job = TranscriptionJob(
            id=new_id(), group_id=circle.group_id, session_id=circle.session_id,
            phase="presentation", status="done", progress=1.0, audio_seconds=2.0,
            kind="live", audio_format="live/pcm16", audio_kept=False, attempts=1,
            uploaded_by=circle.client[0],
        )  # fmt: skip
        db.add(job)
        db.flush()
        store_transcript(db, Keyring(db, state.master), job, [Segment(0.0, 2.0, text)])
    return time.time() * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--pages", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp)) as served:
        circle = Circle.create(served.api)
        circle.advance_to("presentation")
        room = f"{served.url}/groups/{circle.group_id}/sessions/{circle.session_id}"
        people = [circle.facilitator, *circle.members][: args.pages]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            pages = []
            for user_id, _ in people:
                link = served.api.ok(
                    "POST", f"/api/v1/users/{user_id}/invitations", served.api.admin_token
                )
                page = browser.new_context().new_page()
                page.goto(served.url + link["path"])
                page.locator("form button[type=submit]").click()
                page.wait_for_url(served.url + "/")
                page.goto(room)
                page.wait_for_selector("#live-state[data-state=open]")
                pages.append(page)
            first: list[float] = []
            slowest: list[float] = []
            for n in range(args.segments):
                marker = f"segment-{n}-{new_id()[:8]}"
                for page in pages:
                    page.evaluate(WATCH, marker)
                committed = store(circle, f"Phrase {marker} dite dans la salle.")
                shown = [
                    page.wait_for_function("() => window.shownAt", timeout=10_000).json_value()
                    for page in pages
                ]
                lags = [s - committed for s in shown]
                first.append(lags[0])
                slowest.append(max(lags))
                time.sleep(0.2)
            browser.close()
    for name, lags in (("first page", first), (f"slowest of {len(people)} pages", slowest)):
        q = statistics.quantiles(lags, n=20, method="inclusive") if len(lags) > 1 else lags * 19
        print(
            f"{name}: p50 {statistics.median(lags):.0f} ms, p95 {q[18]:.0f} ms, "
            f"max {max(lags):.0f} ms over {len(lags)} segments (target <= 1000 ms)"
        )


if __name__ == "__main__":
    main()
