"""`python -m build` gives an sdist and a wheel that carry everything the app needs at run time."""

from __future__ import annotations

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
)
MUST_NOT_SHIP = ("demo_site/", "tests/")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [PYTHON, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    return out


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
    for dependency in ("Django", "django-environ", "requests", "requests-oauthlib", "cryptography"):
        assert f"Requires-Dist: {dependency}" in text
    assert "Requires-Dist: celery" in text and "Requires-Dist: redis" in text


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
