"""System checks: each misconfiguration gives its stable id."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from atlassian_oauth.checks import (
    check_connect_host,
    check_current_site,
    check_insecure_transport,
    check_request_callback,
    check_settings,
    check_site_apps,
)
from atlassian_oauth.crypto import generate_key
from atlassian_oauth.models import AtlassianApp

from .helpers import PYTHON, REPO


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


def test_an_http_base_url_without_insecure_transport_is_e010(options, monkeypatch):
    """The fake's http:// URLs in a process without OAUTHLIB_INSECURE_TRANSPORT: oauthlib
    refuses every request, and the user only sees "not configured"."""
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    options.DEBUG = True
    assert check_insecure_transport() == []  # Atlassian's https:// defaults
    options.ATLASSIAN_OAUTH["AUTH_BASE_URL"] = "http://127.0.0.1:8765"
    options.ATLASSIAN_OAUTH["API_BASE_URL"] = "http://127.0.0.1:8765"
    (error,) = check_insecure_transport()
    assert error.id == "atlassian_oauth.E010"
    assert error.msg.startswith("AUTH_BASE_URL and API_BASE_URL in ATLASSIAN_OAUTH are http://")
    assert "OAUTHLIB_INSECURE_TRANSPORT=1" in str(error.hint)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    assert check_insecure_transport() == []  # the fake, as documented


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


@pytest.mark.django_db  # check_current_site reads the Site table
def test_manage_py_check_reports_e001(options):
    options.ATLASSIAN_OAUTH["SCOPES"] = "read:me"
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.E001"):
        call_command("check")


def test_manage_py_check_works_in_a_test_without_database_access(options):
    """An integrator's test may call `check` without the django_db mark: the Site check, which
    would read the database, says nothing rather than failing on pytest-django's blocker."""
    options.ATLASSIAN_OAUTH["SCOPES"] = "read:me"
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert "atlassian_oauth.E001" in str(raised.value)
    assert "RuntimeError" not in str(raised.value)


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


@pytest.mark.django_db
def test_manage_py_check_reports_e008(connect_host):
    connect_host.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = "https://connect.example.com/cb/"
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.E008"):
        call_command("check")


# ---- a callback URL built from requests (W010) ------------------------------------------------

PROXY_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.fixture
def behind_a_proxy(options):
    """Production as a new project has it: DEBUG off, a host, no word of the TLS proxy."""
    options.DEBUG = False
    options.ALLOWED_HOSTS = ["app.example.org"]
    if hasattr(options, "SECURE_PROXY_SSL_HEADER"):
        del options.SECURE_PROXY_SSL_HEADER
    return options


def test_a_callback_built_from_requests_without_the_proxy_header_is_w010(behind_a_proxy):
    (warning,) = check_request_callback()
    assert warning.id == "atlassian_oauth.W010"
    assert "the default app (ATLASSIAN_OAUTH has no CALLBACK_URL)" in warning.msg
    assert "http://" in warning.msg and "SECURE_PROXY_SSL_HEADER is not set" in warning.msg
    assert 'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")' in (warning.hint or "")
    assert "ATLASSIAN_OAUTH['CALLBACK_URL']" in (warning.hint or "")
    assert check_settings() == []  # W002 is for an explicit http:// URL only: one id a problem


@pytest.mark.parametrize(
    "fix",
    [
        {"ATLASSIAN_OAUTH": {"CALLBACK_URL": "https://app.example.org/atlassian/callback/"}},
        {"ATLASSIAN_OAUTH": {"CONNECT_HOST_CALLBACK_URL": CONNECT_URL}},
        {"ATLASSIAN_OAUTH": {"CLIENT_ID": "", "CLIENT_SECRET": ""}},  # no default app (W001)
        {"SECURE_PROXY_SSL_HEADER": PROXY_HEADER},
        {"DEBUG": True},
        {"ALLOWED_HOSTS": []},  # DEBUG off: Django serves no request to build a URL from
    ],
    ids=["callback-url", "connect-host", "no-default-app", "proxy-header", "debug", "no-hosts"],
)
def test_w010_is_quiet_once_the_callback_cannot_come_out_http(behind_a_proxy, fix):
    for name, value in fix.items():
        if name == "ATLASSIAN_OAUTH":
            behind_a_proxy.ATLASSIAN_OAUTH = {**behind_a_proxy.ATLASSIAN_OAUTH, **value}
        else:
            setattr(behind_a_proxy, name, value)
    assert check_request_callback() == []


