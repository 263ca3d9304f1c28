"""The demo site: tenants found by host, seeded users, login."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site

from demo_site.demo_data import DEMO_SITES, DEMO_USERS, seed

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
