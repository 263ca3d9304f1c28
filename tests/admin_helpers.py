"""Rows for the admin tests: one connection in every health state, and many rows cheaply."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth.models import Connection, Event, Grant, GrantHealth, Resource
from atlassian_oauth.testing import DEFAULT_CLIENT_ID, FakeAtlassian
from tests.refresh_helpers import connected_grant

#: Whose connection is in which state (each user has an Atlassian account of their own).
OWNERS = {
    GrantHealth.HEALTHY: "alice",
    GrantHealth.NEEDS_RECONNECT: "bob",
    GrantHealth.NO_REFRESH_TOKEN: "carol",
    GrantHealth.CONFIGURATION_ERROR: "dave",
    GrantHealth.REFRESH_FAILING: "erin",
    GrantHealth.EXPIRING_SOON: "frank",
    GrantHealth.RECONNECT_SOON: "gina",
}
RATE_LIMITED = "Atlassian answered 429 Too Many Requests (rate limited)"
REFUSED_CLIENT = "Atlassian answered 401 unauthorized_client: the client secret was refused"


def every_state(fake: FakeAtlassian, domain: str = "localhost") -> dict[str, Grant]:
    """One user connected on ``domain`` per health state, each grant holding tokens the fake
    really issued (so the rows carry real ciphertexts)."""
    now = timezone.now()
    changes: dict[str, dict[str, object]] = {
        GrantHealth.HEALTHY: {},
        GrantHealth.NEEDS_RECONNECT: {
            "status": Grant.Status.NEEDS_RECONNECT,
            "state_changed_at": now - timedelta(days=2),
            "last_error": "invalid_grant: the refresh token was revoked",
        },
        GrantHealth.NO_REFRESH_TOKEN: {
            "status": Grant.Status.NO_REFRESH_TOKEN,
            "refresh_token": None,
            "state_changed_at": now - timedelta(days=1),
        },
        GrantHealth.CONFIGURATION_ERROR: {
            "refresh_failures": 3,
            "last_failure": Grant.Failure.CONFIGURATION,
            "last_error": REFUSED_CLIENT,
            "next_refresh_at": now + timedelta(minutes=20),
            "state_changed_at": now - timedelta(hours=3),
        },
        GrantHealth.REFRESH_FAILING: {
            "refresh_failures": 2,
            "last_failure": Grant.Failure.TRANSIENT,
            "last_error": RATE_LIMITED,
            "next_refresh_at": now + timedelta(minutes=4, seconds=30),
            "state_changed_at": now - timedelta(minutes=25),
            "last_refreshed_at": now - timedelta(hours=2),
        },
        GrantHealth.EXPIRING_SOON: {"access_token_expires_at": now + timedelta(seconds=90)},
        GrantHealth.RECONNECT_SOON: {"consented_at": now - timedelta(days=355)},
    }
    grants: dict[str, Grant] = {}
    for index, (state, owner) in enumerate(OWNERS.items()):
        account_id = f"acct-{owner}"
        fake.add_account(
            account_id,
            f"{owner}@atlassian.example",
            owner.title(),
            [
                {
                    "id": f"cloud-{index}",
                    "name": f"{owner}-co",
                    "url": f"https://{owner}-co.atlassian.net",
                }
            ],
        )
        grant = connected_grant(fake, username=owner, account_id=account_id, domain=domain)
        Grant.objects.filter(pk=grant.pk).update(account_email=f"{owner}@atlassian.example")
        get_user_model().objects.filter(username=owner).update(email=f"{owner}@corp.example")
        grant.refresh_from_db()
        for field, value in changes[state].items():
            setattr(grant, field, value)
        grant.save()
        grants[state] = grant
    # A beat event has no user or site of its own: the admin finds them through the grant.
    failing = grants[GrantHealth.REFRESH_FAILING]
    Event.objects.create(
        kind=Event.Kind.REFRESH_FAILED,
        actor=Event.Actor.BEAT,
        grant=failing,
        account_id=failing.account_id,
        message=RATE_LIMITED,
    )
    dead = grants[GrantHealth.NEEDS_RECONNECT]
    Event.objects.create(
        kind=Event.Kind.NEEDS_RECONNECT,
        actor=Event.Actor.BEAT,
        grant=dead,
        account_id=dead.account_id,
        message="Atlassian refused the refresh token (invalid_grant): the user must reconnect",
    )
    return grants


def many_connections(count: int, site: Site, *, start: int = 0) -> None:
    """``count`` users connected on ``site``, one grant and one Atlassian site each, in bulk."""
    now = timezone.now()
    users = get_user_model().objects.bulk_create(
        [
            get_user_model()(username=f"user{n}", email=f"user{n}@corp.example")
            for n in range(start, start + count)
        ]
    )
    grants = Grant.objects.bulk_create(
        [
            Grant(
                client_id=DEFAULT_CLIENT_ID,
                account_id=f"bulk-{n}",
                account_email=f"user{n}@atlassian.example",
                access_token=f"bulk-access-token-{n}",
                refresh_token=f"bulk-refresh-token-{n}",
                access_token_expires_at=now + timedelta(minutes=n % 90),
                consented_at=now - timedelta(days=n % 400),
                refresh_failures=n % 3,
                last_error="Atlassian answered 503" if n % 3 else "",
                status=Grant.Status.NEEDS_RECONNECT if n % 7 == 0 else Grant.Status.ACTIVE,
            )
            for n in range(start, start + count)
        ]
    )
    Resource.objects.bulk_create(
        [
            Resource(
                grant=grant,
                cloud_id=f"cloud-{grant.account_id}",
                name=f"site-{grant.account_id}",
                url="https://bulk.atlassian.net",
                scopes=["read:jira-work"],
            )
            for grant in grants
        ]
    )
    Connection.objects.bulk_create(
        [
            Connection(user=user, site=site, grant=grant)
            for user, grant in zip(users, grants, strict=True)
        ]
    )
