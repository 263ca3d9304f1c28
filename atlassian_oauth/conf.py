"""The app's settings: one ``ATLASSIAN_OAUTH`` dict, read live so ``override_settings`` works."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

SETTINGS_NAME = "ATLASSIAN_OAUTH"

DEFAULT_SCOPES = (
    "read:jira-user",
    "read:jira-work",
    "write:jira-work",
    "read:me",
    "offline_access",
)


class Settings:
    """Typed access to ``settings.ATLASSIAN_OAUTH[...]`` with defaults; every read is live."""

    # The dict holds the client secret and the encryption keys: never in an error report.
    @sensitive_variables("options", "value")
    def _get(self, name: str, default: Any) -> Any:
        options = getattr(django_settings, SETTINGS_NAME, {})
        if not isinstance(options, dict):
            raise ImproperlyConfigured(
                f"settings.{SETTINGS_NAME} must be a dict, not {type(options).__name__}."
            )
        return options.get(name, default)

    @sensitive_variables("value")
    def _str(self, name: str, default: str) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}[{name!r}] must be a string, not {type(value).__name__}."
            )
        return value

    def _url(self, name: str, default: str, *, exact: bool = False) -> str:
        """An absolute http(s) URL; a base URL loses its trailing slash, an ``exact`` one
        (a callback, which Atlassian compares character for character) is kept as written."""
        value = self._str(name, default)
        if not exact:
            value = value.rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}[{name!r}] must be an absolute http(s) URL, got {value!r}."
            )
        return value

    def _number(self, name: str, default: float) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}[{name!r}] must be a positive number of seconds, got {value!r}."
            )
        return float(value)

    @property
    def CLIENT_ID(self) -> str:
        return self._str("CLIENT_ID", "")

    @property
    def CLIENT_SECRET(self) -> str:
        return self._str("CLIENT_SECRET", "")

    @property
    def SCOPES(self) -> tuple[str, ...]:
        value = self._get("SCOPES", DEFAULT_SCOPES)
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['SCOPES'] must be a list of strings or one space-separated "
                f"string, got {value!r}."
            )
        return tuple(value)

    @property
    def AUTH_BASE_URL(self) -> str:
        return self._url("AUTH_BASE_URL", "https://auth.atlassian.com")

    @property
    def API_BASE_URL(self) -> str:
        return self._url("API_BASE_URL", "https://api.atlassian.com")

    @property
    def CALLBACK_URL(self) -> str:
        """Empty: built from the request's host, so each tenant domain gets its own callback."""
        value = self._str("CALLBACK_URL", "")
        return self._url("CALLBACK_URL", "", exact=True) if value else ""

    @property
    def CONNECT_HOST_CALLBACK_URL(self) -> str:
        """The default app's one registered callback, on a connect host that hands each flow
        back to its tenant's host (docs/multi-tenant.md); empty: no connect host."""
        value = self._str("CONNECT_HOST_CALLBACK_URL", "")
        try:
            parts = urlsplit(value)
            # Kept exactly as written: Atlassian compares redirect_uri to the console's
            # character for character, trailing slash included.
            valid = (
                parts.scheme in ("https", "http")
                and bool(parts.hostname)
                and not (parts.query or parts.fragment)
            )
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            valid = False
        if value and not valid:
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['CONNECT_HOST_CALLBACK_URL'] must be an absolute http(s) URL "
                f"without query or fragment, got {value!r}."
            )
        return value

    @property
    def CONNECT_REDIRECT_URL(self) -> str:
        """Where the callback sends the user when the flow carried no safe ``next``."""
        return self._str("CONNECT_REDIRECT_URL", "")

    @property
    def STATE_MAX_AGE(self) -> float:
        return self._number("STATE_MAX_AGE", 600.0)

    @property
    def REFRESH_MARGIN(self) -> float:
        """Refresh an access token this many seconds before it expires."""
        return self._number("REFRESH_MARGIN", 300.0)

    @property
    def KEEPALIVE_AFTER(self) -> float:
        """Refresh a grant whose refresh token is this old, to stay inside the 90-day window."""
        return self._number("KEEPALIVE_AFTER", 30 * 86400.0)

    @property
    def REFRESH_LOCK_TIMEOUT(self) -> float:
        """How long one worker's claim on a grant's refresh lasts if it dies holding it.

        Must stay well under Atlassian's 10-minute reuse leeway, so the next worker can retry
        with the old refresh token after a crash.
        """
        return self._number("REFRESH_LOCK_TIMEOUT", 60.0)

    @property
    def REFRESH_WAIT(self) -> float:
        """How long a caller waits for another worker's refresh of the same grant."""
        return self._number("REFRESH_WAIT", 30.0)

    @property
    def RETRY_BACKOFF(self) -> float:
        """First delay after a transient refresh failure; it doubles per failure."""
        return self._number("RETRY_BACKOFF", 30.0)

    @property
    def RETRY_BACKOFF_MAX(self) -> float:
        return self._number("RETRY_BACKOFF_MAX", 3600.0)

    @property
    def REAUTH_NOTICE(self) -> float:
        """Warn users this many seconds before Atlassian's 365-day limit on a consent."""
        return self._number("REAUTH_NOTICE", 30 * 86400.0)

    @property
    def BEAT_JITTER(self) -> float:
        """The sweep spreads the refreshes it enqueues over up to this many seconds."""
        return self._number("BEAT_JITTER", 30.0)

    @property
    def REFRESH_RATE_LIMIT(self) -> float | None:
        """At most this many refreshes per second are enqueued by one sweep (None: no limit)."""
        if self._get("REFRESH_RATE_LIMIT", None) is None:
            return None
        return self._number("REFRESH_RATE_LIMIT", 1.0)

    @property
    def SWEEP_BATCH_SIZE(self) -> int:
        """At most this many refreshes share one task the sweep enqueues (each grant still
        refreshed under its own lease): one broker message per batch, not per grant."""
        value = self._get("SWEEP_BATCH_SIZE", 20)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['SWEEP_BATCH_SIZE'] must be a positive integer, got {value!r}."
            )
        return value

    @property
    def EVENT_RETENTION(self) -> float:
        """Events older than this many seconds are deleted by the cleanup task."""
        return self._number("EVENT_RETENTION", 180 * 86400.0)

    @property
    @sensitive_variables("value")
    def ENCRYPTION_KEYS(self) -> tuple[str, ...]:
        """The first key encrypts; every key decrypts (so keys can be rotated)."""
        value = self._get("ENCRYPTION_KEYS", ())
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['ENCRYPTION_KEYS'] must be a list of key strings."
            )
        return tuple(value)

    @property
    def ADMIN_SITE_SCOPED(self) -> bool:
        """Staff who are not superusers see and act on only their sites (``scoping``)."""
        value = self._get("ADMIN_SITE_SCOPED", False)
        if not isinstance(value, bool):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}['ADMIN_SITE_SCOPED'] must be True or False, got {value!r}."
            )
        return value

    @property
    def ADMIN_SITES(self) -> str:
        """Dotted path of ``(user) -> QuerySet[Site] | None`` replacing the group rule."""
        return self._str("ADMIN_SITES", "")

    @property
    def HTTP_TIMEOUT(self) -> float:
        return self._number("HTTP_TIMEOUT", 10.0)

    @property
    def REPORT_CYCLE(self) -> float:
        """Report each app's accounts to Atlassian's personal data reporting API this often,
        unless Atlassian's ``Cycle-Period`` header says otherwise (its guide asks for weekly)."""
        return self._number("REPORT_CYCLE", 7 * 86400.0)


conf = Settings()
