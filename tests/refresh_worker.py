"""A long-lived Django process that asks for tokens when told to, for the multi-process tests.

Run as ``python -m tests.refresh_worker`` with ``DJANGO_SETTINGS_MODULE=tests.settings`` and
``DATABASE_URL`` naming the test database the parent uses (``worker_env`` builds all of it).
It prints ``{"ready": pid}`` once Django is set up, then reads one command a line on stdin and
answers each with ONE JSON line on stdout:

``go <epoch> <username> <domain>``
    ``THREADS`` threads sleep until the wall-clock moment ``epoch``, then each calls
    ``get_access_token(user, site)``; the answer lists, per thread, the SHA-256 of the token
    it got (or ``"error:<ExceptionClass>"``) and how long the call took.
``refresh <grant_id>``
    ``ensure_fresh(grant_id, actor=BEAT)`` in this thread; answers the token's SHA-256.

Tokens are never printed: only their hashes. Everything else the process writes (logging,
tracebacks) goes to stderr, so stdout stays a clean channel. The parent-side helpers
(``worker_env``, ``workers``) live here too, so the protocol is defined in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

#: Threads per worker process in a ``go`` round.
THREADS = 16
#: Optional: the worker's ATLASSIAN_OAUTH["REFRESH_LOCK_TIMEOUT"], in seconds.
LOCK_TIMEOUT_ENV = "REFRESH_WORKER_LOCK_TIMEOUT"

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script, the repository is not on the path
    sys.path.insert(0, str(REPO))

from tests.helpers import database_url  # noqa: E402


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- the worker side -------------------------------------------------------------------------


def _go(epoch: float, username: str, domain: str) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.sites.models import Site
    from django.db import connection

    from atlassian_oauth.api import get_access_token

    user = get_user_model().objects.get(username=username)
    site = Site.objects.get(domain=domain)
    connection.close()
    results: list[str] = ["error:NotRun"] * THREADS
    seconds: list[float] = [0.0] * THREADS

    def call(index: int) -> None:
        try:
            connection.ensure_connection()  # connect before the moment, not at it
            time.sleep(max(0.0, epoch - time.time()))
            started = time.monotonic()
            try:
                results[index] = token_hash(get_access_token(user, site))
            finally:
                seconds[index] = round(time.monotonic() - started, 4)
        except Exception as error:
            results[index] = f"error:{type(error).__name__}"
            print(f"thread {index}: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"pid": os.getpid(), "results": results, "seconds": seconds}


def _refresh(grant_id: int) -> dict[str, Any]:
    from django.db import connection

    from atlassian_oauth.models import Event
    from atlassian_oauth.refresh import ensure_fresh

    try:
        return {"result": token_hash(ensure_fresh(grant_id, actor=Event.Actor.BEAT).access_token)}
    except Exception as error:
        return {"result": f"error:{type(error).__name__}"}
    finally:
        connection.close()


def main() -> int:
    # Keep the real stdout for the protocol; anything else printed lands on stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    import django

    django.setup()
    from django.conf import settings

    lock_timeout = os.environ.get(LOCK_TIMEOUT_ENV)
    if lock_timeout:
        settings.ATLASSIAN_OAUTH = {
            **settings.ATLASSIAN_OAUTH,
            "REFRESH_LOCK_TIMEOUT": float(lock_timeout),
        }

    def answer(payload: dict[str, Any]) -> None:
        channel.write(json.dumps(payload) + "\n")

    answer({"ready": os.getpid()})
    for line in sys.stdin:
        command, *args = line.split()
        if command == "go":
            answer(_go(float(args[0]), args[1], args[2]))
        elif command == "refresh":
            answer(_refresh(int(args[0])))
        elif command == "quit":
            break
        else:
            answer({"error": f"unknown command {command!r}"})
    return 0


# ---- the parent side -------------------------------------------------------------------------


def worker_env(fake_url: str, **overrides: str) -> dict[str, str]:
    """A worker's environment: the test database, and the fake Atlassian at ``fake_url``."""
    from django.db import connection

    from atlassian_oauth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        ATLASSIAN_CLIENT_ID=DEFAULT_CLIENT_ID,
        ATLASSIAN_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        ATLASSIAN_AUTH_BASE_URL=fake_url,
        ATLASSIAN_API_BASE_URL=fake_url,
        REDIS_URL="",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class Worker:
    """One worker process: send it commands, read its JSON answers."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_lines(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, command: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"worker {self.pid} did not answer within {timeout} s; its log:\n{self.tail()}"
            ) from None
        if line is None:
            self._lines.put(None)
            raise AssertionError(
                f"worker {self.pid} exited ({self.process.poll()}); its log:\n{self.tail()}"
            )
        return dict(json.loads(line))

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the worker's whole process group at once, and reap it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> None:
        """Ask the worker to quit (end of stdin); kill its process group if it lingers."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # also any leftover in the group
        self.process.wait(timeout=15)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()


def _spawn(env: dict[str, str], log: Path) -> Worker:
    with log.open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.refresh_worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group, to kill it whole
        )
    return Worker(process, log)


@contextmanager
def workers(
    count: int, env: dict[str, str], log_dir: Path, ready_timeout: float = 60
) -> Iterator[list[Worker]]:
    """``count`` ready workers for the block; every one of them is gone after it."""
    with ExitStack() as stack:
        started: list[Worker] = []
        for index in range(count):
            worker = _spawn(env, log_dir / f"worker-{index}.log")
            stack.callback(worker.stop)
            started.append(worker)
        for worker in started:
            ready = worker.read(timeout=ready_timeout)
            assert ready.get("ready") == worker.pid, ready
        yield started


if __name__ == "__main__":
    raise SystemExit(main())
