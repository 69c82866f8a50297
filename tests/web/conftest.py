"""Browser tests: a real service on a free loopback port and Debian's Chromium, headless,
driven by Playwright (never `playwright install`). Skipped where Chromium is not installed;
.ci/run installs it. Screenshots go to test-artifacts/screens/.

Every page opened through `people` fails its test on a JavaScript error, a console error, a
request to anything but the service itself, or an API POST without an Idempotency-Key.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.main import create_app
from companion.config import Settings
from tests.doubles.openai_double import OpenAIDouble
from tests.world import Api

CHROMIUM = os.environ.get("COMPANION_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screens"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """The service on loopback, with the API client of tests/world.py beside it."""

    url: str
    settings: Settings
    api: Api
    double: OpenAIDouble


@contextmanager
def serve(tmp: Path, **overrides: Any) -> Iterator[Served]:
    """The service on a free loopback port (its model: the double), until the block ends."""
    port = _free_port()
    with OpenAIDouble() as double:
        values: dict[str, Any] = {
            "data_dir": tmp / "data",
            "llm_local_model": "off",
            "llm_base_url": double.url,
            "host": "127.0.0.1",
            "port": port,
            "assist_poll_s": 0.5,
            **overrides,
        }
        settings = Settings(**values)
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        client = TestClient(app)  # shares the running app's state (no second lifespan)
        api = Api.bootstrap(client, settings)
        try:
            yield Served(f"http://127.0.0.1:{port}", settings, api, double)
        finally:
            server.should_exit = True
            thread.join(30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@dataclass
class Person:
    """One participant's browser context, signed in by their invitation link."""

    name: str
    page: Any
    problems: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)  # error statuses a test provokes on purpose

    def shot(self, label: str) -> Path:
        SCREENS.mkdir(parents=True, exist_ok=True)
        path = SCREENS / f"{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


class People:
    def __init__(self, chromium: Any, served: Served) -> None:
        self.chromium, self.served = chromium, served
        self.contexts: list[Any] = []
        self.people: list[Person] = []

    def open(
        self,
        name: str,
        link_path: str | None,
        *,
        viewport: dict[str, int] | None = None,
        locale: str = "fr-FR",
        **context_args: Any,
    ) -> Person:
        context = self.chromium.new_context(
            viewport=viewport or {"width": 1280, "height": 900}, locale=locale, **context_args
        )
        self.contexts.append(context)
        page = context.new_page()
        person = Person(name, page)
        origin = self.served.url
        page.on("pageerror", lambda exc: person.problems.append(f"page error: {exc}"))

        def console(msg: Any) -> None:
            # A failed load is judged by its response below; anything else is a page's error.
            if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                where = msg.location.get("url", "") if msg.location else ""
                person.problems.append(f"console {msg.type}: {msg.text} ({where})")

        def answered(response: Any) -> None:
            document = response.request.resource_type == "document"
            if response.status >= 400 and not document and response.status not in person.allowed:
                person.problems.append(f"{response.status} from {response.url}")

        page.on("console", console)
        page.on("response", answered)

        def outside(request: Any) -> None:
            if not request.url.startswith((origin, "data:", "blob:")):
                person.problems.append(f"request outside the service: {request.url}")
            # Every creating call of a page is safe to send again (api/idempotency.py).
            api_post = request.method == "POST" and request.url.startswith(origin + "/api/v1/")
            if api_post and "idempotency-key" not in request.headers:
                person.problems.append(f"POST without an Idempotency-Key: {request.url}")

        page.on("request", outside)
        if link_path is not None:
            page.goto(origin + link_path)
            page.get_by_role(
                "button", name=("Entrer" if locale.startswith("fr") else "Come in")
            ).click()
            page.wait_for_url(origin + "/")
        self.people.append(person)
        return person

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def people(chromium: Any, served: Served) -> Iterator[People]:
    crowd = People(chromium, served)
    yield crowd
    problems = [f"{p.name}: {msg}" for p in crowd.people for msg in p.problems]
    crowd.close()
    assert not problems, "\n".join(problems)