def test_w010_leaves_a_broken_setting_to_e006(behind_a_proxy):
    behind_a_proxy.ATLASSIAN_OAUTH["CALLBACK_URL"] = "app.example.org/atlassian/callback/"
    assert check_request_callback() == []
    assert ids(check_settings()) == {"atlassian_oauth.E006"}


@pytest.mark.django_db
def test_a_site_app_without_a_callback_url_is_w010_with_database(behind_a_proxy):
    behind_a_proxy.ATLASSIAN_OAUTH["CALLBACK_URL"] = "https://app.example.org/atlassian/callback/"
    site = Site.objects.create(domain="tenant.example", name="Tenant")
    row = AtlassianApp.objects.create(site=site, client_id="tenant-app", client_secret="s3cret")
    explicit = Site.objects.create(domain="explicit.example", name="Explicit")
    AtlassianApp.objects.create(
        site=explicit,
        client_id="explicit-app",
        client_secret="s3cret",
        callback_url="https://explicit.example/atlassian/callback/",
    )
    assert check_request_callback() == []  # the default app's callback is explicit

    (warning,) = check_site_apps(databases=["default"])
    assert warning.id == "atlassian_oauth.W010" and warning.obj == row
    assert "site 'tenant.example' (its callback URL is empty)" in warning.msg
    assert "in admin" in (warning.hint or "")
    assert check_site_apps(databases=None) == []  # rows are read with --database only

    behind_a_proxy.SECURE_PROXY_SSL_HEADER = PROXY_HEADER
    assert check_site_apps(databases=["default"]) == []


@pytest.mark.django_db
def test_a_site_app_of_the_default_client_uses_the_connect_hosts_callback(behind_a_proxy):
    """connect.registered_callback: the default client's row goes through the connect host."""
    behind_a_proxy.ATLASSIAN_OAUTH["CONNECT_HOST_CALLBACK_URL"] = CONNECT_URL
    site = Site.objects.create(domain="tenant.example", name="Tenant")
    AtlassianApp.objects.create(site=site, client_id="id", client_secret="secret")
    assert check_site_apps(databases=["default"]) == []
    AtlassianApp.objects.filter(site=site).update(client_id="its-own-app")
    assert ids(check_site_apps(databases=["default"])) == {"atlassian_oauth.W010"}


@pytest.mark.django_db
def test_manage_py_check_reports_w010(behind_a_proxy, monkeypatch):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)  # E007 with DEBUG off
    behind_a_proxy.SITE_ID = 1
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.W010"):
        call_command("check", fail_level="WARNING")
    behind_a_proxy.SECURE_PROXY_SSL_HEADER = PROXY_HEADER
    call_command("check", fail_level="WARNING")


# ---- the current site (W011, W012) ------------------------------------------------------------


@pytest.fixture
def no_site_id(options):
    """A new project's: no SITE_ID, DEBUG on, no ALLOWED_HOSTS, only migrate's example.com."""
    if hasattr(options, "SITE_ID"):
        del options.SITE_ID
    options.DEBUG, options.ALLOWED_HOSTS = True, []
    return options


def only_sites(*domains: str) -> None:
    Site.objects.all().delete()
    for domain in domains:
        Site.objects.create(domain=domain, name=domain)


@pytest.mark.django_db
def test_a_new_project_without_site_id_is_w011(no_site_id, django_assert_num_queries):
    assert list(Site.objects.values_list("domain", flat=True)) == ["example.com"]
    with django_assert_num_queries(1):
        (warning,) = check_current_site()
    assert warning.id == "atlassian_oauth.W011"
    assert "SITE_ID is not set" in warning.msg
    hosts = "(with DEBUG on and ALLOWED_HOSTS empty: .localhost, 127.0.0.1, [::1])"
    assert f"no Site matches a host Django serves {hosts}" in warning.msg
    assert "the Sites are 'example.com'." in warning.msg
    assert "Site.DoesNotExist" in warning.msg and "CurrentSiteMiddleware" in warning.msg
    assert "set SITE_ID = 1 and change that Site's domain" in (warning.hint or "")
    assert "create a Site for each tenant's domain" in (warning.hint or "")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("allowed", "domains", "warns"),
    [
        ([], ["localhost"], False),  # DEBUG's own hosts
        ([], ["127.0.0.1:8000"], False),  # a port in the domain is ignored, as Django does
        ([], ["acme.localhost"], False),  # DEBUG allows .localhost
        ([], [], True),
        (["app.example.org"], ["example.com"], True),
        (["app.example.org"], ["APP.example.org"], False),
        (["app.example.org"], ["app.example.org:8443"], False),
        (["app.example.org"], ["app.example.org.evil"], True),
        (["app.example.org", "other.example.org"], ["other.example.org"], False),
        ([".tenants.example"], ["acme.tenants.example"], False),
        ([".tenants.example"], ["tenants.example"], False),
        ([".tenants.example"], ["acme.tenants.example:8000"], False),
        ([".tenants.example"], ["eviltenants.example", "example.com"], True),
        (["*"], ["example.com"], True),  # only the placeholder: nothing has been set up
        (["*"], ["example.com", "acme.example.org"], False),
        (["example.com"], ["example.com"], False),  # it really is the host
        (["app.example.org", "testserver"], ["testserver"], True),  # the test client's own
    ],
)
def test_w011_speaks_only_when_no_site_matches_any_host(no_site_id, allowed, domains, warns):
    no_site_id.ALLOWED_HOSTS = allowed
    only_sites(*domains)
    assert ids(check_current_site()) == ({"atlassian_oauth.W011"} if warns else set())


