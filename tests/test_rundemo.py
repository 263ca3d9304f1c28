"""`make demo`'s runner: everything starts, the pages answer, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
import requests

from demo_site.var_dir import FAKE_URL_FILE, RUNDEMO_PID_FILE
from tests.demo_helpers import (
    connect_through_the_fake,
    error_lines,
    log_in,
    read_until,
    start_demo,
    stop_with_ctrl_c,
)
from tests.helpers import alive, descendants, free_port, wait_until

pytestmark = pytest.mark.slow


def test_demo_runs_everything_and_ctrl_c_stops_it_all(tmp_path):
    port, fake_port = free_port(), free_port()
    process = start_demo(tmp_path, port, fake_port)
    try:
        banner = read_until(process, "Press Ctrl-C")
        assert f"http://localhost:{port}/" in banner
        assert f"http://127.0.0.1:{port}/" in banner
        assert "alice" in banner and "alice-demo-password" in banner
        assert f"Fake Atlassian: http://127.0.0.1:{fake_port}" in banner

        # Four processes (fake, worker, beat, web) at least, all below the runner.
        assert len(descendants(process.pid)) >= 4

        acme = requests.get(f"http://localhost:{port}/", timeout=10)
        globex = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert acme.status_code == globex.status_code == 200
        assert "Acme" in acme.text and "Globex" in globex.text

        page = log_in(
            requests.Session(), f"http://localhost:{port}", "alice", "alice-demo-password"
        )
        assert "Signed in as <strong>alice</strong>" in page

        consent = requests.get(
            f"http://127.0.0.1:{fake_port}/authorize?"
            + urlencode(
                {
                    "audience": "api.atlassian.com",
                    "client_id": "fake-client-id",
                    "scope": "read:me offline_access",
                    "redirect_uri": f"http://localhost:{port}/atlassian/callback/",
                    "state": "s" * 22,
                    "response_type": "code",
                    "prompt": "consent",
                }
            ),
            timeout=10,
        )
        assert consent.status_code == 200
        assert ">Accept<" in consent.text and ">Decline<" in consent.text
        # The consent page names the app and the tenant asking, as Atlassian's does.
        assert "django-atlassian-oauth demo</span> is requesting access" in consent.text
        assert f'<strong id="tenant">Acme (localhost:{port})</strong>' in consent.text
        assert (tmp_path / RUNDEMO_PID_FILE).read_text().strip() == str(process.pid)
    finally:
        output, started = stop_with_ctrl_c(process)
    assert process.returncode == 0, output
    assert "Demo stopped; no process left behind." in output
    assert started, "the demo had no child processes to stop"
    assert wait_until(lambda: not any(alive(pid) for pid in started), timeout=10), [
        pid for pid in started if alive(pid)
    ]
    # A clean Ctrl-C: no ERROR in any log (the worker's pool is stopped by the worker itself),
    # and nothing left that says a demo runs.
    assert error_lines(tmp_path / "logs") == []
    assert not (tmp_path / FAKE_URL_FILE).exists()
    assert not (tmp_path / RUNDEMO_PID_FILE).exists()


def test_a_second_run_reuses_what_exists(tmp_path):
    for _ in range(2):
        process = start_demo(tmp_path, free_port(), free_port())
        try:
            banner = read_until(process, "Press Ctrl-C")
        finally:
            stop_with_ctrl_c(process)
    assert "Demo data already there." in banner
    assert process.returncode == 0


def test_a_taken_port_is_reported_not_crashed_on(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_demo(tmp_path, port, free_port())
        output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"Port {port} for the web is taken" in output
    # `make demo` takes no flags: the message names the variable it reads as well.
    assert f"DEMO_PORT={port + 1} make demo" in output
    assert f"--port {port + 1}" in output
    assert "Traceback" not in output


def test_the_demo_renews_short_lived_tokens_while_it_runs(tmp_path):
    """Connect in the running demo; beat and the worker renew the token before it expires."""
    port, fake_port = free_port(), free_port()
    # Tokens live 70 s and are renewed 60 s ahead: due 10 s after connecting.
    process = start_demo(
        tmp_path,
        port,
        fake_port,
        FAKE_TOKEN_LIFETIME="70",
        ATLASSIAN_REFRESH_MARGIN="60",
        DEMO_SWEEP_SECONDS="2",
        ATLASSIAN_BEAT_JITTER="1",
    )
    try:
        read_until(process, "Press Ctrl-C")
        base = f"http://localhost:{port}"
        user = requests.Session()
        log_in(user, base, "alice", "alice-demo-password")
        landed = connect_through_the_fake(user, base)
        assert "Jira is connected as ada@example.com." in landed.text
        assert "not renewed yet" in user.get(f"{base}/atlassian/", timeout=10).text

        renewed = wait_until(
            lambda: "last renewed" in user.get(f"{base}/atlassian/", timeout=10).text,
            timeout=60,
            interval=1,
        )
        assert renewed, "no refresh reached the status page within a minute"
        page = user.get(f"{base}/atlassian/", timeout=10).text
        assert "Healthy" in page

        admin = requests.Session()
        log_in(admin, base, "admin", "admin-demo-password")
        # A routine refresh writes no event row (issue 12); the grant list shows when it ran.
        grants = admin.get(f"{base}/admin/atlassian_oauth/grant/", timeout=10).text
        assert "ada@<wbr>example.com" in grants and "Healthy" in grants
        assert re.search(r"<div>last: <time datetime=", grants), "no refresh in the grant list"
    finally:
        output, _ = stop_with_ctrl_c(process)
    assert process.returncode == 0, output
    assert error_lines(tmp_path / "logs") == []
