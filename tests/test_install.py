"""The README's "Install into your own project", done as it says, in a brand-new project.

The snippets come from README.md itself (each code block after an ``<!-- install-test: NAME -->``
comment), so the README and this test cannot drift apart. The steps:

1. the README's ``pip`` block: ``pip wheel`` in a copy of this git tree, with a fresh venv's
   Python, then ``pip install`` of that wheel and what the README names, from the package
   registry, into the fresh venv (nothing else is in it);
2. ``django-admin startproject mysite``; the ``.env`` block, the ``key`` command;
3. the settings, URLs, Celery app, ``__init__`` and views blocks, written where the README says;
4. the ``migrate`` block (``createsuperuser`` with ``--noinput`` and its environment variables),
   with ``check`` printing no issue at all;
5. the ``run`` block: the fake Atlassian, a Celery worker and beat on Redis, and ``runserver``,
   each a real process (the test adds free ports, ``--noreload`` and a shorter token lifetime);
6. over real HTTP: the status page sends to the admin login, log in, POST connect with the CSRF
   token, Accept on the fake's consent page, back through the callback: connected;
7. beat's sweep renews the token: the status page says "last renewed", ``atlassian_oauth
   status`` a time, the fake counted a refresh (so as not to wait the five minutes the README's
   ten-minute tokens take, the test gives the fake's tokens a lifetime inside the five-minute
   margin: beat's first sweep, a minute after it starts, renews them);
8. the README's example view (``/issues/``) and its ``manage.py shell`` block list the fake's
   Jira issues through ``get_session``.

The project's own environment is the process environment of a user who followed the README: the
test sets only what its ports change (the broker on a Redis database of its own, the fake's
URL), which the README's settings read before ``.env``. Heavy (RUN_HEAVY=1: the PostgreSQL pass
of .ci/run); skipped when the package registry cannot be reached, unless REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.conftest import service_missing
from tests.demo_helpers import CONSENT_ID, csrf_token
from tests.helpers import PYTHON, REPO, free_port, running, wait_until

pytestmark = [pytest.mark.heavy, pytest.mark.slow]

README = REPO / "README.md"
BLOCK = re.compile(
    r"^<!-- install-test: (?P<name>[^>]+?) -->\n```[a-z]*\n(?P<code>.*?)^```$", re.M | re.S
)
BLOCKS = (
    "pip",
    ".env",
    "key",
    "settings.py top",
    "settings.py end",
    "urls.py",
    "mysite/celery.py",
    "mysite/__init__.py",
    "migrate",
    "run",
    "mysite/views.py",
    "urls.py end",
    "manage.py shell",
)
#: Seconds the fake's tokens live here: under REFRESH_MARGIN (300), so due at once.
TOKEN_LIFETIME = 290
#: The Redis database the project's broker uses here (the suite's Celery tests use 15).
REDIS_DB = 14
ADMIN_PASSWORD = "install-test-password"
# What may not leak from this process into the project's: its settings, services and the
# test suite's switches (the project reads its own from the environment and .env).
FOREIGN_ENVIRONMENT = (
    "DJANGO_SETTINGS_MODULE",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_",
    "ATLASSIAN_",
    "OAUTHLIB_",
    "RUN_HEAVY",
    "REQUIRE_SERVICES",
    "PYTEST_",
    "DEMO_",
    "FAKE_ATLASSIAN",
)


def readme_blocks() -> dict[str, str]:
    found = {m["name"]: m["code"] for m in BLOCK.finditer(README.read_text())}
    missing = [name for name in BLOCKS if name not in found]
    assert not missing, f"README.md lost the install-test blocks {missing}"
    return found


def commands(block: str) -> list[str]:
    """The command lines of a shell block (no comments, no blank lines)."""
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def clean_environment(venv: Path) -> dict[str, str]:
    """This process's environment (proxies, pip's configuration and cache, HOME) without
    anything of the suite's, with the fresh venv first on PATH, as after `activate`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENVIRONMENT)}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Steps:
    """Runs the install's commands, keeping each one's output and time for the report."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.logs = root / "logs"
        self.logs.mkdir()
        self.timings: list[tuple[str, float]] = []
        self.started = time.monotonic()

    def run(
        self, command: str, cwd: Path, timeout: float = 240, ok: tuple[int, ...] = (0,), **env: str
    ) -> str:
        begin = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.timings.append((command, time.monotonic() - begin))
        output = done.stdout + done.stderr
        number = len(self.timings)
        (self.logs / f"{number:02d}.log").write_text(f"$ {command}\n{output}")
        assert done.returncode in ok, f"`{command}` exited {done.returncode}:\n{output}"
        return output

    def mark(self, what: str) -> None:
        self.timings.append((what, time.monotonic() - self.started))

    def report(self) -> str:
        lines = [f"{seconds:6.1f}s  {what}" for what, seconds in self.timings]
        return "\n".join(lines)

    def dump(self) -> str:
        return "\n".join(
            f"===== {log.name}\n{log.read_text(errors='replace')[-6000:]}"
            for log in sorted(self.logs.iterdir())
        )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The package registry answers: pip fetches the one package the README adds."""
    dest = tmp_path_factory.mktemp("probe")
    probe = subprocess.run(
        [PYTHON, "-m", "pip", "download", "--no-deps", "--dest", str(dest), "django-environ"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        service_missing(f"the package registry is unreachable: {probe.stderr.strip()[-300:]}")


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A Redis database of the test's own, empty before and after (REDIS_URL's server)."""
    import redis

    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    url = urlunsplit(urlsplit(base)._replace(path=f"/{REDIS_DB}"))
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        service_missing(f"Redis at {base} does not answer: {error}")
    client.flushdb()
    yield url
    client.flushdb()


def copy_of_the_git_tree(destination: Path) -> Path:
    """What a fresh clone holds (tracked and untracked files, nothing git ignores)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    destination.mkdir()
    archive = destination.parent / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, listed.decode().split("\0")):
            if (REPO / name).exists():
                tar.add(REPO / name, arcname=name, recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination


def insert_after(text: str, anchor: str, addition: str) -> str:
    assert anchor in text, f"{anchor!r} is not in the new project's file"
    return text.replace(anchor, f"{anchor}\n{addition}", 1)


def test_the_readme_install_works_in_a_new_project(tmp_path, registry, broker_url):
    blocks = readme_blocks()
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    steps = Steps(tmp_path, clean_environment(venv))
    try:
        with ExitStack() as stack:
            follow_the_readme(steps, blocks, tmp_path, broker_url, stack)
    except BaseException:
        print(steps.report())
        print(steps.dump())
        raise
    print(steps.report())


def follow_the_readme(
    steps: Steps, blocks: dict[str, str], tmp: Path, broker_url: str, stack: ExitStack
) -> None:
    # 1. The wheel, built in a copy of the tree, and the install into the fresh venv.
    source = copy_of_the_git_tree(tmp / "clone")
    build, *install = commands(blocks["pip"])
    steps.run(build, cwd=source)
    (wheel,) = (source / "dist").glob("django_atlassian_oauth-*.whl")
    for command in install:
        assert "path/to/dist/" in command, command
        steps.run(command.replace("path/to/dist/", f"{source / 'dist'}/"), cwd=tmp)
    steps.mark("installed")

    # 2. A new project; its .env and an encryption key.
    steps.run("django-admin startproject mysite", cwd=tmp)
    project = tmp / "mysite"
    package = project / "mysite"
    (project / ".env").write_text(blocks[".env"])
    for command in commands(blocks["key"]):
        steps.run(command, cwd=project)
    assert "ATLASSIAN_ENCRYPTION_KEYS=" in (project / ".env").read_text()

    # 3. The files, where the README puts each block.
    settings = package / "settings.py"
    text = insert_after(
        settings.read_text(), "from pathlib import Path\n", blocks["settings.py top"]
    )
    settings.write_text(text + "\n" + blocks["settings.py end"])
    (package / "urls.py").write_text(blocks["urls.py"])
    (package / "celery.py").write_text(blocks["mysite/celery.py"])
    (package / "__init__.py").write_text(blocks["mysite/__init__.py"])
    (package / "views.py").write_text(blocks["mysite/views.py"])
    with (package / "urls.py").open("a") as urls:
        urls.write("\n" + blocks["urls.py end"])

    # What the test's ports change; the settings read the environment before .env.
    fake_port, web_port = free_port(), free_port()
    fake_url, base = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{web_port}"
    steps.env.update(
        CELERY_BROKER_URL=broker_url,
        ATLASSIAN_AUTH_BASE_URL=fake_url,
        ATLASSIAN_API_BASE_URL=fake_url,
    )

    # 4. Migrations, checks, a superuser.
    migrate, check, createsuperuser = commands(blocks["migrate"])
    steps.run(migrate, cwd=project)
    checked = steps.run(check, cwd=project)
    assert "System check identified no issues (0 silenced)." in checked, checked
    assert "atlassian_oauth." not in checked, checked
    steps.run(
        f"{createsuperuser} --noinput",
        cwd=project,
        DJANGO_SUPERUSER_USERNAME="admin",
        DJANGO_SUPERUSER_EMAIL="admin@example.org",
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
    )
    steps.mark("project ready")

    # 5. The four processes.
    fake_cmd, worker_cmd, beat_cmd, web_cmd = commands(blocks["run"])
    assert "fake-server" in fake_cmd and " worker" in worker_cmd and " beat" in beat_cmd
    assert "runserver" in web_cmd
    added = {
        # argparse takes the last --token-lifetime.
        fake_cmd: ["--port", str(fake_port), "--token-lifetime", str(TOKEN_LIFETIME)],
        worker_cmd: [],
        beat_cmd: [],
        web_cmd: [f"127.0.0.1:{web_port}", "--noreload"],
    }
    logs: dict[str, Path] = {}
    for name, command in zip(("fake", "worker", "beat", "web"), added, strict=True):
        logs[name] = steps.logs / f"{name}.log"
        argv = shlex.split(command) + added[command]
        stack.enter_context(running(argv, dict(steps.env), logs[name], cwd=project))

    def log(name: str) -> str:
        return logs[name].read_text(errors="replace")

    def answers(url: str) -> bool:
        try:
            requests.get(url, timeout=2)
        except requests.ConnectionError:
            return False
        return True

    assert wait_until(lambda: "Fake Atlassian listening on" in log("fake"), 60), log("fake")
    assert wait_until(lambda: "ready." in log("worker"), 90), log("worker")
    assert wait_until(lambda: answers(f"{base}/admin/login/"), 60), log("web")
    steps.mark("processes up")

    # 6. Connect over HTTP: login, POST connect, Accept at the fake, the callback.
    browser = requests.Session()
    login = browser.get(f"{base}/atlassian/", timeout=10)
    assert login.url.startswith(f"{base}/admin/login/"), login.url
    status = browser.post(
        login.url,
        data={
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "next": "/atlassian/",
            "csrfmiddlewaretoken": csrf_token(login.text),
        },
        timeout=10,
    )
    assert status.url == f"{base}/atlassian/", status.url
    assert "Connect Jira" in status.text, status.text
    consent = browser.post(
        f"{base}/atlassian/connect/",
        data={"csrfmiddlewaretoken": csrf_token(status.text)},
        timeout=10,
    )
    assert consent.url.startswith(f"{fake_url}/authorize"), consent.url
    consent_id = CONSENT_ID.search(consent.text)
    assert consent_id and ">Accept<" in consent.text, consent.text
    connected = browser.post(
        f"{fake_url}/authorize",
        data={"consent_id": consent_id.group(1), "decision": "accept"},
        timeout=10,
    )
    assert connected.url == f"{base}/atlassian/", connected.url
    assert "Connected as" in connected.text, connected.text
    assert "not renewed yet" in connected.text, connected.text
    steps.mark("connected")

    # 7. Beat's sweep renews the token: the status page, the command, the fake.
    def renewed() -> bool:
        page = browser.get(f"{base}/atlassian/", timeout=10).text
        return "The tokens were last renewed at" in page

    assert wait_until(renewed, timeout=150, interval=2), log("beat") + log("worker")
    steps.mark("renewed by beat")
    assert "Sending due task atlassian-oauth-refresh-due-grants" in log("beat"), log("beat")
    assert "atlassian_oauth.tasks.refresh_grants" in log("worker"), log("worker")
    # 0, or 2 if the short-lived token has sat in the refresh margin longer than a sweep.
    report = steps.run("python manage.py atlassian_oauth status", cwd=project, ok=(0, 2))
    assert re.search(r"Last refreshed:\s+\d{4}-", report), report
    from atlassian_oauth.testing import FakeAtlassianClient

    counts = FakeAtlassianClient(fake_url).counts
    assert counts["code_exchange"] == 1 and counts["refresh"] >= 1, counts

    # 8. get_session: the README's view, over HTTP, and its shell block.
    issues = browser.get(f"{base}/issues/", timeout=10)
    assert issues.status_code == 200, issues.text
    keys = [issue["key"] for issue in issues.json()["issues"]]
    # The fake's Jira site "acme" holds the issues ACME-23, ACME-21, ...
    assert keys and all(key.startswith("ACME-") for key in keys), keys
    printed = steps.run(
        f"python manage.py shell -c {shlex.quote(blocks['manage.py shell'])}", cwd=project
    )
    assert f"{keys}" in printed, printed

    for name in ("worker", "beat", "web"):
        assert "Traceback" not in log(name), log(name)
    assert wheel.exists()
