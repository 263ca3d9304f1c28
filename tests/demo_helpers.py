"""Running `make demo`'s runner as a real process and using it over HTTP, as a person would."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from tests.helpers import PYTHON, REPO, descendants, subprocess_env

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CONSENT_ID = re.compile(r'name="consent_id" value="([^"]+)"')


def demo_env(var_dir: Path, **environment: str) -> dict[str, str]:
    """The environment of a demo (or a command of it) on ``var_dir``, the fake Atlassian's."""
    env = subprocess_env(
        DEMO_VAR_DIR=str(var_dir),
        DATABASE_URL="",
        REDIS_URL="",
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        **environment,
    )
    for name in ("ATLASSIAN_CLIENT_ID", "FAKE_ATLASSIAN_URL"):
        if name not in environment:
            env.pop(name, None)
    return env


def start_demo(
    var_dir: Path, port: int, fake_port: int, **environment: str
) -> subprocess.Popen[str]:
    argv = [PYTHON, "manage.py", "rundemo", "--port", str(port), "--fake-port", str(fake_port)]
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=demo_env(var_dir, **environment),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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


def csrf_token(page: str) -> str:
    found = CSRF_FIELD.search(page)
    assert found, page
    return found.group(1)


def log_in(session: requests.Session, base: str, username: str, password: str) -> str:
    form = session.get(f"{base}/accounts/login/", timeout=10).text
    response = session.post(
        f"{base}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": csrf_token(form),
            "next": "/",
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.text


def connect_through_the_fake(session: requests.Session, base: str) -> requests.Response:
    """Click Connect Jira, then Accept on the fake's consent page, as a browser would."""
    consent = session.get(f"{base}/atlassian/connect/", timeout=10)
    if not CONSENT_ID.search(consent.text):
        # The connect URL shows a page with the button: a POST starts the round trip.
        consent = session.post(
            f"{base}/atlassian/connect/",
            data={"csrfmiddlewaretoken": csrf_token(consent.text)},
            headers={"Referer": f"{base}/atlassian/connect/"},
            timeout=10,
        )
    consent_id = CONSENT_ID.search(consent.text)
    assert consent_id and ">Accept<" in consent.text, consent.text
    fake_base = consent.url.split("/authorize")[0]
    answer = session.post(
        f"{fake_base}/authorize",
        data={"consent_id": consent_id.group(1), "decision": "accept"},
        allow_redirects=False,
        timeout=10,
    )
    return follow(session, answer)


def follow(session: requests.Session, response: requests.Response) -> requests.Response:
    """Follow redirects as a browser does, through the demo's connect host too: browsers resolve
    *.localhost to loopback themselves (Python may not), and have no cookies for it."""
    while response.is_redirect:
        url = urljoin(response.url, response.headers["Location"])
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.endswith(".localhost"):
            loopback = urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port or 80}"))
            response = requests.get(
                loopback, headers={"Host": parts.netloc}, allow_redirects=False, timeout=10
            )
        else:
            response = session.get(url, allow_redirects=False, timeout=10)
    return response


def error_lines(logs: Path) -> list[str]:
    """Every line of the demo's logs that reports an error (or a traceback), with its file."""
    found = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "ERROR" in line or "Traceback" in line or "CRITICAL" in line:
                found.append(f"{log.name}: {line}")
    return found
