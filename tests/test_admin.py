"""Admin: the per-site app's secret is write-only, health is visible, no page shows a token."""

from __future__ import annotations

import pytest
from django.contrib.sites.models import Site
from django.db import connection as db
from django.db import models

from atlassian_oauth.models import AtlassianApp, Connection, Event, Grant
from tests.flow_helpers import connect

# Every page is served on the localhost site; admin_client is pytest-django's (a superuser).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sites")]


@pytest.fixture
def connected(admin_client, accepting):
    """The admin's own connection, made through the real round trip."""
    connect(admin_client)
    return Grant.objects.get()


def get(client, path):
    response = client.get(path, HTTP_HOST="localhost")
    assert response.status_code == 200, path
    return response.content.decode()


def test_adding_a_site_app_stores_the_secret_encrypted(admin_client):
    site = Site.objects.get(domain="127.0.0.1")
    response = admin_client.post(
        "/admin/atlassian_oauth/atlassianapp/add/",
        {
            "site": site.pk,
            "client_id": "globex-app",
            "new_client_secret": "globex-secret-value",
            "scopes": "read:jira-work read:me offline_access",
            "callback_url": "https://globex.example/atlassian/callback/",
        },
        HTTP_HOST="localhost",
    )
    assert response.status_code == 302, response.content.decode()
    app = AtlassianApp.objects.get()
    assert app.client_secret == "globex-secret-value"
    with db.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM atlassian_oauth_atlassianapp")
        (raw,) = cursor.fetchone()
    assert "globex-secret-value" not in raw


def test_a_new_site_app_needs_a_secret(admin_client):
    response = admin_client.post(
        "/admin/atlassian_oauth/atlassianapp/add/",
        {"site": Site.objects.get(domain="127.0.0.1").pk, "client_id": "x"},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 200
    assert "A new app needs its client secret." in response.content.decode()
    assert AtlassianApp.objects.count() == 0


def test_the_secret_is_never_shown_and_empty_keeps_it(admin_client):
    app = AtlassianApp.objects.create(
        site=Site.objects.get(domain="127.0.0.1"), client_id="globex-app", client_secret="keep-me"
    )
    path = f"/admin/atlassian_oauth/atlassianapp/{app.pk}/change/"
    page = get(admin_client, path)
    assert "keep-me" not in page
    assert 'type="password"' in page
    response = admin_client.post(
        path,
        {"site": app.site_id, "client_id": "globex-app", "new_client_secret": "", "scopes": ""},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 302
    app.refresh_from_db()
    assert app.client_secret == "keep-me"
    admin_client.post(
        path,
        {"site": app.site_id, "client_id": "globex-app", "new_client_secret": "new-one"},
        HTTP_HOST="localhost",
    )
    app.refresh_from_db()
    assert app.client_secret == "new-one"
    assert "keep-me" not in get(admin_client, "/admin/atlassian_oauth/atlassianapp/")


def test_no_admin_page_shows_a_token(admin_client, connected):
    secrets = [connected.access_token, connected.refresh_token]
    with db.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM atlassian_oauth_grant")
        secrets += list(cursor.fetchone())  # the ciphertexts too
    connection = Connection.objects.get()
    pages = [
        "/admin/atlassian_oauth/grant/",
        f"/admin/atlassian_oauth/grant/{connected.pk}/change/",
        "/admin/atlassian_oauth/connection/",
        f"/admin/atlassian_oauth/connection/{connection.pk}/change/",
        "/admin/atlassian_oauth/event/",
    ]
    for path in pages:
        page = get(admin_client, path)
        for secret in secrets:
            assert secret not in page, path


def test_grant_list_shows_health(admin_client, connected):
    page = get(admin_client, "/admin/atlassian_oauth/grant/")
    assert "atlassian-oauth-health-ok" in page and "Healthy" in page
    Grant.objects.update(status=Grant.Status.NEEDS_RECONNECT)
    page = get(admin_client, "/admin/atlassian_oauth/grant/?health=needs_reconnect")
    assert "Needs reconnect" in page and "ada@<wbr>example.com" in page


def test_the_disconnect_action_logs_the_event(admin_client, connected):
    connection = Connection.objects.get()
    selected = {"action": "disconnect", "_selected_action": [connection.pk]}
    confirm = admin_client.post(
        "/admin/atlassian_oauth/connection/", {**selected, "index": "0"}, HTTP_HOST="localhost"
    )
    assert (
        confirm.status_code == 200 and "Disconnect these connections?" in confirm.content.decode()
    )
    assert Connection.objects.exists()
    response = admin_client.post(
        "/admin/atlassian_oauth/connection/", {**selected, "confirm": "yes"}, HTTP_HOST="localhost"
    )
    assert response.status_code == 200
    assert "Disconnected." in response.content.decode()
    assert Connection.objects.count() == Grant.objects.count() == 0
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.ADMIN


def test_the_event_log_is_read_only(admin_client, connected):
    event = Event.objects.first()
    assert event is not None
    response = admin_client.post(
        f"/admin/atlassian_oauth/event/{event.pk}/change/",
        {"message": "rewritten"},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.message != "rewritten"


def test_admin_search_follows_the_user_models_username_field(admin_client, fake_atlassian):
    from atlassian_oauth.admin import user_search_fields

    assert user_search_fields("user__") == ("user__username", "user__email")
    grant = connected_grant_for_search(fake_atlassian)
    page = get(admin_client, "/admin/atlassian_oauth/connection/?q=alice")
    assert str(grant) in page


def test_admin_search_fields_for_a_custom_user_model(monkeypatch):
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.test.utils import isolate_apps

    from atlassian_oauth import admin as app_admin

    with isolate_apps("atlassian_oauth"):

        class Member(AbstractBaseUser):
            handle = models.CharField(max_length=40, unique=True)
            USERNAME_FIELD = "handle"

            class Meta:
                app_label = "atlassian_oauth"

    monkeypatch.setattr(app_admin, "get_user_model", lambda: Member)
    assert app_admin.user_search_fields("user__") == ("user__handle",)  # no email field


def connected_grant_for_search(fake):
    from tests.refresh_helpers import connected_grant

    return connected_grant(fake, username="alice")
