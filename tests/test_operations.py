"""What admins do by hand: refresh now, clear a backoff, test credentials, beat health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import operations, scoping, sweep
from atlassian_oauth.models import AtlassianApp, Event, Grant, Heartbeat
from atlassian_oauth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.refresh_helpers import connected_grant, expire

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(settings):
    del settings.CELERY_BROKER_URL


def test_without_a_broker_refresh_now_runs_inline_even_for_a_fresh_token(fake_atlassian, no_broker):
    grant = connected_grant(fake_atlassian)
    run = operations.refresh_now([grant.pk], actor=Event.Actor.ADMIN)
    assert run.mode == "inline"
    assert run.results == [(grant.pk, "refreshed")]
    assert fake_atlassian.counts["refresh"] == 1
    event = Event.objects.get(kind=Event.Kind.REFRESHED)
    assert event.actor == Event.Actor.ADMIN


def test_with_a_broker_refresh_now_enqueues_ids_only(fake_atlassian, settings, monkeypatch):
    from celery import current_app

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append((name, kw)))
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    grant = connected_grant(fake_atlassian)
    run = operations.refresh_now([grant.pk], actor=Event.Actor.ADMIN)
    assert run.mode == "enqueued"
    assert [(name, kw["args"]) for name, kw in sent] == [
        ("atlassian_oauth.tasks.refresh_grant", (grant.pk,))
    ]
    assert fake_atlassian.counts["refresh"] == 0


def test_clear_backoff_retries_at_once(fake_atlassian, no_broker):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_failures=3, next_refresh_at=timezone.now() + timedelta(hours=1)
    )
    run = operations.clear_backoff([grant.pk], actor=Event.Actor.ADMIN)
    assert run.results == [(grant.pk, "refreshed")]
    stored = Grant.objects.get(pk=grant.pk)
    assert (stored.refresh_failures, stored.next_refresh_at) == (0, None)


def test_credentials_atlassian_accepts_and_refuses(fake_atlassian, sites):
    site = Site.objects.get(domain="127.0.0.1")
    app = AtlassianApp.objects.create(
        site=site, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET
    )
    assert operations.check_credentials(app) == operations.CredentialCheck(
        True, "Atlassian accepts this client id and secret."
    )
    app.client_secret = "wrong"
    app.save()
    check = operations.check_credentials(app)
    assert not check.ok and "refused" in check.message
    assert "wrong" not in check.message
    fake_atlassian.inject("token", status=503)
    app.client_secret = DEFAULT_CLIENT_SECRET
    app.save()
    check = operations.check_credentials(app)
    assert not check.ok and "could not tell" in check.message


def test_the_beat_is_late_without_a_sweep_in_five_minutes(fake_atlassian):
    assert operations.beat_is_late()  # never swept
    sweep.enqueue_due(lambda grant_id, countdown: None)
    assert operations.last_sweep_at() is not None
    assert not operations.beat_is_late()
    Heartbeat.objects.update(at=timezone.now() - timedelta(minutes=6))
    assert operations.beat_is_late()


def test_no_broker_no_beat_warning(no_broker):
    assert not operations.beat_is_late()


def test_site_scoping_by_group(oauth_settings, sites, django_user_model):
    staff = django_user_model.objects.create(username="staff", is_staff=True)
    boss = django_user_model.objects.create(username="boss", is_staff=True, is_superuser=True)
    assert scoping.allowed_sites(staff) is None  # scoping is off by default
    oauth_settings(ADMIN_SITE_SCOPED=True)
    none_yet = scoping.allowed_sites(staff)
    assert none_yet is not None and not none_yet.exists()
    staff.groups.add(Group.objects.create(name="atlassian-oauth:127.0.0.1"))
    assert [s.domain for s in scoping.allowed_sites(staff) or []] == ["127.0.0.1"]
    assert scoping.allowed_sites(boss) is None


def only_localhost(user):
    return Site.objects.filter(domain="localhost")


def test_site_scoping_by_a_rule_of_the_project(oauth_settings, sites, django_user_model):
    staff = django_user_model.objects.create(username="staff", is_staff=True)
    oauth_settings(ADMIN_SITE_SCOPED=True, ADMIN_SITES=f"{__name__}.only_localhost")
    assert [s.domain for s in scoping.allowed_sites(staff) or []] == ["localhost"]
