"""Admin actions and who may run them; Atlassian apps; site scoping everywhere."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth.models import AtlassianApp, Connection, Event, Grant, GrantHealth
from atlassian_oauth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.admin_helpers import every_state
from tests.refresh_helpers import connected_grant

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sites")]

CONNECTIONS = "/admin/atlassian_oauth/connection/"
GRANTS = "/admin/atlassian_oauth/grant/"
EVENTS = "/admin/atlassian_oauth/event/"
APPS = "/admin/atlassian_oauth/atlassianapp/"
VIEW = ("view_connection", "view_grant", "view_event", "view_atlassianapp")


@pytest.fixture
def no_broker(settings):
    del settings.CELERY_BROKER_URL


@pytest.fixture
def states(fake_atlassian, no_broker):
    return every_state(fake_atlassian)


@pytest.fixture
def staff(django_user_model):
    def make(username, *codenames, groups=()):
        user = django_user_model.objects.create_user(username, is_staff=True)
        for codename in codenames:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="atlassian_oauth", codename=codename)
            )
        for name in groups:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        return user

    return make


def post(client, path, data):
    return client.post(path, data, HTTP_HOST="localhost")


def run_action(client, changelist, action, ids):
    """The two steps: the confirmation page, then the confirmed run (its result page)."""
    selected = {"action": action, "_selected_action": ids}
    confirm = post(client, changelist, {**selected, "index": "0"})
    done = post(client, changelist, {**selected, "confirm": "yes"})
    return confirm, done


def action_names(html: str) -> set[str]:
    import re

    return set(re.findall(r'<option value="(\w+)"', html)) - {""}


# ---- refresh now, clear backoff, disconnect --------------------------------------------------


def test_refresh_now_confirms_then_runs_inline_and_says_so(admin_client, states, fake_atlassian):
    grant = states[GrantHealth.EXPIRING_SOON]
    before = grant.access_token
    confirm, done = run_action(admin_client, GRANTS, "refresh_now", [grant.pk])
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Refresh these grants now?" in page and "frank@atlassian.example" in page
    assert 'name="confirm" value="yes"' in page
    page = done.content.decode()
    assert "No Celery broker is configured, so this request ran each refresh itself" in page
    assert "refreshed" in page
    grant.refresh_from_db()
    assert grant.access_token != before
    assert Event.objects.filter(kind=Event.Kind.REFRESHED, actor=Event.Actor.ADMIN).count() == 1


def test_the_confirmation_page_alone_changes_nothing(admin_client, states, fake_atlassian):
    grant = states[GrantHealth.EXPIRING_SOON]
    response = post(
        admin_client,
        GRANTS,
        {"action": "refresh_now", "_selected_action": [grant.pk], "index": "0"},
    )
    assert response.status_code == 200
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_refresh_now_with_a_broker_enqueues_and_says_so(
    admin_client, states, settings, monkeypatch
):
    from celery import current_app

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append(kw["args"]))
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    ids = [states[GrantHealth.HEALTHY].pk, states[GrantHealth.REFRESH_FAILING].pk]
    connection_ids = list(Connection.objects.filter(grant_id__in=ids).values_list("pk", flat=True))
    _confirm, done = run_action(admin_client, CONNECTIONS, "refresh_now", connection_ids)
    page = done.content.decode()
    assert "Enqueued: a Celery worker runs each refresh" in page
    assert page.count("queued for a worker") == 2
    assert sorted(sent) == sorted((pk,) for pk in ids)  # ids only, one task per grant


def test_clear_backoff_forgets_the_wait_and_retries(admin_client, states, fake_atlassian):
    grant = states[GrantHealth.REFRESH_FAILING]
    Grant.objects.filter(pk=grant.pk).update(access_token_expires_at=timezone.now())
    connection = Connection.objects.get(grant=grant)
    confirm, done = run_action(admin_client, CONNECTIONS, "clear_backoff", [connection.pk])
    assert "Clear the backoff and retry these grants?" in confirm.content.decode()
    assert "refreshed" in done.content.decode()
    grant.refresh_from_db()
    assert (grant.refresh_failures, grant.next_refresh_at) == (0, None)


def test_refresh_of_a_dead_grant_reports_it_per_row(admin_client, states, fake_atlassian):
    ids = [states[GrantHealth.NEEDS_RECONNECT].pk, states[GrantHealth.HEALTHY].pk]
    _confirm, done = run_action(admin_client, GRANTS, "refresh_now", ids)
    page = done.content.decode()
    assert "needs reconnect" in page and "refreshed" in page
    assert page.count("atlassian-oauth-result-text") == 2


def test_disconnect_confirms_then_disconnects_and_logs(admin_client, states):
    connection = Connection.objects.get(user__username="bob")
    confirm, done = run_action(admin_client, CONNECTIONS, "disconnect", [connection.pk])
    assert "Disconnect these connections?" in confirm.content.decode()
    assert "bob on localhost" in confirm.content.decode()
    assert "Disconnected." in done.content.decode()
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not Grant.objects.filter(pk=connection.grant_id).exists()
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.ADMIN


def test_the_grant_page_offers_the_actions_to_those_who_may_run_them(
    client, admin_client, states, staff
):
    grant = states[GrantHealth.REFRESH_FAILING]
    path = f"{GRANTS}{grant.pk}/change/"
    html = admin_client.get(path, HTTP_HOST="localhost").content.decode()
    assert 'name="action" value="refresh_now"' in html
    assert 'name="action" value="clear_backoff"' in html
    client.force_login(staff("viewer", *VIEW))
    html = client.get(path, HTTP_HOST="localhost").content.decode()
    assert "Needs reconnect" in html or "Refresh failing" in html  # health: yes
    assert 'value="refresh_now"' not in html


# ---- permissions -------------------------------------------------------------------------------


def test_view_only_staff_see_health_but_cannot_act(client, states, staff, fake_atlassian):
    client.force_login(staff("viewer", *VIEW))
    html = client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert "Refresh failing 2 times" in html
    assert action_names(html) & {"refresh_now", "clear_backoff", "disconnect"} == set()
    assert action_names(client.get(GRANTS, HTTP_HOST="localhost").content.decode()) == set()
    grant = states[GrantHealth.EXPIRING_SOON]
    connection = Connection.objects.get(grant=grant)
    for changelist, action, pk in (
        (GRANTS, "refresh_now", grant.pk),
        (CONNECTIONS, "clear_backoff", connection.pk),
        (CONNECTIONS, "disconnect", connection.pk),
    ):
        confirm, done = run_action(client, changelist, action, [pk])
        # They have no actions, so the POST just shows the list again.
        assert "Refresh these" not in confirm.content.decode()
        assert "Result" not in done.content.decode().split("<title>")[1].split("</title>")[0]
    assert fake_atlassian.counts.get("refresh", 0) == 0
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert client.post(f"{GRANTS}{grant.pk}/change/", {}, HTTP_HOST="localhost").status_code == 403


def test_refresh_grant_lets_staff_refresh_but_not_disconnect(client, states, staff):
    client.force_login(staff("operator", *VIEW, "refresh_grant"))
    html = client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert action_names(html) == {"refresh_now", "clear_backoff"}
    grant = states[GrantHealth.EXPIRING_SOON]
    _confirm, done = run_action(client, GRANTS, "refresh_now", [grant.pk])
    assert "refreshed" in done.content.decode()
    connection = Connection.objects.get(user__username="bob")
    run_action(client, CONNECTIONS, "disconnect", [connection.pk])
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_disconnect_connection_lets_staff_disconnect_but_not_refresh(client, states, staff):
    client.force_login(staff("remover", *VIEW, "disconnect_connection"))
    html = client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert action_names(html) == {"disconnect"}
    connection = Connection.objects.get(user__username="bob")
    run_action(client, CONNECTIONS, "disconnect", [connection.pk])
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_no_one_adds_or_deletes_grants_and_connections(admin_client, states):
    grant = states[GrantHealth.HEALTHY]
    connection = Connection.objects.get(grant=grant)
    for path in (
        f"{GRANTS}add/",
        f"{CONNECTIONS}add/",
        f"{GRANTS}{grant.pk}/delete/",
        f"{CONNECTIONS}{connection.pk}/delete/",
    ):
        assert admin_client.post(path, {"post": "yes"}, HTTP_HOST="localhost").status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists()


# ---- Atlassian apps ---------------------------------------------------------------------------


@pytest.mark.parametrize("scopes", ["read:jira-work read:me", "read:jira-work offline_access"])
def test_an_app_without_offline_access_or_read_me_is_refused_with_the_reason(admin_client, scopes):
    response = post(
        admin_client,
        f"{APPS}add/",
        {
            "site": Site.objects.get(domain="127.0.0.1").pk,
            "client_id": "globex-app",
            "new_client_secret": "globex-secret",
            "scopes": scopes,
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "without offline_access Atlassian sends no refresh token" in page
    missing = "offline_access" if "offline_access" not in scopes else "read:me"
    assert f"Add {missing}:" in page
    assert not AtlassianApp.objects.exists()


def test_empty_scopes_use_the_settings_and_are_accepted(admin_client):
    response = post(
        admin_client,
        f"{APPS}add/",
        {
            "site": Site.objects.get(domain="127.0.0.1").pk,
            "client_id": "globex-app",
            "new_client_secret": "globex-secret",
            "scopes": "",
        },
    )
    assert response.status_code == 302


def test_testing_credentials_reports_accepted_and_refused(admin_client, fake_atlassian):
    good = AtlassianApp.objects.create(
        site=Site.objects.get(domain="127.0.0.1"),
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
    )
    bad = AtlassianApp.objects.create(
        site=Site.objects.get(domain="localhost"),
        client_id=DEFAULT_CLIENT_ID,
        client_secret="a-wrong-secret",
    )
    response = admin_client.post(
        APPS,
        {"action": "test_credentials", "_selected_action": [good.pk, bad.pk], "index": "0"},
        HTTP_HOST="localhost",
        follow=True,
    )
    page = response.content.decode()
    assert "Atlassian accepts this client id and secret." in page
    assert "Atlassian refused this client id or secret" in page
    assert 'class="error"' in page and 'class="success"' in page
    assert "a-wrong-secret" not in page and DEFAULT_CLIENT_SECRET not in page


# ---- site scoping -----------------------------------------------------------------------------


@pytest.fixture
def two_sites(states, fake_atlassian, oauth_settings):
    """Every state on localhost, and carol also connected on 127.0.0.1 with her own grant."""
    oauth_settings(ADMIN_SITE_SCOPED=True)
    fake_atlassian.add_account("acct-zoe", "zoe@atlassian.example", "Zoe")
    zoe = connected_grant(fake_atlassian, username="zoe", account_id="acct-zoe", domain="127.0.0.1")
    Grant.objects.filter(pk=zoe.pk).update(account_email="zoe@atlassian.example")
    other = Site.objects.get(domain="127.0.0.1")
    AtlassianApp.objects.create(site=other, client_id="zoe-app", client_secret="s")
    AtlassianApp.objects.create(
        site=Site.objects.get(domain="localhost"), client_id="local-app", client_secret="s"
    )
    Event.objects.create(
        kind=Event.Kind.REFRESH_FAILED,
        actor=Event.Actor.BEAT,
        grant=Grant.objects.get(account_id="acct-zoe"),
        message="zoe failed",
    )
    return other


def test_scoped_staff_see_only_their_sites_everywhere(client, two_sites, staff):
    client.force_login(
        staff("scoped", *VIEW, "refresh_grant", groups=["atlassian-oauth:127.0.0.1"])
    )
    html = client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert "zoe@" in html and "bob@" not in html
    assert "1 connection" in html
    # The summary counts only what they may see.
    assert '<span class="atlassian-oauth-count">1</span> Healthy' in html
    assert '<span class="atlassian-oauth-count">0</span> Needs reconnect' in html
    # The site filter never offers another site.
    local = Site.objects.get(domain="localhost")
    assert f"site__id__exact={local.pk}" not in html
    grants = client.get(GRANTS, HTTP_HOST="localhost").content.decode()
    assert "zoe@" in grants and "bob@" not in grants
    events = client.get(EVENTS, HTTP_HOST="localhost").content.decode()
    assert "zoe failed" in events and "Rate" not in events and "erin" not in events
    apps = client.get(APPS, HTTP_HOST="localhost").content.decode()
    assert "zoe-app" in apps and "local-app" not in apps
    bob = Grant.objects.get(account_id="acct-bob")
    response = client.get(f"{GRANTS}{bob.pk}/change/", HTTP_HOST="localhost")
    assert response.status_code == 302  # "doesn't exist" for them
    bob_event = Event.objects.filter(grant=Grant.objects.get(account_id="acct-erin")).first()
    assert bob_event is not None
    assert client.get(f"{EVENTS}{bob_event.pk}/change/", HTTP_HOST="localhost").status_code == 302


def test_scoped_staff_act_only_on_their_sites(client, two_sites, staff, fake_atlassian):
    client.force_login(
        staff(
            "scoped",
            *VIEW,
            "refresh_grant",
            "disconnect_connection",
            groups=["atlassian-oauth:127.0.0.1"],
        )
    )
    frank = Grant.objects.get(account_id="acct-frank")
    _confirm, done = run_action(client, GRANTS, "refresh_now", [frank.pk])
    assert done.status_code == 302  # nothing they may see was selected
    assert fake_atlassian.counts.get("refresh", 0) == 0
    bob = Connection.objects.get(user__username="bob")
    run_action(client, CONNECTIONS, "disconnect", [bob.pk])
    assert Connection.objects.filter(pk=bob.pk).exists()
    zoe = Connection.objects.get(user__username="zoe")
    _confirm, done = run_action(client, CONNECTIONS, "refresh_now", [zoe.pk, bob.pk])
    page = done.content.decode()
    assert "zoe@atlassian.example" in page and "bob@atlassian.example" not in page


def test_scoped_staff_add_apps_only_for_their_sites(client, two_sites, staff):
    client.force_login(
        staff("scoped", *VIEW, "add_atlassianapp", groups=["atlassian-oauth:127.0.0.1"])
    )
    local = Site.objects.get(domain="localhost")
    page = client.get(f"{APPS}add/", HTTP_HOST="localhost").content.decode()
    assert f'value="{local.pk}"' not in page
    AtlassianApp.objects.filter(site=local).delete()
    response = post(
        client,
        f"{APPS}add/",
        {"site": local.pk, "client_id": "sneaky", "new_client_secret": "x", "scopes": ""},
    )
    assert response.status_code == 200  # "select a valid choice"
    assert not AtlassianApp.objects.filter(client_id="sneaky").exists()


def test_unscoped_by_default_and_for_superusers(admin_client, two_sites, oauth_settings):
    html = admin_client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert "zoe@" in html and "bob@" in html
    oauth_settings(ADMIN_SITE_SCOPED=False)
    html = admin_client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert "zoe@" in html and "bob@" in html


def test_a_grant_past_its_backoff_says_the_sweep_retries(admin_client, states):
    grant = states[GrantHealth.REFRESH_FAILING]
    Grant.objects.filter(pk=grant.pk).update(next_refresh_at=timezone.now() - timedelta(minutes=1))
    html = admin_client.get(CONNECTIONS, HTTP_HOST="localhost").content.decode()
    assert "Atlassian was unavailable; the next sweep retries." in html
