"""Receivers the app connects in ``AppConfig.ready``."""

from __future__ import annotations

from typing import Any

from .models import Connection


def delete_unused_grant(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    """However a connection goes (disconnect, user or site deleted), an unused grant goes too."""
    from .connect import delete_grant_if_unused

    delete_grant_if_unused(instance.grant_id)
