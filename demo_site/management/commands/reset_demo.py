"""``python manage.py reset_demo`` (``make demo-reset``): the demo starts over at its next run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from demo_site import var_dir


class Command(BaseCommand):
    help = (
        "Remove the demo's data from DEMO_VAR_DIR: the SQLite database, the fake Atlassian's "
        "grants and tokens, the beat schedule, the broker queue and the logs."
    )
    # Starting over must work even when the configuration is what went wrong.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        folder = Path(settings.DEMO_VAR_DIR)
        pid = var_dir.running_demo_pid(folder)
        if pid is not None:
            raise CommandError(
                f"The demo is running (process {pid}): stop it with Ctrl-C, then run "
                "`make demo-reset` again."
            )
        database = settings.DATABASES["default"]
        database_is_here = (
            database["ENGINE"] == "django.db.backends.sqlite3"
            and Path(str(database["NAME"])).resolve() == (folder / var_dir.SQLITE_FILE).resolve()
        )
        connections.close_all()
        removed = var_dir.reset(folder, database_is_here=database_is_here)
        if removed:
            self.stdout.write(f"Removed from {folder}/: {', '.join(removed)}.")
        else:
            self.stdout.write(f"Nothing to remove in {folder}/.")
        if not database_is_here:
            self.stdout.write(
                self.style.WARNING(
                    "The database is not in the demo's folder (DATABASE_URL): it was left as it "
                    "is, and its connections will need reconnecting (the fake Atlassian forgot "
                    "their grants)."
                )
            )
        self.stdout.write(
            self.style.SUCCESS(
                "The demo starts over: `make demo` creates a fresh database, users and tenants; "
                "nobody is connected to Jira."
            )
        )
