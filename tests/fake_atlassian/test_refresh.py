"""POST /oauth/token with grant_type=refresh_token: rotation, leeway, breach detection, expiry."""

from __future__ import annotations

import pytest

from atlassian_oauth.testing import (
    ABSOLUTE_LIFETIME,
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    REFRESH_INACTIVITY,
    REFRESH_REUSE_LEEWAY,
)

from .conftest import OAuth

DAY = 86400.0
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
UNAUTHORIZED_CLIENT = {
    "error": "unauthorized_client",
    "error_description": "refresh_token is invalid",
}


def assert_dead(response_json: object, status: int) -> None:
    assert status == 403
    assert response_json == INVALID_GRANT


def test_a_refresh_rotates_both_tokens(oauth: OAuth) -> None:
    first = oauth.mint()

    response = oauth.refresh(first["refresh_token"])

    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer"
    assert second["scope"] == first["scope"]
    assert oauth.refresh(second["refresh_token"]).status_code == 200
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["refresh_count"] == 2


def test_a_rotated_token_reused_within_the_leeway_gives_a_fresh_pair(oauth: OAuth) -> None:
    first = oauth.mint()["refresh_token"]
    assert oauth.refresh(first).status_code == 200
    oauth.fake.clock.advance(REFRESH_REUSE_LEEWAY - 5)

    reused = oauth.refresh(first)

    assert reused.status_code == 200
    assert reused.json()["refresh_token"] != first
    assert oauth.refresh(reused.json()["refresh_token"]).status_code == 200


def test_a_rotated_token_reused_after_the_leeway_revokes_the_whole_family(oauth: OAuth) -> None:
    first = oauth.mint()
    second = oauth.refresh(first["refresh_token"]).json()
    oauth.fake.clock.advance(REFRESH_REUSE_LEEWAY + 5)
    third = oauth.refresh(second["refresh_token"]).json()

    replay = oauth.refresh(first["refresh_token"])

    assert_dead(replay.json(), replay.status_code)
    # Every token of the family is dead now, even the newest ones.
    latest = oauth.refresh(third["refresh_token"])
    assert_dead(latest.json(), latest.status_code)
    assert oauth.api("/me", third["access_token"]).status_code == 401
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["live_families"] == 0


def test_late_reuse_revokes_the_whole_grant_not_only_its_family(oauth: OAuth) -> None:
    first = oauth.mint()
    other_consent = oauth.mint()  # a second consent: another family of the same grant
    oauth.refresh(first["refresh_token"])
    oauth.fake.clock.advance(REFRESH_REUSE_LEEWAY + 5)

    oauth.refresh(first["refresh_token"])

    survivor = oauth.refresh(other_consent["refresh_token"])
    assert_dead(survivor.json(), survivor.status_code)
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["revoked"] is True


