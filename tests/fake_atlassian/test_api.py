"""The API host: accessible-resources, /me and the Jira gateway."""

from __future__ import annotations

import re

import pytest

from atlassian_oauth.testing import (
    ACME_CLOUD_ID,
    ADA_ACCOUNT_ID,
    GLOBEX_CLOUD_ID,
    GRACE_ACCOUNT_ID,
)

from .conftest import OAuth

UNAUTHORIZED = {"code": 401, "message": "Unauthorized"}


def test_accessible_resources_lists_one_cloud_id_once_per_product(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work read:confluence-content.all read:me offline_access")

    response = oauth.api("/oauth/token/accessible-resources", tokens["access_token"])

    assert response.status_code == 200
    resources = response.json()
    assert [r["id"] for r in resources] == [ACME_CLOUD_ID, ACME_CLOUD_ID]
    for resource in resources:
        assert set(resource) == {"id", "name", "url", "scopes", "avatarUrl"}
        assert resource["url"] == "https://acme.atlassian.net"
        assert resource["avatarUrl"].startswith("https://")
    # Each entry carries its own product's scopes.
    assert [r["scopes"] for r in resources] == [
        ["read:jira-work"],
        ["read:confluence-content.all"],
    ]


def test_a_product_without_granted_scopes_is_not_listed(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work read:me offline_access")

    resources = oauth.api("/oauth/token/accessible-resources", tokens["access_token"]).json()

    assert [(r["id"], r["scopes"]) for r in resources] == [(ACME_CLOUD_ID, ["read:jira-work"])]


def test_accessible_resources_of_another_account(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work", account_id=GRACE_ACCOUNT_ID)

    resources = oauth.api("/oauth/token/accessible-resources", tokens["access_token"]).json()

    assert [(r["id"], r["name"]) for r in resources] == [(GLOBEX_CLOUD_ID, "globex")]


def test_me_returns_the_profile_with_read_me(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work read:me")

    response = oauth.api("/me", tokens["access_token"])

    assert response.status_code == 200
    me = response.json()
    assert me["account_id"] == ADA_ACCOUNT_ID
    assert me["email"] == "ada@example.com"
    assert me["name"] == "Ada Lovelace"
    assert me["account_status"] == "active"
    assert me["account_type"] == "atlassian"
    assert me["email_verified"] is True
    for key in ("picture", "nickname", "zoneinfo", "locale"):
        assert me[key]


def test_me_without_read_me_is_a_403(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work offline_access")

    response = oauth.api("/me", tokens["access_token"])

    assert response.status_code == 403
    assert response.json()["code"] == 403


@pytest.mark.parametrize(
    "path",
    ["/me", "/oauth/token/accessible-resources", f"/ex/jira/{ACME_CLOUD_ID}/rest/api/3/myself"],
)
def test_a_bad_bearer_token_is_a_401(oauth: OAuth, path: str) -> None:
    response = oauth.api(path, "not-a-token")
    missing = oauth.http.get(oauth.url(path))

    assert response.status_code == missing.status_code == 401
    assert response.json() == missing.json() == UNAUTHORIZED


def test_jira_myself_is_the_consenting_user(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-user")

    response = oauth.api(f"/ex/jira/{ACME_CLOUD_ID}/rest/api/3/myself", tokens["access_token"])

    assert response.status_code == 200
    user = response.json()
    assert user["accountId"] == ADA_ACCOUNT_ID
    assert user["emailAddress"] == "ada@example.com"
    assert user["displayName"] == "Ada Lovelace"
    assert user["active"] is True
    assert user["timeZone"]


@pytest.mark.parametrize("endpoint", ["search", "search/jql"])
def test_jira_search_returns_issues_of_the_site(oauth: OAuth, endpoint: str) -> None:
    tokens = oauth.mint("read:jira-work")

    response = oauth.api(
        f"/ex/jira/{ACME_CLOUD_ID}/rest/api/3/{endpoint}",
        tokens["access_token"],
        jql="project = ACME",
        maxResults="2",
    )

    assert response.status_code == 200
    result = response.json()
    assert result["total"] == 6
    assert result["startAt"] == 0
    assert result["maxResults"] == 2
    # Keys of a real project (not numbered from 1), most recently updated first.
    assert [i["key"] for i in result["issues"]] == ["ACME-23", "ACME-21"]
    issue = result["issues"][0]
    assert issue["id"]
    fields = issue["fields"]
    assert fields["summary"] == "Checkout fails when the basket holds more than 50 items"
    assert fields["status"] == {
        "name": "In Progress",
        "statusCategory": {"key": "indeterminate", "name": "In Progress"},
    }
    assert fields["issuetype"]["name"] == "Bug"
    assert fields["priority"]["name"] == "High"
    # assignee = currentUser(): the account that searches.
    assert fields["assignee"]["accountId"] == ADA_ACCOUNT_ID
    assert fields["assignee"]["displayName"] == "Ada Lovelace"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000", fields["updated"])
    updated = [i["fields"]["updated"] for i in result["issues"]]
    assert updated == sorted(updated, reverse=True)


def test_jira_search_pages_through_the_issues(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work")
    path = f"/ex/jira/{ACME_CLOUD_ID}/rest/api/3/search/jql"

    first = oauth.api(path, tokens["access_token"], maxResults="4").json()
    rest = oauth.api(path, tokens["access_token"], startAt="4", maxResults="4").json()

    assert (len(first["issues"]), first["isLast"]) == (4, False)
    assert (len(rest["issues"]), rest["isLast"]) == (2, True)
    keys = {i["key"] for i in first["issues"] + rest["issues"]}
    assert len(keys) == 6 and all(key.startswith("ACME-") for key in keys)


def test_jira_on_a_cloud_id_the_grant_does_not_reach_is_a_404(oauth: OAuth) -> None:
    tokens = oauth.mint("read:jira-work", account_id=ADA_ACCOUNT_ID)

    response = oauth.api(f"/ex/jira/{GLOBEX_CLOUD_ID}/rest/api/3/myself", tokens["access_token"])

    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_an_unknown_path_is_a_json_404(oauth: OAuth) -> None:
    response = oauth.http.get(oauth.url("/nothing/here"))

    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "Not Found"}
    assert oauth.fake.counts["not_found"] == 1
