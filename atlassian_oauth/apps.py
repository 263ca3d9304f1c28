from django.apps import AppConfig
from django.db.models.signals import post_delete
from django.utils.translation import gettext_lazy as _


class AtlassianOAuthConfig(AppConfig):
    name = "atlassian_oauth"
    verbose_name = _("Atlassian OAuth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks and connect the app's receivers, each to its sender.

        (``EncryptedTextField`` connects its own per-model receivers as it joins a model.)
        """
        from . import checks  # noqa: F401  (registers the system checks)
        from .connect import connection_deleted
        from .models import Connection

        post_delete.connect(
            connection_deleted, sender=Connection, dispatch_uid="atlassian_oauth_connection_deleted"
        )
