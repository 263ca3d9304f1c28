"""``python manage.py rundemo``: everything the demo needs, in the foreground, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo_site.connect_host import CONNECT_HOST, CONNECT_HOST_NAME, connect_host_callback_url
from demo_site.demo_data import DEMO_SITES, DEMO_USERS, FAKE_APP_NAME
from demo_site.var_dir import FAKE_STATE_FILE, FAKE_URL_FILE, RUNDEMO_PID_FILE

#: Seconds each process gets to stop after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Migrate, seed and run the demo: the fake Atlassian, a Celery worker, Celery beat and "
        "the web server. Ctrl-C stops all of them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument(
            "--fake-port", type=int, default=int(os.environ.get("FAKE_ATLASSIAN_PORT", 8765))
        )
        parser.add_argument(
            "--token-lifetime",
            type=int,
            default=int(os.environ.get("FAKE_TOKEN_LIFETIME", 180)),
            help="Seconds the fake Atlassian's access tokens live (short, to show refreshes).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"]
        fake_port: int = options["fake_port"]
        use_fake = settings.USE_FAKE_ATLASSIAN
        self._check_ports(port, fake_port if use_fake else None)

        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", stdout=self.stdout)

        var_dir = Path(settings.DEMO_VAR_DIR)
        logs = var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        fake_url = f"http://127.0.0.1:{fake_port}"
        children: list[Child] = []
        if use_fake:
            fake_argv = [python, "-m", "atlassian_oauth.testing.fake_atlassian"]
            fake_argv += [
                "--port",
                str(fake_port),
                "--token-lifetime",
                str(options["token_lifetime"]),
            ]
            # Its grants and tokens live beside the database that stores them, so a restart
            # keeps every connection working.
            fake_argv += ["--state-file", str(var_dir / FAKE_STATE_FILE)]
            fake_argv += ["--app-name", FAKE_APP_NAME]
            for _pk, domain, name in DEMO_SITES:
                fake_argv += ["--tenant", f"{domain}={name}"]
            fake_argv += ["--tenant", f"{CONNECT_HOST}={CONNECT_HOST_NAME}"]
            children.append(Child("fake-atlassian", fake_argv, logs / "fake-atlassian.log"))
        celery = [python, "-m", "celery", "-A", "demo_site"]
        children += [
            Child(
                "celery-worker",
                [*celery, "worker", "--loglevel=INFO", "--concurrency=2", "-n", "demo@%h"],
                logs / "celery-worker.log",
            ),
            Child("celery-beat", [*celery, "beat", "--loglevel=INFO"], logs / "celery-beat.log"),
            Child(
                "web",
                # Loopback only: the demo runs with DEBUG on and publishes its passwords.
                [python, manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
                logs / "web.log",
            ),
        ]

        environment = dict(os.environ)
        # The settings build the connect host's callback URL from it (as --port may differ).
        environment["DEMO_PORT"] = str(port)
        if use_fake:
            environment["FAKE_ATLASSIAN_URL"] = fake_url
        # Our own SIGTERM stops the children as Ctrl-C does; and Ctrl-C works even when we were
        # started with SIGINT ignored (as a shell does for a background job).
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
        pid_file, url_file = var_dir / RUNDEMO_PID_FILE, var_dir / FAKE_URL_FILE
        try:
            pid_file.write_text(f"{os.getpid()}\n")
            for child in children:
                self._start(child, environment)
            if use_fake:
                if not _wait_for_port("127.0.0.1", fake_port, timeout=30):
                    raise CommandError(
                        f"The fake Atlassian did not start; see {logs / 'fake-atlassian.log'}."
                    )
                # Commands run from another shell (manage.py atlassian_oauth refresh ...) read
                # it through the settings, so they reach this fake without FAKE_ATLASSIAN_URL.
                url_file.write_text(fake_url + "\n")
            if not _wait_for_port("127.0.0.1", port, timeout=30):
                raise CommandError(f"The web server did not start; see {logs / 'web.log'}.")
            self._print_banner(port, fake_url if use_fake else None, logs)
            self._watch(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo…")
        finally:
            self._stop(children)
            url_file.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
            self.stdout.write("Demo stopped; no process left behind.")

    def _check_ports(self, port: int, fake_port: int | None) -> None:
        checks = (
            ("web", port, "DEMO_PORT", "--port"),
            ("fake Atlassian", fake_port, "FAKE_ATLASSIAN_PORT", "--fake-port"),
        )
        for name, number, variable, flag in checks:
            if number is not None and not _port_is_free("127.0.0.1", number):
                raise CommandError(
                    f"Port {number} for the {name} is taken (is another demo running?). "
                    f"Stop it, or pick another port: {variable}={number + 1} make demo "
                    f"(or manage.py rundemo {flag} {number + 1})."
                )

    def _start(self, child: Child, environment: dict[str, str]) -> None:
        log = child.log_path.open("ab")
        # A session of its own so we can stop the child and everything it forks as one group.
        child.process = subprocess.Popen(  # noqa: S603
            child.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        log.close()

    def _watch(self, children: list[Child]) -> None:
        while True:
            for child in children:
                code = child.process.poll() if child.process else None
                if code is not None:
                    tail = child.log_path.read_text(errors="replace").splitlines()[-15:]
                    raise CommandError(
                        f"{child.name} exited with code {code}. Last lines of {child.log_path}:\n"
                        + "\n".join(tail)
                    )
            time.sleep(0.5)

    def _stop(self, children: list[Child]) -> None:
        # The reverse of the start order: the web server first (no new requests), then beat (no
        # new tasks), then the worker (it finishes the refresh it is doing), and the fake
        # Atlassian last, so nothing still running calls it after it is gone.
        for child in reversed(children):
            process = child.process
            if process is None:
                continue
            if process.poll() is None:
                # To the child alone, not its group: the Celery worker stops its own pool
                # processes, and logs an ERROR for each one killed under it.
                with suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_GRACE_SECONDS)
            # Whatever ignored SIGTERM (or a grandchild left in its group) is killed.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _print_banner(self, port: int, fake_url: str | None, logs: Path) -> None:
        lines = ["", "The demo is running, two tenants on two host names:"]
        for _pk, domain, name in DEMO_SITES:
            lines.append(f"  {name:8} http://{domain}:{port}/")
        # As the web server's settings build it, from the port it was given.
        callback = os.environ.get(
            "ATLASSIAN_CONNECT_HOST_CALLBACK_URL", connect_host_callback_url(port)
        )
        if callback:
            lines.append(
                f"One Atlassian app for both: its callback {callback} hands each connection "
                "back to its tenant."
            )
        lines.append("Log in as:")
        for user in DEMO_USERS:
            role = "superuser, also /admin/" if user.is_superuser else "user"
            lines.append(f"  {user.username:8} password {user.password:22} ({role})")
        if fake_url is None:
            lines.append("Atlassian: the real one (ATLASSIAN_CLIENT_ID is set).")
        else:
            lines.append(f"Fake Atlassian: {fake_url}  (consent page: Accept)")
        lines.append(
            "From another shell: .venv/bin/python manage.py atlassian_oauth status "
            "(or refresh --due) talks to this demo."
        )
        lines.append(f"Logs: {logs}/   Start over: make demo-reset")
        lines.append("Press Ctrl-C to stop everything (connections are kept for the next run).")
        self.stdout.write("\n".join(lines), ending="\n")
        self.stdout.flush()
