"""The group's home in Chromium: the facilitator adds a person and hands them their link, then
plans the next session with the rotation's proposal."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from tests.test_followup import _session_with_plan
from tests.web.conftest import People, Served
from tests.world import Circle


def test_the_facilitator_adds_a_person_and_plans_the_next_session(
    served: Served, people: People
) -> None:
    api = served.api
    circle = Circle.create(api)
    _session_with_plan(circle)  # Bérénice's session is over; her plan is followed up
    link = api.ok("POST", f"/api/v1/users/{circle.facilitator[0]}/invitations", api.admin_token)
    faustine = people.open(
        "Faustine", link["path"], permissions=["clipboard-read", "clipboard-write"]
    )
    page = faustine.page
    page.get_by_role("link", name="Cercle des directrices").click()
    page.wait_for_url(f"{served.url}/groups/{circle.group_id}")
    assert page.get_by_role("heading", name="Suivi des plans d'action").is_visible()
    assert page.get_by_text("Comment puis-je déléguer le reporting ?").is_visible()

    # A new person, and their one-time link, copied from the page.
    page.get_by_label("Nom", exact=True).fill("Noémie")
    page.get_by_role("button", name="Ajouter et créer son lien").click()
    field = page.locator("#add-person-link .link-url")
    field.wait_for()
    url = field.input_value()
    assert "/join/" in url
    assert page.locator("#member-list").get_by_text("Noémie").is_visible()
    assert page.locator("#add-person-link time").get_attribute("datetime")
    page.locator("#add-person-link").get_by_role("button", name="Copier").click()
    page.locator("#add-person-link").get_by_role("button", name="Copié").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == url

    noemie = people.open("Noémie", urlsplit(url).path)
    assert noemie.page.get_by_role("link", name="Cercle des directrices").is_visible()

    # The next session: the rotation proposes Anatole (Bérénice has been client).
    page.reload()
    choice = page.get_by_label("Prévoir la prochaine séance, avec comme client·e")
    assert choice.input_value() == circle.members[1][0]
    faustine.shot("group-home")
    page.get_by_role("button", name="Prévoir la séance").click()
    page.get_by_role("link", name="Séance de Anatole").wait_for()
    assert page.get_by_text("Séance prévue.").is_visible()
    sessions = api.ok("GET", f"/groups/{circle.group_id}/sessions", circle.facilitator[1])
    assert [s["client"]["name"] for s in sessions] == ["Bérénice", "Anatole"]


def test_the_group_home_fits_a_phone(served: Served, people: People) -> None:
    api = served.api
    circle = Circle.create(api)
    _session_with_plan(circle)
    link = api.ok("POST", f"/api/v1/users/{circle.client[0]}/invitations", api.admin_token)
    berenice = people.open("Bérénice", link["path"], viewport={"width": 390, "height": 844})
    page = berenice.page
    page.goto(f"{served.url}/groups/{circle.group_id}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    # The client notes progress on her own plan from the page.
    page.get_by_text("Noter un avancement ou changer le statut").first.click()
    page.get_by_label("Note d'avancement").first.fill("Liste des tâches faite.")
    page.get_by_role("button", name="Ajouter la note").first.click()
    page.get_by_text("Note d'avancement ajoutée.").wait_for()
    assert page.get_by_text("Liste des tâches faite.").is_visible()
    # She asks the memory; the answer's citation leads to where it was said.
    served.double.reply(json.dumps({"answer": "Déléguer le reporting [1].", "citations": [1]}))
    page.get_by_label("Poser une question à la mémoire").fill("Que voulais-je déléguer ?")
    page.get_by_role("button", name="Demander").click()
    page.locator("#ask-answer .answer").wait_for()
    assert page.locator("#ask-answer .answer").inner_text() == "Déléguer le reporting [1]."
    cited = page.locator("#ask-answer .citations a").first
    href = cited.get_attribute("href") or ""
    assert href.startswith(f"/groups/{circle.group_id}/sessions/{circle.session_id}#phase-")
    assert cited.inner_text().startswith("[1] ")
    berenice.shot("group-home-phone")


def test_the_administrator_creates_a_person_and_a_group(served: Served, people: People) -> None:
    api = served.api
    admin_id = next(uid for uid, token in api.tokens.items() if token == api.admin_token)
    link = api.ok("POST", f"/api/v1/users/{admin_id}/invitations", api.admin_token)
    anne = people.open("Admin", link["path"])
    page = anne.page
    page.get_by_role("link", name="Administration").first.click()
    page.wait_for_url(f"{served.url}/admin")
    page.get_by_label("Nom", exact=True).fill("Faustine")
    page.get_by_role("button", name="Créer et faire son lien").click()
    field = page.locator("#create-person-link .link-url")
    field.wait_for()
    assert "/join/" in field.input_value()
    page.get_by_label("Nom du groupe").fill("Cercle du jeudi")
    page.get_by_label("Animateur·rice").select_option(label="Faustine")
    page.get_by_role("button", name="Créer le groupe").click()
    page.get_by_text("Groupe créé.").wait_for()
    page.get_by_label("Garder les enregistrements après la transcription").check()
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("Réglages de Cercle du jeudi enregistrés.").wait_for()
    anne.shot("admin-people-groups")
    fac_id = next(
        u["id"] for u in api.ok("GET", "/api/v1/users", api.admin_token) if u["name"] == "Faustine"
    )
    # Faustine signs in by an invitation link (nobody mints a token for another person).
    faustine, _csrf = api.browser(fac_id)
    [group] = faustine.get("/api/v1/groups").json()
    assert group["name"] == "Cercle du jeudi"
    assert group["keep_audio"] is True
    assert group["my_role"] == "facilitator"
    page.get_by_role("link", name="État et file d'attente").click()
    assert page.get_by_text("Le service est prêt.").is_visible()
    anne.shot("admin-system")
