"""requests-oauthlib under the client and the session: JSON token bodies through one process
session, Atlassian's answers adapted before oauthlib parses them, no secret in its DEBUG logs,
OAUTHLIB_INSECURE_TRANSPORT only where the fake is (check E007)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from requests_oauthlib import OAuth2Session

from atlassian_oauth import __version__, client, redaction
from atlassian_oauth.api import AtlassianSession, get_session
from atlassian_oauth.checks import check_insecure_transport
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db

SCOPES = ("read:jira-work", "read:me", "offline_access")
APP = client.OAuthApp(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SCOPES)
REDIRECT_URI = "http://localhost/atlassian/callback/"
OWN_FRAMES = ("/atlassian_oauth/", "/tests/", "/django/views/decorators/debug.py")


@pytest.fixture
def fake(fake_atlassian):
    fake_atlassian.auto_consent = "accept"
    return fake_atlassian


@pytest.fixture
def sent() -> Iterator[list[requests.PreparedRequest]]:
    """Every request the process's session sends, through a factory of the test's own."""
    requests_sent: list[requests.PreparedRequest] = []
    built: list[requests.Session] = []

    def recording_session() -> requests.Session:
        session = client.create_session()
        session.hooks["response"].append(lambda r, **kwargs: requests_sent.append(r.request))
        built.append(session)
        return session

    saved = client.session_factory
    client.reset_session()
    client.session_factory = recording_session
    try:
        yield requests_sent
    finally:
        client.session_factory = saved
        client.reset_session()
    assert len(built) <= 1  # one session for the whole process, however many calls


def a_code(fake: Any) -> str:
    consent = requests.get(
        client.authorize_url(APP, REDIRECT_URI, "s" * 32), allow_redirects=False, timeout=10
    )
    assert consent.status_code == 302, consent.text
    return parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]


# ---- the consent URL and the token calls ------------------------------------------------------


def test_the_consent_url_carries_every_parameter_atlassian_requires(fake):
    url = client.authorize_url(APP, REDIRECT_URI, "state-123")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.url}/authorize"
    assert {key: values for key, values in parse_qs(parts.query).items()} == {
        "audience": ["api.atlassian.com"],
        "client_id": [DEFAULT_CLIENT_ID],
        "scope": [" ".join(SCOPES)],
        "redirect_uri": [REDIRECT_URI],
        "state": ["state-123"],
        "response_type": ["code"],
        "prompt": ["consent"],
    }


def test_exchange_and_refresh_post_json_through_one_session_naming_the_app(fake, sent):
    tokens = client.exchange_code(APP, a_code(fake), REDIRECT_URI)
    assert tokens.refresh_token and tokens.access_token
    assert tokens.expires_in == fake.access_token_lifetime
    assert set(tokens.scopes) == set(SCOPES)
    renewed = client.refresh_tokens(APP, tokens.refresh_token)
    assert renewed.refresh_token not in (None, tokens.refresh_token)  # rotated
    assert fake.counts["code_exchange"] == fake.counts["refresh"] == 1

    token_requests = [r for r in sent if r.path_url == "/oauth/token"]
    assert len(token_requests) == 2
    for request, grant_type in zip(
        token_requests, ("authorization_code", "refresh_token"), strict=True
    ):
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith(f"django-atlassian-oauth/{__version__}")
        assert "Authorization" not in request.headers  # credentials in the body, not Basic
        assert request.body is not None
        body = json.loads(request.body)
        assert body["grant_type"] == grant_type
        assert body["client_id"] == DEFAULT_CLIENT_ID
        assert body["client_secret"] == DEFAULT_CLIENT_SECRET
    assert json.loads(token_requests[1].body or b"")["refresh_token"] == tokens.refresh_token


def test_a_refresh_answer_without_refresh_token_keeps_the_old_one(fake):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    fake.refresh_omits_refresh_token = True
    renewed = client.refresh_tokens(APP, tokens["refresh_token"])
    # requests-oauthlib puts the old refresh token into its result; the app must see None.
    assert renewed.refresh_token is None
    assert renewed.access_token


def assert_raised_clean(caught: pytest.ExceptionInfo[client.AtlassianError]) -> None:
    error = caught.value
    assert error.__cause__ is None and error.__context__ is None
    # Only the app's own frames (and sensitive_variables' wrappers): none of requests-oauthlib's,
    # oauthlib's or requests', which hold the request body.
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        assert any(part in filename for part in OWN_FRAMES), filename
        tb = tb.tb_next


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            400,
            {"error": "invalid_request", "error_description": "authorization_code is invalid"},
            {},
            client.InvalidCode,
        ),
        (403, {"error": "invalid_grant", "error_description": "nope"}, {}, client.InvalidGrant),
        (401, {"error": "access_denied", "error_description": "Unauthorized"}, {}, None),
        (429, {"error": "too_many"}, {"Retry-After": "120"}, client.TransientError),
        (503, "<html>down</html>", {"Retry-After": "7"}, client.TransientError),
        (302, "", {"Location": "http://127.0.0.1:9/steal"}, client.UnexpectedResponse),
    ],
)
def test_the_code_exchange_maps_atlassians_answers_before_oauthlib(
    fake, status, body, headers, expected
):
    code = a_code(fake)
    fake.inject("code_exchange", status=status, body=body, headers=headers)
    expected = expected or client.ClientConfigurationError
    with pytest.raises(expected) as caught:
        client.exchange_code(APP, code, REDIRECT_URI)
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert_raised_clean(caught)
    if "Retry-After" in headers:
        assert isinstance(caught.value, client.TransientError)
        assert caught.value.retry_after == float(headers["Retry-After"])


@pytest.mark.parametrize(
    "error", ["unauthorized_client", "invalid_grant"], ids=["seen in practice", "documented"]
)
def test_a_dead_refresh_token_is_invalid_grant(fake, error):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    fake.inject("refresh", status=403, body={"error": error, "error_description": "x"})
    with pytest.raises(client.InvalidGrant) as caught:
        client.refresh_tokens(APP, tokens["refresh_token"])
    assert caught.value.error == error
    assert_raised_clean(caught)


@pytest.mark.parametrize(
    "body",
    [
        # oauthlib would read these as form bodies or accept a string expires_in; the app
        # keeps its own rule: not a JSON object with a numeric expires_in is a bad answer.
        "access_token=abc&expires_in=3600&token_type=Bearer",
        {"access_token": "abc", "expires_in": "3600"},
        {"access_token": "abc", "expires_in": True},
        {"expires_in": 3600, "token_type": "Bearer"},
        '[{"access_token": "abc", "expires_in": 3600}]',
    ],
    ids=["form body", "string expires_in", "boolean expires_in", "no access_token", "a list"],
)
def test_a_malformed_token_answer_is_transient(fake, body):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    fake.inject("refresh", status=200, body=body)
    with pytest.raises(client.TransientError) as caught:
        client.refresh_tokens(APP, tokens["refresh_token"])
    assert_raised_clean(caught)


def test_a_fractional_expires_in_is_a_minute_not_dropped(fake, caplog):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    body = {"access_token": "abc", "expires_in": 0.5, "scope": "read:me  offline_access"}
    fake.inject("refresh", status=200, body=body)
    with caplog.at_level(logging.WARNING, logger="atlassian_oauth.client"):
        renewed = client.refresh_tokens(APP, tokens["refresh_token"])
    assert renewed.expires_in == client.MIN_EXPIRES_IN
    assert renewed.scopes == ("read:me", "offline_access")
    assert any("expires_in=0.5" in record.getMessage() for record in caplog.records)


# ---- http:// only with OAUTHLIB_INSECURE_TRANSPORT -------------------------------------------


def test_without_the_variable_oauthlib_refuses_http_before_any_request(fake, monkeypatch):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    before = fake.counts
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
    with pytest.raises(client.ClientConfigurationError, match="OAUTHLIB_INSECURE_TRANSPORT") as c:
        client.refresh_tokens(APP, tokens["refresh_token"])
    assert_raised_clean(c)
    with pytest.raises(ImproperlyConfigured, match="AUTH_BASE_URL"):
        client.authorize_url(APP, REDIRECT_URI, "state")
    assert fake.counts == before


def test_e007_errors_when_the_variable_is_set_with_debug_off(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with override_settings(DEBUG=False):
        (error,) = check_insecure_transport()
    assert error.id == "atlassian_oauth.E007"
    assert error.is_serious()
    assert "OAUTHLIB_INSECURE_TRANSPORT" in error.msg
    with override_settings(DEBUG=True):
        assert check_insecure_transport() == []
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
    atlassian = {
        **settings.ATLASSIAN_OAUTH,
        "AUTH_BASE_URL": "https://auth.atlassian.com",
        "API_BASE_URL": "https://api.atlassian.com",
    }
    with override_settings(DEBUG=False, ATLASSIAN_OAUTH=atlassian):
        assert check_insecure_transport() == []


# ---- the process session --------------------------------------------------------------------


def test_threads_share_one_session_built_once(monkeypatch):
    built: list[requests.Session] = []
    gate = threading.Barrier(8)

    def slow_factory() -> requests.Session:
        built.append(requests.Session())
        return built[-1]

    client.reset_session()
    monkeypatch.setattr(client, "session_factory", slow_factory)
    seen: list[requests.Session] = []

    def use() -> None:
        gate.wait()
        seen.append(client.http_session())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.reset_session()
    assert len(built) == 1
    assert seen == [built[0]] * 8


def test_the_process_session_keeps_no_cookie_from_one_call_for_the_next(fake, sent):
    tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, SCOPES)
    cookie = {"Set-Cookie": "session=alice-only; Path=/"}
    fake.inject("accessible_resources", status=200, headers=cookie, body="[]", times=2)
    assert client.accessible_resources(tokens["access_token"]) == []
    assert list(client.http_session().cookies) == []
    client.me(tokens["access_token"])
    assert "Cookie" not in sent[-1].headers
    # A plain session would have kept it (so this test can fail).
    plain = requests.Session()
    plain.get(f"{fake.url}/oauth/token/accessible-resources", timeout=10)
    assert [c.value for c in plain.cookies] == ["alice-only"]


# ---- the application's session ---------------------------------------------------------------


def test_get_session_is_an_oauth2session_that_never_refreshes_on_its_own(fake, django_user_model):
    connected_grant(fake)
    from django.contrib.sites.models import Site

    alice = django_user_model.objects.get(username="alice")
    session = get_session(alice, Site.objects.get(domain="localhost"))
    assert isinstance(session, AtlassianSession)
    assert isinstance(session, OAuth2Session) and isinstance(session, requests.Session)
    assert session.auto_refresh_url is None
    with pytest.raises(NotImplementedError):
        session.refresh_token(f"{fake.url}/oauth/token")
    with pytest.raises(NotImplementedError):
        session.fetch_token(f"{fake.url}/oauth/token", code="x")
    response = session.get(session.jira_url("rest/api/3/myself"))
    assert response.status_code == 200
    assert response.request.headers["User-Agent"] == client.USER_AGENT
    assert fake.counts.get("refresh", 0) == 0


# ---- requests-oauthlib's DEBUG logs -----------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.format(record))


@pytest.fixture
def library_debug_logs() -> Iterator[_Collect]:
    collector = _Collect()
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.split(".")[0] in redaction.LOGGER_PREFIXES
    ]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    roots = [logging.getLogger(prefix) for prefix in redaction.LOGGER_PREFIXES]
    for root in roots:
        root.addHandler(collector)
    try:
        yield collector
    finally:
        for root in roots:
            root.removeHandler(collector)
        for logger, level in saved:
            logger.setLevel(level)


def test_no_secret_in_the_libraries_debug_logs(fake, library_debug_logs, django_user_model):
    code = a_code(fake)
    tokens = client.exchange_code(APP, code, REDIRECT_URI)
    assert tokens.refresh_token
    renewed = client.refresh_tokens(APP, tokens.refresh_token)
    grant = connected_grant(fake)
    from django.contrib.sites.models import Site

    session = get_session(
        django_user_model.objects.get(username="alice"), Site.objects.get(domain="localhost")
    )
    assert session.get(session.jira_url("rest/api/3/myself")).status_code == 200
    # The capture sees the library's records (which quote bodies and tokens unfiltered) ...
    assert "requests_oauthlib.oauth2_session" in library_debug_logs.names
    assert any("Request body was" in line for line in library_debug_logs.lines)
    assert any("Adding token" in line for line in library_debug_logs.lines)
    # ... and none of them holds a secret, in any form a log may show it.
    secrets = {
        DEFAULT_CLIENT_SECRET,
        code,
        tokens.access_token,
        tokens.refresh_token,
        renewed.access_token,
        renewed.refresh_token,
        grant.access_token,
    }
    text = "\n".join(library_debug_logs.lines)
    for secret in filter(None, secrets):
        for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe="")):
            assert form not in text


def test_the_filter_keeps_numbers_and_scrubs_what_a_template_carries():
    record = logging.LogRecord(
        "oauthlib", logging.DEBUG, __file__, 1, "status %s body %s", (200, "secret=1"), None
    )
    assert redaction.RedactingFilter().filter(record)
    assert record.getMessage() == "status 200 body [redacted]"
    token = {"access_token": "tok-123456789", "token_type": "Bearer"}
    record = logging.LogRecord("oauthlib", logging.DEBUG, __file__, 1, "token %s", (token,), None)
    redaction.RedactingFilter().filter(record)
    assert "tok-123456789" not in record.getMessage()
    assert "access_token" in record.getMessage()  # the keys stay, for the reader
    formatted = "Signing: access_token=tok-123456789&code=abc Authorization: Bearer tok-123456789"
    record = logging.LogRecord("oauthlib", logging.DEBUG, __file__, 1, formatted, (), None)
    redaction.RedactingFilter().filter(record)
    assert "tok-123456789" not in record.getMessage() and "abc" not in record.getMessage()


def test_every_library_logger_has_the_filter():
    redaction.install()
    names = [
        name
        for name in logging.Logger.manager.loggerDict
        if name.split(".")[0] in redaction.LOGGER_PREFIXES
    ]
    assert "requests_oauthlib.oauth2_session" in names
    for name in names:
        assert any(
            isinstance(f, redaction.RedactingFilter) for f in logging.getLogger(name).filters
        )
