"""The group's home page and the administration pages: what each role reads there."""

from __future__ import annotations

from html import unescape

from fastapi.testclient import TestClient

from companion.llm import audit as model_calls
from tests.test_followup import _session_with_plan
from tests.world import Api, Circle


def _admin_id(api: Api) -> str:
    return next(uid for uid, token in api.tokens.items() if token == api.admin_token)


def test_a_member_sees_the_follow_up_members_and_sessions(api: Api) -> None:
    circle = Circle.create(api)
    actions = _session_with_plan(circle)
    consultant = api.browser(circle.consultants[0][0])[0]
    page = consultant.get(f"/groups/{circle.group_id}")
    assert page.status_code == 200
    html = unescape(page.text)
    assert '<html lang="fr"' in html  # the group's language by default
    assert "Cercle des directrices" in html
    for name in ("Faustine", "Bérénice", "Anatole", "Zoé", "Kwame"):
        assert name in html
    assert "Suivi des plans d'action" in html
    assert "Comment puis-je déléguer le reporting ?" in html
    assert "Je commence par lister mes tâches." in html  # what the client will do first
    assert "En parler lundi" in html  # an action's first step
    assert "En retard" in html  # the 2020 action
    assert '<time datetime="2020-03-01">' in html
    assert f'href="/groups/{circle.group_id}/sessions/{circle.session_id}"' in html
    # Only the plan's client notes progress on it; only facilitators manage the group.
    assert f"/actions/{actions[0]['id']}/progress" not in html
    for facilitator_only in (
        'id="add-person"',
        "data-new-link",
        f'hx-post="/api/v1/groups/{circle.group_id}/sessions"',
        f'hx-post="/api/v1/groups/{circle.group_id}/cycles',
    ):
        assert facilitator_only not in html
    client_page = unescape(api.browser(circle.client[0])[0].get(f"/groups/{circle.group_id}").text)
    assert f"/actions/{actions[0]['id']}/progress" in client_page
    assert 'id="add-person"' not in client_page


def test_the_facilitator_gets_the_forms_and_the_rotation_proposal(api: Api) -> None:
    circle = Circle.create(api)
    _session_with_plan(circle)
    html = unescape(api.browser(circle.facilitator[0])[0].get(f"/groups/{circle.group_id}").text)
    assert 'id="add-person"' in html
    assert f'data-invite-path="/api/v1/groups/{circle.group_id}/invitations"' in html
    assert f'data-new-link="{circle.client[0]}"' in html
    assert f'hx-post="/api/v1/groups/{circle.group_id}/cycles/{circle.cycle_id}/close"' in html
    # Bérénice has been client: the proposal is the next member, preselected.
    anatole = circle.members[1][0]
    assert f'<option value="{anatole}" selected>Anatole' in html
    assert f'<option value="{circle.client[0]}"' not in html
    assert "1 séance(s) prévue(s) sur 4" in html


def test_a_facilitator_without_a_cycle_is_offered_to_start_one(api: Api) -> None:
    fac_id, _fac = api.user("Faustine")
    group = api.ok(
        "POST",
        "/groups",
        api.admin_token,
        json={"name": "Circle", "language": "en", "facilitator_ids": [fac_id]},
    )
    html = unescape(api.browser(fac_id)[0].get(f"/groups/{group['id']}").text)
    assert '<html lang="en"' in html
    assert "No open cycle." in html
    assert f'hx-post="/api/v1/groups/{group["id"]}/cycles"' in html
    assert "Start a cycle to plan sessions." in html


def test_an_outsider_or_a_stranger_learns_nothing_of_the_group(api: Api) -> None:
    circle = Circle.create(api)
    other = Circle.create(api, group_name="Autre cercle", facilitator="Fabrice")
    outsider = api.browser(circle.outsider[0])[0]
    page = outsider.get(f"/groups/{circle.group_id}")
    assert page.status_code == 404
    assert "Cercle des directrices" not in page.text
    assert "Bérénice" not in page.text
    # A member of another group, too; and the administrator who is not a member.
    assert api.browser(other.client[0])[0].get(f"/groups/{circle.group_id}").status_code == 404
    admin_page = api.browser(_admin_id(api))[0].get(f"/groups/{circle.group_id}")
    assert admin_page.status_code == 404
    assert "Cercle des directrices" not in admin_page.text
    anonymous = TestClient(api.client.app).get(f"/groups/{circle.group_id}")
    assert anonymous.status_code == 401
    assert "Cercle des directrices" not in anonymous.text


def test_the_admin_pages_are_for_administrators_only(api: Api) -> None:
    circle = Circle.create(api)
    facilitator = api.browser(circle.facilitator[0])[0]
    anonymous = TestClient(api.client.app)
    for path in ("/admin", "/admin/model-calls", "/admin/system"):
        assert facilitator.get(path).status_code == 403, path
        assert anonymous.get(path).status_code == 401, path
    assert 'href="/admin"' not in facilitator.get("/").text


