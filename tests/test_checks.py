"""System checks: each misconfiguration gives its stable id."""

from __future__ import annotations

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from atlassian_oauth.checks import check_connect_host, check_settings, check_site_apps
from atlassian_oauth.crypto import generate_key
from atlassian_oauth.models import AtlassianApp


def ids(messages) -> set[str]:
    return {message.id for message in messages}


@pytest.fixture
def options(settings):
    """A valid configuration that each test breaks in one way."""
    settings.ATLASSIAN_OAUTH = {
        "CLIENT_ID": "id",
        "CLIENT_SECRET": "secret",
        "ENCRYPTION_KEYS": [generate_key()],
    }
    return settings


def test_a_valid_configuration_passes(options):
    assert check_settings() == []


def test_missing_offline_access_is_e001(options):
    options.ATLASSIAN_OAUTH["SCOPES"] = "read:jira-work read:me"
    (error,) = check_settings()
    assert error.id == "atlassian_oauth.E001"
    assert "refresh token" in error.msg


def test_missing_read_me_is_e005(options):
    options.ATLASSIAN_OAUTH["SCOPES"] = "read:jira-work offline_access"
    assert ids(check_settings()) == {"atlassian_oauth.E005"}


@pytest.mark.parametrize("keys", [[], ["not-a-key"], ["id:" + "A" * 10]])
def test_missing_or_malformed_key_is_e002(options, keys):
    options.ATLASSIAN_OAUTH["ENCRYPTION_KEYS"] = keys
    (error,) = check_settings()
    assert error.id == "atlassian_oauth.E002"
    assert error.hint and "generate-key" in error.hint
    for key in keys:
        assert key not in error.msg  # never echo a key, even a broken one


@pytest.mark.parametrize("missing", ["CLIENT_ID", "CLIENT_SECRET"])
def test_half_the_credentials_is_e003(options, missing):
    options.ATLASSIAN_OAUTH[missing] = ""
    (error,) = check_settings()
    assert error.id == "atlassian_oauth.E003"
    assert missing in error.msg


def test_no_default_credentials_is_only_a_warning(options):
    options.ATLASSIAN_OAUTH.update(CLIENT_ID="", CLIENT_SECRET="")
    assert ids(check_settings()) == {"atlassian_oauth.W001"}


def test_missing_sites_framework_is_e004(options):
    installed = [app for app in options.INSTALLED_APPS if app != "django.contrib.sites"]
    from django.apps import apps

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apps, "is_installed", lambda name: name in installed)
        assert "atlassian_oauth.E004" in ids(check_settings())


def test_http_callback_without_debug_is_w002(options):
    options.ATLASSIAN_OAUTH["CALLBACK_URL"] = "http://example.com/atlassian/callback/"
    options.DEBUG = False
    assert ids(check_settings()) == {"atlassian_oauth.W002"}
    options.DEBUG = True
    assert check_settings() == []


def test_a_setting_of_the_wrong_type_is_e006(options):
    options.ATLASSIAN_OAUTH["HTTP_TIMEOUT"] = "soon"
    (error,) = check_settings()
    assert error.id == "atlassian_oauth.E006"
    assert "HTTP_TIMEOUT" in error.msg


@pytest.mark.django_db
def test_a_site_app_without_offline_access_or_https_is_w003(options):
    site = Site.objects.create(domain="tenant.example", name="Tenant")
    AtlassianApp.objects.create(
        site=site,
        client_id="tenant-app",
        client_secret="s3cret",
        scopes="read:jira-work read:me",
        callback_url="http://tenant.example/atlassian/callback/",
    )
    options.DEBUG = False
    warnings = check_site_apps(databases=["default"])
    assert check_site_apps(databases=None) == []  # plain `check` does not read the database
    assert ids(warnings) == {"atlassian_oauth.W003", "atlassian_oauth.W006"}  # one id a problem
    assert len(warnings) == 2
    assert "offline_access" in next(w.msg for w in warnings if w.id == "atlassian_oauth.W003")
    assert "http://" in next(w.msg for w in warnings if w.id == "atlassian_oauth.W006")


