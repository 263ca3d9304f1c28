"""The demo's tenants and users, created idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.db import transaction

# Two tenants on one machine: the same server answers on two host names.
DEMO_SITES = (
    (1, "localhost", "Acme"),
    (2, "127.0.0.1", "Globex"),
)
#: The demo's Atlassian app, as the fake Atlassian's consent page names it.
FAKE_APP_NAME = "django-atlassian-oauth demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    is_superuser: bool
    first_name: str


DEMO_USERS = (
    DemoUser("alice", "alice-demo-password", False, "Alice"),
    DemoUser("bob", "bob-demo-password", False, "Bob"),
    DemoUser("admin", "admin-demo-password", True, "Admin"),
)


@transaction.atomic
def seed() -> list[str]:
    """Create or update the demo sites and users; return what changed, one line each."""
    changes: list[str] = []
    for pk, domain, name in DEMO_SITES:
        site, created = Site.objects.update_or_create(
            pk=pk, defaults={"domain": domain, "name": name}
        )
        if created:
            changes.append(f"created site {site.domain}")
    user_model = get_user_model()
    for demo_user in DEMO_USERS:
        user, created = user_model.objects.get_or_create(
            username=demo_user.username,
            defaults={
                "first_name": demo_user.first_name,
                "is_staff": demo_user.is_superuser,
                "is_superuser": demo_user.is_superuser,
            },
        )
        if created:
            user.set_password(demo_user.password)
            user.save()
            changes.append(f"created user {user.get_username()}")
    return changes
