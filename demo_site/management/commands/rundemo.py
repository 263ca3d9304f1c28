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

from demo_site.demo_data import DEMO_SITES, DEMO_USERS

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

        logs = Path(settings.DEMO_VAR_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children: list[Child] = []
        if use_fake:
            fake_argv = [python, manage, "atlassian_oauth", "fake-server", "--port", str(fake_port)]
            fake_argv += ["--token-lifetime", str(options["token_lifetime"])]
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
        if use_fake:
            environment["FAKE_ATLASSIAN_URL"] = f"http://127.0.0.1:{fake_port}"
        # Our own SIGTERM should stop the children as Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            for child in children:
                self._start(child, environment)
            if not _wait_for_port("127.0.0.1", port, timeout=30):
                raise CommandError(f"The web server did not start; see {logs / 'web.log'}.")
            self._print_banner(port, fake_port if use_fake else None, logs)
            self._watch(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo…")
        finally:
            self._stop(children)
            self.stdout.write("Demo stopped; no process left behind.")

    def _check_ports(self, port: int, fake_port: int | None) -> None:
        for name, number in (("web", port), ("fake Atlassian", fake_port)):
            if number is not None and not _port_is_free("127.0.0.1", number):
                raise CommandError(
                    f"Port {number} for the {name} is taken (is another demo running?). "
                    "Stop it, or pick another with --port / --fake-port."
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
        running = [c.process for c in children if c.process and c.process.poll() is None]
        for process in running:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever ignored SIGTERM (or a grandchild left in the group) is killed.
        for process in running:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _print_banner(self, port: int, fake_port: int | None, logs: Path) -> None:
        lines = ["", "The demo is running:"]
        for _pk, domain, name in DEMO_SITES:
            lines.append(f"  {name:32} http://{domain}:{port}/")
        lines.append("Log in as:")
        for user in DEMO_USERS:
            role = "superuser, also /admin/" if user.is_superuser else "user"
            lines.append(f"  {user.username:8} password {user.password:22} ({role})")
        if fake_port is None:
            lines.append("Atlassian: the real one (ATLASSIAN_CLIENT_ID is set).")
        else:
            lines.append(f"Fake Atlassian: http://127.0.0.1:{fake_port}  (consent page: Accept)")
        lines.append(f"Logs: {logs}/")
        lines.append("Press Ctrl-C to stop everything.")
        self.stdout.write("\n".join(lines), ending="\n")
        self.stdout.flush()
