"""`make demo`'s runner: everything starts, the pages answer, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.helpers import (
    PYTHON,
    REPO,
    alive,
    descendants,
    free_port,
    subprocess_env,
    wait_until,
)

pytestmark = pytest.mark.slow


def start_demo(
    var_dir: Path, port: int, fake_port: int, **environment: str
) -> subprocess.Popen[str]:
    env = subprocess_env(
        DEMO_VAR_DIR=str(var_dir),
        DATABASE_URL="",
        REDIS_URL="",
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        **environment,
    )
    env.pop("ATLASSIAN_CLIENT_ID", None)
    argv = [PYTHON, "manage.py", "rundemo", "--port", str(port), "--fake-port", str(fake_port)]
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError("the demo ended before printing " + repr(marker) + ":\n" + "".join(seen))


def stop_with_ctrl_c(process: subprocess.Popen[str]) -> tuple[str, set[int]]:
    started = descendants(process.pid)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    return rest, started


def log_in(session: requests.Session, base: str, username: str, password: str) -> str:
    form = session.get(f"{base}/accounts/login/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, form
    response = session.post(
        f"{base}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": token.group(1),
            "next": "/",
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.text


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
    finally:
        output, started = stop_with_ctrl_c(process)
    assert process.returncode == 0, output
    assert "Demo stopped; no process left behind." in output
    assert started, "the demo had no child processes to stop"
    assert wait_until(lambda: not any(alive(pid) for pid in started), timeout=10), [
        pid for pid in started if alive(pid)
    ]


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
    assert "Traceback" not in output


def consent_through_the_fake(session: requests.Session, base: str) -> requests.Response:
    """Click Connect Jira, then Accept on the fake's consent page, as a browser would."""
    consent = session.get(f"{base}/atlassian/connect/", timeout=10)
    assert ">Accept<" in consent.text, consent.text
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', consent.text)
    assert consent_id
    fake_base = consent.url.split("/authorize")[0]
    return session.post(
        f"{fake_base}/authorize",
        data={"consent_id": consent_id.group(1), "decision": "accept"},
        timeout=10,
    )


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
        landed = consent_through_the_fake(user, base)
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
        events = admin.get(f"{base}/admin/atlassian_oauth/event/?kind__exact=refreshed", timeout=10)
        assert "Refreshed the access token" in events.text
        assert ">beat<" in events.text.lower() or "Beat" in events.text
        grants = admin.get(f"{base}/admin/atlassian_oauth/grant/", timeout=10).text
        assert "ada@example.com" in grants and "Healthy" in grants
    finally:
        output, _ = stop_with_ctrl_c(process)
    assert process.returncode == 0, output
