"""The demo's Celery wiring: separate beat and worker processes really carry tasks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import PYTHON, REPO, descendants, running, subprocess_env, wait_until

pytestmark = pytest.mark.slow


def run_beat_and_worker(var_dir: Path, redis_url: str) -> tuple[int, int, int, set[int]]:
    """Start a worker and beat; return the pid (and parent pid) that handled a heartbeat, the
    worker's pid, and the beat's process tree."""
    env = subprocess_env(
        DEMO_VAR_DIR=str(var_dir),
        DATABASE_URL="",
        REDIS_URL=redis_url,
        DEMO_HEARTBEAT_SECONDS="1",
        # Only the heartbeat: the refresh sweep would need a migrated database.
        DEMO_SWEEP_SECONDS="3600",
        DJANGO_SETTINGS_MODULE="demo_site.settings",
    )
    celery = [PYTHON, "-m", "celery", "-A", "demo_site"]
    heartbeat = var_dir / "heartbeat"
    worker_argv = [*celery, "worker", "--concurrency=1", "--without-gossip", "--without-mingle"]
    with (
        running(worker_argv, env, var_dir / "worker.log") as worker,
        running([*celery, "beat"], env, var_dir / "beat.log") as beat,
    ):
        # Wait for a complete line, not just the file: the task may be mid-write.
        handled = wait_until(
            lambda: heartbeat.exists() and len(heartbeat.read_text().split()) == 3, timeout=60
        )
        beat_pids = {beat.pid, *descendants(beat.pid)}
    logs = "".join((var_dir / name).read_text() for name in ("worker.log", "beat.log"))
    assert handled, f"no heartbeat reached the worker; logs:\n{logs}"
    _when, pid, parent = heartbeat.read_text().split()
    return int(pid), int(parent), worker.pid, beat_pids


def assert_ran_in_the_worker(pid: int, parent: int, worker_pid: int, beat_pids: set[int]) -> None:
    # A pool process of the worker (its parent is the worker), never a process of beat's.
    assert worker_pid in (pid, parent)
    assert pid not in beat_pids and parent not in beat_pids
    assert pid != os.getpid()


def test_embedded_broker_carries_beat_tasks_to_a_separate_worker(tmp_path):
    assert_ran_in_the_worker(*run_beat_and_worker(tmp_path, redis_url=""))
    # The filesystem transport really went through the shared folder.
    assert (tmp_path / "broker" / "queue").is_dir()
    assert not (REPO / "control").exists()


@pytest.mark.redis
def test_redis_broker_carries_beat_tasks_to_a_separate_worker(tmp_path, redis_url):
    assert_ran_in_the_worker(*run_beat_and_worker(tmp_path, redis_url=redis_url))
    # With Redis the demo does not use the folder broker at all.
    assert not (tmp_path / "broker").exists()
