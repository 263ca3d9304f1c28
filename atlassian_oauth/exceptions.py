"""The errors application code may catch; ``str()`` of each is safe to show or log.

Raised by ``atlassian_oauth.api`` (and by ``atlassian_oauth.refresh``, which it calls), and
re-exported from ``atlassian_oauth.api``.
"""

from __future__ import annotations


class AtlassianOAuthError(Exception):
    """Base of the errors below."""


class NotConnected(AtlassianOAuthError):
    """The user has no Atlassian connection on this site."""


class ReconnectRequired(AtlassianOAuthError):
    """Atlassian no longer accepts the connection (or it has no refresh token): the user must
    connect again."""


class TemporarilyUnavailable(AtlassianOAuthError):
    """No fresh token right now (Atlassian down, rate limited); retry after ``retry_after``
    seconds (None: unknown)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SiteChoiceRequired(AtlassianOAuthError):
    """The connection has no Atlassian site to use for ``product`` ("jira" or "confluence")
    until the user chooses one on the status page (the URL named ``atlassian_oauth:status``):
    their account reaches several and none is chosen (``reason`` ``SEVERAL``), or the one they
    chose is no longer reachable (``UNREACHABLE``). The app never picks one for them: work
    meant for one site must not land on another."""

    SEVERAL = "several"
    UNREACHABLE = "unreachable"

    def __init__(self, message: str, *, product: str, reason: str) -> None:
        super().__init__(message)
        self.product = product
        self.reason = reason