def test_a_refresh_token_unused_for_90_days_is_dead(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.clock.advance(REFRESH_INACTIVITY + 1)

    response = oauth.refresh(tokens["refresh_token"])

    assert_dead(response.json(), response.status_code)


def test_each_new_refresh_token_starts_a_fresh_90_days(oauth: OAuth) -> None:
    token = oauth.mint()["refresh_token"]
    for _ in range(3):
        oauth.fake.clock.advance(80 * DAY)
        response = oauth.refresh(token)
        assert response.status_code == 200
        token = response.json()["refresh_token"]


def test_everything_dies_365_days_after_the_first_consent(oauth: OAuth) -> None:
    token = oauth.mint()["refresh_token"]
    for _ in range(4):
        oauth.fake.clock.advance(89 * DAY)
        token = oauth.refresh(token).json()["refresh_token"]
    latest = oauth.refresh(token).json()

    oauth.fake.clock.advance(ABSOLUTE_LIFETIME - 4 * 89 * DAY + 1)

    response = oauth.refresh(latest["refresh_token"])
    assert_dead(response.json(), response.status_code)
    assert oauth.api("/me", latest["access_token"]).status_code == 401


@pytest.mark.parametrize(
    ("setting", "body"),
    [("invalid_grant", INVALID_GRANT), ("unauthorized_client", UNAUTHORIZED_CLIENT)],
)
def test_a_dead_grant_answers_the_configured_documented_body(
    oauth: OAuth, setting: str, body: dict[str, str]
) -> None:
    oauth.fake.invalid_refresh_error = setting

    response = oauth.refresh("no-such-refresh-token")

    assert response.status_code == 403
    assert response.json() == body


def test_a_refresh_token_of_another_client_is_unknown_to_this_one(oauth: OAuth) -> None:
    oauth.fake.register_app("other-app", "other-secret")
    token = oauth.mint()["refresh_token"]

    response = oauth.refresh(token, client_id="other-app", client_secret="other-secret")

    assert_dead(response.json(), response.status_code)
    assert oauth.refresh(token).status_code == 200


def test_a_refresh_may_omit_the_refresh_token_and_the_old_one_keeps_working(oauth: OAuth) -> None:
    token = oauth.mint()["refresh_token"]
    oauth.fake.refresh_omits_refresh_token = True

    first = oauth.refresh(token)

    assert first.status_code == 200
    assert "refresh_token" not in first.json()
    assert first.json()["access_token"]
    oauth.fake.clock.advance(REFRESH_REUSE_LEEWAY * 3)
    assert oauth.refresh(token).status_code == 200


def test_the_old_access_token_works_for_the_grace_period_then_dies(oauth: OAuth) -> None:
    first = oauth.mint()
    second = oauth.refresh(first["refresh_token"]).json()
    oauth.fake.clock.advance(REFRESH_REUSE_LEEWAY - 5)
    assert oauth.api("/me", first["access_token"]).status_code == 200

    oauth.fake.clock.advance(10)

    assert oauth.api("/me", first["access_token"]).status_code == 401
    assert oauth.api("/me", second["access_token"]).status_code == 200


def test_the_old_access_token_dies_at_its_own_expiry_if_that_is_sooner(oauth: OAuth) -> None:
    oauth.fake.access_token_lifetime = 120
    first = oauth.mint()
    oauth.refresh(first["refresh_token"])

    oauth.fake.clock.advance(121)

    assert oauth.api("/me", first["access_token"]).status_code == 401


def test_an_access_token_expires_after_its_lifetime(oauth: OAuth) -> None:
    oauth.fake.access_token_lifetime = 300
    tokens = oauth.mint()
    assert tokens["expires_in"] == 300
    oauth.fake.clock.advance(299)
    assert oauth.api("/me", tokens["access_token"]).status_code == 200

    oauth.fake.clock.advance(2)

    response = oauth.api("/me", tokens["access_token"])
    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": "Unauthorized"}


def test_revoking_the_grant_kills_every_family(oauth: OAuth) -> None:
    first, second = oauth.mint(), oauth.mint()

    assert oauth.fake.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID) is True

    for tokens in (first, second):
        response = oauth.refresh(tokens["refresh_token"])
        assert_dead(response.json(), response.status_code)
        assert oauth.api("/me", tokens["access_token"]).status_code == 401
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["revoked"] is True
    assert info["families"] == 2


def test_consenting_again_reuses_the_grant_with_a_new_family(oauth: OAuth) -> None:
    first = oauth.mint("read:jira-work offline_access")
    assert oauth.exchange(oauth.code(scope="read:jira-work read:me offline_access")).ok

    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)

    assert info is not None
    assert info["families"] == 2
    assert info["scopes"] == ["read:jira-work", "read:me", "offline_access"]
    # Atlassian documents nothing that would end the earlier family.
    assert oauth.refresh(first["refresh_token"]).status_code == 200


def test_changing_the_apps_scopes_forces_consent_again(oauth: OAuth) -> None:
    tokens = oauth.mint()

    oauth.fake.register_app(DEFAULT_CLIENT_ID, "fake-client-secret", scopes={"read:jira-work"})

    response = oauth.refresh(tokens["refresh_token"])
    assert_dead(response.json(), response.status_code)
