"""Settings for the demo site, read from the environment (and an optional ``.env``).

Every variable is documented in ``.env.example``. With no environment at all the demo runs on
SQLite, an embedded Celery broker and the fake Atlassian, so ``make demo`` needs no server.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import django
import environ

from atlassian_oauth.beat import BEAT_SCHEDULE as ATLASSIAN_OAUTH_BEAT_SCHEDULE
from demo_site.connect_host import CONNECT_HOST, connect_host_callback_url
from demo_site.keys import demo_encryption_key
from demo_site.var_dir import running_fake_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The file is optional: the real environment always wins over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the demo keeps its SQLite database, the fake Atlassian's state, broker queue, beat
# schedule and logs (`make demo-reset` empties it).
DEMO_VAR_DIR = Path(env.str("DEMO_VAR_DIR", default=str(BASE_DIR / ".demo")))
DEMO_VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# Only ever a development default: a deployment sets DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="demo-only-not-secret-" + "x" * 40)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", CONNECT_HOST]
)

INSTALLED_APPS = [
    # First, so the demo's templates override the app's frame (templates/atlassian_oauth/
    # base.html) and the admin's index (templates/admin/index.html, which adds the health
    # counts): app template folders are searched in this order.
    "demo_site",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "atlassian_oauth",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # No SITE_ID: each request's site (tenant) is found from its host. Django's own
    # CurrentSiteMiddleware, except on the connect host, which is no site (middleware.py).
    "demo_site.middleware.CurrentSiteMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# An empty DATABASE_URL means the default too, so `DATABASE_URL= make test` runs on SQLite.
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{DEMO_VAR_DIR / 'db.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for a writer instead of failing at once.
    sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    sqlite_options["timeout"] = env.float("SQLITE_TIMEOUT", default=20.0)
    if django.VERSION >= (5, 1):
        # A transaction that reads and then writes fails at once with "database is locked"
        # when another process writes in between (SQLite cannot wait on a lock upgrade):
        # IMMEDIATE takes the write lock at BEGIN, so the timeout above applies. WAL lets
        # readers go on while one process writes.
        sqlite_options["transaction_mode"] = "IMMEDIATE"
        sqlite_options["init_command"] = "PRAGMA journal_mode=WAL;"
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # Django stores UTC; make the server's own clock (NOW(), used for refresh leases) agree.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "SET time_zone = '+00:00'"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DEMO_VAR_DIR / "static"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# --- Atlassian ------------------------------------------------------------------------------
# Without real credentials the demo talks to the fake Atlassian that `make demo` starts. A
# command run from another shell finds the running demo's fake through the file it wrote.
FAKE_ATLASSIAN_URL = (
    env.str("FAKE_ATLASSIAN_URL", default="")
    or running_fake_url(DEMO_VAR_DIR)
    or "http://127.0.0.1:8765"
)
USE_FAKE_ATLASSIAN = not env.str("ATLASSIAN_CLIENT_ID", default="")

ATLASSIAN_OAUTH = {
    "CLIENT_ID": env.str("ATLASSIAN_CLIENT_ID", default="fake-client-id"),
    "CLIENT_SECRET": env.str("ATLASSIAN_CLIENT_SECRET", default="fake-client-secret"),
    "SCOPES": env.str(
        "ATLASSIAN_SCOPES",
        default="read:jira-user read:jira-work write:jira-work read:me offline_access",
    ),
    "AUTH_BASE_URL": env.str(
        "ATLASSIAN_AUTH_BASE_URL",
        default=FAKE_ATLASSIAN_URL if USE_FAKE_ATLASSIAN else "https://auth.atlassian.com",
    ),
    "API_BASE_URL": env.str(
        "ATLASSIAN_API_BASE_URL",
        default=FAKE_ATLASSIAN_URL if USE_FAKE_ATLASSIAN else "https://api.atlassian.com",
    ),
    "HTTP_TIMEOUT": env.float("ATLASSIAN_HTTP_TIMEOUT", default=10.0),
    "ENCRYPTION_KEYS": env.list("ATLASSIAN_ENCRYPTION_KEYS", default=[])
    or [demo_encryption_key(DEMO_VAR_DIR / "encryption.key")],
    "CONNECT_REDIRECT_URL": "home",
    # Both tenants use the one app through its one callback on the connect host, which hands
    # each callback back to its tenant's host (docs/multi-tenant.md). Empty: each host its own.
    "CONNECT_HOST_CALLBACK_URL": env.str(
        "ATLASSIAN_CONNECT_HOST_CALLBACK_URL",
        default=connect_host_callback_url(env.int("DEMO_PORT", default=8000)),
    ),
    # The fake's tokens live minutes (FAKE_TOKEN_LIFETIME), so renew them a minute ahead.
    "REFRESH_MARGIN": env.float(
        "ATLASSIAN_REFRESH_MARGIN", default=60.0 if USE_FAKE_ATLASSIAN else 300.0
    ),
    "BEAT_JITTER": env.float("ATLASSIAN_BEAT_JITTER", default=5.0 if USE_FAKE_ATLASSIAN else 30.0),
}


def _on_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


# oauthlib (under requests-oauthlib) refuses http:// unless OAUTHLIB_INSECURE_TRANSPORT is set,
# process-wide. The fake Atlassian listens on plain http:// on loopback, so the demo (and the
# test settings and the Celery workers built on it) set it while every Atlassian URL is either
# https:// or the fake's, never when one is http:// anywhere else. Check atlassian_oauth.E007
# errors when it is set with DEBUG off.
_ATLASSIAN_URLS = [ATLASSIAN_OAUTH["AUTH_BASE_URL"], ATLASSIAN_OAUTH["API_BASE_URL"]]
if any(map(_on_loopback_http, _ATLASSIAN_URLS)) and all(
    url.startswith("https://") or _on_loopback_http(url) for url in _ATLASSIAN_URLS
):
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

# --- Celery ---------------------------------------------------------------------------------
# Redis when REDIS_URL is set; otherwise kombu's filesystem transport, which needs no server yet
# carries tasks between the separate beat and worker processes through a shared folder.
REDIS_URL = env.str("REDIS_URL", default="")
# A host name, or kombu warns that none was supplied (the filesystem transport needs none).
CELERY_BROKER_URL = REDIS_URL or "filesystem://localhost/"
_BROKER_DIR = DEMO_VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {}
    if REDIS_URL
    else {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        # Without this kombu writes its broadcast exchanges to ./control in the working directory.
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
)
if not REDIS_URL:
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DEMO_VAR_DIR / "celerybeat-schedule")
# The one line an integrator adds, plus the demo's own heartbeat.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    **ATLASSIAN_OAUTH_BEAT_SCHEDULE,
    "demo-heartbeat": {
        "task": "demo_site.tasks.heartbeat",
        "schedule": env.float("DEMO_HEARTBEAT_SECONDS", default=30.0),
    },
}
# The demo sweeps every few seconds so the fake's short-lived tokens are seen being renewed.
_SWEEP_SECONDS = env.float("DEMO_SWEEP_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["atlassian-oauth-refresh-due-grants"] = {
    **ATLASSIAN_OAUTH_BEAT_SCHEDULE["atlassian-oauth-refresh-due-grants"],
    "schedule": _SWEEP_SECONDS,
    "options": {"expires": _SWEEP_SECONDS},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
