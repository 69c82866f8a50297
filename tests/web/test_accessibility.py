"""Accessibility of the participants' pages, in Chromium: axe-core's WCAG 2 A and AA rules on
every page a role sees (the room in each phase), no horizontal scroll on a 390-pixel phone,
and the facilitator's main actions with the keyboard alone.

axe-core is vendored for these tests only (tests/web/vendor/axe-core-<version>, with its
licences); the app never serves it. The pages' Content-Security-Policy ('self' only) refuses
the inline script tag `page.add_script_tag` would add, so the file's text is evaluated through
Playwright (`page.evaluate`, which the page's CSP does not govern): the CSP stays in force and
any inline script or style of the app still fails the test as a console error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.conftest import People, Person, Served
from tests.web.model import respond
from tests.world import Circle

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LIVE_MS = 5_000

# Every panel that loads itself has been filled (and none is being reloaded).
SETTLED = """() => !document.querySelector('.htmx-request, .htmx-settling, .htmx-swapping')
  && !document.querySelector('[hx-get] > p[aria-busy="true"]')"""


def _settle(page: Any) -> None:
    page.wait_for_function(SETTLED, timeout=LIVE_MS)
    page.wait_for_timeout(150)
    page.wait_for_function(SETTLED, timeout=LIVE_MS)


def _axe(page: Any, label: str) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']},"
        " resultTypes: ['violations']})"
    )
    problems = []
    for v in found["violations"]:
        targets = "; ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:6])
        problems.append(f"{label}: {v['id']} ({v['impact']}) {v['help']} at {targets}")
    return problems


def check(person: Person, label: str) -> list[str]:
    """axe on the page as it is (desktop), then the same page on a phone: axe again, no
    horizontal scroll, a screenshot."""
    page = person.page
    page.set_viewport_size(DESKTOP)
    _settle(page)
    problems = _axe(page, label)
    page.set_viewport_size(PHONE)
    _settle(page)
    problems += _axe(page, f"{label} (phone)")
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
              .filter((el) => el.getBoundingClientRect().right > 391)
              .slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                + (el.className && typeof el.className === 'string'
                   ? '.' + el.className.trim().split(/\\s+/).join('.') : ''))"""
        )
        problems.append(f"{label}: {width} px wide on a 390 px phone ({', '.join(wide)})")
    person.shot(f"phone-{label}")
    page.set_viewport_size(DESKTOP)
    return problems


def _invited(served: Served, people: People, name: str, user_id: str) -> Person:
    link = served.api.ok("POST", f"/api/v1/users/{user_id}/invitations", served.api.admin_token)
    return people.open(name, link["path"])


def _room(person: Person, room: str, phase: str | None) -> None:
    person.page.goto(room)
    person.page.wait_for_selector("#live-state[data-state=open]", timeout=LIVE_MS)
    if phase:
        person.page.wait_for_selector(f'#phase-{phase}[aria-current="step"]', timeout=LIVE_MS)


