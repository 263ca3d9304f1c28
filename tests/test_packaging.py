"""`python -m build` gives an sdist and a wheel that carry everything the app needs at run time."""

from __future__ import annotations

import re
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.helpers import PYTHON, REPO

pytestmark = pytest.mark.slow

MUST_SHIP = (
    "atlassian_oauth/py.typed",
    "atlassian_oauth/migrations/__init__.py",
    "atlassian_oauth/templates/atlassian_oauth/base.html",
    "atlassian_oauth/static/atlassian_oauth/atlassian_oauth.css",
    "atlassian_oauth/testing/fake_atlassian.py",
    "atlassian_oauth/testing/pytest_plugin.py",
    "atlassian_oauth/management/commands/atlassian_oauth.py",
    # The German translation, compiled: a project has no gettext tools to build it.
    "atlassian_oauth/locale/de/LC_MESSAGES/django.po",
    "atlassian_oauth/locale/de/LC_MESSAGES/django.mo",
)
MUST_NOT_SHIP = ("demo_site/", "tests/")


#: What setuptools prints about a configuration it finds ambiguous or deprecated, e.g.
#: "WARNING License classifiers are deprecated." or "WARNING Package 'atlassian_oauth.static...'
#: is absent from the `packages` configuration.", and MANIFEST.in patterns matching nothing.
BUILD_WARNING = re.compile(r"^(WARNING |.*Warning: |warning: no (previously-included )?files)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [PYTHON, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    (out / "build.log").write_text(built.stdout + built.stderr)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def test_the_build_prints_no_setuptools_warnings(dist):
    """No deprecated license classifier, no data folder taken for a missing package, no
    MANIFEST.in pattern that matches nothing: each is a warning block in `python -m build`."""
    lines = (dist / "build.log").read_text().splitlines()
    assert [line for line in lines if BUILD_WARNING.match(line)] == []


def test_the_wheel_ships_templates_static_migrations_and_the_test_kit(dist):
    (wheel,) = dist.glob("django_atlassian_oauth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in MUST_SHIP:
        assert path in names, path
    assert not [n for n in names if n.startswith(MUST_NOT_SHIP)]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: django-atlassian-oauth" in text
    assert "Requires-Python: >=3.11" in text
    # PEP 639: an SPDX expression, no license classifier.
    assert "License-Expression: BSD-3-Clause" in text
    assert "Classifier: License ::" not in text
    required = {
        line.removeprefix("Requires-Dist: ").split(";")[0].split("<")[0].split(">")[0].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist: ")
    }
    # What the app imports, and nothing else (django-environ is the demo's).
    assert required == {"Django", "requests", "requests-oauthlib", "cryptography", "celery[redis]"}


def test_the_sdist_ships_the_same_files(dist):
    (sdist,) = dist.glob("django_atlassian_oauth-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for path in (*MUST_SHIP, "README.md", "CHANGELOG.md", "setup.cfg", "pyproject.toml"):
        assert path in names, path


def test_the_installed_wheel_works_in_a_project_of_its_own(dist, tmp_path):
    (wheel,) = dist.glob("django_atlassian_oauth-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    script = textwrap.dedent(
        f"""
        import base64, os
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                            "django.contrib.sites", "django.contrib.staticfiles",
                            "atlassian_oauth"],
            DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
            TEMPLATES=[{{"BACKEND": "django.template.backends.django.DjangoTemplates",
                         "APP_DIRS": True}}],
            STATIC_URL="/static/",
            ATLASSIAN_OAUTH={{
                "CLIENT_ID": "id",
                "CLIENT_SECRET": "secret",
                "ENCRYPTION_KEYS": [base64.urlsafe_b64encode(os.urandom(32)).decode()],
            }},
        )
        django.setup()
        import atlassian_oauth
        assert atlassian_oauth.__file__.startswith({str(site)!r}), atlassian_oauth.__file__
        from django.core.management import call_command
        call_command("check", fail_level="WARNING")
        call_command("migrate", verbosity=0)
        from django.template.loader import get_template
        print(get_template("atlassian_oauth/base.html").origin.name)
        from django.contrib.staticfiles import finders
        print(finders.find("atlassian_oauth/atlassian_oauth.css"))
        from django.utils import translation
        with translation.override("de"):
            assert translation.gettext("Healthy") == "Gesund", translation.gettext("Healthy")
        from atlassian_oauth.testing import FakeAtlassian
        with FakeAtlassian() as fake:
            print("fake", fake.url)
        """
    )
    result = subprocess.run(
        [PYTHON, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    template, static, fake = result.stdout.splitlines()[-3:]
    assert template.startswith(str(site))
    assert static.startswith(str(site))
    assert fake.startswith("fake http://127.0.0.1:")


WORKER_PROJECT = {
    "proj/__init__.py": "from .celery import app\n",
    "proj/celery.py": textwrap.dedent(
        """
        import os
        from celery import Celery
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        app = Celery("proj")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.autodiscover_tasks()
        """
    ),
    "proj/settings.py": textwrap.dedent(
        """
        import base64, os
        SECRET_KEY = "install-test"
        INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                          "django.contrib.sites", "atlassian_oauth"]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": os.path.join(os.path.dirname(__file__), "db.sqlite3")}}
        USE_TZ = True
        CELERY_BROKER_URL = os.environ["REDIS_URL"]
        CELERY_TASK_DEFAULT_QUEUE = os.environ["TEST_QUEUE"]
        ATLASSIAN_OAUTH = {"CLIENT_ID": "id", "CLIENT_SECRET": "secret",
                           "ENCRYPTION_KEYS": [os.environ["TEST_KEY"]]}
        """
    ),
}


@pytest.mark.heavy
@pytest.mark.redis
def test_a_clean_venv_with_the_wheel_runs_a_celery_worker_on_redis(dist, tmp_path, redis_url):
    """`pip install dist/*.whl` into an empty venv, dependencies from the index, then a worker
    on Redis runs one of the app's tasks: install_requires is complete for a Redis broker."""
    import uuid

    from atlassian_oauth import crypto
    from tests.helpers import running, wait_until

    (wheel,) = dist.glob("django_atlassian_oauth-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    for name, text in WORKER_PROJECT.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "TEST_QUEUE": f"install-test-{uuid.uuid4().hex}",
        "TEST_KEY": crypto.generate_key(),
        "HOME": str(tmp_path),
    }
    manage = [python, "-m", "django", "migrate", "--verbosity", "0"]
    migrated = subprocess.run(
        manage,
        cwd=tmp_path,
        env={**env, "DJANGO_SETTINGS_MODULE": "proj.settings"},
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "worker.log"
    worker = [python, "-m", "celery", "-A", "proj", "worker", "--pool", "solo", "-l", "info"]
    with running(worker, env, log, cwd=tmp_path):
        assert wait_until(lambda: "ready." in log.read_text(), timeout=60), log.read_text()
        sent = subprocess.run(
            [python, "-c", "from proj import app; app.send_task('atlassian_oauth.tasks.cleanup')"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert sent.returncode == 0, sent.stderr
        assert wait_until(
            lambda: (
                "atlassian_oauth.tasks.cleanup" in log.read_text()
                and "succeeded" in log.read_text()
            ),
            timeout=60,
        ), log.read_text()