def test_the_administrator_manages_people_and_group_settings_not_content(api: Api) -> None:
    circle = Circle.create(api)
    _session_with_plan(circle)
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db, db.begin():
        model_calls.record(
            db,
            group_id=circle.group_id,
            purpose="contract.suggest",
            endpoint_host="127.0.0.1",
            model="qwen-test",
            policy="on_prem",
            decision="allowed",
            error=None,
            duration_ms=120,
            prompt_tokens=50,
            completion_tokens=12,
        )
    admin = api.browser(_admin_id(api))[0]
    people = admin.get("/admin")
    assert people.status_code == 200
    html = unescape(people.text)
    for name in ("Faustine", "Bérénice", "Oscar Outsider"):
        assert name in html
    assert f'data-new-link="{circle.client[0]}"' in html
    assert 'id="create-person"' in html
    assert 'id="create-group"' in html
    assert "Cercle des directrices" in html  # its settings, as PATCH /groups/{id} answers
    assert f'data-group-policy="/api/v1/groups/{circle.group_id}"' in html
    assert f'href="/groups/{circle.group_id}"' not in html  # not a member: no way in
    calls = unescape(admin.get("/admin/model-calls").text)
    assert "contract.suggest" in calls
    assert "qwen-test" in calls
    one = admin.get(f"/admin/model-calls?group_id={circle.group_id}").text
    assert "contract.suggest" in one
    assert admin.get("/admin/model-calls?group_id=nope").status_code == 404
    system = unescape(admin.get("/admin/system").text)
    assert "Le service est prêt." in system
    assert "Éteint" in system  # COMPANION_LLM_LOCAL_MODEL=off in tests
    assert "File de transcription" in system
    for page in (html, calls, system):
        assert "Comment puis-je déléguer le reporting ?" not in page
        assert "En parler lundi" not in page


def test_the_llm_state_reads_as_the_page_says_it() -> None:
    from api.web.routes.admin import llm_status

    assert llm_status("local model ready") == "ready"
    assert llm_status("remote") == "ready"
    assert llm_status("local model loading") == "loading"
    assert llm_status("local model unavailable: out of memory") == "unavailable"
    assert llm_status("local model loads on first use") == "on_demand"
    assert llm_status("no local model installed") == "off"


def test_a_member_searches_the_memory_from_the_page(api: Api) -> None:
    circle = Circle.create(api)
    _session_with_plan(circle)
    browser = api.browser(circle.consultants[0][0])[0]
    page = browser.get(f"/groups/{circle.group_id}", params={"q": "déléguer le reporting"})
    assert page.status_code == 200
    html = unescape(page.text)
    assert "Trouvé pour « déléguer le reporting »" in html
    assert f'href="/groups/{circle.group_id}/sessions/{circle.session_id}#phase-' in html
    assert 'value="déléguer le reporting"' in html


def test_an_administrator_who_joins_a_group_and_a_link_made_for_a_member_show_to_its_facilitators(
    api: Api,
) -> None:
    """Issue 14: an administrator reads a group only as a member; becoming one, and a sign-in
    link made for a member (it signs in as them), are in the group's audit and on its page."""
    circle = Circle.create(api)
    admin_id = _admin_id(api)
    gid = circle.group_id
    assert api.call("GET", f"/groups/{gid}/sessions", api.admin_token).status_code == 404
    api.ok("POST", f"/groups/{gid}/members", api.admin_token, json={"user_id": admin_id})
    assert api.call("GET", f"/groups/{gid}/sessions", api.admin_token).status_code == 200
    api.ok("POST", f"/api/v1/users/{circle.client[0]}/invitations", api.admin_token)
    audit = api.ok("GET", f"/groups/{gid}/audit", circle.facilitator[1])
    actions = [(e["action"], e["actor_id"], e["target_id"]) for e in audit]
    assert ("member.admin_joined", admin_id, admin_id) in actions
    assert ("invitation.create", admin_id, circle.client[0]) in actions
    # A facilitator adding a member is the ordinary event.
    assert ("member.add", circle.facilitator[0], circle.members[1][0]) in actions
    html = unescape(api.browser(circle.facilitator[0])[0].get(f"/groups/{gid}").text)
    assert "Admin, administrateur, s'est ajouté au groupe" in html
    assert "Admin a créé un lien de connexion pour Bérénice." in html
    # Members who do not facilitate do not get the list.
    member = unescape(api.browser(circle.members[1][0])[0].get(f"/groups/{gid}").text)
    assert "Accès au groupe" not in member