def test_manage_py_check_reports_e001(options):
    options.ATLASSIAN_OAUTH["SCOPES"] = "read:me"
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.E001"):
        call_command("check")


# ---- the connect host (docs/multi-tenant.md) --------------------------------------------------

CONNECT_URL = "https://connect.example.com/atlassian/callback/"


@pytest.fixture
def connect_host(options):
    options.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = CONNECT_URL
    options.ALLOWED_HOSTS = ["connect.example.com", ".tenants.example"]
    options.DEBUG = False
    return options


def test_a_valid_connect_host_passes(connect_host):
    assert check_connect_host() == []
    assert check_settings() == []


def test_no_connect_host_is_fine(options):
    assert check_connect_host() == []


@pytest.mark.parametrize(
    "url",
    [
        "connect.example.com/atlassian/callback/",
        "ftp://connect.example.com/atlassian/callback/",
        "https:///atlassian/callback/",
        "https://connect.example.com/atlassian/callback/?tenant=1",
        "https://connect.example.com/atlassian/callback/#x",
        "https://[::1/atlassian/callback/",
    ],
)
def test_a_connect_host_url_that_is_no_url_is_e006(connect_host, url):
    connect_host.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = url
    (error,) = check_connect_host()
    assert error.id == "atlassian_oauth.E006"
    assert "CONNECT_HOST_CALLBACK_URL" in error.msg


@pytest.mark.parametrize(
    "path", ["/atlassian/callback", "/callback/", "/", "", "/atlassian/callback/x/"]
)
def test_a_connect_host_path_other_than_the_callbacks_is_e008(connect_host, path):
    connect_host.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = f"https://connect.example.com{path}"
    (error,) = check_connect_host()
    assert error.id == "atlassian_oauth.E008"
    assert "'/atlassian/callback/'" in error.msg
    assert error.hint and CONNECT_URL in error.hint


def test_a_connect_host_and_a_callback_url_both_is_e009(connect_host):
    connect_host.ATLASSIAN_OAUTH["CALLBACK_URL"] = "https://connect.example.com/atlassian/callback/"
    assert ids(check_connect_host()) == {"atlassian_oauth.E009"}


def test_an_http_connect_host_without_debug_is_w008(connect_host):
    http_url = CONNECT_URL.replace("https://", "http://")
    connect_host.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = http_url
    (warning,) = check_connect_host()
    assert warning.id == "atlassian_oauth.W008"
    connect_host.DEBUG = True
    assert check_connect_host() == []


@pytest.mark.parametrize(
    ("allowed", "debug", "expected"),
    [
        (["connect.example.com"], False, set()),
        ([".example.com"], False, set()),
        (["*"], False, set()),
        (["tenant.example.com"], False, {"atlassian_oauth.W009"}),
        ([], False, {"atlassian_oauth.W009"}),
        ([], True, {"atlassian_oauth.W009"}),  # Django's DEBUG default: loopback names only
    ],
)
def test_a_connect_host_not_in_allowed_hosts_is_w009(connect_host, allowed, debug, expected):
    connect_host.ALLOWED_HOSTS, connect_host.DEBUG = allowed, debug
    assert ids(check_connect_host()) == expected


@pytest.mark.parametrize("host", ["connect.localhost:8000", "127.0.0.2:8000", "[::1]:8000"])
def test_a_loopback_connect_host_passes_with_debug_and_no_allowed_hosts(options, host):
    options.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = f"http://{host}/atlassian/callback/"
    options.ALLOWED_HOSTS, options.DEBUG = [], True
    expected = set() if not host.startswith("127.0.0.2") else {"atlassian_oauth.W009"}
    assert ids(check_connect_host()) == expected


def test_manage_py_check_reports_e008(connect_host):
    connect_host.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = "https://connect.example.com/cb/"
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.E008"):
        call_command("check")
