"""Retries are safe: a POST with an `Idempotency-Key` runs once (issue 14, "Retries are safe")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from companion.store.models import IdempotencyKey, Note, utcnow
from tests.world import Api, Circle

CANARY = "Tu pourrais confier le planning à Ferdinand-Idempotent"


def _notes(api: Api) -> int:
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(Note)) or 0)


def _post_note(api: Api, circle: Circle, token: str, body: str, key: str | None):
    headers = {"Idempotency-Key": key} if key else {}
    return api.call("POST", circle.path("/notes"), token, json={"body": body}, headers=headers)


def _circle(api: Api) -> Circle:
    circle = Circle.create(api)
    circle.consult_on("Comment puis-je déléguer le planning sans perdre la qualité ?")
    return circle


def test_a_retry_with_the_same_key_and_body_answers_the_first_result_once(api: Api, settings):
    circle = _circle(api)
    token = circle.consultants[0][1]
    first = _post_note(api, circle, token, CANARY, "note-1")
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    stored = _notes(api)
    again = _post_note(api, circle, token, CANARY, "note-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert _notes(api) == stored  # nothing created twice
    # Without a key, the same body is a new note.
    assert _post_note(api, circle, token, CANARY, None).json()["id"] != first.json()["id"]
    # The kept answer is sealed: the database holds no clear copy of the note's text.
    db_file = settings.data_dir / "companion.db"
    if db_file.exists():
        for path in db_file.parent.glob("companion.db*"):
            assert CANARY.encode() not in path.read_bytes()


def test_the_same_key_with_another_body_is_a_409_and_changes_nothing(api: Api):
    circle = _circle(api)
    token = circle.consultants[0][1]
    assert _post_note(api, circle, token, CANARY, "k").status_code == 201
    stored = _notes(api)
    res = _post_note(api, circle, token, CANARY + " (autre)", "k")
    assert res.status_code == 409
    assert "another request body" in res.json()["detail"]
    assert _notes(api) == stored


def test_keys_belong_to_their_caller_and_path(api: Api):
    circle = _circle(api)
    (_, zoe), (_, kwame) = circle.consultants[1], circle.consultants[2]
    a = _post_note(api, circle, zoe, CANARY, "same")
    b = _post_note(api, circle, kwame, CANARY, "same")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert b.json()["author"]["name"] == "Kwame"
    # The same key on another creating route is another request.
    res = api.call("POST", "/api/v1/users", api.admin_token, json={"name": "Ysé"},
                   headers={"Idempotency-Key": "same"})  # fmt: skip
    assert res.status_code == 201


def test_a_refused_request_frees_its_key(api: Api):
    circle = _circle(api)
    token = circle.consultants[0][1]
    assert _post_note(api, circle, token, "", "retry-me").status_code == 422
    assert _post_note(api, circle, token, CANARY, "retry-me").status_code == 201


def test_a_retry_while_the_first_runs_is_a_409_and_a_dead_claim_says_to_check(api: Api):
    circle = _circle(api)
    token = circle.consultants[0][1]
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    assert _post_note(api, circle, token, CANARY, "slow").status_code == 201
    with state.sessions() as db, db.begin():  # as if the first had not answered yet
        db.execute(update(IdempotencyKey).values(completed_at=None, status_code=None))
    stored = _notes(api)
    res = _post_note(api, circle, token, CANARY, "slow")
    assert res.status_code == 409
    assert "still running" in res.json()["detail"]
    with state.sessions() as db, db.begin():
        db.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(minutes=30)))
    res = _post_note(api, circle, token, CANARY, "slow")
    assert res.status_code == 409
    assert "never finished" in res.json()["detail"]
    assert _notes(api) == stored


def test_kept_answers_go_with_their_group(api: Api):
    circle = _circle(api)
    token = circle.consultants[0][1]
    assert _post_note(api, circle, token, CANARY, "kept").status_code == 201
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db:
        rows = db.scalars(select(IdempotencyKey)).all()
        assert [r.group_id for r in rows] == [circle.group_id]
        assert all("kept" not in r.id and token not in r.id for r in rows)
    api.ok("DELETE", f"/groups/{circle.group_id}", circle.facilitator[1])
    with state.sessions() as db:
        assert db.scalars(select(IdempotencyKey)).all() == []


def test_an_answer_holding_a_secret_is_not_kept_and_a_revoked_token_gets_no_replay(api: Api):
    key = {"Idempotency-Key": "new-person"}
    first = api.call("POST", "/api/v1/users", api.admin_token, json={"name": "Ysé"}, headers=key)
    assert first.status_code == 201
    again = api.call("POST", "/api/v1/users", api.admin_token, json={"name": "Ysé"}, headers=key)
    assert again.status_code == 409
    assert "secret" in again.json()["detail"]
    assert first.json()["token"] not in again.text
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db:
        (row,) = db.scalars(select(IdempotencyKey)).all()
        assert row.response_sealed is None
        assert row.status_code == 201
    # A note kept for replay, then the token revoked: the retry is a 401, not the answer.
    circle = _circle(api)
    zoe_id, zoe = circle.consultants[0]
    assert _post_note(api, circle, zoe, CANARY, "before-revoke").status_code == 201
    token_id = zoe.split("_")[1]
    api.ok("DELETE", f"/api/v1/users/{zoe_id}/tokens/{token_id}", api.admin_token)
    assert _post_note(api, circle, zoe, CANARY, "before-revoke").status_code == 401


def test_an_answer_kept_past_its_day_is_not_replayed(api: Api):
    circle = _circle(api)
    token = circle.consultants[0][1]
    first = _post_note(api, circle, token, CANARY, "a-day")
    state = api.client.app.state.companion  # type: ignore[attr-defined]
    with state.sessions() as db, db.begin():
        db.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    again = _post_note(api, circle, token, CANARY, "a-day")
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in again.headers
