"""Fault injection: statuses with headers, delays, non-JSON bodies, dropped connections."""

from __future__ import annotations

import time

import pytest
import requests

from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID

from .conftest import OAuth


def test_a_status_with_retry_after_and_the_token_is_not_rotated(oauth: OAuth) -> None:
    token = oauth.mint()["refresh_token"]
    oauth.fake.inject("refresh", status=503, headers={"Retry-After": "7"})

    response = oauth.refresh(token)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]
    # The failed call changed nothing: the same token still refreshes, once, normally.
    assert oauth.refresh(token).status_code == 200
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["refresh_count"] == 1


def test_a_429_on_the_api(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("me", status=429, headers={"Retry-After": "2"})

    response = oauth.api("/me", tokens["access_token"])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


def test_a_delay_slows_the_normal_answer(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("me", delay=0.3)

    started = time.monotonic()
    response = oauth.api("/me", tokens["access_token"])

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert response.json()["account_id"] == ADA_ACCOUNT_ID


def test_a_delay_longer_than_the_client_timeout_is_a_timeout(oauth: OAuth) -> None:
    oauth.fake.inject("accessible_resources", delay=0.5)

    with pytest.raises(requests.Timeout):
        oauth.http.get(oauth.url("/oauth/token/accessible-resources"), timeout=0.1)


def test_delay_after_rotates_first_then_withholds_the_answer(oauth: OAuth) -> None:
    token = oauth.mint()["refresh_token"]
    oauth.fake.inject("refresh", delay_after=0.5)

    # The client gives up before the answer: the rotation has happened all the same.
    with pytest.raises(requests.Timeout):
        oauth.http.post(
            oauth.url("/oauth/token"),
            json={
                "grant_type": "refresh_token",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": "fake-client-secret",
                "refresh_token": token,
            },
            timeout=0.2,
        )
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["refresh_count"] == 1
    # Within the leeway the old token still works: the way back for a client that lost it.
    assert oauth.refresh(token).status_code == 200


def test_a_string_body_is_sent_as_html(oauth: OAuth) -> None:
    oauth.fake.inject("token", status=502, body="<html><body>Bad gateway</body></html>")

    response = oauth.refresh("whatever")

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html><body>Bad gateway</body></html>"
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_a_dict_body_is_sent_as_json(oauth: OAuth) -> None:
    oauth.fake.inject("code_exchange", status=500, body={"error": "server_error"})

    response = oauth.exchange(oauth.code())

    assert response.status_code == 500
    assert response.json() == {"error": "server_error"}


def test_a_drop_closes_the_connection_without_an_answer(oauth: OAuth) -> None:
    tokens = oauth.mint()
    token = tokens["refresh_token"]
    # A kept-alive connection must not make the client retry the dropped request silently.
    assert oauth.api("/me", tokens["access_token"]).status_code == 200
    oauth.fake.inject("refresh", drop=True)

    with pytest.raises(requests.ConnectionError):
        oauth.refresh(token)

    assert oauth.refresh(token).status_code == 200
    assert oauth.fake.counts["refresh"] == 2
    assert [e["status"] for e in oauth.fake.requests_log] == [200, 0, 200]


def test_times_n_faults_are_consumed_then_answers_are_normal(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("me", status=503, times=3)

    statuses = [oauth.api("/me", tokens["access_token"]).status_code for _ in range(4)]

    assert statuses == [503, 503, 503, 200]
    assert oauth.fake.counts["me"] == 4


def test_faults_are_taken_first_in_first_out(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("any", status=500)
    oauth.fake.inject("me", status=502)

    statuses = [oauth.api("/me", tokens["access_token"]).status_code for _ in range(3)]

    assert statuses == [500, 502, 200]


def test_a_fault_only_hits_its_kind(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("refresh", status=503)

    assert oauth.api("/me", tokens["access_token"]).status_code == 200
    assert oauth.exchange(oauth.code()).status_code == 200
    assert oauth.refresh(tokens["refresh_token"]).status_code == 503


def test_the_token_kind_covers_code_exchange_and_refresh(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.inject("token", status=503, times=2)

    assert oauth.exchange(oauth.code()).status_code == 503
    assert oauth.refresh(tokens["refresh_token"]).status_code == 503
    assert oauth.refresh(tokens["refresh_token"]).status_code == 200


def test_control_requests_are_neither_faulted_nor_counted(oauth: OAuth) -> None:
    oauth.fake.inject("any", status=500)

    response = oauth.http.get(oauth.url("/_fake/counts"))

    assert response.status_code == 200
    assert sum(response.json().values()) == 0


@pytest.mark.parametrize(
    "bad",
    [{"kind": "nope"}, {"kind": "me", "times": 0}, {"kind": "me", "status": 42}],
)
def test_a_malformed_fault_is_refused(oauth: OAuth, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        oauth.fake.inject(**bad)  # type: ignore[arg-type]
