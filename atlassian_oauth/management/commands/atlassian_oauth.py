"""``python manage.py atlassian_oauth <subcommand>``: one entry point for the app's operations.

Each subcommand turns its options into objects and calls one service function; the services hold
the logic. Nothing printed here is a token, secret or key, except ``generate-key``'s new key.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sites.models import Site
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from atlassian_oauth import connect, crypto, health, personal_data, reports, rotation, sweep
from atlassian_oauth.models import Connection, Event, Grant

#: Exit status of ``status`` when some connection needs attention (1 is an error).
UNHEALTHY_EXIT = 2
#: Exit status of ``refresh`` when a refresh failed or a grant needs reconnecting.
FAILED_EXIT = 1
#: Sites named in the "unknown site" message, at most.
MAX_LISTED_SITES = 20

STATUS_DESCRIPTION = f"""\
Show every connection (or those of --user and/or on --site): Atlassian account, health and what
it means, whether a refresh token is stored, when the access token expires, scopes, last
refresh, the last error, and the next step when there is one (whom to ask, what to run). Tokens
are never shown. The last line counts the connections that need attention.

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

REFRESH_DESCRIPTION = f"""\
Refresh the access tokens of the connections of --user and/or on --site that are due, as the
beat's sweep sees it (expiring soon, or idle long enough to need a keep-alive); the others are
listed as skipped (not due). --due lists only the due grants, and alone covers every
connection: a run from cron with --due does the beat's job without Celery. --force refreshes
every grant selected now, even one not due or backing off after a failure (say, once the app's
client secret is fixed); alone it covers every connection. Never two refreshes of one grant at
once: a grant another worker is refreshing is skipped. Each Atlassian grant is refreshed once,
however many connections share it. --dry-run lists what would happen and changes nothing. The
last line counts what was refreshed, skipped and failed.

Exit status: 0 when nothing failed (each grant refreshed or skipped); {FAILED_EXIT} when a refresh
failed or a grant needs its user to reconnect, as on an error such as an unknown user or site."""

REPORT_DESCRIPTION = f"""\
Report each Atlassian app's accounts to Atlassian's personal data reporting API, as the beat does
about weekly: the account ids the app holds personal data of (name and email from /me), each with
when it was last read, at most 90 per request, with an access token of the app's own grants
(another grant's when Atlassian refuses one). Atlassian answers per account: closed (the app
erases it: tokens first, then its connections and grants, and its name and email in the event
log; the account_closed signal tells your code to erase its own copies) or updated (the app
reads its name and email again). Only the apps whose report is due are reported (a week after
the last one, or once a rate limit's Retry-After has passed); --force reports every app now.
--dry-run lists what would be sent and sends nothing. Tokens and account ids are never shown.

Exit status: 0 when every report due went through; {FAILED_EXIT} when one failed (rate limited,
no access token accepted, Atlassian failing) or an updated profile could not be read."""

GENERATE_DESCRIPTION = """\
Print a new random encryption key on stdout (and advice on stderr, so
KEY=$(... generate-key) captures only the key)."""


#: Subcommands that exist to fix what the system checks report (no key yet, nothing to talk
#: to yet), so the checks must not stop them.
CHECKS_SKIPPED = frozenset({"generate-key", "fake-server"})


class Reported(CommandError):
    """A non-zero exit whose reason the command has already written out: ``manage.py`` exits
    with ``returncode`` and adds nothing (no "CommandError: ..." line); ``call_command`` raises
    it like any ``CommandError``."""


