"""What application code calls: ``get_session``, ``get_access_token`` and the typed exceptions."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site
from django.db import connection as db_connection
from django.test import RequestFactory

from atlassian_oauth import api
from atlassian_oauth.api import (
    NotConnected,
    ReconnectRequired,
    TemporarilyUnavailable,
    confluence_url,
    get_access_token,
    get_session,
    jira_url,
)
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import ACME_CLOUD_ID, GRACE_ACCOUNT_ID, FakeAtlassian
from tests.refresh_helpers import captured_signals, connected_grant, expire, set_stored_tokens

pytestmark = pytest.mark.django_db

MYSELF = "rest/api/3/myself"


@pytest.fixture
def alice(sites, fake_atlassian: FakeAtlassian) -> Any:
    """Alice, connected on localhost (the tenant sites from conftest's ``sites``)."""
    connected_grant(fake_atlassian)
    return get_user_model().objects.get(username="alice")


@pytest.fixture
def localhost(alice: Any) -> Site:
    return Site.objects.get(domain="localhost")


def api_calls(fake_atlassian: FakeAtlassian) -> list[tuple[str, int | None]]:
    """(kind, status) of every refresh and Jira request, in order."""
    return [
        (e["kind"], e["status"])
        for e in fake_atlassian.requests_log
        if e["kind"] in ("refresh", "jira")
    ]


def stored_grant() -> Grant:
    return Grant.objects.get()


# ---- the session -----------------------------------------------------------------------------


def test_the_session_sends_the_current_bearer_token(fake_atlassian, alice, localhost):
    session = get_session(alice, localhost)
    assert isinstance(session, api.AtlassianSession)
    assert session.connection.user_id == alice.pk

    response = session.get(session.jira_url(MYSELF))

    assert response.status_code == 200
    assert response.json()["emailAddress"] == "ada@example.com"
    sent = response.request.headers["Authorization"]
    assert sent == f"Bearer {stored_grant().access_token}"
    assert api_calls(fake_atlassian) == [("jira", 200)]


def test_url_helpers_build_gateway_urls_from_the_cloud_id(fake_atlassian, alice, localhost):
    base = fake_atlassian.url
    assert jira_url("cid", MYSELF) == f"{base}/ex/jira/cid/rest/api/3/myself"
    assert jira_url("cid", "/" + MYSELF) == f"{base}/ex/jira/cid/rest/api/3/myself"
    assert (
        confluence_url("cid", "wiki/api/v2/pages") == f"{base}/ex/confluence/cid/wiki/api/v2/pages"
    )
    session = get_session(alice, localhost)
    assert session.jira_url(MYSELF) == f"{base}/ex/jira/{ACME_CLOUD_ID}/{MYSELF}"
    assert session.jira_url(MYSELF, cloud_id="other") == f"{base}/ex/jira/other/{MYSELF}"
    assert (
        session.confluence_url("wiki/api/v2/pages", cloud_id=ACME_CLOUD_ID)
        == f"{base}/ex/confluence/{ACME_CLOUD_ID}/wiki/api/v2/pages"
    )
    # The test grant's scopes reach Jira only: there is no Confluence site to default to.
    with pytest.raises(NotConnected):
        session.confluence_url("wiki/api/v2/pages")


def test_the_session_refreshes_before_a_request_when_the_token_is_about_to_expire(
    fake_atlassian, localhost, alice
):
    connected_grant(fake_atlassian, expires_in=30)  # inside REQUEST_MARGIN (60 s)
    old = stored_grant().access_token
    session = get_session(alice, localhost)

    response = session.get(session.jira_url(MYSELF))

    assert response.status_code == 200
    assert api_calls(fake_atlassian) == [("refresh", 200), ("jira", 200)]
    assert response.request.headers["Authorization"] == f"Bearer {stored_grant().access_token}"
    assert stored_grant().access_token != old
    # Routine: the refreshed signal fires, but no event row is written (issue 12).
    assert not Event.objects.filter(kind=Event.Kind.REFRESHED).exists()

    # The session keeps the fresh token: no refresh for the next request.
    assert session.get(session.jira_url(MYSELF)).status_code == 200
    assert fake_atlassian.counts["refresh"] == 1


def test_a_token_that_died_early_is_refreshed_once_and_the_request_retried_once(
    fake_atlassian, alice, localhost
):
    grant = stored_grant()
    set_stored_tokens(grant.pk, access_token="dead-token")  # far expiry, but Atlassian says 401
    session = get_session(alice, localhost)

    with captured_signals() as calls:
        response = session.get(session.jira_url(MYSELF))

    assert response.status_code == 200
    assert api_calls(fake_atlassian) == [("jira", 401), ("refresh", 200), ("jira", 200)]
    stored = stored_grant()
    assert stored.access_token not in ("dead-token", grant.access_token)
    assert stored.version == grant.version + 1
    assert response.request.headers["Authorization"] == f"Bearer {stored.access_token}"
    assert [name for name, _ in calls] == ["refreshed"]


def test_a_second_401_is_returned_to_the_caller_without_looping(fake_atlassian, alice, localhost):
    session = get_session(alice, localhost)
    fake_atlassian.inject(
        kind="jira", status=401, body={"code": 401, "message": "Unauthorized"}, times=2
    )

    response = session.get(session.jira_url(MYSELF))

    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": "Unauthorized"}
    assert api_calls(fake_atlassian) == [("jira", 401), ("refresh", 200), ("jira", 401)]
    assert fake_atlassian.counts["jira"] == 2 and fake_atlassian.counts["refresh"] == 1


def test_two_sessions_with_the_same_stale_token_refresh_only_once(fake_atlassian, alice, localhost):
    first, second = get_session(alice, localhost), get_session(alice, localhost)
    for session in (first, second):
        assert session.get(session.jira_url(MYSELF)).status_code == 200
    stale_version = stored_grant().version

    responses = []
    for session in (first, second):  # each holds the stale token and sees it fail
        fake_atlassian.inject(kind="jira", status=401)
        responses.append(session.get(session.jira_url(MYSELF)))

    assert [r.status_code for r in responses] == [200, 200]
    assert fake_atlassian.counts["refresh"] == 1
    assert stored_grant().version == stale_version + 1
    current = f"Bearer {stored_grant().access_token}"
    assert [r.request.headers["Authorization"] for r in responses] == [current, current]
    assert api_calls(fake_atlassian)[2:] == [
        *[("jira", 401), ("refresh", 200), ("jira", 200)],  # the first session refreshes
        *[("jira", 401), ("jira", 200)],  # the second sees the version moved on
    ]


@pytest.mark.django_db(transaction=True)
def test_two_sessions_hitting_401_at_the_same_time_refresh_only_once(
    fake_atlassian, alice, localhost
):
    sessions = [get_session(alice, localhost) for _ in range(2)]
    for session in sessions:
        assert session.get(session.jira_url(MYSELF)).status_code == 200
    stale_version = stored_grant().version
    # Both first calls take a 401 before either retries; the refresh is slow to answer.
    fake_atlassian.inject(kind="jira", status=401, times=2, delay=0.5)
    fake_atlassian.inject(kind="refresh", delay_after=0.5)
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def call(index: int) -> None:
        try:
            barrier.wait(timeout=5)
            session = sessions[index]
            results[index] = session.get(session.jira_url(MYSELF))
        except Exception as error:  # reported by the assertion below
            results[index] = error
        finally:
            db_connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [getattr(r, "status_code", r) for r in results] == [200, 200]
    assert fake_atlassian.counts["refresh"] == 1
    assert stored_grant().version == stale_version + 1
    current = f"Bearer {stored_grant().access_token}"
    assert [r.request.headers["Authorization"] for r in results] == [current, current]
    jira = [status or 0 for kind, status in api_calls(fake_atlassian) if kind == "jira"]
    assert sorted(jira[2:]) == [200, 200, 401, 401]


def test_caller_headers_are_kept_and_the_bearer_cannot_be_overridden(
    fake_atlassian, alice, localhost
):
    session = get_session(alice, localhost)
    response = session.get(
        session.jira_url(MYSELF), headers={"X-Trace": "1", "Authorization": "Bearer nope"}
    )
    assert response.status_code == 200
    assert response.request.headers["X-Trace"] == "1"
    assert response.request.headers["Authorization"] == f"Bearer {stored_grant().access_token}"


# ---- whose connection ------------------------------------------------------------------------


def test_a_user_without_a_connection_is_not_connected(fake_atlassian, alice, localhost):
    bob = get_user_model().objects.create(username="bob")
    for call in (get_session, get_access_token):
        with pytest.raises(NotConnected):
            call(bob, localhost)
    assert fake_atlassian.counts["jira"] == 0 and fake_atlassian.counts["refresh"] == 0


def test_an_anonymous_user_is_not_connected(fake_atlassian, alice, localhost):
    for call in (get_session, get_access_token):
        with pytest.raises(NotConnected):
            call(AnonymousUser(), localhost)


def test_a_connection_on_another_site_is_not_reached(fake_atlassian, alice, localhost):
    other = Site.objects.get(domain="127.0.0.1")  # the other tenant (conftest `sites`)
    request = RequestFactory().get("/", HTTP_HOST="127.0.0.1")
    for site in (other, request):
        for call in (get_session, get_access_token):
            with pytest.raises(NotConnected):
                call(alice, site)


def test_a_user_never_gets_another_users_token(fake_atlassian, alice, localhost):
    connected_grant(fake_atlassian, username="bob", account_id=GRACE_ACCOUNT_ID)
    bob = get_user_model().objects.get(username="bob")
    alice_token = Grant.objects.get(connections__user=alice).access_token
    bob_token = get_access_token(bob, localhost)
    assert bob_token == Grant.objects.get(connections__user=bob).access_token != alice_token
    assert get_session(bob, localhost).connection.user_id == bob.pk

    carol = get_user_model().objects.create(username="carol")
    with pytest.raises(NotConnected):
        get_session(carol, localhost)


# ---- typed exceptions --------------------------------------------------------------------


def test_a_dead_grant_raises_reconnect_required(fake_atlassian, alice, localhost):
    Grant.objects.update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(ReconnectRequired):
        get_access_token(alice, localhost)
    session = get_session(alice, localhost)
    with pytest.raises(ReconnectRequired):
        session.get(session.jira_url(MYSELF))
    assert fake_atlassian.counts["refresh"] == 0 and fake_atlassian.counts["jira"] == 0


def test_atlassian_unavailable_raises_temporarily_unavailable_with_retry_after(
    fake_atlassian, alice, localhost
):
    expire(stored_grant())
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "60"})
    with pytest.raises(TemporarilyUnavailable) as caught:
        get_access_token(alice, localhost)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 60
    # Backing off now: the session raises too, without calling Atlassian again.
    session = get_session(alice, localhost)
    with pytest.raises(TemporarilyUnavailable) as again:
        session.get(session.jira_url(MYSELF))
    assert again.value.retry_after is not None and 55 <= again.value.retry_after <= 60
    assert fake_atlassian.counts["refresh"] == 1 and fake_atlassian.counts["jira"] == 0
    assert isinstance(caught.value, api.AtlassianOAuthError)