def test_every_page_passes_axe_and_fits_a_phone(served: Served, people: People) -> None:
    served.double.responder = respond
    api = served.api
    circle = Circle.create(api, names=("Bérénice", "Anatole", "Zoé"))
    room = served.url + f"/groups/{circle.group_id}/sessions/{circle.session_id}"
    group = f"{served.url}/groups/{circle.group_id}"
    problems: list[str] = []

    # Before signing in: the welcome page, an invitation, a link already used.
    stranger = people.open("Stranger", None)
    stranger.page.goto(served.url + "/")
    problems += check(stranger, "welcome")
    link = api.ok("POST", f"/api/v1/users/{circle.consultants[1][0]}/invitations", api.admin_token)
    stranger.page.goto(served.url + link["path"])
    problems += check(stranger, "join")

    fac = _invited(served, people, "Faustine", circle.facilitator[0])
    client = _invited(served, people, "Bérénice", circle.client[0])
    consultant = _invited(served, people, "Anatole", circle.consultants[0][0])
    problems += check(client, "home")
    admin_id = next(uid for uid, token in api.tokens.items() if token == api.admin_token)
    admin = _invited(served, people, "Admin", admin_id)
    for path, label in (("/admin", "admin"), ("/admin/model-calls", "admin-model-calls"),
                        ("/admin/system", "admin-system")):  # fmt: skip
        admin.page.goto(served.url + path)
        problems += check(admin, label)

    def note(token: str, body: str) -> None:
        api.ok("POST", circle.path("/notes"), token, json={"body": body})

    _room(fac, room, None)
    problems += check(fac, "room-0-planned-facilitator")

    circle.phase("presentation", "start")
    note(circle.client[1], "Je passe mes soirées à refaire le reporting de l'équipe.")
    for person, role in ((fac, "facilitator"), (client, "client"), (consultant, "consultant")):
        _room(person, room, "presentation")
        person.page.wait_for_selector("#notes >> text=reporting de l'équipe", timeout=LIVE_MS)
        problems += check(person, f"room-1-presentation-{role}")

    circle.phase("presentation", "end")
    circle.phase("clarification", "start")
    note(circle.consultants[0][1], "Avez-vous pensé à déléguer le reporting à Zoé ?")
    note(circle.consultants[1][1], "Depuis quand faites-vous ce reporting vous-même ?")
    _room(fac, room, "clarification")
    fac.page.wait_for_selector("#clarity >> text=conseil déguisé", timeout=LIVE_MS)
    problems += check(fac, "room-2-clarification-facilitator")
    _room(consultant, room, "clarification")
    problems += check(consultant, "room-2-clarification-consultant")

    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    _room(client, room, "contract")
    _settle(client.page)
    client.page.get_by_role("button", name="Proposer des formulations").click()
    client.page.locator("button.use-draft").first.wait_for(timeout=LIVE_MS * 4)
    problems += check(client, "room-3-contract-client")
    contract = "Comment puis-je confier le reporting à mon équipe sans perdre le fil ?"
    api.ok("PUT", circle.path("/contract"), circle.client[1], json={"text": contract})
    _room(fac, room, "contract")
    fac.page.wait_for_selector(f"#confirmed-contract >> text={contract}", timeout=LIVE_MS)
    problems += check(fac, "room-3-contract-facilitator")

    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    note(circle.consultants[0][1], "Tu pourrais confier le reporting à Zoé une semaine sur deux.")
    note(circle.consultants[1][1], "Un tableau partagé éviterait de tout refaire le soir.")
    note(circle.consultants[0][1], "Moi, j'ai appris à lâcher en fixant un point fixe le lundi.")
    for person, role in ((fac, "facilitator"), (consultant, "consultant"), (client, "client")):
        _room(person, room, "consultation")
        person.page.wait_for_selector("#ideas >> text=tableau partagé", timeout=LIVE_MS * 3)
        problems += check(person, f"room-4-consultation-{role}")

    circle.phase("consultation", "end")
    _room(client, room, None)
    client.page.wait_for_selector("#synthesis form.draft-action", timeout=LIVE_MS * 6)
    problems += check(client, "room-4-ended-client-synthesis")
    circle.phase("synthesis", "start")
    _room(client, room, "synthesis")
    client.page.wait_for_selector("#synthesis form.draft-action", timeout=LIVE_MS)
    client.page.locator("form.draft-action").first.get_by_role(
        "button", name="Garder dans mon plan"
    ).click()
    client.page.wait_for_selector("#plan >> text=Déléguer le reporting", timeout=LIVE_MS)
    problems += check(client, "room-5-synthesis-client")
    _room(consultant, room, "synthesis")
    problems += check(consultant, "room-5-synthesis-consultant")

    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    api.ok("PUT", circle.path("/learnings"), circle.client[1],
           json={"text": "J'ai appris à écouter sans répondre.", "rating": 5})  # fmt: skip
    for person, role in ((fac, "facilitator"), (client, "client"), (consultant, "consultant")):
        _room(person, room, "learning")
        person.page.wait_for_selector("#learning-text", timeout=LIVE_MS)
        problems += check(person, f"room-6-learning-{role}")

    circle.phase("learning", "end")
    _room(fac, room, None)
    fac.page.wait_for_selector("text=La séance est close", timeout=LIVE_MS)
    problems += check(fac, "room-7-closed-facilitator")

    # The group's page, with the plan to follow up.
    for person, role in ((fac, "facilitator"), (client, "member")):
        person.page.goto(group)
        problems += check(person, f"group-{role}")

    assert not problems, "\n".join(problems)


