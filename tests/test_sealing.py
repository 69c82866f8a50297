"""Sealing at rest, end to end: what the database holds, tampering, crypto-shredding on group
deletion, master key rotation (and its recovery after a crash), and the first-start key file.

Rows are read and altered behind the service's back with a separate engine on the same
database, the way someone with access to the files or the server would.
"""

from __future__ import annotations

import logging
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, RowMapping, create_engine, insert, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.main import create_app
from companion.cli import app as cli
from companion.config import Settings
from companion.runtime import open_store, pending_key_file, rotate_master_key
from companion.store.keyring import SYSTEM_SCOPE, KeyGone, Keyring, rewrap_all
from companion.store.models import Base, Note
from companion.vault import DataKey, IntegrityError, MasterKey, MasterKeyError, open_text
from tests.world import Api, Circle

TABLES = Base.metadata.tables

# --- the story: one full text-only session, with distinctive text everywhere --------------------

PEOPLE = (
    "Zéphyrine Quenouille",
    "Anselme Brocéliande",
    "Ondine Kerguelen",
    "Théodule Vasquez-Nakamura",
)
FACILITATOR = "Philomène Aubrac-Delacroix"
GROUP = "Cercle des Orfèvres de Tréguier"
NOTE_PRESENTATION = "Zéphyrine raconte la fusion Quenouille-Marbeuf 🦉 et ses nuits blanches"
NOTE_CLARIFICATION = "Question d'Anselme : qui signe les budgets du pôle Vénéneux ?"
CONTRACT = "Comment puis-je confier le chantier Marbeuf à Ondine sans tout reprendre ?"
OBJECTIVE = "Confier le chantier Marbeuf à Ondine avant l'été"
FIRST_STEP = "Déjeuner avec Ondine au Café Trébuchet jeudi"
INDICATOR = "Ondine anime seule le comité Marbeuf du 3 mars"
PROGRESS = "Déjeuner fait : Ondine accepte si le pôle Vénéneux garde son budget"
LEARNING = "J'ai appris à questionner sans conseiller, merci Zéphyrine"
OVERRIDE = "Zéphyrine revient : le conseil de Tréguier avance sa décision"

PLAINTEXTS = (
    *PEOPLE,
    FACILITATOR,
    GROUP,
    NOTE_PRESENTATION,
    NOTE_CLARIFICATION,
    CONTRACT,
    OBJECTIVE,
    FIRST_STEP,
    INDICATOR,
    PROGRESS,
    LEARNING,
    OVERRIDE,
)
# Distinctive words too, so a partial or re-encoded copy is caught as well.
WORDS = (
    "Zéphyrine",
    "Quenouille",
    "Brocéliande",
    "Kerguelen",
    "Vasquez-Nakamura",
    "Philomène",
    "Aubrac-Delacroix",
    "Orfèvres",
    "Tréguier",
    "Marbeuf",
    "Vénéneux",
    "Trébuchet",
    "nuits blanches",
    "questionner sans conseiller",
)
SECRETS = PLAINTEXTS + WORDS


