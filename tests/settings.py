"""Test settings: the demo's, made fast and isolated."""

import os
import tempfile

# Each test run keeps its SQLite file, broker folder and logs out of the demo's own .demo/.
os.environ.setdefault("DEMO_VAR_DIR", tempfile.mkdtemp(prefix="atlassian-oauth-tests-"))

from demo_site.settings import *  # noqa: F403
from demo_site.settings import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Subprocess tests (Celery, several workers) need a test database that other processes can open:
# a file, not SQLite's default in-memory test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DEMO_VAR_DIR / "test-db.sqlite3")}  # noqa: F405

# A fixed, test-only key (made for these tests, protects nothing real).
ATLASSIAN_OAUTH = {
    **ATLASSIAN_OAUTH,  # noqa: F405
    "ENCRYPTION_KEYS": ["test:" + "dGVzdC1vbmx5LWtleS0wMDAwMDAwMDAwMDAwMDAwMDA"],
}
# Tests run against the app's defaults, not the demo's short-token tuning nor its connect host
# (tests/test_connect_host.py and the browser test set one where they need it).
for _demo_only in ("REFRESH_MARGIN", "BEAT_JITTER", "CONNECT_HOST_CALLBACK_URL"):
    ATLASSIAN_OAUTH.pop(_demo_only, None)
