"""The personal data reporting API: ``POST /app/report-accounts/``."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    GRACE_ACCOUNT_ID,
    REPORT_BATCH_LIMIT,
    FakeAtlassian,
    FakeAtlassianClient,
)

from .conftest import OAuth

PATH = "/app/report-accounts/"
LONG_AGO = "2020-01-01T00:00:00.000Z"


def iso(epoch: float) -> str:
    """Atlassian's format: milliseconds and Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def report(
    oauth: OAuth, token: str, accounts: list[dict[str, Any]] | Any, **kwargs: Any
) -> requests.Response:
    return oauth.http.post(
        oauth.url(PATH),
        json={"accounts": accounts} if isinstance(accounts, list) else accounts,
        headers={"Authorization": f"Bearer {token}"},
        **kwargs,
    )


def entry(account_id: str, updated_at: str = LONG_AGO) -> dict[str, str]:
    return {"accountId": account_id, "updatedAt": updated_at}


@pytest.fixture
def token(oauth: OAuth) -> str:
    """An access token of the app (Grace's grant: the tests close and update Ada)."""
    return str(oauth.mint(account_id=GRACE_ACCOUNT_ID)["access_token"])


def test_nothing_to_say_is_a_204_without_a_body(oauth: OAuth, token: str) -> None:
    response = report(oauth, token, [entry(ADA_ACCOUNT_ID), entry(GRACE_ACCOUNT_ID)])

    assert response.status_code == 204
    assert response.content == b""
    assert "Cycle-Period" not in response.headers


