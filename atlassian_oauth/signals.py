"""Signals the app sends, one per event in the log. Receivers get keyword arguments only.

Every signal is sent with ``sender=`` the model class of the main object (``Connection`` or
``Grant``) and ``actor=`` one of ``Event.Actor``'s values ("user", "beat", "admin", "command",
"application"). Receivers run inside the transaction that made the change only where noted.
"""

from django.dispatch import Signal

#: A user linked their Atlassian account on a site (also on reconnect).
#: Arguments: ``connection`` (Connection), ``grant`` (Grant), ``created`` (bool: a new connection,
#: not a reconnect), ``actor``.
connected = Signal()

#: A connection was removed. Arguments: ``user``, ``site``, ``account_id`` (str), ``grant_deleted``
#: (bool: no other connection used the grant, so its tokens are gone), ``actor``.
disconnected = Signal()

#: A grant's access token was renewed. Arguments: ``grant`` (Grant), ``actor``.
refreshed = Signal()

#: A refresh failed and will be retried. Arguments: ``grant``, ``error`` (str, no secrets),
#: ``retry_at`` (datetime or None), ``actor``.
refresh_failed = Signal()

#: A grant is dead (revoked, expired, or its refresh token was lost) and its users must connect
#: again. Arguments: ``grant``, ``error`` (str), ``actor``.
needs_reconnect = Signal()