# ---- get_access_token --------------------------------------------------------------------


def test_get_access_token_accepts_a_site_a_request_or_the_site_id(
    fake_atlassian, settings, alice, localhost
):
    token = stored_grant().access_token
    assert get_access_token(alice, localhost) == token
    assert get_access_token(alice, RequestFactory().get("/", HTTP_HOST="localhost")) == token
    settings.SITE_ID = localhost.pk
    assert get_access_token(alice) == token
    assert fake_atlassian.counts["refresh"] == 0


def test_get_access_token_refreshes_an_expiring_token(fake_atlassian, alice, localhost):
    old = stored_grant().access_token
    expire(stored_grant())
    token = get_access_token(alice, localhost)
    assert token == stored_grant().access_token != old
    assert fake_atlassian.counts["refresh"] == 1


# ---- no token in repr() or str() ---------------------------------------------------------


def test_no_token_in_session_repr_or_exception_messages(fake_atlassian, alice, localhost):
    session = get_session(alice, localhost)
    session.get(session.jira_url(MYSELF))
    grant = stored_grant()
    secrets = [grant.access_token, grant.refresh_token]
    texts = [repr(session), str(session), repr(session.connection)]

    expire(grant)
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "60"})
    with pytest.raises(TemporarilyUnavailable) as unavailable:
        get_access_token(alice, localhost)
    Grant.objects.update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(ReconnectRequired) as reconnect:
        get_access_token(alice, localhost)
    with pytest.raises(NotConnected) as not_connected:
        get_access_token(AnonymousUser(), localhost)
    for caught in (unavailable, reconnect, not_connected):
        texts += [str(caught.value), repr(caught.value), str(caught.value.__cause__)]

    for secret in secrets:
        assert secret
        for text in texts:
            assert secret not in text


