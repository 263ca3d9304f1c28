"""System checks for every misconfiguration a site can make, with stable ids.

| id | what |
|---|---|
| atlassian_oauth.E001 | ``offline_access`` missing from the scopes: no refresh token comes |
| atlassian_oauth.E002 | no encryption key, or a malformed one |
| atlassian_oauth.E003 | a client id without a secret, or a secret without an id |
| atlassian_oauth.E004 | ``django.contrib.sites`` is not installed |
| atlassian_oauth.E005 | ``read:me`` missing from the scopes: whose account is unknown |
| atlassian_oauth.E006 | a setting has the wrong type or form |
| atlassian_oauth.W001 | no default client id and secret: only sites with their own app connect |
| atlassian_oauth.W002 | an ``http://`` callback URL while ``DEBUG`` is off |
| atlassian_oauth.W003 | a site's own Atlassian app (database) lacks offline_access or uses http |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from .conf import SETTINGS_NAME, conf


def _scope_errors(scopes: Sequence[str], where: str) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if "offline_access" not in scopes:
        errors.append(
            Error(
                f"The scopes in {where} lack offline_access, so Atlassian sends no refresh token "
                "and every connection stops working when its first access token expires.",
                hint="Add offline_access to the scopes; users then connect again.",
                id="atlassian_oauth.E001",
            )
        )
    if "read:me" not in scopes:
        errors.append(
            Error(
                f"The scopes in {where} lack read:me, so the app cannot ask Atlassian whose "
                "account was connected.",
                hint="Add read:me to the scopes and enable the User Identity API on the app.",
                id="atlassian_oauth.E005",
            )
        )
    return errors


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .crypto import CryptoError, get_keyring

    errors: list[CheckMessage] = []
    if not apps.is_installed("django.contrib.sites"):
        errors.append(
            Error(
                "django.contrib.sites is not installed; the app keeps one connection per site.",
                hint="Add 'django.contrib.sites' to INSTALLED_APPS and run migrate.",
                id="atlassian_oauth.E004",
            )
        )
    try:
        scopes, client_id, secret, callback = (
            conf.SCOPES,
            conf.CLIENT_ID,
            conf.CLIENT_SECRET,
            conf.CALLBACK_URL,
        )
        conf.AUTH_BASE_URL, conf.API_BASE_URL, conf.HTTP_TIMEOUT, conf.STATE_MAX_AGE  # noqa: B018
    except ImproperlyConfigured as error:
        return [*errors, Error(str(error), id="atlassian_oauth.E006")]

    errors += _scope_errors(scopes, f"{SETTINGS_NAME}['SCOPES']")
    try:
        get_keyring()
    except (CryptoError, ImproperlyConfigured) as error:
        errors.append(
            Error(
                str(error),
                hint="Generate a key with `python manage.py atlassian_oauth generate-key` and "
                f"put it first in {SETTINGS_NAME}['ENCRYPTION_KEYS'] (from the environment).",
                id="atlassian_oauth.E002",
            )
        )
    if bool(client_id) != bool(secret):
        missing = "CLIENT_SECRET" if client_id else "CLIENT_ID"
        errors.append(
            Error(
                f"{SETTINGS_NAME}['{missing}'] is empty while the other half is set.",
                hint="Copy both from the app's Settings page in the Atlassian developer console.",
                id="atlassian_oauth.E003",
            )
        )
    elif not client_id:
        errors.append(
            Warning(
                f"{SETTINGS_NAME} has no CLIENT_ID and CLIENT_SECRET: only sites with their own "
                "Atlassian app (in admin) can connect.",
                id="atlassian_oauth.W001",
            )
        )
    if callback.startswith("http://") and not settings.DEBUG:
        errors.append(_http_callback_warning(f"{SETTINGS_NAME}['CALLBACK_URL']"))
    return errors


def _http_callback_warning(where: str) -> Warning:
    return Warning(
        f"The callback URL in {where} uses http:// while DEBUG is off: the authorization code "
        "would cross the network unencrypted.",
        hint="Use an https:// callback URL (and the same in the Atlassian developer console).",
        id="atlassian_oauth.W002",
    )


@register(Tags.database)
def check_site_apps(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Runs with ``manage.py check --database default`` (it reads the AtlassianApp rows)."""
    from .models import AtlassianApp

    warnings: list[CheckMessage] = []
    rows: list[AtlassianApp] = []
    for alias in databases or ():
        try:
            rows += AtlassianApp.objects.using(alias).select_related("site")
        except DatabaseError:
            continue  # not migrated yet: `migrate` will say so
    for row in rows:
        where = f"the Atlassian app of site {row.site.domain!r}"
        for error in _scope_errors(row.scopes.split() or conf.SCOPES, where):
            warnings.append(Warning(error.msg, hint=error.hint, obj=row, id="atlassian_oauth.W003"))
        if row.callback_url.startswith("http://") and not settings.DEBUG:
            warning = _http_callback_warning(where)
            warnings.append(
                Warning(warning.msg, hint=warning.hint, obj=row, id="atlassian_oauth.W003")
            )
    return warnings
