"""Tokens a person can list and revoke, that expire, and die with a deactivated account; nobody
mints one for someone else (issue 14, item 3)."""

from datetime import timedelta

from sqlalchemy import update

from companion.store.models import ApiToken, utcnow
from tests.world import PREFIX, Api


def _me(api: Api, token: str) -> int:
    return api.call("GET", f"{PREFIX}/users/me", token).status_code


def test_a_person_lists_and_revokes_their_tokens_and_a_revoked_one_fails_at_once(api: Api):
    zoe_id, first = api.user("Zoé")
    second = api.ok("POST", f"{PREFIX}/users/{zoe_id}/tokens", first)["token"]
    listed = api.ok("GET", f"{PREFIX}/users/{zoe_id}/tokens", second)
    assert [t["active"] for t in listed] == [True, True]
    assert all("secret" not in str(t) and first not in str(t) for t in listed)
    first_id = first.split("_")[1]
    res = api.call("DELETE", f"{PREFIX}/users/{zoe_id}/tokens/{first_id}", second)
    assert res.status_code == 204
    assert _me(api, first) == 401  # at once
    assert _me(api, second) == 200
    after = {t["id"]: t for t in api.ok("GET", f"{PREFIX}/users/{zoe_id}/tokens", second)}
    assert after[first_id]["revoked_at"] is not None
    assert not after[first_id]["active"]
    # An administrator may list and revoke them too; another person may not.
    _other_id, other = api.user("Omar")
    assert api.call("GET", f"{PREFIX}/users/{zoe_id}/tokens", other).status_code == 403
    assert (
        api.call("DELETE", f"{PREFIX}/users/{zoe_id}/tokens/{first_id}", other).status_code == 403
    )
    second_id = second.split("_")[1]
    api.ok("GET", f"{PREFIX}/users/{zoe_id}/tokens", api.admin_token)
    assert (
        api.call(
            "DELETE", f"{PREFIX}/users/{zoe_id}/tokens/{second_id}", api.admin_token
        ).status_code
        == 204
    )
    assert _me(api, second) == 401
    res = api.call(
        "DELETE", f"{PREFIX}/users/{zoe_id}/tokens/{other.split('_')[1]}", api.admin_token
    )
    assert res.status_code == 404  # Omar's token is not Zoé's
    assert _me(api, other) == 200


def test_nobody_mints_a_token_for_someone_else(api: Api):
    zoe_id, _ = api.user("Zoé")
    res = api.call("POST", f"{PREFIX}/users/{zoe_id}/tokens", api.admin_token)
    assert res.status_code == 403
    assert "invite" in res.json()["detail"]


def test_a_token_expires_after_its_days(api: Api, client, settings):
    zoe_id, token = api.user("Zoé")
    assert _me(api, token) == 200
    old = utcnow() - timedelta(days=settings.token_days, minutes=1)
    with client.app.state.companion.sessions() as db, db.begin():
        db.execute(update(ApiToken).where(ApiToken.user_id == zoe_id).values(created_at=old))
    assert _me(api, token) == 401
    assert "expired" in api.call("GET", f"{PREFIX}/users/me", token).json()["detail"]


def test_a_deactivated_person_has_no_working_token_or_sign_in(api: Api):
    zoe_id, token = api.user("Zoé")
    second = api.ok("POST", f"{PREFIX}/users/{zoe_id}/tokens", token)["token"]
    view = api.ok("POST", f"{PREFIX}/users/{zoe_id}/deactivate", api.admin_token)
    assert view["deactivated_at"] is not None
    assert (_me(api, token), _me(api, second)) == (401, 401)
    admin_id = next(iter(api.tokens))
    refused = api.call("POST", f"{PREFIX}/users/{admin_id}/deactivate", api.admin_token)
    assert refused.status_code == 409  # not oneself
    _other_id, other = api.user("Omar")
    assert api.call("POST", f"{PREFIX}/users/{zoe_id}/deactivate", other).status_code == 403
