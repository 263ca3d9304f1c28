"""Grants for refresh tests: real tokens minted by the fake, stored the way the callback does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.dispatch import Signal
from django.test import TestCase
from django.utils import timezone

from atlassian_oauth import client, signals
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


# ---- fault-matrix and API test helpers (appended) ---------------------------------------------

REFRESH_SIGNALS = ("refreshed", "refresh_failed", "needs_reconnect")


@contextmanager
def captured_signals() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Record ``(signal name, keyword arguments incl. sender)`` of every refresh signal, on exit."""
    calls: list[tuple[str, dict[str, Any]]] = []
    connected: list[tuple[Signal, str]] = []
    for name in REFRESH_SIGNALS:
        signal: Signal = getattr(signals, name)

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            calls.append((_name, {"sender": sender, **kwargs}))

        uid = f"tests.refresh_helpers.captured_signals.{name}"
        signal.connect(receiver, weak=False, dispatch_uid=uid)
        connected.append((signal, uid))
    try:
        # Signals are sent on commit; the test's transaction never commits, so run them here.
        with TestCase.captureOnCommitCallbacks(execute=True):
            yield calls
    finally:
        for signal, uid in connected:
            signal.disconnect(dispatch_uid=uid)


def stored_tokens(grant_id: int) -> tuple[str | None, str | None]:
    """The (access, refresh) plaintext the row holds now."""
    grant = Grant.objects.get(pk=grant_id)
    return grant.access_token, grant.refresh_token


def set_stored_tokens(
    grant_id: int, *, access_token: str | None = None, refresh_token: str | None = None
) -> None:
    """Overwrite the row's tokens (as a bug or a lost write would), leaving the version alone."""
    grant = Grant.objects.get(pk=grant_id)
    fields = []
    if access_token is not None:
        grant.access_token = access_token
        fields.append("access_token")
    if refresh_token is not None:
        grant.refresh_token = refresh_token
        fields.append("refresh_token")
    grant.save(update_fields=fields)
