"""The app's settings: one ``ATLASSIAN_OAUTH`` dict, read live so ``override_settings`` works."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

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

    def _get(self, name: str, default: Any) -> Any:
        options = getattr(django_settings, SETTINGS_NAME, {})
        if not isinstance(options, dict):
            raise ImproperlyConfigured(
                f"settings.{SETTINGS_NAME} must be a dict, not {type(options).__name__}."
            )
        return options.get(name, default)

    def _str(self, name: str, default: str) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise ImproperlyConfigured(
                f"{SETTINGS_NAME}[{name!r}] must be a string, not {type(value).__name__}."
            )
        return value

    def _url(self, name: str, default: str) -> str:
        value = self._str(name, default).rstrip("/")
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
        return self._url("CALLBACK_URL", "") if value else ""

    @property
    def CONNECT_REDIRECT_URL(self) -> str:
        """Where the callback sends the user when the flow carried no safe ``next``."""
        return self._str("CONNECT_REDIRECT_URL", "")

    @property
    def STATE_MAX_AGE(self) -> float:
        return self._number("STATE_MAX_AGE", 600.0)

    @property
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
    def HTTP_TIMEOUT(self) -> float:
        return self._number("HTTP_TIMEOUT", 10.0)


conf = Settings()
