"""Signing in from a browser: the setup link, invitations, the cookie, CSRF, sign-out."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from api.main import create_app
from companion.accounts import signin
from companion.config import Settings
from companion.runtime import open_store
from companion.store.models import Invitation, utcnow
from tests.world import Api


def _setup_link(settings: Settings) -> str:
    store = open_store(settings)
    with store.sessions() as db, db.begin():
        issued = signin.setup_link(db, timedelta(days=1))
    store.engine.dispose()
    assert issued is not None
    return f"/setup/{issued.token}"


def test_the_setup_link_creates_the_first_administrator_once(settings: Settings) -> None:
    with TestClient(create_app(settings)) as browser:
        assert "companion serve" in browser.get("/").text
        link = _setup_link(settings)
        page = browser.get(link)
        assert page.status_code == 200
        assert 'name="name"' in page.text
        signed = browser.post(link, data={"name": "Anne Admin"}, follow_redirects=False)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Anne Admin" in browser.get("/").text
        me = browser.get("/api/v1/users/me").json()
        assert me["is_admin"] is True
        again = TestClient(browser.app).post(link, data={"name": "Mallory"})
        assert again.status_code == 410
        assert "already used" in again.text


def test_an_invitation_signs_its_person_in_once(api: Api) -> None:
    fac_id, _ = api.user("Faustine")
    link = api.ok("POST", f"/api/v1/users/{fac_id}/invitations", api.admin_token)
    assert link["url"].endswith(link["path"])
    browser = TestClient(api.client.app)
    page = browser.get(link["path"])
    assert "Faustine" in page.text
    assert browser.get("/api/v1/users/me").status_code == 401  # the GET does not sign in
    assert browser.post(link["path"], follow_redirects=False).status_code == 303
    assert browser.get("/api/v1/users/me").json()["id"] == fac_id
    used = TestClient(api.client.app).post(link["path"])
    assert used.status_code == 410
    assert "already" in used.text


def test_wrong_and_expired_links_say_what_to_do(api: Api) -> None:
    uid, _ = api.user("Zoé")
    link = api.ok("POST", f"/api/v1/users/{uid}/invitations", api.admin_token)
    browser = api.client
    wrong = browser.get("/join/" + link["path"].rsplit("/", 1)[1][:-3] + "abc")
    assert wrong.status_code == 410
    assert "new link" in wrong.text
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db, db.begin():
        for row in db.query(Invitation).all():
            row.expires_at = utcnow() - timedelta(minutes=1)
    expired = browser.get(link["path"], headers={"Accept-Language": "fr"})
    assert expired.status_code == 410
    assert "a expiré" in expired.text


def test_changes_by_cookie_need_the_csrf_token(api: Api) -> None:
    fac_id, _ = api.user("Faustine")
    group = api.ok(
        "POST",
        "/groups",
        api.admin_token,
        json={"name": "Cercle", "language": "fr", "facilitator_ids": [fac_id]},
    )
    browser, csrf = api.browser(fac_id)
    path = f"/api/v1/groups/{group['id']}"
    change = {"keep_audio": True}
    refused = browser.patch(path, json=change)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert browser.patch(path, json=change, headers={"X-CSRF-Token": "forged"}).status_code == 403
    done = browser.patch(path, json=change, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200
    assert done.json()["keep_audio"] is True


def test_sign_out_ends_the_cookie(api: Api) -> None:
    uid, _ = api.user("Kwame")
    browser, csrf = api.browser(uid)
    cookie = browser.cookies.get("companion_session")
    assert browser.post("/signout", data={"csrf_token": "nope"}).status_code == 403
    out = browser.post("/signout", data={"csrf_token": csrf})
    assert out.status_code == 200
    replay = TestClient(api.client.app, cookies={"companion_session": cookie})
    res = replay.get("/api/v1/users/me")
    assert res.status_code == 401
    assert "invitation link" in res.json()["detail"]


def test_pages_carry_a_self_only_content_security_policy(api: Api) -> None:
    res = api.client.get("/")
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert res.headers["x-frame-options"] == "DENY"


def test_the_language_switch_stays_on_the_service(api: Api) -> None:
    back = api.client.get("/lang/en?next=//evil.example/x", follow_redirects=False)
    assert back.headers["location"] == "/"
    assert "companion_lang=en" in back.headers["set-cookie"]
    here = api.client.get("/lang/fr?next=/groups", follow_redirects=False)
    assert here.headers["location"] == "/groups"
