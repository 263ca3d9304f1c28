"""Tests that kill mutants of atlassian_oauth/api.py that `make mutation` found surviving.

What application code sees: the URLs the helpers build, the default site per product, the
``Accept`` header, how much validity a token must have before it is sent (and that a session
notices its own token running low), and that a 401'd token is never sent again because a
refresh failed; who is told what when there is no connection (anonymous, removed meanwhile);
the session's client id, its refusals to fetch or refresh tokens itself, and the default
Confluence site loaded with the connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site
from django.db import connection as db_connection
from django.utils import timezone

from atlassian_oauth.api import (
    NotConnected,
    TemporarilyUnavailable,
    confluence_url,
    get_access_token,
    get_connection,
    get_session,
    jira_url,
)
from atlassian_oauth.models import Connection, Grant, Resource
from atlassian_oauth.testing import (
    ACME_CLOUD_ID,
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    GLOBEX_CLOUD_ID,
    GRACE_ACCOUNT_ID,
)
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db

MYSELF = "rest/api/3/myself"
WIKI_CLOUD_ID = "11111111-2222-3333-4444-555555555555"


def alice_and_site() -> tuple[AbstractBaseUser, Site]:
    return get_user_model().objects.get(username="alice"), Site.objects.get(domain="localhost")


@pytest.mark.parametrize(
    ("path", "tail"),
    [
        ("", ""),
        ("/rest/api/3/myself", "rest/api/3/myself"),
        ("rest/api/3/search/jql/", "rest/api/3/search/jql/"),
        ("//wiki/api/v2/pages/", "wiki/api/v2/pages/"),
        ("XRAY/api/v2/", "XRAY/api/v2/"),
        (" rest", " rest"),
    ],
)
def test_the_gateway_urls_are_built_exactly(fake_atlassian, path, tail):
    base = fake_atlassian.url
    assert jira_url("cloud-1", path) == f"{base}/ex/jira/cloud-1/{tail}"
    assert confluence_url("cloud-1", path) == f"{base}/ex/confluence/cloud-1/{tail}"


def test_the_default_path_is_the_sites_root(fake_atlassian):
    assert jira_url("c") == f"{fake_atlassian.url}/ex/jira/c/"
    assert confluence_url("c") == f"{fake_atlassian.url}/ex/confluence/c/"


def test_a_session_finds_each_products_site_and_builds_its_urls(fake_atlassian):
    grant = connected_grant(fake_atlassian)  # Ada: acme, for Jira
    Resource.objects.create(
        grant=grant,
        cloud_id=WIKI_CLOUD_ID,
        name="wiki",
        url="https://wiki.example",
        scopes=["read:confluence-content.all"],
    )
    session = get_session(*alice_and_site())
    assert session.default_cloud_id() == ACME_CLOUD_ID
    assert session.default_cloud_id("confluence") == WIKI_CLOUD_ID
    assert session.jira_url() == jira_url(ACME_CLOUD_ID, "")
    assert session.confluence_url() == confluence_url(WIKI_CLOUD_ID, "")
    assert session.confluence_url("wiki/api/v2/pages") == confluence_url(
        WIKI_CLOUD_ID, "wiki/api/v2/pages"
    )
    assert session.jira_url(MYSELF, cloud_id="other") == jira_url("other", MYSELF)


def test_a_session_without_a_confluence_site_says_which_product_is_missing(fake_atlassian):
    connected_grant(fake_atlassian, account_id=GRACE_ACCOUNT_ID)  # Grace: globex, Jira only
    session = get_session(*alice_and_site())
    assert session.default_cloud_id() == GLOBEX_CLOUD_ID
    with pytest.raises(NotConnected, match="reaches no confluence site"):
        session.confluence_url("wiki/api/v2/pages")


def test_a_session_asks_for_json(fake_atlassian):
    connected_grant(fake_atlassian)
    session = get_session(*alice_and_site())
    response = session.get(session.jira_url(MYSELF))
    assert response.status_code == 200
    assert response.request.headers["Accept"] == "application/json"


def test_a_token_with_minutes_left_is_used_as_it_is(fake_atlassian):
    """REQUEST_MARGIN (60 s), not REFRESH_MARGIN (300 s), decides before a request."""
    grant = connected_grant(fake_atlassian, expires_in=150)
    user, site = alice_and_site()
    assert get_access_token(user, site) == grant.access_token
    session = get_session(user, site)
    response = session.get(session.jira_url(MYSELF))
    assert response.status_code == 200
    assert response.request.headers["Authorization"] == f"Bearer {grant.access_token}"
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_a_session_refreshes_its_own_token_once_it_runs_low(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=66)
    session = get_session(*alice_and_site())
    first = session.get(session.jira_url(MYSELF))
    assert first.request.headers["Authorization"] == f"Bearer {grant.access_token}"
    assert fake_atlassian.counts.get("refresh", 0) == 0, "refreshed with over a minute left"

    # Once under a minute is left, the session's cached token is not sent any more.
    stored = Grant.objects.get(pk=grant.pk)
    low = (stored.access_token_expires_at - timezone.now()).total_seconds() - 60
    time.sleep(max(0.0, low) + 0.3)
    second = session.get(session.jira_url(MYSELF))
    renewed = Grant.objects.get(pk=grant.pk)
    assert fake_atlassian.counts.get("refresh", 0) == 1
    assert renewed.access_token != grant.access_token
    assert second.request.headers["Authorization"] == f"Bearer {renewed.access_token}"


def test_a_401d_token_is_not_sent_again_when_the_refresh_fails(fake_atlassian):
    connected_grant(fake_atlassian)
    session = get_session(*alice_and_site())
    assert session.get(session.jira_url(MYSELF)).status_code == 200
    fake_atlassian.inject(kind="jira", status=401)
    fake_atlassian.inject(kind="refresh", status=503)

    with pytest.raises(TemporarilyUnavailable):
        session.get(session.jira_url(MYSELF))
    assert fake_atlassian.counts["refresh"] == 1
    assert fake_atlassian.counts["jira"] == 2, "the token Atlassian refused was sent again"


def test_not_connected_says_why(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    user, site = alice_and_site()
    with pytest.raises(NotConnected, match="anonymous user"):
        get_connection(AnonymousUser(), site)
    bob = get_user_model().objects.create(username="bob")
    with pytest.raises(NotConnected, match="has not connected Atlassian on localhost"):
        get_connection(bob, site)
    session = get_session(user, site)
    Grant.objects.filter(pk=grant.pk).delete()  # disconnected meanwhile (say, by an admin)
    with pytest.raises(NotConnected, match="connection was removed"):
        session.get(session.jira_url(MYSELF, cloud_id=ACME_CLOUD_ID))


def test_a_connection_comes_with_its_grant_and_site_in_one_query(
    fake_atlassian, django_assert_num_queries
):
    connected_grant(fake_atlassian)
    user, site = alice_and_site()
    with django_assert_num_queries(1):
        connection = get_connection(user, site)
        assert connection.grant.account_id and connection.site.domain == "localhost"


@pytest.mark.parametrize("call", [get_access_token, get_connection, get_session])
def test_an_anonymous_user_is_told_why_there_is_no_connection(fake_atlassian, call):
    connected_grant(fake_atlassian)
    with pytest.raises(NotConnected, match="anonymous user has no Atlassian connection"):
        call(AnonymousUser(), alice_and_site()[1])


def test_a_401_after_the_connection_went_says_it_was_removed(fake_atlassian):
    """The session still holds a token Atlassian accepted; the connection is removed meanwhile,
    then Atlassian refuses the token: the retry finds no grant and says so."""
    grant = connected_grant(fake_atlassian)
    session = get_session(*alice_and_site())
    url = session.jira_url(MYSELF)
    assert session.get(url).status_code == 200
    Grant.objects.filter(pk=grant.pk).delete()
    fake_atlassian.inject(kind="jira", status=401)
    with pytest.raises(NotConnected, match="connection was removed"):
        session.get(url)
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_a_session_names_the_app_its_grant_was_issued_to(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    session = get_session(*alice_and_site())
    assert session.client_id == grant.client_id == DEFAULT_CLIENT_ID


def test_the_default_site_without_a_product_is_the_jira_site(fake_atlassian):
    connected_grant(fake_atlassian)  # Ada: acme, for Jira
    session = get_session(*alice_and_site())
    assert session.default_site().cloud_id == ACME_CLOUD_ID
    assert session.default_site() == session.default_site("jira")


def test_a_session_refuses_to_fetch_or_refresh_tokens_and_says_who_does(fake_atlassian):
    connected_grant(fake_atlassian)
    session = get_session(*alice_and_site())
    with pytest.raises(NotImplementedError, match=r"single-flight refresh only"):
        session.refresh_token("https://auth.example/oauth/token")
    with pytest.raises(NotImplementedError, match=r"come from the connection"):
        session.fetch_token("https://auth.example/oauth/token")
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_the_default_confluence_site_comes_with_the_connection(
    fake_atlassian, django_assert_num_queries
):
    grant = connected_grant(fake_atlassian)
    wiki = Resource.objects.create(
        grant=grant,
        cloud_id=WIKI_CLOUD_ID,
        name="wiki",
        url="https://wiki.example",
        scopes=["read:confluence-content.all"],
    )
    user, site = alice_and_site()
    Connection.objects.filter(user_id=user.pk, site=site).update(confluence_resource=wiki)
    with django_assert_num_queries(1):
        session = get_session(user, site)
    with django_assert_num_queries(0):
        assert session.confluence_url("wiki/api/v2/pages") == confluence_url(
            WIKI_CLOUD_ID, "wiki/api/v2/pages"
        )


def test_a_request_uses_a_token_stored_meanwhile_that_lasts_the_request_margin(fake_atlassian):
    """The stored token is due when the session looks (30 s left); before the refresh path
    reads the row again, a reconnect stores a new token with 200 s left. That one is good for
    a request (REQUEST_MARGIN, 60 s): it is sent, and nothing is refreshed (REFRESH_MARGIN,
    300 s, is the beat's margin, not a request's)."""
    grant = connected_grant(fake_atlassian, expires_in=30)
    session = get_session(*alice_and_site())
    url = session.jira_url(MYSELF)
    table = Grant._meta.db_table
    fresh = fake_atlassian.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, "read:jira-work read:me")
    reads: list[str] = []
    busy: list[bool] = []

    def reconnect_between_the_reads(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        if sql.lstrip().upper().startswith("SELECT") and table in sql and not busy:
            reads.append(sql)
            if len(reads) == 2:  # the refresh path's own read: the reconnect lands just before
                busy.append(True)
                try:
                    row = Grant.objects.get(pk=grant.pk)
                    row.access_token = fresh["access_token"]
                    row.access_token_expires_at = timezone.now() + timedelta(seconds=200)
                    row.version += 1
                    row.save(update_fields=["access_token", "access_token_expires_at", "version"])
                finally:
                    busy.clear()
        return execute(sql, params, many, context)

    with db_connection.execute_wrapper(reconnect_between_the_reads):
        response = session.get(url)
    assert len(reads) >= 2, "the token was not due: the test did not reach the refresh path"
    assert response.status_code == 200
    sent_the_new_token = (
        response.request.headers["Authorization"] == f"Bearer {fresh['access_token']}"
    )
    assert fake_atlassian.counts.get("refresh", 0) == 0, "refreshed a token good for the request"
    assert sent_the_new_token, "the request did not send the token stored meanwhile"
