"""Grants for refresh tests: real tokens minted by the fake, stored the way the callback does."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import client
from atlassian_oauth.models import Connection, Grant, Resource
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, FakeAtlassian

SCOPES = "read:jira-user read:jira-work read:me offline_access"


def connected_grant(
    fake: FakeAtlassian,
    *,
    username: str = "alice",
    account_id: str = ADA_ACCOUNT_ID,
    domain: str = "localhost",
    expires_in: float | None = None,
) -> Grant:
    """A user connected on a site to a grant holding tokens the fake really issued.

    ``expires_in`` overrides when the stored access token is considered to expire (negative:
    already expired), so a test can make it due without waiting.
    """
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, account_id, SCOPES)
    now = timezone.now()
    grant, _ = Grant.objects.update_or_create(
        client_id=DEFAULT_CLIENT_ID,
        account_id=account_id,
        defaults={
            "access_token": tokens["access_token"],
            "refresh_token": tokens.get("refresh_token"),
            "access_token_expires_at": now
            + timedelta(seconds=tokens["expires_in"] if expires_in is None else expires_in),
            "scopes": tokens["scope"],
            "consented_at": now,
            "refresh_token_issued_at": now,
        },
    )
    grant.resources.all().delete()
    for item in client.accessible_resources(tokens["access_token"]):
        Resource.objects.create(
            grant=grant, cloud_id=item.cloud_id, name=item.name, url=item.url, scopes=item.scopes
        )
    user, _ = get_user_model().objects.get_or_create(username=username)
    site, _ = Site.objects.get_or_create(domain=domain, defaults={"name": domain})
    Connection.objects.update_or_create(user=user, site=site, defaults={"grant": grant})
    return grant


def expire(grant: Grant, seconds_ago: float = 1.0) -> None:
    Grant.objects.filter(pk=grant.pk).update(
        access_token_expires_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