def _tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Tab (only) until the focused element matches `selector`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => !!document.activeElement?.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is never reached with Tab")


def test_the_facilitator_runs_the_room_with_the_keyboard(served: Served, people: People) -> None:
    api = served.api
    circle = Circle.create(api, names=("Bérénice", "Anatole", "Zoé"))
    room = served.url + f"/groups/{circle.group_id}/sessions/{circle.session_id}"
    fac = _invited(served, people, "Faustine", circle.facilitator[0])
    page = fac.page
    _room(fac, room, None)
    _settle(page)

    # Start a phase.
    _tab_to(page, "#phase-move")
    page.keyboard.press("Enter")
    page.wait_for_selector('#phase-presentation[aria-current="step"]', timeout=LIVE_MS)
    _settle(page)
    assert page.evaluate("document.activeElement.id") == "phase-move"  # "End", where "Start" was

    # Add a note.
    _tab_to(page, "#note-body")
    page.keyboard.type("Bérénice parle de ses soirées.")
    _tab_to(page, "#note-form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#notes >> text=ses soirées", timeout=LIVE_MS)
    page.wait_for_function("() => document.activeElement.id === 'note-body'")  # ready for the next

    # On to the consultation, ideas noted by the consultants.
    circle.phase("presentation", "end")
    api.ok("POST", circle.path("/phases/clarification/start"), circle.facilitator[1])
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    api.ok("PUT", circle.path("/contract"), circle.client[1],
           json={"text": "Comment puis-je déléguer le reporting ?"})  # fmt: skip
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    for body in ("Un tableau partagé éviterait de tout refaire.",
                 "Tu pourrais confier le reporting à Zoé."):  # fmt: skip
        api.ok("POST", circle.path("/notes"), circle.consultants[0][1], json={"body": body})
    page.wait_for_selector("#ideas >> text=tableau partagé", timeout=LIVE_MS * 3)
    page.wait_for_selector("#ideas >> text=confier le reporting", timeout=LIVE_MS * 3)
    _settle(page)

    # Move an idea with its "move to" list (the keyboard's way for the drag and drop): the
    # arrows browse the list without moving anything; Enter moves it to the theme shown.
    idea = page.locator("#ideas li.idea").first
    idea_id, was_in = (
        idea.get_attribute("data-idea"),
        idea.locator("xpath=..").get_attribute("data-theme"),
    )
    page.evaluate("() => { window.scrollTo(0, 0); document.activeElement?.blur(); }")
    _tab_to(page, f'select.idea-move[data-idea="{idea_id}"]')
    options = page.evaluate("() => document.activeElement.options.length")
    for key in ["ArrowDown"] * (options - 1) + ["ArrowUp"] * (options - 2):
        page.keyboard.press(key)  # to the last choice and back to the first theme offered
    assert page.evaluate("() => document.activeElement.selectedIndex") == 1
    page.wait_for_timeout(500)
    assert page.locator(f'#ideas ul[data-theme="{was_in}"] li[data-idea="{idea_id}"]').count()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([i, t]) => { const li = document.querySelector(`#ideas li[data-idea='${i}']`);"
        " return li && li.parentElement.dataset.theme !== t; }",
        arg=[idea_id, was_in],
        timeout=LIVE_MS,
    )
    _settle(page)
    assert page.evaluate("document.activeElement.dataset.idea") == idea_id  # focus kept

    # Rename a theme: open its tools, type the label, submit.
    theme = page.locator("#ideas .theme").first.get_attribute("data-theme")
    _tab_to(page, f"#theme-{theme} summary")
    page.keyboard.press("Enter")
    _tab_to(page, f"#label-{theme}")
    page.keyboard.press("Control+A")
    page.keyboard.type("Déléguer")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#theme-{theme} .theme-label >> text=Déléguer", timeout=LIVE_MS)
    _settle(page)
    assert page.evaluate("document.activeElement.id") == f"label-{theme}"  # kept, open
    fac.shot("keyboard-room")