@dataclass
class Story:
    circle: Circle
    note_ids: list[str]
    action_id: str
    second_session_id: str

    def on(self, api: Api) -> Story:
        """The same story, told to another running app (after a restart)."""
        return replace(self, circle=replace(self.circle, api=api))

    def check_readable(self) -> None:
        """Everything written comes back through the API, in clear."""
        circle = self.circle
        api, fac = circle.api, circle.facilitator[1]
        consultant = circle.consultants[0][1]
        gid = circle.group_id
        assert api.ok("GET", f"/groups/{gid}", fac)["name"] == GROUP
        names = {m["name"] for m in api.ok("GET", f"/groups/{gid}/members", fac)}
        assert names == {*PEOPLE, FACILITATOR}
        me = api.ok("GET", "/api/v1/users/me", circle.client[1])
        assert me["name"] == PEOPLE[0]
        notes = api.ok("GET", circle.path("/notes"), consultant)
        assert [(n["id"], n["body"]) for n in notes] == list(
            zip(self.note_ids, [NOTE_PRESENTATION, NOTE_CLARIFICATION], strict=True)
        )
        assert [n["author"]["name"] for n in notes] == [PEOPLE[0], PEOPLE[1]]
        contract = api.ok("GET", circle.path("/contract"), consultant)
        assert contract["text"] == CONTRACT
        assert contract["confirmed_by"]["name"] == PEOPLE[0]
        (action,) = api.ok("GET", circle.path("/action-plan"), consultant)["actions"]
        assert action["id"] == self.action_id
        assert (action["objective"], action["first_step"], action["indicator"]) == (
            OBJECTIVE,
            FIRST_STEP,
            INDICATOR,
        )
        assert [p["note"] for p in action["progress"]] == [PROGRESS]
        (learning,) = api.ok("GET", circle.path("/learnings"), consultant)["learnings"]
        assert (learning["text"], learning["author"]["name"]) == (LEARNING, PEOPLE[1])
        second = api.ok("GET", f"/groups/{gid}/sessions/{self.second_session_id}", fac)
        assert second["override_reason"] == OVERRIDE
        assert second["client"]["name"] == PEOPLE[0]


def tell_story(api: Api) -> Story:
    """The phase sequence of test_smoke_flow, with every kind of free text the service seals."""
    circle = Circle.create(api, names=PEOPLE, facilitator=FACILITATOR, group_name=GROUP)
    client, consultant = circle.client[1], circle.consultants[0][1]
    circle.phase("presentation", "start")
    first = api.ok("POST", circle.path("/notes"), client, json={"body": NOTE_PRESENTATION})
    circle.phase("presentation", "end")
    circle.phase("clarification", "start")
    second = api.ok("POST", circle.path("/notes"), consultant, json={"body": NOTE_CLARIFICATION})
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    api.ok("PUT", circle.path("/contract"), client, json={"text": CONTRACT})
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    circle.phase("consultation", "end")
    circle.phase("synthesis", "start")
    action = api.ok(
        "POST",
        circle.path("/action-plan/actions"),
        client,
        json={
            "objective": OBJECTIVE,
            "first_step": FIRST_STEP,
            "indicator": INDICATOR,
            "due_date": "2030-01-15",
        },
    )
    api.ok(
        "POST",
        circle.path(f"/action-plan/actions/{action['id']}/progress"),
        client,
        json={"note": PROGRESS},
    )
    circle.phase("synthesis", "end")
    circle.phase("learning", "start")
    api.ok("PUT", circle.path("/learnings"), consultant, json={"text": LEARNING, "rating": 4})
    assert circle.phase("learning", "end")["status"] == "closed"
    # The same client again in this cycle: the facilitator overrides the rotation, with a reason.
    again = api.ok(
        "POST",
        f"/groups/{circle.group_id}/sessions",
        circle.facilitator[1],
        json={"client_id": circle.client[0], "override_reason": OVERRIDE},
    )
    story = Story(circle, [first["id"], second["id"]], action["id"], again["id"])
    story.check_readable()
    return story


def small_circle(api: Api, group_name: str, *notes: str) -> tuple[Circle, list[str]]:
    """A group whose session has its presentation running and `notes` written by the client."""
    circle = Circle.create(api, names=(f"{group_name} 1", f"{group_name} 2"), group_name=group_name)
    circle.phase("presentation", "start")
    ids = [
        api.ok("POST", circle.path("/notes"), circle.client[1], json={"body": body})["id"]
        for body in notes
    ]
    return circle, ids


def assert_small_reads(api: Api, circle: Circle, group_name: str, *notes: str) -> None:
    """What small_circle wrote reads back: group name, member names (system key), notes."""
    assert api.ok("GET", f"/groups/{circle.group_id}", circle.facilitator[1])["name"] == group_name
    got = api.ok("GET", circle.path("/notes"), circle.client[1])
    assert [n["body"] for n in got] == list(notes)
    assert {n["author"]["name"] for n in got} == {f"{group_name} 1"}


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def serving(settings: Settings, api: Api | None = None) -> Iterator[Api]:
    """A running app; with `api`, the same accounts and tokens talking to a fresh app."""
    with TestClient(create_app(settings)) as client:
        if api is None:
            yield Api.bootstrap(client, settings)
        else:
            yield Api(client, api.admin_token, api.tokens)


