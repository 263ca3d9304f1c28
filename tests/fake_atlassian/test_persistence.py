"""The fake's state file: what a restart keeps (grants, tokens, clock), written at each change."""

from __future__ import annotations

import json
import logging
import signal
import stat
from pathlib import Path

import pytest
import requests

from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FakeAtlassian,
    FakeAtlassianClient,
)
from atlassian_oauth.testing._fake_state import FakeState

from .test_control import start_cli

SCOPES = "read:jira-work read:me offline_access"


def me(fake_url: str, access_token: str) -> int:
    response = requests.get(
        f"{fake_url}/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5
    )
    return response.status_code


def refresh(fake_url: str, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{fake_url}/oauth/token",
        json={
            "grant_type": "refresh_token",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "refresh_token": refresh_token,
        },
        timeout=5,
    )


def test_a_restarted_fake_still_knows_the_tokens_it_issued(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as first:
        tokens = first.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        rotated = refresh(first.url, tokens["refresh_token"]).json()

    with FakeAtlassian(state_path=path) as second:
        assert me(second.url, rotated["access_token"]) == 200
        again = refresh(second.url, rotated["refresh_token"])
        assert again.status_code == 200, again.text
        info = second.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
        assert info is not None and info["refresh_count"] == 2 and not info["revoked"]


def test_each_change_is_on_disk_before_the_answer_leaves(tmp_path: Path) -> None:
    """A fake killed without a clean stop loses nothing it answered."""
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as running:
        tokens = running.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        rotated = refresh(running.url, tokens["refresh_token"]).json()
        # Read while the first one still runs, as a restart after kill -9 would.
        copy = FakeState(state_path=path)
    assert copy.refresh_tokens.keys() == running._state.refresh_tokens.keys()
    assert rotated["refresh_token"] in copy.refresh_tokens
    assert rotated["access_token"] in copy.access_tokens


def test_breach_detection_and_revocation_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as first:
        tokens = first.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        first.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    with FakeAtlassian(state_path=path) as second:
        assert refresh(second.url, tokens["refresh_token"]).status_code == 403
        assert me(second.url, tokens["access_token"]) == 401


def test_the_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as fake:
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["fake.json"]  # no temporary file left
    data = json.loads(path.read_text())
    assert data["format"] == 1
    assert len(data["grants"]) == 1 and len(data["refresh_tokens"]) == 1


def test_expired_access_tokens_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path, access_token_lifetime=60) as fake:
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        assert len(json.loads(path.read_text())["access_tokens"]) == 1
        fake.advance_clock(61)
    data = json.loads(path.read_text())
    assert data["access_tokens"] == {}
    assert data["clock_offset"] >= 61  # the clock is kept too
    assert len(data["refresh_tokens"]) == 1


def test_what_the_run_is_started_with_wins_over_what_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path, access_token_lifetime=60) as fake:
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        fake.register_app("other-app", "other-secret", scopes=["read:me"], name="Other")
    with FakeAtlassian(
        state_path=path, access_token_lifetime=90, app_name="Renamed", client_secret="new-secret"
    ) as fake:
        assert fake.access_token_lifetime == 90
        assert fake._state.apps[DEFAULT_CLIENT_ID].name == "Renamed"
        assert fake._state.apps[DEFAULT_CLIENT_ID].client_secret == "new-secret"
        # An app registered at run time, with its scopes, and the grant: all still there.
        assert fake._state.apps["other-app"].scopes == frozenset({"read:me"})
        info = fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
        assert info is not None and not info["revoked"]


def test_a_reset_is_saved_too(tmp_path: Path) -> None:
    path = tmp_path / "fake.json"
    with FakeAtlassian(state_path=path) as fake:
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        with FakeAtlassianClient(fake.url) as control:
            control.reset()
    with FakeAtlassian(state_path=path) as fake:
        assert fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID) is None


def test_an_unreadable_file_is_set_aside_and_the_fake_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fake.json"
    path.write_text('{"format": 1, "apps": "not a list"')
    with caplog.at_level(logging.WARNING), FakeAtlassian(state_path=path) as fake:
        assert fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID) is None
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    assert (tmp_path / "fake.json.unreadable").read_text().startswith('{"format": 1')
    assert json.loads(path.read_text())["format"] == 1
    assert "started fresh" in caplog.text


def test_without_a_path_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with FakeAtlassian() as fake:
        fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
        assert fake._state.state_path is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_command_line_fake_keeps_its_state_across_a_restart(
    tmp_path: Path, stop: signal.Signals
) -> None:
    path = tmp_path / "fake.json"
    process, url = start_cli("--state-file", str(path))
    with FakeAtlassianClient(url) as control:
        tokens = control.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr

    process, url = start_cli("--state-file", str(path))
    try:
        assert me(url, tokens["access_token"]) == 200
        assert refresh(url, tokens["refresh_token"]).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)
