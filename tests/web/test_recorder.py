"""Recording from a participant's device, in Chromium: its fake microphone plays an espeak-ng
sentence, the room streams it to the live transcription, and the transcript panel shows it
with the speaker's name (the bundled Whisper base, on the CPU)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from companion.store.models import TranscriptionJob
from tests.speech_audio import needs_speech_tools, speak
from tests.web.conftest import CHROMIUM, FLAGS, People, Served
from tests.world import Circle

pytestmark = [
    needs_speech_tools,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]

SENTENCE = "Bonjour à tous. Je voudrais parler de mon équipe, qui est très fatiguée."
HEARD = ("bonjour", "parler", "équipe", "fatigu")


@pytest.fixture
def microphone(tmp_path: Path) -> Path:
    """The sentence as a 16 kHz mono WAV, which Chromium's fake capture plays in a loop."""
    return speak(SENTENCE, "fr", tmp_path / "sentence", "wav")


@pytest.fixture
def with_microphone(chromium: Any, microphone: Path, served: Served) -> Iterator[People]:
    """Like `people`, in a Chromium of its own whose microphone is the WAV, with permission
    (launched by the session's Playwright: a second one cannot run beside it)."""
    args = [
        *FLAGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
    ]
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, args=args)
    crowd = People(browser, served)
    try:
        yield crowd
    finally:
        problems = [f"{who.name}: {msg}" for who in crowd.people for msg in who.problems]
        crowd.close()
        browser.close()
    assert not problems, "\n".join(problems)


def test_a_consultant_records_the_room_from_their_browser(
    served: Served, with_microphone: People
) -> None:
    state: Any = served.api.client.app.state.companion  # type: ignore[attr-defined]
    # Short live passes, so the first words are final within seconds, not after 20 s.
    state.settings = state.settings.updated(**{"live_window_s": 6, "live_hold_s": 2})
    circle = Circle.create(served.api)
    circle.advance_to("presentation")
    consultant_id, _ = circle.consultants[0]
    link = served.api.ok(
        "POST", f"/api/v1/users/{consultant_id}/invitations", served.api.admin_token
    )
    anatole = with_microphone.open("Anatole", link["path"])
    page = anatole.page
    page.goto(served.url + circle.path())

    panel = page.locator("#recorder")
    panel.wait_for(state="visible")
    record = page.get_by_role("button", name="Enregistrer depuis cet appareil")
    assert record.get_attribute("aria-pressed") == "false"
    record.click()
    stop = page.get_by_role("button", name="Arrêter l'enregistrement")
    stop.wait_for()
    assert stop.get_attribute("aria-pressed") == "true"
    status = page.locator("#recorder-state")
    page.wait_for_function(
        "() => document.getElementById('recorder-state').textContent.includes('Anatole')",
        timeout=15_000,
    )
    assert "Enregistrement en cours" in status.inner_text()
    page.wait_for_function(  # the meter follows the voice
        "() => document.getElementById('recorder-level').value > 0", timeout=10_000
    )

    transcript = page.locator("#transcript")
    page.wait_for_function(
        """() => {
            const t = document.getElementById('transcript');
            return t && /bonjour|parler|équipe|fatigu/i.test(t.textContent)
                && t.textContent.includes('Anatole');
        }""",
        timeout=60_000,
    )
    heard = transcript.inner_text().casefold()
    assert any(word in heard for word in HEARD), heard
    assert "Anatole" in transcript.inner_text()
    assert page.locator("#recorder-problem").is_hidden()
    anatole.shot("room-recording")

    stop.click()
    page.wait_for_function(
        "() => document.getElementById('recorder-state').textContent.includes('arrêté')",
        timeout=60_000,
    )
    assert record.get_attribute("aria-pressed") == "false"
    jobs = served.api.ok("GET", circle.path("/transcript"), circle.client[1])
    speakers = {s["speaker"] for s in jobs["segments"]}
    assert speakers == {"Anatole"}
    assert any(re.search("|".join(HEARD), s["text"], re.I) for s in jobs["segments"])

    # Recording again; the facilitator ends the phase: the stream stops and the panel says why.
    record.click()
    page.wait_for_function(
        "() => document.getElementById('recorder-state').textContent.includes('Anatole')",
        timeout=15_000,
    )
    circle.phase("presentation", "end")
    problem = page.locator("#recorder-problem")
    problem.wait_for(state="visible", timeout=30_000)
    assert "La phase est terminée" in problem.inner_text()
    assert record.get_attribute("aria-pressed") == "false"
    assert page.locator("#recorder").is_visible()  # what it says stays readable


def test_the_panel_follows_the_phase_and_says_why_there_is_no_microphone(
    served: Served, people: People
) -> None:
    circle = Circle.create(served.api)  # no phase runs yet
    consultant_id, _ = circle.consultants[0]
    link = served.api.ok(
        "POST", f"/api/v1/users/{consultant_id}/invitations", served.api.admin_token
    )
    anatole = people.open("Anatole", link["path"])  # the shared Chromium: no microphone allowed
    page = anatole.page
    page.goto(served.url + circle.path())
    page.locator("#phase-panel .phasebar").wait_for()
    assert page.locator("#recorder").is_hidden()
    circle.phase("presentation", "start")  # the phase bar follows, and so does the panel
    page.locator("#recorder").wait_for(state="visible", timeout=10_000)
    page.get_by_role("button", name="Enregistrer depuis cet appareil").click()
    problem = page.locator("#recorder-problem")
    problem.wait_for(state="visible", timeout=10_000)
    # No microphone on a test machine, or one the context was not allowed to use.
    said = problem.inner_text()
    assert "Aucun micro n'est branché" in said or "micro a été refusé" in said, said
    assert page.get_by_role("button", name="Enregistrer depuis cet appareil").is_visible()
    anatole.shot("room-recorder-refused")


def test_without_audio_worklet_the_browser_sends_webm_opus(
    served: Served, with_microphone: People
) -> None:
    state: Any = served.api.client.app.state.companion  # type: ignore[attr-defined]
    state.settings = state.settings.updated(**{"live_window_s": 6, "live_hold_s": 2})
    circle = Circle.create(served.api)
    circle.advance_to("presentation")
    link = served.api.ok(
        "POST", f"/api/v1/users/{circle.client[0]}/invitations", served.api.admin_token
    )
    berenice = with_microphone.open("Bérénice", link["path"])
    page = berenice.page
    page.add_init_script("delete window.AudioWorkletNode;")  # an older browser
    page.goto(served.url + circle.path())
    page.get_by_role("button", name="Enregistrer depuis cet appareil").click()
    page.wait_for_function(
        """() => {
            const t = document.getElementById('transcript');
            return t && /bonjour|parler|équipe|fatigu/i.test(t.textContent)
                && t.textContent.includes('Bérénice');
        }""",
        timeout=60_000,
    )
    page.get_by_role("button", name="Arrêter l'enregistrement").click()
    page.wait_for_function(
        "() => document.getElementById('recorder-state').textContent.includes('arrêté')",
        timeout=60_000,
    )
    with state.sessions() as db:
        formats = db.scalars(select(TranscriptionJob.audio_format)).all()
    assert formats == ["live/webm"]
