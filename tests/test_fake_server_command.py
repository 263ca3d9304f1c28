"""`manage.py atlassian_oauth fake-server`: the fake in a process of its own, driven over HTTP."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, FakeAtlassianClient
from tests.helpers import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.slow


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
