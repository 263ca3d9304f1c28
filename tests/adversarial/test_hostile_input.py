"""Hostile input a security review sent: each test reproduces one finding of issue 7.

Against the fake Atlassian over real HTTP; the callback and admin through Django's test client.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import refresh
from atlassian_oauth.exceptions import TemporarilyUnavailable
from atlassian_oauth.models import AuthorizationState, Connection, Event, Grant, Resource
from atlassian_oauth.testing import ADA_ACCOUNT_ID
from tests.flow_helpers import callback_params, connect, consent, finish, messages_of, start
from tests.refresh_helpers import connected_grant

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("without_connect_redirect_url")]


@pytest.fixture
def without_connect_redirect_url(settings):
    """No CONNECT_REDIRECT_URL (the demo sets one): connect ends on the status page, the default."""
    settings.ATLASSIAN_OAUTH = {
        key: value
        for key, value in settings.ATLASSIAN_OAUTH.items()
        if key != "CONNECT_REDIRECT_URL"
    }


class Listener:
    """A loopback socket that records every connection made to it (and answers none)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.socket.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                accepted, _address = self.socket.accept()
            except OSError:
                continue
            self.connections += 1
            accepted.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


# 2. Token requests never follow redirects.


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_refresh_answered_with_a_redirect_sends_nothing_to_the_location(
    fake_atlassian, listener, status
):
    grant = connected_grant(fake_atlassian, expires_in=-10)
    fake_atlassian.inject("refresh", status=status, headers={"Location": listener.url + "/steal"})
    with pytest.raises(TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION)
    assert listener.connections == 0
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE  # an unexpected answer, not a dead grant
    assert grant.refresh_failures == 1
    assert f"answered {status}" in grant.last_error


def test_a_code_exchange_answered_with_a_redirect_sends_nothing_to_the_location(
    alice_client, accepting, listener
):
    params = callback_params(consent(start(alice_client)))
    accepting.inject("code_exchange", status=307, headers={"Location": listener.url + "/steal"})
    response = finish(alice_client, params)
    assert response.status_code == 302
    assert listener.connections == 0
    assert not Connection.objects.exists()
    assert any("Atlassian" in message for message in messages_of(response))


# 3. `next` is a path or a URL on this host, never a URL name; the last step cannot fail.


@pytest.mark.parametrize(
    "next_url", ["foo", "atlassian_oauth:status", "admin:index", "javascript:alert(1)"]
)
def test_a_next_that_is_not_a_path_is_ignored_and_the_connection_kept(
    alice, alice_client, accepting, next_url
):
    response = connect(alice_client, next_url=next_url)
    assert response.status_code == 302
    assert response["Location"] == "/atlassian/"
    assert Connection.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/after/connect/?tab=jira", "/after/connect/?tab=jira"),
        ("http://localhost/after/", "http://localhost/after/"),
        ("//evil.example/", "/atlassian/"),
        ("https://evil.example/", "/atlassian/"),
        ("/\\evil.example/", "/atlassian/"),
    ],
)
def test_next_accepts_paths_and_urls_on_this_host_only(alice_client, accepting, next_url, expected):
    response = connect(alice_client, next_url=next_url)
    assert response["Location"] == expected


def test_a_connect_redirect_url_that_does_not_resolve_still_redirects_after_the_commit(
    alice, alice_client, accepting, oauth_settings, caplog
):
    oauth_settings(CONNECT_REDIRECT_URL="no-such")
    with caplog.at_level(logging.ERROR, logger="atlassian_oauth"):
        response = connect(alice_client)
    assert response.status_code == 302
    assert response["Location"] == "/atlassian/"
    assert Connection.objects.filter(user=alice).exists()
    assert any("CONNECT_REDIRECT_URL" in record.getMessage() for record in caplog.records)


# 4. One user cannot grow the tables without bound.


def test_pending_flows_are_capped_per_user_and_the_oldest_dropped(alice, alice_client, accepting):
    from atlassian_oauth.connect import MAX_PENDING_FLOWS

    consent_urls = [start(alice_client) for _ in range(MAX_PENDING_FLOWS + 20)]
    assert AuthorizationState.objects.filter(user=alice).count() == MAX_PENDING_FLOWS
    oldest = finish(alice_client, callback_params(consent(consent_urls[0])))
    assert not Connection.objects.exists()
    assert "connect again" in " ".join(messages_of(oldest)).lower()
    newest = finish(alice_client, callback_params(consent(consent_urls[-1])))
    assert newest.status_code == 302
    assert Connection.objects.filter(user=alice).exists()


def test_pending_flows_are_capped_per_user_across_browsers(alice, alice_client, accepting):
    from django.test import Client

    from atlassian_oauth.connect import MAX_PENDING_FLOWS

    second_browser = Client()
    second_browser.force_login(alice)
    for browser in (alice_client, second_browser):
        for _ in range(MAX_PENDING_FLOWS):
            start(browser)
    binding_hashes = set(AuthorizationState.objects.values_list("session_binding_hash", flat=True))
    assert binding_hashes == {  # only the second browser's flows are left
        AuthorizationState.objects.latest("pk").session_binding_hash
    }
    assert AuthorizationState.objects.count() == MAX_PENDING_FLOWS


def test_repeated_identical_failures_collapse_into_one_event_with_a_count(alice_client):
    for _ in range(40):
        response = finish(alice_client, {"state": "forged", "code": "whatever"})
        assert response.status_code == 302
    failures = Event.objects.filter(kind=Event.Kind.CONNECT_FAILED)
    assert failures.count() == 1
    assert failures.get().details["count"] == 40
    # A different failure is a new event.
    finish(alice_client, {"state": "", "code": "whatever"})
    assert failures.count() == 2


