"""POST /oauth/token: the code exchange, and what any token request can get wrong."""

from __future__ import annotations

import base64

import pytest

from atlassian_oauth.testing import CODE_LIFETIME, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

from .conftest import REDIRECT_URI, OAuth

BAD_CODE = {"error": "invalid_request", "error_description": "authorization_code is invalid"}
BAD_CLIENT = {"error": "access_denied", "error_description": "Unauthorized"}


def test_a_code_is_exchanged_for_a_bearer_token(oauth: OAuth) -> None:
    response = oauth.exchange(oauth.code())

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read:jira-work read:jira-user read:me offline_access"
    assert body["access_token"] and body["refresh_token"]
    assert not body["access_token"].startswith("eyJ")


def test_a_form_encoded_body_works_like_json(oauth: OAuth) -> None:
    code = oauth.code()
    form = {
        "grant_type": "authorization_code",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }

    response = oauth.token(form, use_form=True)

    assert response.status_code == 200
    assert "refresh_token" in response.json()


def test_client_credentials_may_come_as_http_basic(oauth: OAuth) -> None:
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    body = {"grant_type": "authorization_code", "code": oauth.code(), "redirect_uri": REDIRECT_URI}

    response = oauth.http.post(
        oauth.url("/oauth/token"), data=body, headers={"Authorization": f"Basic {basic}"}
    )

    assert response.status_code == 200


def test_a_code_is_single_use(oauth: OAuth) -> None:
    code = oauth.code()
    assert oauth.exchange(code).status_code == 200

    again = oauth.exchange(code)

    assert again.status_code == 400
    assert again.json() == BAD_CODE


def test_a_code_expires_after_ten_minutes_on_the_fake_clock(oauth: OAuth) -> None:
    late, in_time = oauth.code(), oauth.code()
    oauth.fake.clock.advance(CODE_LIFETIME - 5)
    assert oauth.exchange(in_time).status_code == 200

    oauth.fake.clock.advance(10)
    response = oauth.exchange(late)

    assert response.status_code == 400
    assert response.json() == BAD_CODE


def test_an_unknown_code_gets_the_same_answer(oauth: OAuth) -> None:
    response = oauth.exchange("no-such-code")

    assert response.status_code == 400
    assert response.json() == BAD_CODE


def test_a_redirect_uri_other_than_at_authorize_is_refused(oauth: OAuth) -> None:
    response = oauth.exchange(oauth.code(), redirect_uri="https://app.example/other")

    assert response.status_code == 400
    assert response.json() == BAD_CODE


def test_a_code_issued_to_another_client_is_refused(oauth: OAuth) -> None:
    oauth.fake.register_app("other-app", "other-secret")
    code = oauth.code()

    response = oauth.exchange(code, client_id="other-app", client_secret="other-secret")

    assert response.status_code == 400
    assert response.json() == BAD_CODE
    # The refusal did not use the code up for its real owner.
    assert oauth.exchange(code).status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_secret": "wrong"},
        {"client_id": "unknown-client"},
        {"client_secret": ""},
    ],
)
def test_wrong_client_credentials_are_a_401_checked_before_the_code(
    oauth: OAuth, credentials: dict[str, str]
) -> None:
    response = oauth.exchange("not-even-a-code", **credentials)

    assert response.status_code == 401
    assert response.json() == BAD_CLIENT


def test_wrong_client_credentials_on_refresh_are_a_401(oauth: OAuth) -> None:
    refresh_token = oauth.mint()["refresh_token"]

    response = oauth.refresh(refresh_token, client_secret="wrong")

    assert response.status_code == 401
    assert response.json() == BAD_CLIENT


def test_without_offline_access_there_is_no_refresh_token_and_no_error(oauth: OAuth) -> None:
    response = oauth.exchange(oauth.code(scope="read:jira-work read:me"))

    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == "read:jira-work read:me"


def test_with_offline_access_there_is_a_refresh_token(oauth: OAuth) -> None:
    response = oauth.exchange(oauth.code(scope="read:jira-work offline_access"))

    assert "refresh_token" in response.json()


@pytest.mark.parametrize("grant_type", [None, "password", "client_credentials"])
def test_a_missing_or_unknown_grant_type_is_unsupported(
    oauth: OAuth, grant_type: str | None
) -> None:
    body = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    if grant_type:
        body["grant_type"] = grant_type

    response = oauth.token(body)

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert oauth.fake.counts["token_other"] == 1


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_an_unparseable_body_is_invalid_request(oauth: OAuth, raw: bytes) -> None:
    response = oauth.http.post(
        oauth.url("/oauth/token"), data=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert oauth.fake.counts["token_other"] == 1


def test_tokens_are_opaque_and_vary_in_length(oauth: OAuth) -> None:
    lengths = {len(oauth.mint()["access_token"]) for _ in range(20)}

    assert len(lengths) > 1
