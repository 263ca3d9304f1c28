"""Guarantees a review broke on purpose without turning the suite red, each now pinned by a test.

- a worker whose refresh lease ran out must not overwrite the token a newer worker stored;
- an ``AtlassianSession`` refuses, before any I/O, a URL outside the API gateway, however much
  it looks like the gateway (the app's refusal, not a ``ValueError`` that requests raises later);
- the admin's "Disconnect" action needs ``disconnect_connection``.

Every test here was checked to fail on a copy of the code with the guarantee removed
(docs/testing.md says how).
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sites.models import Site
from django.db import connection as db_connection
from django.utils import timezone

import atlassian_oauth
from atlassian_oauth import refresh
from atlassian_oauth.api import AtlassianSession, get_session
from atlassian_oauth.models import Connection, Event, Grant
from tests.helpers import wait_until
from tests.refresh_helpers import connected_grant, expire

# ---- a. the late writer ----------------------------------------------------------------------

#: The first worker's lease: short, so it runs out while the fake withholds its answer.
LEASE = 1.0
#: How long the fake keeps the first worker's (already rotated) answer: well past the lease and
#: the second worker's whole refresh.
WITHHELD = 4.0


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_lease_ran_out_does_not_overwrite_the_newer_token(
    fake_atlassian, oauth_settings
):
    oauth_settings(REFRESH_LOCK_TIMEOUT=LEASE)
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = Grant.objects.get(pk=grant.pk)
    # Only the first refresh: Atlassian rotates, then sits on the answer.
    fake_atlassian.inject(kind="refresh", delay_after=WITHHELD)
    late: dict[str, Any] = {}

    def first_worker() -> None:
        try:
            late["token"] = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
        except Exception as error:  # reported by the assertion below
            late["error"] = error
        finally:
            db_connection.close()

    thread = threading.Thread(target=first_worker, daemon=True)
    thread.start()
    try:
        reached = wait_until(
            lambda: fake_atlassian.counts.get("refresh", 0) == 1, timeout=10, interval=0.02
        )
        assert reached, "the first worker's refresh never reached the fake"
        held = Grant.objects.get(pk=grant.pk)
        assert held.refresh_lock_token and held.refresh_lock_until is not None
        # The second worker starts once the first one's lease has run out.
        time.sleep(max(0.0, (held.refresh_lock_until - timezone.now()).total_seconds()) + 0.2)
        assert thread.is_alive() and "token" not in late, "the fake answered inside the lease"
        second = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
        newer = Grant.objects.get(pk=grant.pk)
        assert newer.version == before.version + 1
        assert newer.refresh_token not in (None, before.refresh_token)
        assert thread.is_alive(), "the first worker finished before the second one wrote"
    finally:
        thread.join(timeout=WITHHELD + 15)
    assert not thread.is_alive(), "the first worker never came back"
    assert "error" not in late, f"the late worker failed: {late.get('error')!r}"
    assert fake_atlassian.counts["refresh"] == 2

    stored = Grant.objects.get(pk=grant.pk)
    assert stored.refresh_token == newer.refresh_token, "the late write replaced the newer token"
    assert stored.access_token == newer.access_token == second.access_token
    assert stored.version == newer.version
    assert stored.status == Grant.Status.ACTIVE
    # One write (the version above); routine refreshes leave no event row (issue 12).
    assert not Event.objects.filter(grant=stored, kind=Event.Kind.REFRESHED).exists()
    # The late worker still hands out the (valid) access token Atlassian gave it.
    assert late["token"].access_token not in (second.access_token, before.access_token)

    # The refresh token the row kept is one Atlassian still accepts.
    expire(stored)
    third = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    last = [entry for entry in fake_atlassian.requests_log if entry["kind"] == "refresh"][-1]
    assert last["status"] == 200, "Atlassian refused the refresh token the row kept"
    after = Grant.objects.get(pk=grant.pk)
    assert after.status == Grant.Status.ACTIVE and after.access_token == third.access_token


# ---- b. the look-alike host check ------------------------------------------------------------

GATEWAY = "https://api.atlassian.com"


class _Recorder(socketserver.ThreadingTCPServer):
    """A loopback listener that notes the first line of every connection, then hangs up."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordFirstLine)
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordFirstLine(socketserver.StreamRequestHandler):
    timeout = 5

    def handle(self) -> None:
        assert isinstance(self.server, _Recorder)
        try:
            line = self.rfile.readline(4096)
        except OSError:  # TimeoutError included
            line = b""
        self.server.lines.append(line.decode("latin-1").strip() or "<connection>")


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def gateway_session(fake_atlassian, oauth_settings, recorder) -> AtlassianSession:
    """Alice's session with the real gateway URL, every request routed to the recorder.

    Whatever host a URL names, requests sends it to the proxy, so the recorder sees any request
    the session lets out. The stored token has expired: a URL that passed the check would
    also make the session refresh at the fake first, which is I/O too.
    """
    grant = connected_grant(fake_atlassian)  # reads accessible-resources from the fake
    expire(grant)
    oauth_settings(API_BASE_URL=GATEWAY)
    session = get_session(grant.connections.get().user, Site.objects.get(domain="localhost"))
    session.trust_env = False  # no NO_PROXY from the environment lets a host bypass the proxy
    session.proxies = {"http": recorder.url, "https": recorder.url}
    return session


