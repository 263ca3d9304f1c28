"""`manage.py atlassian_oauth fake-server`: the fake in a process of its own, driven over HTTP."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, FakeAtlassianClient
from tests.helpers import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.slow


def start_fake(tmp_path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    argv = [PYTHON, "manage.py", "atlassian_oauth", "fake-server", "--port", "0", *extra]
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        env=subprocess_env(DEMO_VAR_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(line + process.communicate(timeout=10)[1])
    return process, match.group(1)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_the_command_keeps_the_fakes_state_in_a_file_and_names_the_app_and_tenant(tmp_path):
    state = tmp_path / "fake.json"
    options = ["--state-file", str(state), "--app-name", "Acme tracker"]
    options += ["--tenant", "acme.localhost=Acme"]
    process, url = start_fake(tmp_path, *options)
    try:
        with FakeAtlassianClient(url) as control:
            tokens = control.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, "read:me offline_access")
        page = requests.get(
            f"{url}/authorize",
            params={
                "audience": "api.atlassian.com",
                "client_id": DEFAULT_CLIENT_ID,
                "scope": "read:me offline_access",
                "redirect_uri": "http://acme.localhost:8000/atlassian/callback/",
                "state": "s",
                "response_type": "code",
                "prompt": "consent",
            },
            timeout=5,
        )
        assert '<span id="app-name">Acme tracker</span> is requesting access' in page.text
        assert '<strong id="tenant">Acme (acme.localhost:8000)</strong>' in page.text
    finally:
        stop(process)
    assert state.exists()
    # A second run reads the state back: the access token minted by the first still works.
    process, url = start_fake(tmp_path, "--state-file", str(state))
    try:
        me = requests.get(
            f"{url}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5
        )
        assert me.status_code == 200, me.text
    finally:
        stop(process)


def test_the_command_serves_the_fake_until_terminated(tmp_path):
    argv = [PYTHON, "manage.py", "atlassian_oauth", "fake-server", "--port", "0"]
    argv += ["--token-lifetime", "60", "--auto-consent", "accept"]
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        env=subprocess_env(DEMO_VAR_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        with FakeAtlassianClient(url) as control:
            tokens = control.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, "read:me offline_access")
            assert tokens["expires_in"] == 60
            me = requests.get(
                f"{url}/me",
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
                timeout=5,
            )
            assert me.status_code == 200
            assert control.counts["me"] == 1
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
