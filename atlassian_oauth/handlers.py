"""Receivers the app connects in ``AppConfig.ready``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import signals
from .events import record
from .models import Connection, Event, Grant

#: Set on a connection by ``connect.disconnect``, which logs its own event.
LOGGED_FLAG = "_atlassian_oauth_disconnect_logged"


def connection_deleted(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    """However a connection goes (disconnect, user, site or grant deleted), an unused grant goes
    too, and a deletion nobody logged (a cascade) still leaves its event."""
    from .connect import delete_grant_if_unused

    account_id = (
        Grant.objects.filter(pk=instance.grant_id).values_list("account_id", flat=True).first()
    )
    grant_deleted = delete_grant_if_unused(instance.grant_id)
    if getattr(instance, LOGGED_FLAG, False):
        return
    # The user or site may be on its way out in this same delete: the event keeps their ids
    # in its details rather than foreign keys to rows about to vanish.
    record(
        Event.Kind.DISCONNECTED,
        actor=Event.Actor.SYSTEM,
        account_id=account_id or "",
        message="Connection removed because its user, site or grant was deleted"
        + (" (the grant's tokens too)" if grant_deleted else ""),
        user_id=instance.user_id,
        site_id=instance.site_id,
        grant_deleted=grant_deleted,
    )
    user, site = instance.user, instance.site
    transaction.on_commit(
        lambda: signals.disconnected.send(
            sender=Connection,
            user=user,
            site=site,
            account_id=account_id or "",
            grant_deleted=grant_deleted,
            actor=Event.Actor.SYSTEM,
        )
    )
