"""One health judgement for the status page, admin and the status command."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from atlassian_oauth.health import consent_expires_at, grant_health
from atlassian_oauth.models import Grant
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def grant(fake_atlassian, alice, sites):
    return connected_grant(fake_atlassian)


def status_page(client) -> str:
    client.force_login(get_user_model().objects.get(username="alice"))
    return client.get("/atlassian/", HTTP_HOST="localhost").content.decode()


def test_a_new_grant_is_healthy(grant, client):
    health = grant_health(grant)
    assert (health.level, str(health.label), health.reconnect) == ("ok", "Healthy", False)
    assert ">Reconnect Jira<" not in status_page(client)


def test_nearing_the_365_day_limit_asks_to_reconnect_soon(grant, client, oauth_settings):
    oauth_settings(REAUTH_NOTICE=30 * 86400)
    Grant.objects.filter(pk=grant.pk).update(consented_at=timezone.now() - timedelta(days=340))
    grant.refresh_from_db()
    health = grant_health(grant)
    assert health.level == "warning" and health.reconnect
    assert str(health.label) == "Reconnect soon"
    assert consent_expires_at(grant) - timezone.now() < timedelta(days=26)
    page = status_page(client)
    assert "Reconnect soon" in page and ">Reconnect Jira<" in page


def test_outside_the_notice_window_there_is_no_notice(grant, oauth_settings):
    oauth_settings(REAUTH_NOTICE=30 * 86400)
    grant.consented_at = timezone.now() - timedelta(days=300)
    assert grant_health(grant).level == "ok"


@pytest.mark.parametrize(
    ("status", "failures", "label", "reconnect"),
    [
        (Grant.Status.NEEDS_RECONNECT, 0, "Needs reconnect", True),
        (Grant.Status.NO_REFRESH_TOKEN, 0, "No refresh token", True),
        (Grant.Status.ACTIVE, 2, "Refresh failing", False),
    ],
)
def test_each_state_has_its_label(grant, client, status, failures, label, reconnect):
    Grant.objects.filter(pk=grant.pk).update(status=status, refresh_failures=failures)
    grant.refresh_from_db()
    health = grant_health(grant)
    assert str(health.label) == label and health.reconnect is reconnect
    page = status_page(client)
    assert label in page
    assert (">Reconnect Jira<" in page) is reconnect


def test_the_status_page_shows_when_the_token_was_renewed(grant, client):
    assert "not renewed yet" in status_page(client)
    Grant.objects.filter(pk=grant.pk).update(last_refreshed_at=timezone.now())
    assert "last renewed" in status_page(client)