# 5. URLs from Atlassian are validated before they are stored, and only https: is a link.


HOSTILE_RESOURCES = [
    {"id": "cloud-js", "name": "Evil", "url": "javascript:alert(document.cookie)"},
    {
        "id": "cloud-http",
        "name": "Plain",
        "url": "http://plain.atlassian.net",
        "avatarUrl": "javascript:alert(2)",
    },
    {
        "id": "cloud-ok",
        "name": "Good",
        "url": "https://good.atlassian.net",
        "avatarUrl": "https://avatar.example/a.png",
    },
    {"id": "cloud-host", "name": "Odd", "url": "https://exa mple<script>/"},
]


def test_hostile_resource_urls_are_not_stored_and_not_rendered_as_links(alice_client, accepting):
    accepting.add_account(ADA_ACCOUNT_ID, "ada@example.com", "Ada", HOSTILE_RESOURCES)
    accepting.consent_account_id = ADA_ACCOUNT_ID
    connect(alice_client)
    stored = {r.cloud_id: r for r in Resource.objects.all()}
    assert set(stored) == {"cloud-js", "cloud-http", "cloud-ok", "cloud-host"}  # sites kept
    assert stored["cloud-js"].url == ""
    assert stored["cloud-http"].url == ""
    assert stored["cloud-http"].avatar_url == ""
    assert stored["cloud-host"].url == ""
    assert stored["cloud-ok"].url == "https://good.atlassian.net"
    assert stored["cloud-ok"].avatar_url == "https://avatar.example/a.png"
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "javascript:" not in page
    assert 'href="http://' not in page
    assert 'href="https://good.atlassian.net"' in page


def test_a_resource_url_written_around_the_client_is_not_a_link(alice_client, fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Resource.objects.filter(grant=grant).update(url="javascript:alert(1)")
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert 'href="javascript:' not in page


def test_overlong_profile_and_resource_fields_do_not_break_the_callback(alice_client, accepting):
    accepting.add_account(
        ADA_ACCOUNT_ID,
        "not-an-email-" + "x" * 400,
        "N" * 1000,
        [{"id": "cloud-long", "name": "L" * 1000, "url": "https://long.atlassian.net"}],
    )
    accepting.consent_account_id = ADA_ACCOUNT_ID
    response = connect(alice_client)
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert grant.account_email == ""
    assert len(grant.account_name) <= 255
    assert len(Resource.objects.get().name) <= 255


# 6. Absurd numbers from Atlassian.


def test_a_token_living_under_a_minute_is_treated_as_living_a_minute(alice, fake_atlassian, caplog):
    from atlassian_oauth.api import get_session

    grant = connected_grant(fake_atlassian, expires_in=-10)
    fake_atlassian.access_token_lifetime = 1
    session = get_session(alice, Site.objects.get(domain="localhost"))
    with caplog.at_level(logging.WARNING, logger="atlassian_oauth"):
        for _ in range(5):
            assert session.get(session.jira_url("rest/api/3/myself")).status_code == 200
    assert fake_atlassian.counts.get("refresh", 0) == 1
    grant.refresh_from_db()
    assert grant.last_refreshed_at is not None  # for mypy: the refresh above set it
    lifetime = (grant.access_token_expires_at - grant.last_refreshed_at).total_seconds()
    assert lifetime == pytest.approx(60, abs=1)
    assert any("expires_in" in record.getMessage() for record in caplog.records)


def test_a_hostile_retry_after_backs_off_an_hour_at_most(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=-10)
    fake_atlassian.inject("refresh", status=429, headers={"Retry-After": "86400"})
    before = timezone.now()
    with pytest.raises(TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION)
    grant.refresh_from_db()
    assert grant.next_refresh_at is not None
    assert grant.next_refresh_at <= before + timedelta(hours=1, seconds=5)
    assert grant.next_refresh_at >= before + timedelta(minutes=59)


# 7. The audit log cannot be deleted from the admin, by anyone.


def test_a_superuser_cannot_delete_events_in_the_admin(
    admin_user, admin_client, sites, fake_atlassian
):
    assert admin_user.is_superuser
    connected_grant(fake_atlassian)
    event = Event.objects.create(kind=Event.Kind.CONNECTED, actor=Event.Actor.USER, message="x")
    count = Event.objects.count()
    changelist = admin_client.get("/admin/atlassian_oauth/event/", HTTP_HOST="localhost")
    assert changelist.status_code == 200
    assert 'value="delete_selected"' not in changelist.content.decode()
    response = admin_client.post(
        "/admin/atlassian_oauth/event/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
        HTTP_HOST="localhost",
    )
    assert response.status_code in (200, 302)
    delete_page = admin_client.post(
        f"/admin/atlassian_oauth/event/{event.pk}/delete/", {"post": "yes"}, HTTP_HOST="localhost"
    )
    assert delete_page.status_code == 403
    assert Event.objects.count() == count


# Mix-up: a code is only ever exchanged with the app whose consent page issued it.


def test_a_callback_for_another_app_than_the_sites_is_refused_before_any_exchange(
    alice_client, accepting, oauth_settings
):
    params = callback_params(consent(start(alice_client)))
    oauth_settings(CLIENT_ID="another-app")
    response = finish(alice_client, params)
    assert response.status_code == 302
    assert accepting.counts.get("code_exchange", 0) == 0
    assert not Connection.objects.exists()
    assert "app changed" in " ".join(messages_of(response))
