"""The live WebSocket from the web app: the session cookie and the page's CSRF token instead of
a bearer token, and the handshake's Origin checked (no cross-site WebSocket hijacking)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from companion.store.models import TranscriptionJob
from tests.test_speech_live import EchoTranscriber, _closed, _speech, _until_final, _url, pcm
from tests.world import Api, Circle

HOST = "http://testserver"  # what TestClient sends as the Host


@pytest.fixture
def echo(client: TestClient) -> EchoTranscriber:
    fake = EchoTranscriber()
    _speech(client).transcriber = fake
    return fake


@pytest.fixture
def circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.phase("presentation", "start")
    return circle


def _refused(browser: TestClient, url: str, start: dict[str, Any], **kwargs: Any) -> Any:
    with browser.websocket_connect(url, **kwargs) as ws:
        ws.send_json(start)
        return _closed(ws)


def test_a_signed_in_browser_streams_with_its_csrf_token(client, circle, echo):
    consultant_id, _ = circle.consultants[0]
    browser, csrf = circle.api.browser(consultant_id)
    with browser.websocket_connect(_url(circle), headers={"Origin": HOST}) as ws:
        ws.send_json({"type": "start", "csrf": csrf, "format": "pcm16"})
        ready = ws.receive_json()
        assert ready["type"] == "ready", ready
        assert (ready["speaker"], ready["format"]) == ("Anatole", "pcm16")
        ws.send_bytes(pcm(2.0))
        ws.send_json({"type": "end"})
        _, final, errors = _until_final(ws)
        closed = _closed(ws)
    assert closed.code == 1000
    assert errors == []
    assert final["count"] == 1
    segments = circle.api.ok("GET", circle.path("/transcript"), circle.client[1])["segments"]
    assert [s["speaker"] for s in segments] == ["Anatole"]
    with client.app.state.companion.sessions() as db:
        assert db.get(TranscriptionJob, final["job_id"]).uploaded_by == consultant_id
    # Without an Origin (not a browser's page) the cookie and the token are enough.
    with browser.websocket_connect(_url(circle)) as ws:
        ws.send_json({"type": "start", "csrf": csrf})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "end"})
        _until_final(ws)


def test_a_token_still_wins_over_the_cookie(client, circle, echo):
    browser, _ = circle.api.browser(circle.consultants[0][0])
    with browser.websocket_connect(_url(circle)) as ws:
        ws.send_json({"type": "start", "token": circle.client[1], "csrf": "whatever"})
        ready = ws.receive_json()
        assert ready["speaker"] == "Bérénice"  # the token's person, not the cookie's
        ws.send_json({"type": "end"})
        _until_final(ws)
    # A wrong token with a good cookie is refused as a wrong token is.
    closed = _refused(browser, _url(circle), {"type": "start", "token": "cc_nope_nope"})
    assert closed.code == 1008
    assert closed.reason.startswith("This token is unknown, revoked or expired")


def test_the_cookie_needs_its_csrf_token_and_this_sites_origin(client, api, circle, echo):
    consultant_id, _ = circle.consultants[0]
    browser, csrf = api.browser(consultant_id)
    url = _url(circle)
    cases = {
        "a forged csrf token": (browser, {"csrf": "forged"}, {"Origin": HOST}, "CSRF"),
        "no cookie": (TestClient(client.app), {"csrf": csrf}, {"Origin": HOST}, "not signed in"),
        "another site": (browser, {"csrf": csrf}, {"Origin": "https://evil.example"}, "another"),
        "another port": (browser, {"csrf": csrf}, {"Origin": "http://testserver:8080"}, "another"),
        "an opaque origin": (browser, {"csrf": csrf}, {"Origin": "null"}, "origin"),
        "neither token nor csrf": (browser, {}, {"Origin": HOST}, "token"),
    }
    for name, (who, start, headers, says) in cases.items():
        closed = _refused(who, url, {"type": "start", "format": "pcm16", **start}, headers=headers)
        assert closed.code == 1008, (name, closed.code, closed.reason)
        assert says in closed.reason, (name, closed.reason)

    outsider, outsider_csrf = api.browser(circle.outsider[0])
    closed = _refused(outsider, url, {"type": "start", "csrf": outsider_csrf})
    assert closed.code == 1008
    assert "group" in closed.reason

    cookie = browser.cookies.get("companion_session")
    assert browser.post("/signout", data={"csrf_token": csrf}).status_code == 200
    replay = TestClient(client.app, cookies={"companion_session": cookie})
    closed = _refused(replay, url, {"type": "start", "csrf": csrf}, headers={"Origin": HOST})
    assert closed.code == 1008
    assert "expired or was closed" in closed.reason

    with client.app.state.companion.sessions() as db:  # none of them opened a job
        assert db.scalars(select(TranscriptionJob.id)).all() == []
    assert echo.seconds == []


def test_the_public_address_is_this_sites_origin_behind_a_proxy(client, api, circle, echo):
    browser, csrf = api.browser(circle.consultants[0][0])  # over http: before the change
    state = client.app.state.companion
    state.settings = state.settings.updated(**{"public_url": "https://companion.example.org"})
    proxied = {"Origin": "https://companion.example.org"}  # the proxy sent Host: testserver
    with browser.websocket_connect(_url(circle), headers=proxied) as ws:
        ws.send_json({"type": "start", "csrf": csrf})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "end"})
        _until_final(ws)
    other = {"Origin": "https://companion.example.org.evil.example"}
    closed = _refused(browser, _url(circle), {"type": "start", "csrf": csrf}, headers=other)
    assert closed.code == 1008
