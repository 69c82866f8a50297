"""Signing in through the pages, in Chromium."""

from __future__ import annotations

from tests.web.conftest import People, Served


def test_an_invited_person_lands_on_their_groups(served: Served, people: People) -> None:
    api = served.api
    fac_id, _ = api.user("Faustine")
    group = api.ok(
        "POST",
        "/groups",
        api.admin_token,
        json={"name": "Cercle des cadres", "language": "fr", "facilitator_ids": [fac_id]},
    )
    link = api.ok("POST", f"/api/v1/users/{fac_id}/invitations", api.admin_token)
    faustine = people.open("Faustine", link["path"])
    page = faustine.page
    assert page.get_by_role("link", name="Cercle des cadres").is_visible()
    faustine.shot("signin-home-fr")
    page.get_by_role("link", name="English").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="My groups").is_visible()
    assert group["id"] in page.get_by_role("link", name="Cercle des cadres").get_attribute("href")


def test_a_used_link_says_what_to_do(served: Served, people: People) -> None:
    api = served.api
    uid, _ = api.user("Zoé")
    link = api.ok("POST", f"/api/v1/users/{uid}/invitations", api.admin_token)
    people.open("Zoé", link["path"])
    other = people.open("Zoé again", None)
    other.page.goto(served.url + link["path"])
    assert other.page.get_by_role("heading", name="Ce lien a déjà servi").is_visible()