class Command(BaseCommand):
    help = (
        "Operate django-atlassian-oauth: status, disconnect, refresh, report-accounts, "
        "rotate-keys, generate-key, fake-server. Run a subcommand with --help for its options. "
        f"Exit status: 0 on success, 1 on an error or a failed refresh, {UNHEALTHY_EXIT} when "
        "status finds connections that need attention."
    )

    def execute(self, *args: Any, **options: Any) -> str | None:
        if options.get("subcommand") in CHECKS_SKIPPED:
            options["skip_checks"] = True
        try:
            return super().execute(*args, **options)
        except Reported as reported:
            # Set by BaseCommand.run_from_argv (manage.py), not by call_command.
            from_argv = getattr(self, "_called_from_command_line", False)
            if from_argv and not options.get("traceback"):
                # Already said on stdout; BaseCommand would print it again as an error.
                sys.exit(reported.returncode)
            raise

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        raw = argparse.RawDescriptionHelpFormatter

        status = subcommands.add_parser(
            "status",
            help=f"Show connections and their health (exit {UNHEALTHY_EXIT}: some need attention).",
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
            help=f"Refresh connections' access tokens (exit {FAILED_EXIT} if any refresh failed).",
            description=REFRESH_DESCRIPTION,
            formatter_class=raw,
        )
        refresh.add_argument("--user", help="This user's connections (their username).")
        refresh.add_argument("--site", help="Connections on this site (domain or id).")
        refresh.add_argument(
            "--due", action="store_true", help="List only grants due for refresh, as the beat does."
        )
        refresh.add_argument(
            "--force",
            action="store_true",
            help="Refresh now even grants not due or backing off after a failure.",
        )
        refresh.add_argument(
            "--dry-run", action="store_true", help="List what would be refreshed; change nothing."
        )

        report = subcommands.add_parser(
            "report-accounts",
            help="Report accounts to Atlassian's personal data reporting API; erase the closed "
            f"(exit {FAILED_EXIT} if a report failed).",
            description=REPORT_DESCRIPTION,
            formatter_class=raw,
        )
        report.add_argument(
            "--force", action="store_true", help="Report every app now, even one not due."
        )
        report.add_argument(
            "--dry-run", action="store_true", help="List what would be sent; send nothing."
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
        fake.add_argument("--app-name", help="The app's name on the consent page.")
        fake.add_argument(
            "--tenant",
            action="append",
            default=[],
            metavar="HOST=NAME",
            help="Name the tenant whose callback is on HOST on the consent page (repeatable).",
        )
        fake.add_argument(
            "--state-file",
            help="Keep the fake's grants and tokens in this JSON file across restarts "
            "(default: in memory).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handlers = {
            "status": self.status,
            "disconnect": self.disconnect,
            "refresh": self.refresh,
            "report-accounts": self.report_accounts,
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
        unhealthy = sum(report.needs_attention for report in found)
        renewing = sum(not report.healthy and not report.needs_attention for report in found)
        summary = _attention_summary(unhealthy, len(found), renewing)
        self.stdout.write("")
        self.stdout.write(summary)
        if unhealthy:
            raise Reported(summary, returncode=UNHEALTHY_EXIT)

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
        due, force = options["due"], options["force"]
        if due and force:
            raise CommandError(
                "Pass --due or --force, not both: --due takes only grants due for refresh, "
                "--force refreshes grants that are not."
            )
        if user is None and site is None and not (due or force):
            raise CommandError(
                "Pass --user and/or --site, --due (what the beat would refresh) or --force "
                "(every grant, now)."
            )
        grants = sweep.select_grants(user=user, site=site, due=due)
        if not grants:
            self.stdout.write("Nothing is due for refresh." if due else "No connections.")
            return
        if options["dry_run"]:
            self._refresh_dry_run(grants, force=force)
            return
        counts = {"refreshed": 0, "skipped": 0, "failed": 0}
        for grant in grants:
            outcome = sweep.refresh_if_due(grant.pk, actor=Event.Actor.COMMAND, force=force)
            kind, text = _refresh_line(outcome)
            counts[kind] += 1
            style = {"refreshed": self.style.SUCCESS, "failed": self.style.ERROR}.get(kind, str)
            self.stdout.write(style(f"{_grant_label(grant)}: {text}"))
            if kind != "refreshed":
                for line in _refresh_advice(grant, outcome):
                    self.stdout.write(f"  {line}")
        summary = (
            f"{counts['refreshed']} refreshed, {counts['skipped']} skipped, "
            f"{counts['failed']} failed."
        )
        self.stdout.write(summary)
        if counts["failed"]:
            raise Reported(summary, returncode=FAILED_EXIT)

    def _refresh_dry_run(self, grants: list[Grant], *, force: bool) -> None:
        now = timezone.now()
        due = set(
            sweep.due_grants(now).filter(pk__in=[g.pk for g in grants]).values_list("pk", flat=True)
        )
        would = {"refreshed": 0, "skipped": 0, "failed": 0}
        for grant in grants:
            label = _grant_label(grant)
            if grant.status != Grant.Status.ACTIVE:
                # refresh.ensure_fresh refuses it without calling Atlassian.
                would["failed"] += 1
                self.stdout.write(f"{label}: {grant.get_status_display()}, cannot refresh")
            elif force or grant.pk in due:
                would["refreshed"] += 1
                self.stdout.write(f"{label}: would refresh")
            elif grant.next_refresh_at and grant.next_refresh_at > now:
                would["skipped"] += 1
                self.stdout.write(
                    f"{label}: would skip (backing off after a failure until "
                    f"{reports.iso(grant.next_refresh_at)}; --force refreshes it now)"
                )
            else:
                would["skipped"] += 1
                self.stdout.write(f"{label}: would skip (not due)")
        self.stdout.write(
            f"Dry run: {would['refreshed']} would be refreshed, {would['skipped']} skipped, "
            f"{would['failed']} cannot be; nothing was changed."
        )

    def report_accounts(self, options: dict[str, Any]) -> None:
        force = options["force"]
        if options["dry_run"]:
            self._report_dry_run(force=force)
            return
        runs = personal_data.report_due(actor=Event.Actor.COMMAND, force=force)
        if not runs:
            self.stdout.write("No grants, so no Atlassian accounts to report.")
            return
        for run in runs:
            style = {"reported": self.style.SUCCESS, "failed": self.style.ERROR}.get(run.kind, str)
            line = f"App {run.client_id}: {run}"
            if run.result == personal_data.Result.NOT_DUE:
                line += " (--force reports it now)"
            self.stdout.write(style(line))
        counts = personal_data.tally(runs)
        summary = (
            f"{counts['reported']} reported, {counts['skipped']} skipped, "
            f"{counts['failed']} failed."
        )
        self.stdout.write(summary)
        if counts["failed"]:
            raise Reported(summary, returncode=FAILED_EXIT)

    def _report_dry_run(self, *, force: bool) -> None:
        plans = personal_data.plans()
        if not plans:
            self.stdout.write("No grants, so no Atlassian accounts to report.")
            return
        for plan in plans:
            label = f"App {plan.client_id}"
            if not plan.due and not force:
                until = reports.iso(plan.next_report_at) if plan.next_report_at else ""
                self.stdout.write(
                    f"{label}: not due until {until}; would send nothing (--force reports now)"
                )
                continue
            sizes = ", ".join(str(size) for size in plan.batches)
            requests = f"{len(plan.batches)} request" + ("" if len(plan.batches) == 1 else "s")
            accounts = f"{plan.accounts} account" + ("" if plan.accounts == 1 else "s")
            self.stdout.write(
                f"{label}: would report {accounts} in {requests}"
                # The sizes per request, when there are several: "(90, 90, 20 accounts)".
                + (f" ({sizes} accounts)" if len(plan.batches) > 1 else "")
                + (", going on with a report cut short" if plan.resumes else "")
            )
        self.stdout.write("Dry run: nothing was sent or changed.")

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
        if options["app_name"]:
            argv += ["--app-name", options["app_name"]]
        for tenant in options["tenant"]:
            argv += ["--tenant", tenant]
        if options["state_file"]:
            argv += ["--state-file", options["state_file"]]
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


def _attention_summary(unhealthy: int, total: int, renewing: int = 0) -> str:
    """``2 of 5 connections need attention (listed above).``, ``5 connections, all healthy.``
    or, with tokens the next sweep renews, ``5 connections, none needs attention (1 about to be
    renewed).``"""
    noun = "connection" if total == 1 else "connections"
    if not unhealthy and renewing:
        return f"{total} {noun}, none needs attention ({renewing} about to be renewed)."
    if not unhealthy:
        return f"{total} {noun}, all healthy." if total != 1 else "1 connection, healthy."
    verb = "needs" if unhealthy == 1 else "need"
    return f"{unhealthy} of {total} {noun} {verb} attention (listed above)."


def _refresh_line(outcome: sweep.Outcome) -> tuple[str, str]:
    """What happened to one grant, counted as "refreshed", "skipped" or "failed", in words."""
    Result = sweep.Result
    if outcome.result == Result.REFRESHED:
        return "refreshed", "refreshed"
    if outcome.result == Result.FRESH:
        return "skipped", f"skipped ({outcome.reason or 'not due'})"
    if outcome.result == Result.BUSY:
        return "skipped", "skipped (another worker is refreshing it)"
    if outcome.result == Result.BACKING_OFF:
        return "skipped", "skipped (backing off after a failure; --force refreshes it now)"
    if outcome.result == Result.GONE:
        return "skipped", "skipped (deleted meanwhile: its last connection was removed)"
    if outcome.result == Result.NEEDS_RECONNECT:
        return "failed", f"failed, needs reconnect: {outcome.reason}"
    return "failed", f"failed: {outcome.reason}"


def _refresh_advice(grant: Grant, outcome: sweep.Outcome) -> list[str]:
    """The last error and next step(s) for a grant not refreshed, as the status command says
    them (one per connection when the user has to act)."""
    if outcome.result in (sweep.Result.REFRESHED, sweep.Result.FRESH, sweep.Result.GONE):
        return []
    current = Grant.objects.with_health().filter(pk=grant.pk).first()
    if current is None:
        return []
    lines = []
    if outcome.result == sweep.Result.BACKING_OFF and current.last_error:
        lines.append(f"Last error: {current.last_error}")
    steps: list[str] = []
    for connection in sorted(grant.connections.all(), key=lambda c: (c.site.domain, c.pk)):
        connection.grant = current
        step = reports.next_step(connection, health.health_state(current))
        if step and f"{step[0]}: {step[1]}" not in steps:
            steps.append(f"{step[0]}: {step[1]}")
    return lines + steps


def _grant_label(grant: Grant) -> str:
    """``ada@example.com (grant 7; alice on localhost, bob on beta.example)``: never a token."""
    users = ", ".join(
        f"{c.user.get_username()} on {c.site.domain}"
        for c in sorted(grant.connections.all(), key=lambda c: (c.site.domain, c.pk))
    )
    return f"{grant} (grant {grant.pk}{'; ' + users if users else ''})"
