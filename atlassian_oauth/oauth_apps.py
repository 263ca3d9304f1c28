"""Which Atlassian OAuth app a site uses: its own ``AtlassianApp`` row, or the settings."""

from __future__ import annotations

from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured

from .client import OAuthApp
from .conf import conf
from .models import AtlassianApp


def settings_app() -> OAuthApp:
    return OAuthApp(
        client_id=conf.CLIENT_ID,
        client_secret=conf.CLIENT_SECRET,
        scopes=conf.SCOPES,
        callback_url=conf.CALLBACK_URL,
    )


def app_for_site(site: Site) -> OAuthApp:
    """The site's own app if it has one, else the default app from settings."""
    row = AtlassianApp.objects.filter(site=site).first()
    app = app_of(row) if row else settings_app()
    if not app.client_id or not app.client_secret:
        where = f"the Atlassian app of site {site.domain!r}" if row else "ATLASSIAN_OAUTH"
        raise ImproperlyConfigured(f"No client id or client secret is set in {where}.")
    return app


def app_for_client_id(client_id: str) -> OAuthApp:
    """The credentials of the app a grant was issued to (needed to refresh it)."""
    default = settings_app()
    if client_id == default.client_id and default.client_secret:
        return default
    row = AtlassianApp.objects.filter(client_id=client_id).exclude(client_secret=None).first()
    if row is None:
        raise ImproperlyConfigured(
            "No credentials are configured for the Atlassian app that issued this grant "
            f"(client id {client_id!r}): add it in admin or ATLASSIAN_OAUTH."
        )
    return app_of(row)


def app_of(row: AtlassianApp) -> OAuthApp:
    """The credentials and scopes of a site's own app row (scopes default to the settings')."""
    return OAuthApp(
        client_id=row.client_id,
        client_secret=row.client_secret or "",
        scopes=tuple(row.scopes.split()) or conf.SCOPES,
        callback_url=row.callback_url,
    )