LOOK_ALIKES = [
    f"{GATEWAY}.evil.example/ex/jira/x/rest/api/3/myself",  # the gateway as a subdomain
    f"{GATEWAY}@evil.example/ex/jira/x/rest/api/3/myself",  # the gateway as user info
    f"{GATEWAY}:443@evil.example/",
    f"{GATEWAY}evil.example/",
    "https://api.atlassian.co/ex/jira/x/",
    "https://evil.example/ex/jira/x/rest/api/3/myself",
    "http://api.atlassian.com/ex/jira/x/rest/api/3/myself",  # cleartext
    "ftp://api.atlassian.com/ex/jira/x/",
    "file:///etc/passwd",
    "//api.atlassian.com/ex/jira/x/",  # scheme-relative
    "/ex/jira/x/rest/api/3/myself",  # relative: requests would call it a MissingSchema
    "ex/jira/x/rest/api/3/myself",
    f" {GATEWAY}/ex/jira/x/",
    "",
]
APP_DIR = Path(atlassian_oauth.__file__).resolve().parent


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", LOOK_ALIKES)
def test_a_url_outside_the_gateway_is_refused_before_any_io(
    gateway_session, fake_atlassian, recorder, url
):
    with pytest.raises(Exception) as refused:
        gateway_session.get(url, timeout=5)

    error = refused.value
    # The app's own refusal: not one of requests' (MissingSchema, InvalidSchema and InvalidURL
    # are ValueErrors too), raised in the app's code, and it says where requests may go.
    assert not isinstance(error, requests.RequestException), f"requests refused it: {error!r}"
    innermost = Path(str(refused.traceback[-1].path)).resolve()
    assert innermost.is_relative_to(APP_DIR), f"raised in {innermost}, not in the app"
    assert GATEWAY in str(error), f"the refusal does not name the gateway: {error}"
    # Nothing left the process: no refresh at the fake, no connection to any server.
    time.sleep(0.1)  # a connection the session did open would be recorded by now
    assert recorder.lines == []
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db(transaction=True)
def test_the_recorder_sees_a_request_the_session_lets_out(
    gateway_session, fake_atlassian, recorder
):
    """The control for the test above: a gateway URL does get out (and reaches the recorder)."""
    with pytest.raises(requests.exceptions.ConnectionError):  # the recorder hangs up
        gateway_session.get(f"{GATEWAY}/ex/jira/x/rest/api/3/myself", timeout=5)
    assert wait_until(lambda: bool(recorder.lines), timeout=5)
    assert recorder.lines[0].startswith("CONNECT api.atlassian.com:443 "), recorder.lines
    assert fake_atlassian.counts.get("refresh", 0) == 1


# ---- c. the admin disconnect action needs disconnect_connection -------------------------------

CHANGELIST = "/admin/atlassian_oauth/connection/"
ACTION_OPTION = '<option value="disconnect">Disconnect</option>'


def staff_user(username: str, *codenames: str) -> Any:
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="atlassian_oauth", codename=codename)
        )
    return user


@pytest.fixture
def alice_connection(fake_atlassian) -> Connection:
    connected_grant(fake_atlassian)
    return Connection.objects.select_related("grant").get()


def crafted_posts(connection: Connection) -> list[dict[str, Any]]:
    """The action as the changelist's form posts it (with ``index``) and as a bare POST."""
    selected = {"action": "disconnect", "_selected_action": [connection.pk]}
    return [{**selected, "index": "0"}, {**selected, "confirm": "yes"}]


@pytest.mark.django_db
def test_staff_without_disconnect_connection_neither_sees_nor_runs_the_disconnect_action(
    client, alice_connection
):
    client.force_login(
        staff_user(
            "viewer", "view_connection", "view_grant", "change_connection", "delete_connection"
        )
    )
    page = client.get(CHANGELIST, HTTP_HOST="localhost")
    assert page.status_code == 200
    html = page.content.decode()
    assert "alice" in html, "the viewer cannot see the connection list at all"
    assert ACTION_OPTION not in html and 'value="disconnect"' not in html

    for data in crafted_posts(alice_connection):
        client.post(CHANGELIST, data, HTTP_HOST="localhost")
        assert Connection.objects.filter(pk=alice_connection.pk).exists()
    grant = Grant.objects.get(pk=alice_connection.grant_id)
    assert grant.refresh_token == alice_connection.grant.refresh_token
    assert not Event.objects.filter(kind=Event.Kind.DISCONNECTED).exists()


@pytest.mark.django_db
def test_staff_with_disconnect_connection_sees_and_runs_the_disconnect_action(
    client, alice_connection
):
    client.force_login(staff_user("remover", "view_connection", "disconnect_connection"))
    html = client.get(CHANGELIST, HTTP_HOST="localhost").content.decode()
    assert ACTION_OPTION in html

    (with_index, confirmed) = crafted_posts(alice_connection)
    response = client.post(CHANGELIST, with_index, HTTP_HOST="localhost")
    assert response.status_code == 200  # the confirmation page; nothing happened yet
    assert Connection.objects.filter(pk=alice_connection.pk).exists()
    response = client.post(CHANGELIST, confirmed, HTTP_HOST="localhost")
    assert response.status_code == 200, response.content.decode()
    assert "Disconnected." in response.content.decode()
    assert not Connection.objects.exists() and not Grant.objects.exists()
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.ADMIN
