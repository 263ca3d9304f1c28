"""The demo's Celery wiring: separate beat and worker processes really carry tasks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import PYTHON, REPO, descendants, running, subprocess_env, wait_until

pytestmark = pytest.mark.slow


def run_beat_and_worker(var_dir: Path, redis_url: str) -> tuple[int, set[int], set[int]]:
    """Start a worker and beat; return the pid that handled a heartbeat, and each side's pids."""
    env = subprocess_env(
        DEMO_VAR_DIR=str(var_dir),
        DATABASE_URL="",
        REDIS_URL=redis_url,
        DEMO_HEARTBEAT_SECONDS="1",
        DJANGO_SETTINGS_MODULE="demo_site.settings",
    )
    celery = [PYTHON, "-m", "celery", "-A", "demo_site"]
    heartbeat = var_dir / "heartbeat"
    worker_argv = [*celery, "worker", "--concurrency=1", "--without-gossip", "--without-mingle"]
    with (
        running(worker_argv, env, var_dir / "worker.log") as worker,
        running([*celery, "beat"], env, var_dir / "beat.log") as beat,
    ):
        handled = wait_until(heartbeat.exists, timeout=60)
        worker_pids = {worker.pid, *descendants(worker.pid)}
        beat_pids = {beat.pid, *descendants(beat.pid)}
    logs = "".join((var_dir / name).read_text() for name in ("worker.log", "beat.log"))
    assert handled, f"no heartbeat reached the worker; logs:\n{logs}"
    pid = int(heartbeat.read_text().split()[1])
    return pid, worker_pids, beat_pids


def test_embedded_broker_carries_beat_tasks_to_a_separate_worker(tmp_path):
    pid, worker_pids, beat_pids = run_beat_and_worker(tmp_path, redis_url="")
    assert pid in worker_pids
    assert pid not in beat_pids
    assert pid != os.getpid()
    # The filesystem transport really went through the shared folder.
    assert (tmp_path / "broker" / "queue").is_dir()
    assert not (REPO / "control").exists()


@pytest.mark.redis
def test_redis_broker_carries_beat_tasks_to_a_separate_worker(tmp_path, redis_url):
    pid, worker_pids, beat_pids = run_beat_and_worker(tmp_path, redis_url=redis_url)
    assert pid in worker_pids
    assert pid not in beat_pids
    # With Redis the demo does not use the folder broker at all.
    assert not (tmp_path / "broker").exists()