@contextmanager
def raw(settings: Settings) -> Iterator[Engine]:
    """An engine of our own on the service's database, behind the service's back."""
    engine = create_engine(settings.resolved_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def keyring_on(settings: Settings) -> Iterator[tuple[Session, Keyring]]:
    """The service's own keyring on a database session of our own."""
    store = open_store(settings)
    try:
        with store.sessions() as db:
            yield db, Keyring(db, store.master)
    finally:
        store.engine.dispose()


def note(db: Session, note_id: str) -> Note:
    row = db.get(Note, note_id)
    assert row is not None
    return row


def cli_env(settings: Settings) -> dict[str, str | None]:
    """The environment a `companion` command needs to find this test's database."""
    return {
        "COMPANION_DATABASE_URL": settings.database_url,
        "COMPANION_MASTER_KEY": None,
        "COMPANION_MASTER_KEY_FILE": None,
    }


def encodings(text: str) -> set[bytes]:
    forms = {unicodedata.normalize(form, text) for form in ("NFC", "NFD")}
    return {f.encode(codec) for f in forms for codec in ("utf-8", "utf-16-le", "utf-16-be")}


def leaks(blob: bytes, secrets: Iterable[str] = SECRETS) -> list[str]:
    return sorted({s for s in secrets for e in encodings(s) if e in blob})


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def all_values(conn: Connection) -> Iterator[tuple[str, str, Any]]:
    for table in Base.metadata.sorted_tables:
        for row in conn.execute(select(table)).mappings():
            for column, value in row.items():
                yield table.name, column, value


def sealed_values(conn: Connection) -> dict[tuple[str, str, str], bytes]:
    """(table, row id, field) -> the sealed bytes, for every sealed column of every row."""
    out: dict[tuple[str, str, str], bytes] = {}
    for table in Base.metadata.sorted_tables:
        sealed = [c.name for c in table.columns if c.name.endswith("_sealed")]
        if not sealed:
            continue
        for row in conn.execute(select(table)).mappings():
            for column in sealed:
                if row[column] is not None:
                    out[(table.name, row["id"], column.removesuffix("_sealed"))] = bytes(
                        row[column]
                    )
    return out


def data_keys(conn: Connection) -> dict[str, RowMapping]:
    """scope -> its data_keys row."""
    rows = conn.execute(select(TABLES["data_keys"])).mappings().all()
    return {r["scope"]: r for r in rows}


def flip_byte(engine: Engine, table: str, column: str, row_id: str, index: int) -> bytes:
    t = TABLES[table]
    with engine.begin() as conn:
        value = bytes(conn.execute(select(t.c[column]).where(t.c.id == row_id)).scalar_one())
        tampered = bytearray(value)
        tampered[index] ^= 0x01
        conn.execute(update(t).where(t.c.id == row_id).values({column: bytes(tampered)}))
    return value


def sqlite_files(settings: Settings) -> dict[str, bytes]:
    """The database file and its companions (-wal, -shm), as bytes."""
    return {
        p.name: p.read_bytes()
        for p in settings.data_dir.iterdir()
        if p.name.startswith("companion.db")
    }


def assert_integrity_failure(res: Any, *must_name: str) -> None:
    assert res.status_code == 500, (res.status_code, res.text)
    detail = res.json()["detail"]
    assert detail.startswith("Stored data failed its integrity check and was not returned")
    for part in must_name:
        assert part in detail, detail
    assert not leaks(res.content), res.text


# --- 1. nothing readable at rest ------------------------------------------------------------


def test_nothing_is_stored_in_clear(settings, backend):
    with serving(settings) as api:
        story = tell_story(api)
        with raw(settings) as engine, engine.connect() as conn:
            values = list(all_values(conn))
            sealed = sealed_values(conn)
        live = sqlite_files(settings) if backend == "sqlite" else {}

    # Every column of every row, as the database returns it (both backends).
    assert any(v == story.circle.session_id for _, _, v in values)  # the scan sees the rows
    assert any(t == "audit_events" and v == "note.add" for t, _, v in values)
    assert len(sealed) >= len(PLAINTEXTS) + 2  # + "Admin" and "Oscar Outsider"
    found = {(t, c, s) for t, c, v in values for s in leaks(as_bytes(v))}
    assert not found, found
    if backend != "sqlite":
        return

    # The raw SQLite files. While the service runs, recent writes sit in the write-ahead log.
    assert {"companion.db", "companion.db-wal"} <= set(live)
    assert len(live["companion.db-wal"]) > 0
    assert story.circle.session_id.encode() in live["companion.db"] + live["companion.db-wal"]
    for name, blob in live.items():
        assert not leaks(blob), (name, leaks(blob))
    # After shutdown the log is folded into the database file: still nothing in clear.
    closed = sqlite_files(settings)
    assert story.circle.session_id.encode() in closed["companion.db"]
    for name, blob in closed.items():
        assert not leaks(blob), (name, leaks(blob))


# --- 2. tampering ---------------------------------------------------------------------------


def test_a_flipped_ciphertext_byte_fails_the_integrity_check(settings):
    with serving(settings) as api:
        story = tell_story(api)
        circle = story.circle
        victim = story.note_ids[0]
        with raw(settings) as engine:
            original = flip_byte(engine, "notes", "body_sealed", victim, index=20)
        res = api.call("GET", circle.path("/notes"), circle.consultants[0][1])
        assert_integrity_failure(res, f"notes {victim} (body)", "failed its integrity check")
        # Every other row still reads.
        fac, consultant = circle.facilitator[1], circle.consultants[0][1]
        assert api.ok("GET", circle.path("/contract"), consultant)["text"] == CONTRACT
        plan = api.ok("GET", circle.path("/action-plan"), consultant)
        assert plan["actions"][0]["progress"][0]["note"] == PROGRESS
        assert api.ok("GET", circle.path("/learnings"), consultant)["learnings"][0]["text"]
        assert api.ok("GET", f"/groups/{circle.group_id}", fac)["name"] == GROUP
        assert api.ok("GET", circle.path(), fac)["client"]["name"] == PEOPLE[0]

        # At the vault level: the row does not open, with a message that says which and why.
        with keyring_on(settings) as (db, keys):
            with pytest.raises(IntegrityError) as caught:
                keys.open(circle.group_id, note(db, victim), "body")
            other = note(db, story.note_ids[1])
            assert keys.open(circle.group_id, other, "body") == NOTE_CLARIFICATION
            # The original bytes in the same place open again: only the flip was refused.
            assert open_text(keys.get(circle.group_id), original, "notes", victim, "body")
        message = str(caught.value)
        assert message == (
            f"notes {victim} (body) failed its integrity check: it was altered, "
            f"or it does not belong to {circle.group_id}"
        )
        assert "authentication tag mismatch" in str(caught.value.__cause__)


def test_a_tampered_data_key_is_refused_and_other_groups_still_read(settings):
    with serving(settings) as api:
        a, _ = small_circle(api, "Groupe Alpha", "Note d'Alpha")
        b, _ = small_circle(api, "Groupe Bêta", "Note de Bêta")
        with raw(settings) as engine:
            with engine.connect() as conn:
                key_row = data_keys(conn)[a.group_id]
            flip_byte(engine, "data_keys", "wrapped", key_row["id"], index=-1)
        res = api.call("GET", a.path("/notes"), a.client[1])
        assert_integrity_failure(res, f"data key of scope {a.group_id} does not open")
        assert "Alpha" not in res.text
        assert_small_reads(api, b, "Groupe Bêta", "Note de Bêta")


# --- 3. a row moved or copied elsewhere -----------------------------------------------------

SECRET_A = "Secret d'Alpha : Zéphyrine part en mars"
NOTES = TABLES["notes"]


def _body_into_other_group(conn: Connection, ids: dict[str, str]) -> None:
    body = conn.execute(select(NOTES.c.body_sealed).where(NOTES.c.id == ids["a1"])).scalar_one()
    conn.execute(update(NOTES).where(NOTES.c.id == ids["b1"]).values(body_sealed=body))


def _row_moved_to_other_group(conn: Connection, ids: dict[str, str]) -> None:
    conn.execute(update(NOTES).where(NOTES.c.id == ids["a1"]).values(session_id=ids["b_session"]))


def _row_copied_to_other_group(conn: Connection, ids: dict[str, str]) -> None:
    row = dict(conn.execute(select(NOTES).where(NOTES.c.id == ids["a1"])).mappings().one())
    row.update(id="00000000-0000-4000-8000-0000000000c0", session_id=ids["b_session"])
    conn.execute(insert(NOTES).values(row))


def _body_onto_other_note_same_group(conn: Connection, ids: dict[str, str]) -> None:
    body = conn.execute(select(NOTES.c.body_sealed).where(NOTES.c.id == ids["a1"])).scalar_one()
    conn.execute(update(NOTES).where(NOTES.c.id == ids["a2"]).values(body_sealed=body))


MANIPULATIONS = (
    # (what is done behind the service's back, which group then reads the damaged list)
    (_body_into_other_group, "b"),
    (_row_moved_to_other_group, "b"),
    (_row_copied_to_other_group, "b"),
    (_body_onto_other_note_same_group, "a"),
)


def test_a_row_moved_or_copied_elsewhere_does_not_open(settings):
    with serving(settings) as api:
        a, (a1, a2) = small_circle(api, "Groupe Alpha", SECRET_A, "Deuxième note d'Alpha")
        b, (b1,) = small_circle(api, "Groupe Bêta", "Note de Bêta")
        ids = {"a1": a1, "a2": a2, "b1": b1, "b_session": b.session_id}
        with raw(settings) as engine:
            with engine.connect() as conn:
                pristine = [dict(r) for r in conn.execute(select(NOTES)).mappings()]
            for manipulate, reader in MANIPULATIONS:
                case = manipulate.__name__
                with engine.begin() as conn:
                    manipulate(conn, ids)
                circle = {"a": a, "b": b}[reader]
                res = api.call("GET", circle.path("/notes"), circle.client[1])
                assert_integrity_failure(
                    res, "failed its integrity check", f"belong to {circle.group_id}"
                )
                assert "Zéphyrine" not in res.text, case
                assert "Secret" not in res.text, case
                _only_the_moved_row_fails(settings, circle, a, a1, case)
                if manipulate is _row_moved_to_other_group:
                    # In its own group the very same row opens: the scope is what refused it.
                    with keyring_on(settings) as (db, keys):
                        assert keys.open(a.group_id, note(db, a1), "body") == SECRET_A
                with engine.begin() as conn:  # put everything back for the next case
                    conn.execute(NOTES.delete())
                    conn.execute(insert(NOTES), pristine)
                assert_small_reads(api, b, "Groupe Bêta", "Note de Bêta")
        notes = api.ok("GET", a.path("/notes"), a.client[1])
        assert [n["body"] for n in notes] == [SECRET_A, "Deuxième note d'Alpha"]


def _only_the_moved_row_fails(
    settings: Settings, circle: Circle, a: Circle, a1: str, case: str
) -> None:
    """At the vault level, with the reading group's key: one IntegrityError, never the text."""
    with keyring_on(settings) as (db, keys):
        rows = db.scalars(select(Note).where(Note.session_id == circle.session_id)).all()
        failures = []
        for row in rows:
            try:
                text = keys.open(circle.group_id, row, "body")
            except IntegrityError as exc:
                failures.append(str(exc))
            else:
                assert text != SECRET_A or (row.id == a1 and circle is a), case
        assert len(failures) == 1, (case, failures)
        assert "failed its integrity check" in failures[0], case


# --- 4. deleting a group shreds its key -----------------------------------------------------


def _rows_of_group(conn: Connection, group_id: str) -> dict[str, list[RowMapping]]:
    t = TABLES
    sessions = select(t["sessions"].c.id).where(t["sessions"].c.group_id == group_id)
    actions = select(t["actions"].c.id).where(t["actions"].c.session_id.in_(sessions))
    where = {
        "data_keys": t["data_keys"].c.scope == group_id,
        "groups": t["groups"].c.id == group_id,
        "memberships": t["memberships"].c.group_id == group_id,
        "cycles": t["cycles"].c.group_id == group_id,
        "sessions": t["sessions"].c.group_id == group_id,
        "audit_events": t["audit_events"].c.group_id == group_id,
        "action_progress": t["action_progress"].c.action_id.in_(actions),
        **{
            name: t[name].c.session_id.in_(sessions)
            for name in (
                "session_participants",
                "phase_runs",
                "notes",
                "contracts",
                "actions",
                "learnings",
            )
        },
    }
    return {
        name: list(conn.execute(select(t[name]).where(cond)).mappings())
        for name, cond in where.items()
    }


def test_deleting_a_group_destroys_its_data_key(settings, backend):
    with serving(settings) as api:
        story = tell_story(api)
        a = story.circle
        b, _ = small_circle(api, "Groupe Bêta", "Note de Bêta")
        with raw(settings) as engine, engine.connect() as conn:
            before = _rows_of_group(conn, a.group_id)
            captured = {
                where: sealed
                for where, sealed in sealed_values(conn).items()
                if any(r["id"] == where[1] for r in before.get(where[0], []))
            }
        assert all(before.values()), {k: len(v) for k, v in before.items()}
        assert {t for t, _, _ in captured} == {
            "groups",
            "sessions",
            "notes",
            "contracts",
            "actions",
            "action_progress",
            "learnings",
        }
        wrapped = before["data_keys"][0]["wrapped"]

        res = api.call("DELETE", f"/groups/{a.group_id}", a.facilitator[1])
        assert res.status_code == 204, res.text

        with raw(settings) as engine, engine.connect() as conn:
            after = _rows_of_group(conn, a.group_id)
            remaining = data_keys(conn)
            audit = TABLES["audit_events"]
            logged = select(audit).where(audit.c.target_id == a.group_id)
            deletion = conn.execute(logged).mappings().one()
        assert not any(after.values()), {k: len(v) for k, v in after.items() if v}
        assert (deletion["action"], deletion["group_id"]) == ("group.delete", None)
        assert set(remaining) == {SYSTEM_SCOPE, b.group_id}

        if backend == "sqlite":
            # Nowhere in the files either, not even in old pages of the write-ahead log.
            for name, blob in sqlite_files(settings).items():
                assert bytes(wrapped) not in blob, name
                assert not [w for w, s in captured.items() if s in blob], name

        # The group is gone for its facilitator; the other group reads as before.
        assert api.call("GET", f"/groups/{a.group_id}", a.facilitator[1]).status_code == 404
        assert api.ok("GET", f"/groups/{b.group_id}", b.facilitator[1])["name"] == "Groupe Bêta"
        assert_small_reads(api, b, "Groupe Bêta", "Note de Bêta")

        # No key is left that opens what was captured before the deletion.
        with keyring_on(settings) as (_, keys):
            with pytest.raises(KeyGone, match=f"no data key for {a.group_id}"):
                keys.get(a.group_id)
            left = [keys.get(scope) for scope in remaining]
        for (table, row_id, field), sealed in captured.items():
            for key in left:
                with pytest.raises(IntegrityError):
                    open_text(key, sealed, table, row_id, field)


# --- 5. master key rotation -----------------------------------------------------------------


def _refused(bad: Settings) -> str:
    """Opening the store with `bad` fails, and so does starting the service; the message."""
    with pytest.raises(MasterKeyError) as caught:
        open_store(bad)
    with pytest.raises(MasterKeyError), TestClient(create_app(bad)):
        pass
    return str(caught.value)


def test_rotation_rewraps_the_data_keys_and_nothing_else(settings, monkeypatch, tmp_path):
    with serving(settings) as api:
        story = tell_story(api)
    key_file = settings.resolved_master_key_file
    old_text = key_file.read_text()
    old = MasterKey.from_b64(old_text)
    with raw(settings) as engine, engine.connect() as conn:
        keys_before, sealed_before = data_keys(conn), sealed_values(conn)
    assert {r["master_key_id"] for r in keys_before.values()} == {old.key_id}

    result = CliRunner().invoke(
        cli, ["keys", "rotate", "--data-dir", str(settings.data_dir)], env=cli_env(settings)
    )
    assert result.exit_code == 0, result.output

    new_text = key_file.read_text()
    assert new_text != old_text
    new = MasterKey.from_b64(new_text)
    assert f"Re-wrapped {len(keys_before)} data keys under the new master key {new.key_id}" in (
        result.output
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not pending_key_file(key_file).exists()
    with raw(settings) as engine, engine.connect() as conn:
        keys_after, sealed_after = data_keys(conn), sealed_values(conn)
    assert sealed_after == sealed_before  # byte for byte: no content was rewritten
    assert set(keys_after) == set(keys_before)
    for scope, row in keys_after.items():
        assert row["id"] == keys_before[scope]["id"]
        assert row["master_key_id"] == new.key_id != old.key_id
        assert row["wrapped"] != keys_before[scope]["wrapped"]
        with pytest.raises(MasterKeyError, match=f"scope {scope} does not open"):
            DataKey.unwrap(old, scope, row["id"], row["wrapped"])
        same = DataKey.unwrap(old, scope, row["id"], keys_before[scope]["wrapped"])
        assert DataKey.unwrap(new, scope, row["id"], row["wrapped"]) == same

    # The old key is now a wrong key: given by env, it is refused, naming both key ids.
    monkeypatch.setenv("COMPANION_MASTER_KEY", old.to_b64())
    message = _refused(Settings(data_dir=settings.data_dir, database_url=settings.database_url))
    assert f"The master key in use (id {old.key_id})" in message
    assert f"wrapped with (id {new.key_id})" in message
    assert "COMPANION_MASTER_KEY" in message
    monkeypatch.delenv("COMPANION_MASTER_KEY")
    # So is any other key, from another file.
    stranger = MasterKey.generate()
    stranger.write(tmp_path / "other.key")
    message = _refused(settings.updated(**{"master_key_file": tmp_path / "other.key"}))
    assert f"(id {stranger.key_id})" in message
    assert f"(id {new.key_id})" in message
    assert "COMPANION_MASTER_KEY_FILE" in message

    # The refusals damaged nothing; a new app on the data dir reads everything.
    assert key_file.read_text() == new_text
    with serving(settings, api) as restarted:
        story.on(restarted).check_readable()


def test_rotation_with_an_env_key_saves_the_new_key_first(tmp_path):
    # The database side of a rotation is covered on both backends above; SQLite is enough here.
    old = MasterKey.generate()
    with_env = Settings(data_dir=tmp_path / "data", master_key=old.to_b64())
    with serving(with_env) as api:
        circle, _ = small_circle(api, "Groupe Alpha", "Note d'Alpha")
    assert not with_env.resolved_master_key_file.exists()  # an env key writes no file
    env = {"COMPANION_DATABASE_URL": None, "COMPANION_MASTER_KEY": old.to_b64()}
    command = ["keys", "rotate", "--data-dir", str(with_env.data_dir)]

    refused = CliRunner().invoke(cli, command, env=env)
    assert isinstance(refused.exception, MasterKeyError)
    assert "--new-key-file" in str(refused.exception)

    new_file = tmp_path / "new.key"
    result = CliRunner().invoke(cli, [*command, "--new-key-file", str(new_file)], env=env)
    assert result.exit_code == 0, result.output
    new = MasterKey.read(new_file)
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert new.key_id in result.output
    assert f"(id {new.key_id})" in _refused(with_env)
    with serving(with_env.updated(**{"master_key": new.to_b64()}), api) as restarted:
        assert_small_reads(restarted, circle, "Groupe Alpha", "Note d'Alpha")


def test_a_rotation_interrupted_after_the_commit_is_finished_at_the_next_start(
    settings, monkeypatch, caplog
):
    with serving(settings) as api:
        circle, _ = small_circle(api, "Groupe Alpha", "Note d'Alpha")
    key_file = settings.resolved_master_key_file
    pending = pending_key_file(key_file)
    old_text = key_file.read_text()

    real_replace = Path.replace

    def crash_before_the_swap(self: Path, target: Any) -> Path:
        if self == pending:
            raise OSError("simulated crash before the key file swap")
        return real_replace(self, target)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "replace", crash_before_the_swap)
        with pytest.raises(OSError, match="simulated crash"):
            rotate_master_key(settings)

    # The database moved to the new key; the old file is still in place, the new one beside it.
    assert key_file.read_text() == old_text
    new = MasterKey.read(pending)
    with raw(settings) as engine, engine.connect() as conn:
        assert {r["master_key_id"] for r in data_keys(conn).values()} == {new.key_id}

    with caplog.at_level(logging.WARNING, logger="companion.runtime"):
        store = open_store(settings)
    store.engine.dispose()
    assert store.master == new
    assert MasterKey.read(key_file) == new
    assert not pending.exists()
    assert "Finished an interrupted master key rotation" in caplog.text

    with serving(settings, api) as restarted:
        assert_small_reads(restarted, circle, "Groupe Alpha", "Note d'Alpha")


def test_a_rotation_interrupted_before_the_commit_keeps_the_old_key(settings, monkeypatch):
    with serving(settings) as api:
        circle, _ = small_circle(api, "Groupe Alpha", "Note d'Alpha")
    key_file = settings.resolved_master_key_file
    pending = pending_key_file(key_file)
    old_text = key_file.read_text()
    old = MasterKey.from_b64(old_text)
    with raw(settings) as engine, engine.connect() as conn:
        keys_before = data_keys(conn)

    def crash_before_the_commit(*args: Any) -> int:
        rewrap_all(*args)
        raise RuntimeError("simulated crash before the commit")

    with monkeypatch.context() as patch:
        patch.setattr("companion.runtime.rewrap_all", crash_before_the_commit)
        with pytest.raises(RuntimeError, match="simulated crash"):
            rotate_master_key(settings)

    assert pending.exists()
    assert MasterKey.read(pending) != old
    with raw(settings) as engine, engine.connect() as conn:
        assert data_keys(conn) == keys_before  # rolled back: still wrapped by the old key

    store = open_store(settings)
    store.engine.dispose()
    assert store.master == old
    assert key_file.read_text() == old_text
    assert not pending.exists()
    with serving(settings, api) as restarted:
        assert_small_reads(restarted, circle, "Groupe Alpha", "Note d'Alpha")


# --- 6. the key file created on first start -------------------------------------------------


def test_first_start_creates_a_0600_key_file_and_says_where(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / "fresh")
    key_file = settings.data_dir / "master.key"
    with (
        caplog.at_level(logging.WARNING, logger="companion.vault.master"),
        TestClient(create_app(settings)) as client,
    ):
        assert client.get("/readyz").json()["master_key"] == "loaded"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    MasterKey.read(key_file)
    (record,) = [r for r in caplog.records if r.name == "companion.vault.master"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"Created a new master key at {key_file.resolve()} (mode 0600)" in message
    assert "Production deployments should supply their own key" in message
    assert "COMPANION_MASTER_KEY" in message
    assert "back it up" in message

    # A second start reuses the file, silently.
    content = key_file.read_text()
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="companion.vault.master"),
        TestClient(create_app(settings)),
    ):
        pass
    assert key_file.read_text() == content
    assert not [r for r in caplog.records if r.name == "companion.vault.master"]
