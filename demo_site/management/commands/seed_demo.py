from typing import Any

from django.core.management.base import BaseCommand

from demo_site.demo_data import seed


class Command(BaseCommand):
    help = "Create the demo's two tenant sites and its users (safe to rerun)."

    def handle(self, *args: Any, **options: Any) -> None:
        changes = seed()
        for line in changes:
            self.stdout.write(line)
        self.stdout.write(
            self.style.SUCCESS("Demo data ready." if changes else "Demo data already there.")
        )
