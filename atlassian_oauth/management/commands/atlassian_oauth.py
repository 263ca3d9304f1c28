"""``python manage.py atlassian_oauth <subcommand>``: one entry point for the app's operations."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Operate django-atlassian-oauth. Run a subcommand with --help for its options."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        fake = subcommands.add_parser(
            "fake-server",
            help="Run the fake Atlassian (for demos and tests) until Ctrl-C.",
        )
        fake.add_argument("--host", default="127.0.0.1")
        fake.add_argument("--port", type=int, default=8765, help="0 picks a free port.")
        fake.add_argument(
            "--token-lifetime",
            type=int,
            default=3600,
            help="Seconds an access token lives (expires_in); short values show refreshes.",
        )
        fake.add_argument(
            "--auto-consent",
            choices=["accept", "decline"],
            help="Answer the consent page at once instead of showing it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "fake-server":
            self.fake_server(options)

    def fake_server(self, options: dict[str, Any]) -> None:
        # Imported here so the testing kit is only loaded when asked for.
        from atlassian_oauth.testing.fake_atlassian import main

        argv = [
            "--host",
            options["host"],
            "--port",
            str(options["port"]),
            "--token-lifetime",
            str(options["token_lifetime"]),
        ]
        if options["auto_consent"]:
            argv += ["--auto-consent", options["auto_consent"]]
        main(argv)