def test_a_closed_account_is_reported_closed_and_its_tokens_die(oauth: OAuth, token: str) -> None:
    adas = oauth.mint(account_id=ADA_ACCOUNT_ID)
    oauth.fake.close_account(ADA_ACCOUNT_ID)

    response = report(oauth, token, [entry(GRACE_ACCOUNT_ID), entry(ADA_ACCOUNT_ID)])

    assert response.status_code == 200
    assert response.json() == {"accounts": [{"accountId": ADA_ACCOUNT_ID, "status": "closed"}]}
    # Its own token is refused now, for the API and for reporting (a 401: use another's token).
    assert oauth.api("/me", adas["access_token"]).status_code == 401
    assert report(oauth, adas["access_token"], [entry(GRACE_ACCOUNT_ID)]).status_code == 401
    refused = oauth.refresh(adas["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (403, "invalid_grant")


def test_an_updated_profile_is_updated_to_an_older_updated_at_only(
    oauth: OAuth, token: str
) -> None:
    before = iso(oauth.fake.now() - 60)
    oauth.fake.update_account(ADA_ACCOUNT_ID, email="ada@new.example", name="Ada King")
    after = iso(oauth.fake.now() + 1)

    stale = report(oauth, token, [entry(ADA_ACCOUNT_ID, before)])
    current = report(oauth, token, [entry(ADA_ACCOUNT_ID, after)])

    assert stale.status_code == 200
    assert stale.json() == {"accounts": [{"accountId": ADA_ACCOUNT_ID, "status": "updated"}]}
    assert current.status_code == 204
    me = oauth.api("/me", oauth.mint()["access_token"]).json()
    assert (me["email"], me["name"]) == ("ada@new.example", "Ada King")


def test_statuses_come_in_the_reports_order(oauth: OAuth, token: str) -> None:
    oauth.fake.add_account("carol", "carol@example.com", "Carol")
    oauth.fake.update_account(ADA_ACCOUNT_ID, name="Ada King")
    oauth.fake.close_account("carol")

    response = report(
        oauth, token, [entry("carol"), entry(GRACE_ACCOUNT_ID), entry(ADA_ACCOUNT_ID)]
    )

    assert response.json()["accounts"] == [
        {"accountId": "carol", "status": "closed"},
        {"accountId": ADA_ACCOUNT_ID, "status": "updated"},
    ]


def test_an_account_the_fake_never_had_gets_no_status(oauth: OAuth, token: str) -> None:
    assert report(oauth, token, [entry("nobody-knows")]).status_code == 204


def test_at_most_90_accounts_per_request(oauth: OAuth, token: str) -> None:
    assert REPORT_BATCH_LIMIT == 90
    oauth.fake.close_account(ADA_ACCOUNT_ID)
    ninety = [entry(ADA_ACCOUNT_ID)] + [entry(f"account-{n}") for n in range(89)]

    accepted = report(oauth, token, ninety)
    refused = report(oauth, token, [*ninety, entry("one-too-many")])

    assert accepted.status_code == 200
    assert refused.status_code == 400
    assert "at most 90" in refused.json()["message"]
    # Refused before anything is judged: no status of the accounts it held.
    assert "accounts" not in refused.json()
    assert [e.get("accounts") for e in oauth.fake.requests_log] == [90, 91]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"accounts": "all of them"},
        {"something": []},
        [{"accountId": ADA_ACCOUNT_ID}],
        [{"updatedAt": LONG_AGO}],
        [{"accountId": "", "updatedAt": LONG_AGO}],
        [{"accountId": ADA_ACCOUNT_ID, "updatedAt": "last Tuesday"}],
        [{"accountId": ADA_ACCOUNT_ID, "updatedAt": "2020-01-01T00:00:00"}],
        [{"accountId": ADA_ACCOUNT_ID, "updatedAt": 1577836800}],
        ["5b10a2844c20165700ede21g"],
    ],
)
def test_a_malformed_report_is_a_400(oauth: OAuth, token: str, body: Any) -> None:
    response = report(oauth, token, body)

    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_a_body_that_is_not_json_is_a_400(oauth: OAuth, token: str) -> None:
    response = oauth.http.post(
        oauth.url(PATH), data=b"accounts=all", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 400


def test_reporting_needs_a_valid_access_token(oauth: OAuth, token: str) -> None:
    assert report(oauth, "not-a-token", [entry(ADA_ACCOUNT_ID)]).status_code == 401
    anonymous = oauth.http.post(oauth.url(PATH), json={"accounts": [entry(ADA_ACCOUNT_ID)]})
    assert anonymous.status_code == 401
    oauth.fake.advance_clock(3601)
    assert report(oauth, token, [entry(ADA_ACCOUNT_ID)]).status_code == 401


def test_only_post(oauth: OAuth, token: str) -> None:
    response = oauth.http.get(oauth.url(PATH), headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_the_cycle_period_header_when_set(oauth: OAuth, token: str) -> None:
    oauth.fake.report_cycle_period = 86400
    nothing = report(oauth, token, [entry(GRACE_ACCOUNT_ID)])
    oauth.fake.close_account(ADA_ACCOUNT_ID)
    something = report(oauth, token, [entry(ADA_ACCOUNT_ID)])

    assert (nothing.status_code, nothing.headers["Cycle-Period"]) == (204, "86400")
    assert (something.status_code, something.headers["Cycle-Period"]) == (200, "86400")
    with pytest.raises(ValueError):
        oauth.fake.report_cycle_period = 0


def test_429_with_retry_after_by_fault_injection(oauth: OAuth, token: str) -> None:
    oauth.fake.inject("report_accounts", status=429, headers={"Retry-After": "120"})

    limited = report(oauth, token, [entry(ADA_ACCOUNT_ID)])
    then = report(oauth, token, [entry(ADA_ACCOUNT_ID)])

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "120")
    assert then.status_code == 204
    assert oauth.fake.counts["report_accounts"] == 2


def test_a_closed_account_cannot_consent(oauth: OAuth) -> None:
    oauth.fake.close_account(ADA_ACCOUNT_ID)
    oauth.fake.consent_account_id = None

    page = oauth.authorize().text

    assert "ada@example.com" not in page
    assert "grace@example.com" in page


def test_unknown_accounts_are_refused_by_the_control_methods(fake_atlassian: FakeAtlassian) -> None:
    with pytest.raises(ValueError):
        fake_atlassian.close_account("nobody")
    with pytest.raises(ValueError):
        fake_atlassian.update_account("nobody", name="No One")


def test_reset_reopens_closed_accounts(oauth: OAuth, token: str) -> None:
    oauth.fake.close_account(ADA_ACCOUNT_ID)
    oauth.fake.update_account(GRACE_ACCOUNT_ID, name="Grace B. Hopper")
    oauth.fake.reset()

    again = oauth.mint(account_id=GRACE_ACCOUNT_ID)["access_token"]

    assert report(oauth, again, [entry(ADA_ACCOUNT_ID), entry(GRACE_ACCOUNT_ID)]).status_code == 204


def test_closed_and_updated_survive_a_restart_with_a_state_file(tmp_path: Any) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as fake:
        fake.close_account(ADA_ACCOUNT_ID)
        fake.update_account(GRACE_ACCOUNT_ID, name="Grace B. Hopper")
        changed_at = fake.now()
    with FakeAtlassian(state_path=path) as fake, requests.Session() as http:
        http.trust_env = False
        token = fake.mint_grant(DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID, "read:me")["access_token"]
        response = http.post(
            f"{fake.url}{PATH}",
            json={
                "accounts": [
                    entry(ADA_ACCOUNT_ID, iso(changed_at + 5)),
                    entry(GRACE_ACCOUNT_ID, iso(changed_at - 5)),
                ]
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    assert response.json()["accounts"] == [
        {"accountId": ADA_ACCOUNT_ID, "status": "closed"},
        {"accountId": GRACE_ACCOUNT_ID, "status": "updated"},
    ]


def test_the_control_client_closes_and_updates_accounts(fake_atlassian: FakeAtlassian) -> None:
    with FakeAtlassianClient(fake_atlassian.url) as remote:
        remote.close_account(ADA_ACCOUNT_ID)
        updated = remote.update_account(GRACE_ACCOUNT_ID, email="grace@new.example")
        remote.report_cycle_period = 3600
        assert remote.report_cycle_period == 3600
        with pytest.raises(ValueError):
            remote.close_account("nobody")

    assert updated["email"] == "grace@new.example"
    assert updated["name"] == "Grace Hopper"
    assert fake_atlassian.report_cycle_period == 3600
    token = fake_atlassian.mint_grant(DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID, "read:me")
    with requests.Session() as http:
        http.trust_env = False
        answer = http.post(
            f"{fake_atlassian.url}{PATH}",
            json={"accounts": [entry(ADA_ACCOUNT_ID), entry(GRACE_ACCOUNT_ID)]},
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=5,
        )
    assert answer.json()["accounts"] == [
        {"accountId": ADA_ACCOUNT_ID, "status": "closed"},
        {"accountId": GRACE_ACCOUNT_ID, "status": "updated"},
    ]
