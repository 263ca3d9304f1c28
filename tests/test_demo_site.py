"""The demo site: tenants found by host, seeded users, login, the home page's Jira issues."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site

from atlassian_oauth.testing import DEFAULT_CLIENT_ID
from demo_site.demo_data import DEMO_SITES, DEMO_USERS, seed
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db


def test_seed_creates_both_tenants_and_the_users_once():
    seed()
    first = {(s.pk, s.domain, s.name) for s in Site.objects.all()}
    assert first == set(DEMO_SITES)
    assert seed() == []  # idempotent: nothing left to create the second time
    assert Site.objects.count() == len(DEMO_SITES)
    users = get_user_model().objects.filter(username__in=[u.username for u in DEMO_USERS])
    assert users.count() == len(DEMO_USERS)
    assert users.get(username="admin").is_superuser


@pytest.mark.parametrize(("pk", "domain", "name"), DEMO_SITES)
def test_each_host_is_its_own_tenant(client, pk, domain, name):
    seed()
    response = client.get("/", HTTP_HOST=f"{domain}:8000")
    assert response.status_code == 200
    assert name in response.content.decode()
    assert response.wsgi_request.site.pk == pk


def test_an_unknown_host_is_refused(client):
    seed()
    response = client.get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400  # not in ALLOWED_HOSTS


@pytest.mark.parametrize("user", DEMO_USERS, ids=lambda u: u.username)
def test_the_printed_demo_logins_work(client, user):
    seed()
    response = client.post(
        "/accounts/login/",
        {"username": user.username, "password": user.password},
        HTTP_HOST="localhost:8000",
        follow=True,
    )
    assert response.context["user"].get_username() == user.username
    assert f"Signed in as <strong>{user.username}</strong>" in response.content.decode()


def test_a_wrong_password_does_not_log_in(client):
    seed()
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "nope"},
        HTTP_HOST="localhost:8000",
    )
    assert response.status_code == 200
    assert not response.context["user"].is_authenticated


def test_the_demo_admin_index_shows_the_health_counts(client):
    seed()
    client.force_login(get_user_model().objects.get(username="admin"))
    page = client.get("/admin/", HTTP_HOST="localhost:8000").content.decode()
    assert "Healthy" in page and "Needs reconnect" in page
    assert "/admin/atlassian_oauth/connection/?health=needs_reconnect" in page


# ---- the home page: the user's Jira issues, in every state the connection can be in ---------


def home_as_alice(client, fake_atlassian=None, **grant):
    """The Acme home page for alice; with ``grant`` options she is connected first."""
    seed()
    if grant or fake_atlassian is not None:
        connected_grant(fake_atlassian, username="alice", domain="localhost", **grant)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/", HTTP_HOST="localhost:8000")
    return response, response.content.decode()


def test_home_lists_the_connected_users_issues_read_through_get_session(client, fake_atlassian):
    response, page = home_as_alice(client, fake_atlassian, expires_in=3600)
    assert response.status_code == 200
    assert "Welcome, Alice." in page
    for key in ("ACME-23", "ACME-21", "ACME-19", "ACME-17", "ACME-12", "ACME-9"):
        assert f'<td class="key">{key}</td>' in page
    assert "Checkout fails when the basket holds more than 50 items" in page
    assert '<span class="lozenge lozenge-indeterminate">In Progress</span>' in page
    assert '<span class="lozenge lozenge-done">Done</span>' in page
    assert "on the Jira site acme" in page
    assert fake_atlassian.counts["jira"] == 1
    assert fake_atlassian.counts["refresh"] == 0  # the token was fresh: no refresh needed


def test_home_refreshes_an_expired_token_before_it_searches(client, fake_atlassian):
    _, page = home_as_alice(client, fake_atlassian, expires_in=-1)
    assert '<td class="key">ACME-23</td>' in page
    assert fake_atlassian.counts["refresh"] == 1 and fake_atlassian.counts["jira"] == 1


def test_home_of_a_user_not_connected_shows_the_connect_button(client):
    response, page = home_as_alice(client)
    assert response.status_code == 200
    assert "Connect Jira to see your issues here." in page
    assert 'action="/atlassian/connect/"' in page or 'href="/atlassian/connect/' in page
    assert "Connect Jira</" in page
    assert "<table" not in page


def test_home_asks_to_reconnect_when_atlassian_refuses_the_grant(client, fake_atlassian):
    seed()
    grant = connected_grant(fake_atlassian, username="alice", domain="localhost", expires_in=-1)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, grant.account_id)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/", HTTP_HOST="localhost:8000")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Atlassian no longer accepts this connection: connect Jira again" in page
    assert 'class="state state-reconnect"' in page
    assert 'action="/atlassian/connect/"' in page or 'href="/atlassian/connect/' in page
    assert fake_atlassian.counts["jira"] == 0


def test_home_stays_calm_while_atlassian_is_down(client, fake_atlassian):
    seed()
    connected_grant(fake_atlassian, username="alice", domain="localhost", expires_in=-1)
    fake_atlassian.inject("refresh", status=503, headers={"Retry-After": "30"})
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/", HTTP_HOST="localhost:8000")
    page = response.content.decode()
    # The page still renders (a 200: the rest of it works), and says why there is no list.
    assert response.status_code == 200
    assert "Jira cannot be reached right now; try again in a moment." in page
    assert 'class="state state-unavailable"' in page
    assert "Welcome, Alice." in page


def test_home_says_so_when_jira_answers_with_an_error(client, fake_atlassian):
    seed()
    connected_grant(fake_atlassian, username="alice", domain="localhost", expires_in=3600)
    fake_atlassian.inject("jira", status=500)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/", HTTP_HOST="localhost:8000")
    assert response.status_code == 200
    assert "Jira did not answer as expected; try again in a moment." in response.content.decode()


def test_the_jira_page_reports_an_error_answer_as_a_502(client, fake_atlassian):
    seed()
    connected_grant(fake_atlassian, username="alice", domain="localhost", expires_in=3600)
    fake_atlassian.inject("jira", status=500)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/jira/", HTTP_HOST="localhost:8000")
    assert response.status_code == 502
    assert "Jira did not answer as expected" in response.content.decode()


@pytest.mark.parametrize(
    ("host", "other_name", "other_url"),
    [
        ("localhost:8123", "Globex", "http://127.0.0.1:8123/"),
        ("127.0.0.1:8123", "Acme", "http://localhost:8123/"),
    ],
)
def test_each_tenant_links_to_the_other_on_the_same_port(client, host, other_name, other_url):
    seed()
    page = client.get("/", HTTP_HOST=host).content.decode()
    assert f'<a class="other-tenant" href="{other_url}">Go to {other_name}</a>' in page


def test_the_tenants_are_named_plainly():
    assert [name for _pk, _domain, name in DEMO_SITES] == ["Acme", "Globex"]


def test_messages_show_their_level_in_words(client):
    seed()
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.post("/atlassian/disconnect/", HTTP_HOST="localhost:8000", follow=True)
    page = response.content.decode()
    levels = re.findall(r'<li class="(\w+)"[^>]*><strong class="level">([^<]+)</strong>', page)
    assert levels, page
    assert all(
        words
        == {"error": "Error:", "warning": "Warning:", "success": "Done:", "info": "Note:"}[tag]
        for tag, words in levels
    ), levels


def test_the_login_page_lists_the_demo_users_while_debug_is_on(client, settings):
    seed()
    settings.DEBUG = True
    page = client.get("/accounts/login/", HTTP_HOST="localhost:8000").content.decode()
    for user in DEMO_USERS:
        assert f"<code>{user.username}</code> / <code>{user.password}</code>" in page
    settings.DEBUG = False
    page = client.get("/accounts/login/", HTTP_HOST="localhost:8000").content.decode()
    assert "alice-demo-password" not in page
