"""`make demo-reset` (``manage.py reset_demo``) and the files the running demo leaves in .demo/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from demo_site import var_dir
from tests.demo_helpers import demo_env
from tests.helpers import PYTHON, REPO

DEMO_FILES = (
    "db.sqlite3",
    "db.sqlite3-journal",
    "fake-atlassian.json",
    "fake-atlassian-url",
    "celerybeat-schedule.dat",
    "celerybeat-schedule.dir",
    "heartbeat",
    "encryption.key",
)


def run(var: Path, *argv: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *argv],
        cwd=REPO,
        env=demo_env(var, **environment),
        capture_output=True,
        text=True,
        timeout=60,
    )


def fill(var: Path) -> None:
    for name in DEMO_FILES:
        (var / name).write_text("x")
    for folder in ("broker/queue", "logs"):
        (var / folder).mkdir(parents=True, exist_ok=True)
    (var / "logs" / "web.log").write_text("x")
    (var / "notes.txt").write_text("mine")  # not the demo's: stays


@pytest.mark.slow
def test_demo_reset_removes_the_demos_data_and_says_so(tmp_path):
    fill(tmp_path)
    result = run(tmp_path, "reset_demo")
    assert result.returncode == 0, result.stderr
    for name in DEMO_FILES:
        assert not (tmp_path / name).exists(), name
    assert not (tmp_path / "logs").exists() and not (tmp_path / "broker").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert "Removed from" in result.stdout and "db.sqlite3" in result.stdout
    assert "fake-atlassian.json" in result.stdout
    assert "The demo starts over" in result.stdout


@pytest.mark.slow
def test_demo_reset_refuses_while_the_demo_runs(tmp_path):
    # A process whose command line says rundemo, as the runner's does.
    runner = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)", "rundemo"])
    try:
        (tmp_path / var_dir.RUNDEMO_PID_FILE).write_text(f"{runner.pid}\n")
        (tmp_path / "db.sqlite3").write_text("x")
        result = run(tmp_path, "reset_demo")
    finally:
        runner.kill()
        runner.wait()
    assert result.returncode != 0
    assert f"The demo is running (process {runner.pid})" in result.stderr
    assert (tmp_path / "db.sqlite3").exists()


def test_a_pid_left_by_a_dead_demo_does_not_block_the_reset(tmp_path):
    gone = subprocess.Popen([PYTHON, "-c", "pass"])
    gone.wait()
    (tmp_path / var_dir.RUNDEMO_PID_FILE).write_text(f"{gone.pid}\n")
    assert var_dir.running_demo_pid(tmp_path) is None


def test_with_a_database_elsewhere_the_key_stays(tmp_path):
    (tmp_path / "encryption.key").write_text("x")
    (tmp_path / "fake-atlassian.json").write_text("{}")
    removed = var_dir.reset(tmp_path, database_is_here=False)
    assert removed == ["fake-atlassian.json"]
    assert (tmp_path / "encryption.key").exists()


def auth_base_url(var: Path, **environment: str) -> str:
    """What a demo command started in another shell takes for Atlassian's auth host."""
    code = "from django.conf import settings; print(settings.ATLASSIAN_OAUTH['AUTH_BASE_URL'])"
    result = subprocess.run(
        [PYTHON, "-c", code],
        cwd=REPO,
        env=demo_env(var, **environment),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
def test_a_command_from_another_shell_finds_the_running_demos_fake(tmp_path):
    (tmp_path / var_dir.FAKE_URL_FILE).write_text("http://127.0.0.1:45678\n")
    assert auth_base_url(tmp_path) == "http://127.0.0.1:45678"
    # The environment still wins; without the file (no demo running) the default port is used.
    assert auth_base_url(tmp_path, FAKE_ATLASSIAN_URL="http://127.0.0.1:5555") == (
        "http://127.0.0.1:5555"
    )
    (tmp_path / var_dir.FAKE_URL_FILE).unlink()
    assert auth_base_url(tmp_path) == "http://127.0.0.1:8765"
