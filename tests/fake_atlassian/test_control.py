"""Counters, logs, reset, the control API from another process, concurrency and the CLI."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    KINDS,
    FakeAtlassian,
    FakeAtlassianClient,
)

from .conftest import OAuth

REPO = Path(__file__).resolve().parents[2]
CLI_REDIRECT_URI = "https://demo.example/callback"


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m atlassian_oauth.testing.fake_atlassian --port 0 ARGS``, and the url it prints."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "atlassian_oauth.testing.fake_atlassian", "--port", "0"]
    process = subprocess.Popen(
        [*command, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 15)
    line = process.stdout.readline() if ready else ""
    prefix = "Fake Atlassian listening on "
    if not line.startswith(prefix):
        process.kill()
        pytest.fail(f"the fake did not start: {line!r}, exit code {process.wait(5)}")
    return process, line[len(prefix) :].strip()


@pytest.fixture(scope="module")
def cli_url() -> Iterator[str]:
    """The url of a fake started from the command line in its own process."""
    process, url = start_cli(
        "--client-id",
        "cli-client",
        "--client-secret",
        "cli-secret",
        "--redirect-uri",
        CLI_REDIRECT_URI,
        "--auto-consent",
        "accept",
        "--token-lifetime",
        "120",
    )
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_counts_are_by_kind(oauth: OAuth) -> None:
    tokens = oauth.mint()
    token = tokens["refresh_token"]
    for _ in range(3):
        token = oauth.refresh(token).json()["refresh_token"]
    oauth.api("/me", tokens["access_token"])
    oauth.authorize()

    counts = oauth.fake.counts

    assert set(counts) == set(KINDS)
    assert counts["refresh"] == 3
    assert counts["me"] == 1
    assert counts["authorize"] == 1
    assert counts["code_exchange"] == 0


def test_counts_is_a_snapshot(oauth: OAuth) -> None:
    counts = oauth.fake.counts
    counts["refresh"] = 99

    assert oauth.fake.counts["refresh"] == 0


def test_the_requests_log_holds_no_secrets(oauth: OAuth) -> None:
    oauth.fake.auto_consent = "accept"
    redirect = oauth.authorize(state="state-secret")
    code = oauth.redirect_query(redirect)["code"]
    tokens = oauth.exchange(code).json()
    refreshed = oauth.refresh(tokens["refresh_token"]).json()
    oauth.api("/me", refreshed["access_token"])

    log = oauth.fake.requests_log

    assert [(e["kind"], e["status"]) for e in log] == [
        ("authorize", 302),
        ("code_exchange", 200),
        ("refresh", 200),
        ("me", 200),
    ]
    assert log[1]["grant_type"] == "authorization_code"
    assert log[1]["client_id"] == DEFAULT_CLIENT_ID
    dumped = json.dumps(log)
    secrets = [code, "state-secret", DEFAULT_CLIENT_SECRET, *tokens.values(), *refreshed.values()]
    for secret in secrets:
        if isinstance(secret, str) and len(secret) > 12:
            assert secret not in dumped


def test_the_server_prints_no_access_log_and_logs_no_query(
    oauth: OAuth, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="atlassian_oauth.testing.fake_atlassian"):
        oauth.http.get(oauth.url("/authorize?code=code-secret-value&state=x"))
        oauth.http.get(oauth.url("/nowhere?code=code-secret-value"))

    assert "code-secret-value" not in capfd.readouterr().err
    assert "code-secret-value" not in caplog.text


def test_reset_returns_to_the_initial_state(oauth: OAuth) -> None:
    tokens = oauth.mint()
    oauth.fake.register_app("other", "other-secret")
    oauth.fake.add_account("someone", "someone@example.com", "Some One")
    oauth.fake.auto_consent = "decline"
    oauth.fake.access_token_lifetime = 5
    oauth.fake.invalid_refresh_error = "unauthorized_client"
    oauth.fake.refresh_omits_refresh_token = True
    oauth.fake.inject("any", status=500)
    oauth.fake.clock.advance(1000)

    oauth.fake.reset()

    assert oauth.fake.clock.offset == 0
    assert sum(oauth.fake.counts.values()) == 0
    assert oauth.fake.requests_log == []
    assert oauth.fake.auto_consent is None
    assert oauth.fake.access_token_lifetime == 3600
    assert oauth.fake.invalid_refresh_error == "invalid_grant"
    assert oauth.fake.refresh_omits_refresh_token is False
    assert oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID) is None
    assert oauth.refresh(tokens["refresh_token"]).status_code == 403  # no fault, no token
    assert oauth.refresh("x", client_id="other", client_secret="other-secret").status_code == 401
    assert oauth.authorize().status_code == 200


def test_settings_are_validated(fake_atlassian: FakeAtlassian) -> None:
    with pytest.raises(ValueError):
        fake_atlassian.auto_consent = "maybe"
    with pytest.raises(ValueError):
        fake_atlassian.invalid_refresh_error = "server_error"
    with pytest.raises(ValueError):
        fake_atlassian.access_token_lifetime = 0
    with pytest.raises(ValueError):
        fake_atlassian.consent_account_id = "nobody"


def test_start_stop_and_port_zero(http: requests.Session) -> None:
    fake = FakeAtlassian(port=0).start()
    try:
        url = fake.url
        assert fake.port > 0
        assert url == f"http://127.0.0.1:{fake.port}"
        assert http.get(f"{url}/_fake/counts", timeout=5).status_code == 200
    finally:
        fake.stop()
    # Not even the connection the session keeps alive still answers.
    with pytest.raises(requests.ConnectionError):
        http.get(f"{url}/_fake/counts", timeout=5)
    fake.stop()  # stopping twice is harmless
    with FakeAtlassian() as again:
        assert http.get(f"{again.url}/_fake/counts", timeout=5).status_code == 200


def test_the_client_drives_a_fake_in_another_process(cli_url: str) -> None:
    url = cli_url
    with FakeAtlassianClient(url) as client, requests.Session() as http:
        http.trust_env = False
        client.reset()
        # reset() returns to the app the command line configured.
        tokens = client.mint_grant("cli-client", ADA_ACCOUNT_ID, "read:jira-work offline_access")
        assert tokens["expires_in"] == 120
        body = {
            "grant_type": "refresh_token",
            "client_id": "cli-client",
            "client_secret": "cli-secret",
            "refresh_token": tokens["refresh_token"],
        }

        client.inject("refresh", status=503, headers={"Retry-After": "3"})
        failed = http.post(f"{url}/oauth/token", json=body, timeout=5)
        ok = http.post(f"{url}/oauth/token", json=body, timeout=5)
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "3")
        assert ok.status_code == 200
        assert client.counts["refresh"] == 2
        assert client.grant_info("cli-client", ADA_ACCOUNT_ID)["refresh_count"] == 1  # type: ignore[index]

        before = client.now()
        assert client.advance_clock(3600) >= before + 3600
        bearer = {"Authorization": f"Bearer {ok.json()['access_token']}"}
        assert http.get(f"{url}/me", headers=bearer, timeout=5).status_code == 401

        settings = client.settings(invalid_refresh_error="unauthorized_client")
        assert settings["invalid_refresh_error"] == "unauthorized_client"
        client.register_app("second", "second-secret", scopes=["read:jira-work"])
        with pytest.raises(ValueError):
            client.mint_grant("second", ADA_ACCOUNT_ID, "write:jira-work")
        assert client.revoke_grant("cli-client", ADA_ACCOUNT_ID) is True
        dead = http.post(
            f"{url}/oauth/token",
            json={**body, "refresh_token": ok.json()["refresh_token"]},
            timeout=5,
        )
        assert dead.json() == {
            "error": "unauthorized_client",
            "error_description": "refresh_token is invalid",
        }
        client.reset()
        assert client.counts == dict.fromkeys(KINDS, 0)
        assert client.grant_info("cli-client", ADA_ACCOUNT_ID) is None


def test_the_command_line_configures_app_and_consent(cli_url: str) -> None:
    url = cli_url
    params = {
        "audience": "api.atlassian.com",
        "client_id": "cli-client",
        "scope": "read:jira-work",
        "state": "s",
        "response_type": "code",
        "prompt": "consent",
    }
    FakeAtlassianClient(url).reset()

    other = requests.get(
        f"{url}/authorize",
        params={**params, "redirect_uri": "https://elsewhere.example/cb"},
        allow_redirects=False,
        timeout=5,
    )
    accepted = requests.get(
        f"{url}/authorize",
        params={**params, "redirect_uri": CLI_REDIRECT_URI},
        allow_redirects=False,
        timeout=5,
    )

    assert other.status_code == 400
    assert accepted.status_code == 302
    assert accepted.headers["Location"].startswith(f"{CLI_REDIRECT_URI}?code=")


def test_sigterm_stops_the_command_cleanly() -> None:
    process, url = start_cli()
    assert requests.get(f"{url}/_fake/counts", timeout=5).status_code == 200

    process.terminate()

    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert process.stderr.read() == ""


def test_concurrent_refreshes_of_one_token_stay_consistent(oauth: OAuth) -> None:
    tokens = oauth.mint()
    threads_count = 32
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def refresh() -> None:
        with requests.Session() as http:
            http.trust_env = False
            body = {
                "grant_type": "refresh_token",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "refresh_token": tokens["refresh_token"],
            }
            try:
                barrier.wait(timeout=10)
                response = http.post(oauth.url("/oauth/token"), json=body, timeout=10)
            except BaseException as error:
                with lock:
                    errors.append(error)
                return
            with lock:
                statuses.append(response.status_code)

    workers = [threading.Thread(target=refresh) for _ in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    assert len(statuses) == threads_count
    assert set(statuses) <= {200, 403}
    assert oauth.fake.counts["refresh"] == threads_count
    assert len(oauth.fake.requests_log) == threads_count
    info = oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None
    assert info["refresh_count"] == statuses.count(200)


def test_both_fakes_offer_one_interface(cli_url: str) -> None:
    import inspect

    from atlassian_oauth.testing import FakeAtlassianControl

    members = [
        name
        for name in dir(FakeAtlassianControl)
        if not name.startswith("_") and name not in ("register_app",)
    ] + list(FakeAtlassianControl.__annotations__)
    for name in set(members) | {"register_app"}:
        kinds = {
            cls.__name__: isinstance(inspect.getattr_static(cls, name), property)
            for cls in (FakeAtlassian, FakeAtlassianClient)
        }
        assert len(set(kinds.values())) == 1, f"{name}: property on one, method on the other"
    with FakeAtlassian() as local, FakeAtlassianClient(cli_url) as remote:
        for fake in (local, remote):
            assert isinstance(fake, FakeAtlassianControl)
            fake.reset()
            fake.auto_consent = "accept"
            assert fake.auto_consent == "accept"
            assert fake.counts["refresh"] == 0
            assert fake.advance_clock(10) == pytest.approx(fake.now())
            assert fake.url.startswith("http://127.0.0.1:")
        remote.reset()
