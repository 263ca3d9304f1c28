"""Rows for the bench: many grants fast (bulk inserts), and grants holding real tokens.

Grants the bench only selects or lists hold a ciphertext copied from one encryption (a real
token's length and shape, bound to another row, so never decrypted): encrypting 100k tokens
would time the setup, not the app. Grants that get refreshed hold tokens the fake issued,
encrypted and bound to their row as the callback stores them.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth.conf import conf
from atlassian_oauth.fields import Ciphertext
from atlassian_oauth.models import Connection, Grant, Resource
from atlassian_oauth.testing import ACME_CLOUD_ID, DEFAULT_CLIENT_ID, FakeAtlassianClient
from bench.harness import expect

SCOPES = "read:jira-user read:jira-work read:me offline_access"
ACME = {"id": ACME_CLOUD_ID, "name": "acme", "url": "https://acme.atlassian.net"}
BATCH = 5000


def _sealed(field: str) -> Ciphertext:
    """One real ciphertext of a token-sized plaintext, to copy into bulk rows."""
    holder = Grant(uuid=uuid.uuid4())
    setattr(holder, field, "x" * 900)
    sealed = Grant._meta.get_field(field).sealed_value(holder)  # type: ignore[union-attr]
    expect(sealed is not None)
    return sealed


def bulk_grants(count: int, *, due: int, start: int = 0, now: datetime | None = None) -> None:
    """``count`` active-looking grants, ``due`` of them due for the sweep now (most expiring
    within the margin, a few only idle past the keep-alive age), the rest spread as a running
    deployment has them: tokens expiring over the next hour, a few dead or backing off."""
    now = now or timezone.now()
    margin = conf.REFRESH_MARGIN
    access, refresh = _sealed("access_token"), _sealed("refresh_token")
    rng = random.Random(start)  # noqa: S311  (spreading expiries, not secrets)
    rows: list[Grant] = []
    for index in range(start, start + count):
        values: dict[str, Any] = {"status": Grant.Status.ACTIVE}
        if index - start < due:
            if (index - start) % 20 == 19:  # idle: a keep-alive is due, the token is fine
                expires = now + timedelta(seconds=rng.uniform(margin + 120, 3600))
                issued = now - timedelta(days=31)
                values.update(last_refreshed_at=None)
            else:
                expires = now + timedelta(seconds=rng.uniform(1, margin - 10))
                issued = expires - timedelta(seconds=3600)
                values.update(last_refreshed_at=issued)
        else:
            # Not due for a quarter of an hour at least: building 100k rows takes a while.
            expires = now + timedelta(seconds=rng.uniform(margin + 900, 3600 + margin))
            issued = expires - timedelta(seconds=3600)
            values.update(last_refreshed_at=issued)
            kind = index % 100
            if kind < 2:  # dead since long ago
                values.update(status=Grant.Status.NEEDS_RECONNECT)
                expires = now - timedelta(days=rng.uniform(1, 60))
            elif kind < 3:  # backing off after a failure, token expiring
                expires = now + timedelta(seconds=rng.uniform(1, margin))
                values.update(
                    refresh_failures=1,
                    next_refresh_at=now + timedelta(seconds=600),
                    last_failure=Grant.Failure.TRANSIENT,
                    last_error="Atlassian's token endpoint answered 503",
                )
        rows.append(
            Grant(
                client_id=DEFAULT_CLIENT_ID,
                account_id=f"5b10bench{index:015d}",
                account_name=f"Bench {index}",
                account_email=f"bench{index}@example.com",
                access_token=access,
                refresh_token=refresh,
                access_token_expires_at=expires,
                scopes=SCOPES,
                consented_at=issued,
                refresh_token_issued_at=issued,
                **values,
            )
        )
        if len(rows) == BATCH:
            Grant.objects.bulk_create(rows)
            rows = []
    if rows:
        Grant.objects.bulk_create(rows)


def connect_all(site: Site, *, prefix: str = "bench") -> int:
    """A user connected on ``site`` to every grant without a connection, and one Atlassian
    site per grant (as the admin lists show them); how many."""
    grants = list(Grant.objects.filter(connections__isnull=True).values_list("pk", flat=True))
    user_model = get_user_model()
    for offset in range(0, len(grants), BATCH):
        chunk = grants[offset : offset + BATCH]
        users = user_model.objects.bulk_create(
            user_model(username=f"{prefix}{pk}", email=f"{prefix}{pk}@example.com") for pk in chunk
        )
        Connection.objects.bulk_create(
            Connection(user=user, site=site, grant_id=pk)
            for user, pk in zip(users, chunk, strict=True)
        )
        Resource.objects.bulk_create(
            Resource(
                grant_id=pk,
                cloud_id=ACME["id"],
                name=ACME["name"],
                url=ACME["url"],
                scopes=["read:jira-work"],
            )
            for pk in chunk
        )
    return len(grants)


def minted_grants(
    fake: FakeAtlassianClient, count: int, *, prefix: str, expires_in: float
) -> list[int]:
    """``count`` grants holding tokens the fake issued (stored encrypted, bound to their row),
    whose access tokens the database thinks expire in ``expires_in`` seconds; their ids."""
    now = timezone.now()
    grants = []
    for index in range(count):
        account_id = f"5b10{prefix}{index:015d}"
        fake.add_account(
            account_id, f"{prefix}{index}@example.com", f"{prefix} {index}", resources=[ACME]
        )
        tokens = fake.mint_grant(DEFAULT_CLIENT_ID, account_id, SCOPES)
        grants.append(
            Grant(
                client_id=DEFAULT_CLIENT_ID,
                account_id=account_id,
                account_name=f"{prefix} {index}",
                account_email=f"{prefix}{index}@example.com",
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                access_token_expires_at=now + timedelta(seconds=expires_in),
                scopes=tokens["scope"],
                consented_at=now,
                refresh_token_issued_at=now - timedelta(seconds=3600),
                last_refreshed_at=now - timedelta(seconds=3600),
            )
        )
    return [grant.pk for grant in Grant.objects.bulk_create(grants)]


def bare_refresh_tokens(fake: FakeAtlassianClient, count: int, *, prefix: str) -> list[str]:
    """Refresh tokens the fake issued, held by nobody but the bench's bare ``requests`` loop."""
    tokens = []
    for index in range(count):
        account_id = f"5b10{prefix}{index:015d}"
        fake.add_account(account_id, f"{prefix}{index}@example.com", f"{prefix} {index}")
        tokens.append(str(fake.mint_grant(DEFAULT_CLIENT_ID, account_id, SCOPES)["refresh_token"]))
    return tokens


def make_due(grant_ids: list[int]) -> None:
    """Make these grants due again (their tokens stay what the fake last issued)."""
    past = timezone.now() - timedelta(seconds=1)
    Grant.objects.filter(pk__in=grant_ids).update(
        access_token_expires_at=past, last_refreshed_at=past - timedelta(seconds=3600)
    )


def connected_user(grant_id: int, site: Site, username: str) -> Any:
    """A user connected on ``site`` to the grant, with its one Jira site as the connection's
    default, as the connect callback leaves it (resources.store chooses the only site)."""
    user = get_user_model().objects.create(username=username)
    jira = Resource.objects.create(
        grant_id=grant_id,
        cloud_id=ACME["id"],
        name=ACME["name"],
        url=ACME["url"],
        scopes=["read:jira-work"],
    )
    Connection.objects.create(user=user, site=site, grant_id=grant_id, jira_resource=jira)
    return user