def test_a_failed_refresh_still_hands_out_a_token_that_works(fake_atlassian, alice, localhost):
    """Atlassian is down while the token has 30 s left: the request goes out with it anyway."""
    grant = connected_grant(fake_atlassian, expires_in=30)
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "60"})
    session = get_session(alice, localhost)
    response = session.get(session.jira_url("rest/api/3/myself"))
    assert response.status_code == 200
    assert fake_atlassian.counts["refresh"] == 1
    assert Grant.objects.get(pk=grant.pk).refresh_failures == 1


def test_a_missing_site_is_a_configuration_error_that_says_how_to_fix_it(settings, alice):
    """No Site for the host, no SITE_ID, or a SITE_ID without its Site: an ImproperlyConfigured
    naming the host or id and the fix (checks W011, W012), not Django's bare DoesNotExist."""
    from django.core.exceptions import ImproperlyConfigured

    if hasattr(settings, "SITE_ID"):
        del settings.SITE_ID
    settings.ALLOWED_HOSTS = ["app.example.org"]
    Site.objects.clear_cache()
    request = RequestFactory().get("/", HTTP_HOST="app.example.org:8443")
    calls = (api.get_connection, get_access_token, get_session)

    for call in calls:
        with pytest.raises(ImproperlyConfigured) as by_host:
            call(alice, request)
        message = str(by_host.value)
        assert "No Site matches this request's host 'app.example.org:8443'" in message
        assert "create a Site with that domain" in message and "SITE_ID = 1" in message
        assert not isinstance(by_host.value, Site.DoesNotExist)
        assert by_host.value.__context__ is None  # not raised from within DoesNotExist

        no_site = r"Without a site, .* need settings\.SITE_ID"
        with pytest.raises(ImproperlyConfigured, match=no_site):
            call(alice, None)

    settings.SITE_ID = 99
    no_row = r"settings\.SITE_ID is 99, but no Site has that id"
    for call in calls:
        with pytest.raises(ImproperlyConfigured, match=no_row):
            call(alice, request)  # SITE_ID wins over the host, as in Site.objects.get_current()
        with pytest.raises(ImproperlyConfigured, match=no_row):
            call(alice)

    Site.objects.create(domain="app.example.org", name="App")  # the host finds its site again
    del settings.SITE_ID
    with pytest.raises(NotConnected, match=r"on app\.example\.org"):
        get_session(alice, request)
    Site.objects.clear_cache()