@pytest.mark.django_db
def test_w011_names_the_hosts_it_compared_and_a_few_sites(no_site_id):
    no_site_id.DEBUG = False
    no_site_id.ALLOWED_HOSTS = ["app.example.org", ".tenants.example", "testserver"]
    only_sites(*(f"site{n}.example" for n in range(8)))
    (warning,) = check_current_site()
    assert "a host Django serves (ALLOWED_HOSTS: app.example.org, .tenants.example);" in warning.msg
    assert "the Sites are 'site0.example', 'site1.example', 'site2.example', " in warning.msg
    assert "'site3.example', ...." in warning.msg and "site4" not in warning.msg
    only_sites()
    (warning,) = check_current_site()
    assert "; there is no Site." in warning.msg


@pytest.mark.django_db
def test_w011_asks_nothing_when_django_serves_no_host(no_site_id, django_assert_num_queries):
    no_site_id.DEBUG = False
    no_site_id.ALLOWED_HOSTS = ["testserver"]  # Django's test runner adds it; nothing else
    with django_assert_num_queries(0):
        assert check_current_site() == []


@pytest.mark.django_db
def test_a_site_id_of_an_existing_site_passes_whatever_the_hosts(no_site_id):
    no_site_id.SITE_ID = 1  # the fix the hint gives, example.com's row
    no_site_id.ALLOWED_HOSTS = ["app.example.org"]
    assert check_current_site() == []


@pytest.mark.django_db
def test_a_site_id_without_its_site_is_w012(no_site_id, django_assert_num_queries):
    no_site_id.SITE_ID = 7
    with django_assert_num_queries(1):
        (warning,) = check_current_site()
    assert warning.id == "atlassian_oauth.W012"
    assert "SITE_ID is 7, but no Site has that id" in warning.msg
    assert "get_session(user)" in warning.msg
    Site.objects.create(pk=7, domain="app.example.org", name="App")
    assert check_current_site() == []
    no_site_id.SITE_ID = "1"  # the sites framework's own check (sites.E101) says so
    assert check_current_site() == []


@pytest.mark.django_db
def test_manage_py_check_reports_w011(no_site_id):
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.W011"):
        call_command("check", fail_level="WARNING")
    only_sites("localhost")
    call_command("check", fail_level="WARNING")


def manage_check(database_url: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` as a new deployment runs it: on the given database, DEBUG on."""
    env = dict(os.environ, DATABASE_URL=database_url, DJANGO_DEBUG="true", PYTHONPATH=str(REPO))
    env.update(DJANGO_SETTINGS_MODULE="tests.settings")
    return subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_check_runs_before_migrate_and_without_a_database_server(tmp_path):
    """No message and no trace while the database cannot answer; W011 once it can."""
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    missing = tmp_path / "missing.sqlite3"
    for url in (
        f"sqlite:///{empty}",  # created, not migrated: no such table
        f"sqlite:///{missing}",  # not created: the check must not create it
        "postgres://postgres@127.0.0.1:1/nothing",  # no server listens there
    ):
        result = manage_check(url)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert "System check identified no issues" in result.stdout, result.stderr
    assert not missing.exists()

    env = dict(os.environ, DATABASE_URL=f"sqlite:///{empty}", PYTHONPATH=str(REPO))
    env.update(DJANGO_SETTINGS_MODULE="tests.settings")
    migrate = [PYTHON, "manage.py", "migrate", "--verbosity", "0"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
    migrated = manage_check(f"sqlite:///{empty}")
    assert migrated.returncode == 0, migrated.stderr
    assert "atlassian_oauth.W011" in migrated.stderr
    assert "the Sites are 'example.com'." in migrated.stderr
