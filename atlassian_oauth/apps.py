from django.apps import AppConfig
from django.db.models.signals import post_delete
from django.utils.translation import gettext_lazy as _


class AtlassianOAuthConfig(AppConfig):
    name = "atlassian_oauth"
    verbose_name = _("Atlassian OAuth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks, connect the app's receivers, each to its sender, and
        keep secrets out of requests-oauthlib's and oauthlib's DEBUG logs.

        (``EncryptedTextField`` connects its own per-model receivers as it joins a model.)
        """
        from . import checks, redaction  # noqa: F401  (importing checks registers them)
        from .connect import connection_deleted
        from .models import Connection

        post_delete.connect(
            connection_deleted, sender=Connection, dispatch_uid="atlassian_oauth_connection_deleted"
        )
        redaction.install()
