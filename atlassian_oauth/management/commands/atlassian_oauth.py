"""``python manage.py atlassian_oauth <subcommand>``: one entry point for the app's operations.

Each subcommand turns its options into objects and calls one service function; the services hold
the logic. Nothing printed here is a token, secret or key, except ``generate-key``'s new key.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sites.models import Site
from django.core.management.base import BaseCommand, CommandError, CommandParser

from atlassian_oauth import connect, crypto, reports, rotation, sweep
from atlassian_oauth.models import Connection, Event, Grant

#: Exit status of ``status`` when some connection needs attention (1 is an error).
UNHEALTHY_EXIT = 2
#: Sites named in the "unknown site" message, at most.
MAX_LISTED_SITES = 20

STATUS_DESCRIPTION = f"""\
Show every connection (or those of --user and/or on --site): Atlassian account, health and its
advice, whether a refresh token is stored, when the access token expires, scopes, last refresh,
and the next step. Tokens are never shown.

Exit status: 0 when every connection is healthy (or there is none), {UNHEALTHY_EXIT} when any
needs attention, 1 on an error such as an unknown user or site."""

DISCONNECT_DESCRIPTION = """\
Remove a user's connection, like the Disconnect button. The grant's tokens are deleted unless
another connection uses the same Atlassian grant. Atlassian has no revocation endpoint: the
account owner removes the app from their connected apps page to revoke access there."""

ROTATE_DESCRIPTION = """\
Re-encrypt every stored secret (tokens, client secrets) under the first key of
ATLASSIAN_OAUTH["ENCRYPTION_KEYS"]. Put the new key first and keep the old ones after it; run
this; then remove the old keys. Each row is committed on its own: safe to interrupt and to rerun
(a rerun skips rows already under the first key). Rows no configured key can decrypt are listed
by model and pk and make the exit status 1; the other rows are still re-encrypted."""

REFRESH_DESCRIPTION = """\
Refresh the access tokens of the connections of --user and/or on --site now, even those still
fresh; with --due, only what the beat's sweep would refresh (expiring soon, or idle long enough
to need a keep-alive; never those needing reconnect or backing off after a failure). --due alone
covers every connection. Each Atlassian grant is refreshed once, however many connections share
it. --dry-run lists the grants and changes nothing. A run from cron with --due does the beat's
job without Celery.

