"""Processes and probes for tests/adversarial/test_fault_stack.py.

- ``RedisServer``: a redis-server of the test's own on a free loopback port, which the test may
  kill and restart (the shared Redis is never touched);
- ``CeleryProcess``: a Celery worker or beat that can be SIGKILLed as a whole process group and
  started again, each incarnation logging to its own file;
- ``terminate_backends``: PostgreSQL's ``pg_terminate_backend`` for the worker's sessions only;
- ``refresh_token_state``: what the fake Atlassian would do with a stored refresh token, read
  from its state without presenting the token (presenting it would rotate it).
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Literal

from atlassian_oauth.testing import FakeAtlassian
from tests.helpers import REPO, alive, descendants, free_port, wait_until

READY_TIMEOUT = 90.0


class RedisServer:
    """A throwaway redis-server without persistence: a restart empties it, as a crash would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.starts += 1
        with (self.folder / f"redis-{self.starts}.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        assert wait_until(self.ping, timeout=15), f"redis-server on {self.port} did not start"

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: whatever was queued is gone with it (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def queued(self, queue: str) -> int:
        """Messages waiting in ``queue`` plus those delivered but not acknowledged yet."""
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        # kombu's Redis transport: a list per queue, and a hash of unacknowledged deliveries.
        return int(client.llen(queue)) + int(client.hlen("unacked"))


class CeleryProcess:
    """One Celery program (worker or beat); ``start`` again after ``kill`` for a new incarnation."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.incarnation = 0

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.incarnation}.log"

    def start(self, ready_marker: str | None = None) -> None:
        self.incarnation += 1
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, to kill it whole
            )
        if ready_marker is not None:
            ready = wait_until(lambda: ready_marker in self.text(), timeout=READY_TIMEOUT)
            assert ready, f"{self.name} did not get ready; its log:\n{self.text()[-4000:]}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the main process and its pool at once, as the kernel's OOM killer would."""
        if self.process is None:
            return
        group = {self.process.pid, *descendants(self.process.pid)}
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)
        # Pool processes are reparented to init once the parent is gone: wait until they are.
        gone = wait_until(lambda: not any(alive(pid) for pid in group), timeout=15)
        assert gone, f"a {self.name} process survived SIGKILL"

    def stop(self) -> None:
        """A warm shutdown (SIGTERM); SIGKILL whatever is left after a while."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def all_logs(self) -> str:
        return "".join(
            f"--- {self.name} #{n}\n"
            + (self.folder / f"{self.name}-{n}.log").read_text(errors="replace")[-6000:]
            for n in range(1, self.incarnation + 1)
            if (self.folder / f"{self.name}-{n}.log").exists()
        )


def terminate_backends(application_name: str) -> int:
    """Terminate every session of this database named ``application_name``; how many."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = %s",
            [application_name],
        )
        return sum(1 for (terminated,) in cursor.fetchall() if terminated)


TokenState = Literal["current", "rotated", "dead", "unknown"]


def refresh_token_state(fake: FakeAtlassian, refresh_token: str | None) -> TokenState:
    """What the fake would answer to this refresh token, without presenting it.

    ``current``: the newest of its family, accepted and not yet used; ``rotated``: used once
    already, accepted only inside the 10-minute reuse leeway and lost after it (a token the app
    should have replaced); ``dead``: the grant was revoked; ``unknown``: never issued.
    """
    state = fake._state  # the fake's own state, read under its lock
    with state.lock:
        record = state.refresh_tokens.get(refresh_token or "")
        if record is None:
            return "unknown"
        family = state.families[record.family_id]
        if family.revoked or family.expired(state.clock.now()):
            return "dead"
        return "current" if record.rotated_at is None else "rotated"


def pending_faults(fake: FakeAtlassian) -> int:
    """Injected faults that no request has taken yet."""
    state = fake._state
    with state.lock:
        return sum(pending.remaining for pending in state.faults)


def refreshes_in_flight(fake: FakeAtlassian) -> int:
    """Refresh requests the fake has received and not answered yet (held by a fault)."""
    return sum(
        1 for entry in fake.requests_log if entry["kind"] == "refresh" and entry["status"] is None
    )


def refresh_requests(fake: FakeAtlassian) -> int:
    return fake.counts.get("refresh", 0)
