"""`make demo` twice: a connection made in the first run is healthy, and refreshes, in the next.

Before the fake Atlassian kept its state, a restart turned every connection into "needs
reconnect": the database kept the tokens while the fake forgot it had issued them.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, FakeAtlassianClient
from demo_site.var_dir import FAKE_STATE_FILE, FAKE_URL_FILE
from tests.demo_helpers import (
    connect_through_the_fake,
    demo_env,
    error_lines,
    log_in,
    read_until,
    start_demo,
    stop_with_ctrl_c,
)
from tests.helpers import PYTHON, REPO, free_port

pytestmark = pytest.mark.slow

#: Tokens live 75 s and are renewed 60 s ahead: due 15 s after they were issued. Beat sweeps
#: only hourly, so the refresh below is the command's, not beat's.
DEMO_TIMING = {
    "FAKE_TOKEN_LIFETIME": "75",
    "ATLASSIAN_REFRESH_MARGIN": "60",
    "DEMO_SWEEP_SECONDS": "3600",
}
DUE_AFTER = 15.0


def refresh_count(fake_url: str) -> int:
    with FakeAtlassianClient(fake_url) as control:
        info = control.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None, "the fake knows no grant for Ada"
    assert not info["revoked"]
    return int(info["refresh_count"])


def stop(process: subprocess.Popen[str], var_dir: Path) -> None:
    output, _ = stop_with_ctrl_c(process)
    assert process.returncode == 0, output
    assert "Demo stopped; no process left behind." in output
    assert not (var_dir / FAKE_URL_FILE).exists(), "the fake's URL outlived the demo"
    assert error_lines(var_dir / "logs") == []


def test_a_connection_survives_a_restart_and_refreshes_from_another_shell(tmp_path):
    port, fake_port = free_port(), free_port()
    base, fake_url = f"http://localhost:{port}", f"http://127.0.0.1:{fake_port}"
    user = requests.Session()

    process = start_demo(tmp_path, port, fake_port, **DEMO_TIMING)
    try:
        read_until(process, "Press Ctrl-C")
        assert (tmp_path / FAKE_URL_FILE).read_text().strip() == fake_url
        log_in(user, base, "alice", "alice-demo-password")
        landed = connect_through_the_fake(user, base)
        connected_at = time.monotonic()
        assert "Jira is connected as ada@example.com." in landed.text
        assert '<td class="key">ACME-23</td>' in landed.text  # home lists her issues
        before = refresh_count(fake_url)
    finally:
        stop(process, tmp_path)
    assert (tmp_path / FAKE_STATE_FILE).stat().st_mode & 0o777 == 0o600

    process = start_demo(tmp_path, port, fake_port, **DEMO_TIMING)
    try:
        read_until(process, "Press Ctrl-C")
        # The same browser session: still logged in, still connected, nothing to reconnect.
        status = user.get(f"{base}/atlassian/", timeout=10).text
        assert "Healthy" in status, status
        assert "Reconnect Jira" not in status
        home = user.get(f"{base}/", timeout=10).text
        assert '<td class="key">ACME-23</td>' in home, home

        # "Another shell": a command of the demo's with no FAKE_ATLASSIAN_URL finds this fake
        # (on a port of its own, not the default one) through the file the demo wrote.
        time.sleep(max(0.0, connected_at + DUE_AFTER + 1 - time.monotonic()))
        command = subprocess.run(
            [PYTHON, "manage.py", "atlassian_oauth", "refresh", "--user", "alice"],
            cwd=REPO,
            env=demo_env(tmp_path, **DEMO_TIMING),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert command.returncode == 0, command.stdout + command.stderr
        assert refresh_count(fake_url) == before + 1

        status = user.get(f"{base}/atlassian/", timeout=10).text
        assert "Healthy" in status and "last renewed" in status, status
    finally:
        stop(process, tmp_path)