Exit status: 0 when every refresh worked (or was not needed), 1 when any failed or needs its
user to reconnect, or on an error such as an unknown user or site."""

GENERATE_DESCRIPTION = """\
Print a new random encryption key on stdout (and advice on stderr, so
KEY=$(... generate-key) captures only the key)."""


#: Subcommands that exist to fix what the system checks report (no key yet, nothing to talk
#: to yet), so the checks must not stop them.
CHECKS_SKIPPED = frozenset({"generate-key", "fake-server"})


class Command(BaseCommand):
    help = (
        "Operate django-atlassian-oauth: status, disconnect, refresh, rotate-keys, "
        "generate-key, fake-server. Run a subcommand with --help for its options."
    )

    def execute(self, *args: Any, **options: Any) -> str | None:
        if options.get("subcommand") in CHECKS_SKIPPED:
            options["skip_checks"] = True
        return super().execute(*args, **options)

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        raw = argparse.RawDescriptionHelpFormatter

        status = subcommands.add_parser(
            "status",
            help=f"Show connections and their health (exit {UNHEALTHY_EXIT} if any is unhealthy).",
            description=STATUS_DESCRIPTION,
            formatter_class=raw,
        )
        status.add_argument("--user", help="Only this user's connections (their username).")
        status.add_argument("--site", help="Only connections on this site (domain or id).")

        disconnect = subcommands.add_parser(
            "disconnect",
            help="Remove a user's connection (and its tokens when no other connection uses them).",
            description=DISCONNECT_DESCRIPTION,
            formatter_class=raw,
        )
        disconnect.add_argument("--user", required=True, help="The user's username.")
        disconnect.add_argument(
            "--site",
            help="The site (domain or id); needed when the user has connections on several sites.",
        )

        refresh = subcommands.add_parser(
            "refresh",
            help="Refresh connections' access tokens now (exit 1 if any refresh failed).",
            description=REFRESH_DESCRIPTION,
            formatter_class=raw,
        )
        refresh.add_argument("--user", help="This user's connections (their username).")
        refresh.add_argument("--site", help="Connections on this site (domain or id).")
        refresh.add_argument(
            "--due", action="store_true", help="Only grants due for refresh, as the beat sees it."
        )
        refresh.add_argument(
            "--dry-run", action="store_true", help="List what would be refreshed; change nothing."
        )

        subcommands.add_parser(
            "rotate-keys",
            help="Re-encrypt every secret under the first key of ENCRYPTION_KEYS.",
            description=ROTATE_DESCRIPTION,
            formatter_class=raw,
        )

        generate = subcommands.add_parser(
            "generate-key",
            help="Print a new encryption key for ENCRYPTION_KEYS.",
            description=GENERATE_DESCRIPTION,
            formatter_class=raw,
        )
        generate.add_argument(
            "--key-id",
            help="Prefix the key with this id (e.g. 2026-11), which ciphertexts then name; "
            "without it the id is derived from the key.",
        )

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
        handlers = {
            "status": self.status,
            "disconnect": self.disconnect,
            "refresh": self.refresh,
            "rotate-keys": self.rotate_keys,
            "generate-key": self.generate_key,
            "fake-server": self.fake_server,
        }
        handlers[options["subcommand"]](options)

    def status(self, options: dict[str, Any]) -> None:
        user = self._user(options["user"]) if options["user"] else None
        site = self._site(options["site"]) if options["site"] else None
        found = reports.status_report(user=user, site=site)
        if not found:
            self.stdout.write("No connections.")
            return
        for index, report in enumerate(found):
            if index:
                self.stdout.write("")
            heading, *facts = report.lines()
            style = self.style.SUCCESS if report.healthy else self.style.WARNING
            self.stdout.write(style(heading))
            for line in facts:
                self.stdout.write(line)
        unhealthy = sum(not report.healthy for report in found)
        self.stdout.write("")
        self.stdout.write(
            f"{len(found)} connection{'s' if len(found) != 1 else ''}: "
            f"{len(found) - unhealthy} healthy, {unhealthy} needing attention."
        )
        if unhealthy:
            raise CommandError(
                f"{unhealthy} of {len(found)} connections need attention (see above).",
                returncode=UNHEALTHY_EXIT,
            )

    def disconnect(self, options: dict[str, Any]) -> None:
        user = self._user(options["user"])
        connections = Connection.objects.select_related("site", "grant").filter(user=user.pk)
        if options["site"]:
            site = self._site(options["site"])
            connection = connections.filter(site=site).first()
            if connection is None:
                raise CommandError(f"User {user.get_username()!r} has no connection on {site}.")
        else:
            found = list(connections.order_by("site__domain"))
            if not found:
                raise CommandError(f"User {user.get_username()!r} has no connection.")
            if len(found) > 1:
                sites = ", ".join(f"{c.site.domain} (id {c.site_id})" for c in found)
                raise CommandError(
                    f"User {user.get_username()!r} has connections on {len(found)} sites: "
                    f"{sites}. Pass --site to choose one."
                )
            connection = found[0]
        account, domain = str(connection.grant), connection.site.domain
        grant_deleted = connect.disconnect(connection, actor=Event.Actor.COMMAND)
        self.stdout.write(
            self.style.SUCCESS(
                f"Disconnected {user.get_username()} on {domain} from Atlassian account {account}."
            )
        )
        if grant_deleted:
            self.stdout.write("Its tokens were deleted.")
        else:
            self.stdout.write(
                "Its tokens were kept: another connection uses the same Atlassian grant."
            )
        self.stdout.write(
            "Atlassian still lists the app among the account's connected apps; the account "
            f"owner revokes its access there: {connect.CONNECTED_APPS_URL}"
        )

    def refresh(self, options: dict[str, Any]) -> None:
        user = self._user(options["user"]) if options["user"] else None
        site = self._site(options["site"]) if options["site"] else None
        if user is None and site is None and not options["due"]:
            raise CommandError("Pass --user and/or --site, or --due (what the beat would refresh).")
        grants = sweep.select_grants(user=user, site=site, due=options["due"])
        if not grants:
            self.stdout.write("Nothing to refresh." if options["due"] else "No connections.")
            return
        failed = 0
        for grant in grants:
            label = _grant_label(grant)
            if options["dry_run"]:
                if grant.status == Grant.Status.ACTIVE:
                    self.stdout.write(f"{label}: would refresh")
                else:  # refresh.ensure_fresh would refuse it without calling Atlassian
                    self.stdout.write(f"{label}: {grant.get_status_display()}, cannot refresh")
                continue
            outcome = sweep.refresh_if_due(
                grant.pk, actor=Event.Actor.COMMAND, force=not options["due"]
            )
            # A grant deleted meanwhile (its user disconnected) needs no refresh either.
            ok = outcome.result not in (sweep.Result.FAILED, sweep.Result.NEEDS_RECONNECT)
            failed += not ok
            style = self.style.SUCCESS if ok else self.style.ERROR
            self.stdout.write(style(f"{label}: {outcome}"))
        count = f"{len(grants)} grant{'s' if len(grants) != 1 else ''}"
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {count} would be refreshed; nothing was changed.")
            return
        self.stdout.write(f"{count}: {len(grants) - failed} done, {failed} not refreshed.")
        if failed:
            raise CommandError(f"{failed} of {count} could not be refreshed (see above).")

    def rotate_keys(self, options: dict[str, Any]) -> None:
        try:
            key_id = crypto.get_keyring().current.key_id
        except crypto.KeyConfigurationError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Re-encrypting secrets under key id {key_id!r}...")

        def progress(report: rotation.RotationReport) -> None:
            self.stdout.write(
                f"  {report.scanned} rows scanned: {report.reencrypted} re-encrypted, "
                f"{len(report.failed)} failed"
            )

        report = rotation.rotate_keys(actor=Event.Actor.COMMAND, progress=progress)
        self.stdout.write(
            f"Done: {report.scanned} rows scanned, {report.reencrypted} re-encrypted, "
            f"{report.already_current} already under key id {report.key_id!r}, "
            f"{len(report.failed)} failed."
        )
        if report.failed:
            self.stderr.write(
                f"{len(report.failed)} rows cannot be decrypted with the configured keys and "
                "were left as they are:"
            )
            for failure in report.failed:
                self.stderr.write(f"  {failure}")
            raise CommandError(
                "Some rows were not re-encrypted. Add their keys back to "
                f"{crypto.KEYS_SETTING} (after the first key) and rerun; keep those keys "
                "until then."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Every secret is under key id {report.key_id!r}. Older keys can be removed "
                f"from {crypto.KEYS_SETTING} once no backup you may restore still needs them."
            )
        )

    def generate_key(self, options: dict[str, Any]) -> None:
        try:
            key = crypto.generate_key(options["key_id"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(key)
        self.stderr.write(
            f"Put it first in {crypto.KEYS_SETTING} (keep the old keys after it; keep it secret, "
            "e.g. in an environment variable), then run `python manage.py atlassian_oauth "
            "rotate-keys`."
        )

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

    def _user(self, username: str) -> AbstractBaseUser:
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(
                f"No user with {model.USERNAME_FIELD} {username!r}. --user takes a username."
            ) from None

    def _site(self, value: str) -> Site:
        site = Site.objects.filter(domain__iexact=value).first()
        if site is None and value.isdigit():
            site = Site.objects.filter(pk=int(value)).first()
        if site is None:
            known = ", ".join(
                f"{s.domain} (id {s.pk})" for s in Site.objects.order_by("pk")[:MAX_LISTED_SITES]
            )
            raise CommandError(
                f"No site with domain or id {value!r}. Known sites: {known or 'none'}."
            )
        return site


def _grant_label(grant: Grant) -> str:
    """``ada@example.com (grant 7; alice on localhost, bob on beta.example)``: never a token."""
    users = ", ".join(
        f"{c.user.get_username()} on {c.site.domain}"
        for c in sorted(grant.connections.all(), key=lambda c: (c.site.domain, c.pk))
    )
    return f"{grant} (grant {grant.pk}{'; ' + users if users else ''})"
