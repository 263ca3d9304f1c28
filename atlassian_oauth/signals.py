"""Signals the app sends, one per kind of event in the log. Receivers get keyword arguments.

Each is sent with ``sender=`` the model class of the main object (``Connection`` for
``connected``, ``connect_failed`` and ``disconnected``; ``Grant`` for the refresh signals and
``account_closed``; ``Event`` for ``keys_rotated``) and ``actor=`` one of ``Event.Actor``'s
values ("user", "beat", "admin", "command", "application", or "system" for a cascade: a deleted
user, site or grant).
``atlassian_oauth.events.emit`` sends them, with exactly the arguments documented here.
Signals about a database change are sent after it commits.
"""

from django.dispatch import Signal

from .models import Event

#: A user linked their Atlassian account on a site (also on reconnect).
#: Arguments: ``connection`` (Connection), ``grant`` (Grant), ``created`` (bool: a new connection,
#: not a reconnect), ``actor``.
connected = Signal()

#: A consent round trip ended without a connection (declined, expired, refused; nothing was
#: stored). Arguments: ``user``, ``site``, ``reason`` (str: the event's reason, e.g.
#: "declined", "invalid_state"), ``actor``.
connect_failed = Signal()

#: A connection was removed. Arguments: ``user``, ``site``, ``account_id`` (str), ``grant_deleted``
#: (bool: no other connection used the grant, so its tokens are gone), ``actor``.
disconnected = Signal()

#: A grant's access token was renewed. Arguments: ``grant`` (Grant), ``actor``.
refreshed = Signal()

#: A refresh failed and will be retried. Arguments: ``grant``, ``error`` (str, no secrets),
#: ``retry_at`` (datetime or None), ``actor``.
refresh_failed = Signal()

#: Secrets were re-encrypted under the first key of ENCRYPTION_KEYS. Arguments: ``reencrypted``
#: (int: rows re-encrypted), ``failed`` (int: rows no configured key could decrypt), ``actor``.
keys_rotated = Signal()

#: A grant is dead (revoked, expired, or its refresh token was lost) and its users must connect
#: again. Arguments: ``grant``, ``error`` (str), ``actor``.
needs_reconnect = Signal()

#: Atlassian's personal data reporting said an Atlassian account was closed, and the app erased
#: what it held of it: its grants (tokens first) and connections (each connection also sent
#: ``disconnected``), and its name and email in the event log (the rows are kept, marked
#: erased). Erase your own copies of that account's personal data here: whatever you stored
#: from Atlassian about it (names, emails, avatars, Jira user fields) for these users.
#: Arguments: ``account_id`` (str), ``client_id`` (str: the app whose report said so),
#: ``users`` (list: the Django users whose connections to the account were removed; the users
#: themselves are kept), ``actor``.
account_closed = Signal()

#: The keyword arguments each signal is sent with (``sender`` aside), by event kind.
ARGUMENTS: dict[str, frozenset[str]] = {
    Event.Kind.CONNECTED: frozenset({"connection", "grant", "created", "actor"}),
    Event.Kind.CONNECT_FAILED: frozenset({"user", "site", "reason", "actor"}),
    Event.Kind.REFRESHED: frozenset({"grant", "actor"}),
    Event.Kind.REFRESH_FAILED: frozenset({"grant", "error", "retry_at", "actor"}),
    Event.Kind.NEEDS_RECONNECT: frozenset({"grant", "error", "actor"}),
    Event.Kind.DISCONNECTED: frozenset({"user", "site", "account_id", "grant_deleted", "actor"}),
    Event.Kind.KEYS_ROTATED: frozenset({"reencrypted", "failed", "actor"}),
    Event.Kind.ACCOUNT_CLOSED: frozenset({"account_id", "client_id", "users", "actor"}),
}
