"""No secret reaches Django's error reports or the logs (issue 7, leak 1).

Every scenario makes a real exception through the app's real code against the fake Atlassian
over HTTP, then renders it the ways it would be seen (``secrets_sweep.renderings``: Django's
500 page and admin error email, HTML and text, under DEBUG=False; the app's own frames under
DEBUG=True; a Sentry-style walk of every frame of the exception chain) and searches each for
every secret the test handled: client secrets, every token and code the fake issued, the
configured encryption keys and the stored ciphertexts. The DEBUG logs of every logger during
the scenario are searched too (plaintext secrets only). A failure lists, for each find, the
scenario, the rendering, the kind of secret and the frame and variable that held it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sites.models import Site
from django.db import DataError, OperationalError, connection, transaction
from django.db.models.signals import pre_save
from django.http import HttpRequest
from django.test import RequestFactory, override_settings
from django.views.debug import SafeExceptionReporterFilter

from atlassian_oauth import connect, crypto, exceptions, refresh, tasks
from atlassian_oauth.api import get_session
from atlassian_oauth.models import AtlassianApp, Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, FakeAtlassian
from tests.adversarial.secrets_sweep import (
    ACCESS_TOKEN,
    CIPHERTEXT,
    CLIENT_SECRET,
    CODE,
    DEBUG_LOGS,
    ERROR_REPORTS,
    KEY,
    KEY_MATERIAL,
    REFRESH_TOKEN,
    AppSensitiveVariablesFilter,
    SecretBook,
    all_debug_logs,
    failure_message,
    frames,
    log_leaks,
    raised,
    report_leaks,
)
from tests.flow_helpers import HOST, callback_params, consent
from tests.flow_helpers import connect as connect_round_trip
from tests.refresh_helpers import connected_grant, expire
from tests.test_refresh_faults import DEAD, TRANSIENT, WRONG_SECRET

# Each scenario runs for alice on the localhost site, with the SQL in the swept logs.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("sites", "alice", "sql_logged_with_parameters"),
]

CALLBACK = f"http://{HOST}/atlassian/callback/"
# Long enough for the app to give up on a faulted answer well before the fake sends it.
SHORT_TIMEOUT = 0.3
SITE_CLIENT_ID = "acme-own-client-id"
SITE_CLIENT_SECRET = "acme-own-client-secret-7d41"
MALFORMED_KEY = "not-a-key"


@pytest.fixture(scope="module", autouse=True)
def print_figures(pytestconfig):
    """Print the sweep's figures once this module's tests ran, so they show in the CI log."""
    yield
    # What capsys.disabled() does, for a module-scoped fixture (capsys is per test).
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print()
        for figures in (ERROR_REPORTS, DEBUG_LOGS):
            print(figures.line())


@pytest.fixture
def sql_logged_with_parameters() -> Iterator[None]:
    """The log sweep wants the SQL and its parameters, which django.db.backends logs as under
    DEBUG=True; DEBUG itself stays False as in production, since under DEBUG=True a 500 is
    Django's technical page, which shows (and logs while rendering) everything by design."""
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = True
    try:
        yield
    finally:
        connection.force_debug_cursor = forced


def alice() -> Any:
    return get_user_model().objects.get(username="alice")


def localhost() -> Site:
    return Site.objects.get(domain=HOST)


def app_request() -> HttpRequest:
    """A page of the integrator's site that calls Jira, as Django's report would show it."""
    request = RequestFactory().get("/jira/issues/", {"project": "DEMO"}, HTTP_HOST=HOST)
    request.user = alice()
    return request


def assert_nothing_shown(
    scenario: str,
    error: BaseException,
    fake: FakeAtlassian,
    records: list[Any],
    *,
    requests: tuple[HttpRequest | None, ...] = (None,),
    expect: set[str],
) -> None:
    book = SecretBook().collect(fake)
    kinds = {secret.kind for secret in book}
    # The search is only as good as its list: it must hold what the scenario handled.
    assert expect <= kinds, f"{scenario}: the secret list lacks {sorted(expect - kinds)}"
    leaks = []
    for request in requests:
        shown = "with a request" if request is not None else "without a request"
        leaks += report_leaks(f"{scenario} ({shown})", error, request, book)
    leaks += log_leaks(scenario, records, book)
    assert not leaks, failure_message(leaks)


# ---- the sweep itself finds what it looks for ------------------------------------------------


def _leaky(token: str) -> None:
    held = {"refresh_token": token}  # what an uncovered frame of a library looks like
    raise ValueError(f"failed with {len(held)} field")


def test_the_sweep_finds_a_secret_left_in_a_frame(accepting):
    """The renderings and the search can fail: a token held in an uncovered frame is found in
    every rendering that shows frame variables (Django's text reports show none), located by
    frame and variable, and never printed."""
    token = accepting.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, "read:me")["access_token"]
    error = raised(_leaky, token)
    book = SecretBook().collect(accepting)
    leaks = [
        leak
        for request in (None, app_request())
        for leak in report_leaks("probe", error, request, book, tally=False)
    ]
    assert {(leak.rendering, leak.kind) for leak in leaks} == {
        ("500 page HTML (DEBUG=False)", ACCESS_TOKEN),
        ("admin error email HTML (DEBUG=False)", ACCESS_TOKEN),
        ("Sentry-style frame walk (DEBUG=False)", ACCESS_TOKEN),
    }
    assert all("_leaky" in leak.where for leak in leaks)
    assert any("variable 'held'" in leak.where for leak in leaks)
    assert token not in failure_message(leaks)


def test_app_frames_apply_the_apps_sensitive_variables_under_debug():
    """Under DEBUG=True Django's own filter cleanses nothing; the app-frame rendering does."""
    with override_settings(DEBUG=True):
        assert not SafeExceptionReporterFilter().is_active(None)
        assert AppSensitiveVariablesFilter().is_active(None)


# ---- refresh: every failure kind of the fault matrix, from every caller ----------------------


def _transient(name: str) -> Callable[[FakeAtlassian, Any, Grant], None]:
    row = TRANSIENT[name]

    def arrange(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> None:
        oauth_settings(**{"HTTP_TIMEOUT": SHORT_TIMEOUT, **row.options})
        fake.inject(kind="refresh", **row.fault)

    return arrange


def _dead(name: str) -> Callable[[FakeAtlassian, Any, Grant], None]:
    make_dead = DEAD[name][0]

    def arrange(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> None:
        make_dead(fake, grant)
        expire(grant)

    return arrange


def _wrong_secret(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> None:
    oauth_settings(CLIENT_SECRET=WRONG_SECRET)


FAULTS: dict[str, Callable[[FakeAtlassian, Any, Grant], None]] = {
    **{name: _transient(name) for name in TRANSIENT},
    **{name: _dead(name) for name in DEAD},
    "401-access_denied": _wrong_secret,
}


def _via_ensure_fresh(grant: Grant, monkeypatch: Any) -> BaseException:
    return raised(refresh.ensure_fresh, grant.pk, actor=Event.Actor.BEAT)


def _via_task(grant: Grant, monkeypatch: Any) -> BaseException:
    """The beat's task, run eagerly. It never raises (the outcome says what happened), so the
    exception is taken from ensure_fresh as the task's sweep catches it: its traceback then
    runs from ``sweep.refresh_if_due`` down, as a reporter hooked there would see it."""
    caught: list[BaseException] = []
    real = refresh.ensure_fresh

    def observed(*args: Any, **kwargs: Any) -> refresh.FreshToken:
        try:
            return real(*args, **kwargs)
        except Exception as error:
            caught.append(error)
            raise

    monkeypatch.setattr(refresh, "ensure_fresh", observed)
    outcome = tasks.refresh_grant.apply(args=(grant.pk,)).get()
    assert outcome in ("failed", "needs reconnect"), outcome
    assert caught, "the task's refresh raised nothing"
    return caught[-1]


def _via_get_session(grant: Grant, monkeypatch: Any) -> BaseException:
    session = get_session(alice(), localhost())
    return raised(session.get, session.jira_url("rest/api/3/myself"))


CALLERS = {
    "ensure_fresh": _via_ensure_fresh,
    "refresh_grant task": _via_task,
    "get_session API call": _via_get_session,
}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_refresh_shows_no_secret(accepting, oauth_settings, monkeypatch, fault, caller):
    grant = connected_grant(accepting)
    expire(grant)
    FAULTS[fault](accepting, oauth_settings, grant)
    grant.refresh_from_db()
    with all_debug_logs() as records:
        error = CALLERS[caller](grant, monkeypatch)
    assert isinstance(error, exceptions.ReconnectRequired | exceptions.TemporarilyUnavailable)
    assert_nothing_shown(
        f"refresh {fault} via {caller}",
        error,
        accepting,
        records,
        requests=(None, app_request()),
        expect={CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, KEY, KEY_MATERIAL, CIPHERTEXT},
    )


# ---- connect: the code exchange and storing the connection -----------------------------------


@contextmanager
def failing_grant_save(error: Exception) -> Iterator[None]:
    """Saving a Grant raises ``error``: a database failure injected for this block only."""

    def receiver(sender: type[Grant], instance: Grant, **kwargs: Any) -> None:
        raise error

    uid = "tests.adversarial.test_error_reports.failing_grant_save"
    pre_save.connect(receiver, sender=Grant, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        pre_save.disconnect(sender=Grant, dispatch_uid=uid)


@contextmanager
def locked_grant_writes() -> Iterator[None]:
    """Every write to the grant table fails as a locked SQLite does, inside the database call
    (after the field encrypted the tokens)."""

    def refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        table = connection.ops.quote_name(Grant._meta.db_table)
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")) and table in sql:
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield


def _pending_params(fake: FakeAtlassian) -> tuple[SessionStore, dict[str, str]]:
    """A started flow for alice on localhost, consented at the fake: (session, callback query)."""
    session = SessionStore()
    url = connect.begin(user=alice(), site=localhost(), session=session, redirect_uri=CALLBACK)
    return session, callback_params(consent(url))


def _complete(fake: FakeAtlassian) -> BaseException:
    session, params = _pending_params(fake)
    return raised(connect.complete, user=alice(), site=localhost(), session=session, params=params)


def _connect_first(fake: FakeAtlassian) -> None:
    session, params = _pending_params(fake)
    connect.complete(user=alice(), site=localhost(), session=session, params=params)


def _bad_keys(oauth_settings: Any) -> None:
    good = oauth_settings()["ENCRYPTION_KEYS"][0]
    oauth_settings(ENCRYPTION_KEYS=[good, crypto.generate_key("second"), MALFORMED_KEY])


def store_data_error(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    with failing_grant_save(DataError("value too long for type character varying(255)")):
        return _complete(fake)


def store_data_error_on_reconnect(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    _connect_first(fake)
    with failing_grant_save(DataError("value too long for type character varying(255)")):
        return _complete(fake)


def store_locked_database(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    with locked_grant_writes():
        return _complete(fake)


def store_locked_database_on_reconnect(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    _connect_first(fake)
    with locked_grant_writes():
        return _complete(fake)


def store_malformed_key(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    _bad_keys(oauth_settings)
    return _complete(fake)


def store_malformed_key_on_reconnect(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    _connect_first(fake)
    _bad_keys(oauth_settings)
    return _complete(fake)


def exchange_dropped(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    fake.inject(kind="code_exchange", drop=True)
    return _complete(fake)


def exchange_timed_out(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    oauth_settings(HTTP_TIMEOUT=SHORT_TIMEOUT)
    fake.inject(kind="code_exchange", delay=1.0)
    return _complete(fake)


def exchange_dropped_for_the_sites_own_app(
    fake: FakeAtlassian, oauth_settings: Any
) -> BaseException:
    fake.register_app(SITE_CLIENT_ID, SITE_CLIENT_SECRET)
    AtlassianApp.objects.create(
        site=localhost(), client_id=SITE_CLIENT_ID, client_secret=SITE_CLIENT_SECRET
    )
    fake.inject(kind="code_exchange", drop=True)
    return _complete(fake)


def me_dropped(fake: FakeAtlassian, oauth_settings: Any) -> BaseException:
    """The exchange worked; reading /me with the new access token fails."""
    fake.inject(kind="me", drop=True)
    return _complete(fake)


CONNECT_FAILURES: dict[str, tuple[Callable[[FakeAtlassian, Any], BaseException], set[str]]] = {
    "store: DataError saving a new grant": (store_data_error, {ACCESS_TOKEN, REFRESH_TOKEN, CODE}),
    "store: DataError updating the grant on reconnect": (
        store_data_error_on_reconnect,
        {ACCESS_TOKEN, REFRESH_TOKEN, CODE, CIPHERTEXT},
    ),
    "store: locked database inserting a new grant": (
        store_locked_database,
        {ACCESS_TOKEN, REFRESH_TOKEN, CODE},
    ),
    "store: locked database updating the grant on reconnect": (
        store_locked_database_on_reconnect,
        {ACCESS_TOKEN, REFRESH_TOKEN, CODE, CIPHERTEXT},
    ),
    "store: malformed key next to good ones": (
        store_malformed_key,
        {ACCESS_TOKEN, REFRESH_TOKEN, CODE},
    ),
    "store: malformed key next to good ones, on reconnect": (
        store_malformed_key_on_reconnect,
        {ACCESS_TOKEN, REFRESH_TOKEN, CODE, CIPHERTEXT},
    ),
    "code exchange: dropped connection": (exchange_dropped, {CODE}),
    "code exchange: timeout": (exchange_timed_out, {CODE}),
    "code exchange: dropped, the site's own app": (
        exchange_dropped_for_the_sites_own_app,
        {CODE, CIPHERTEXT},
    ),
    "/me after the exchange: dropped connection": (me_dropped, {ACCESS_TOKEN, CODE}),
}


@pytest.mark.parametrize("case", list(CONNECT_FAILURES))
def test_a_failed_connect_shows_no_secret(accepting, oauth_settings, case):
    produce, handled = CONNECT_FAILURES[case]
    with all_debug_logs() as records:
        error = produce(accepting, oauth_settings)
    assert_nothing_shown(
        case, error, accepting, records, expect={CLIENT_SECRET, KEY, KEY_MATERIAL, *handled}
    )
    if case.startswith("store"):
        # The failure is the one injected, not the flow refusing the callback.
        assert not isinstance(error, connect.ConnectFailed), error


def from_the_handler(error: BaseException) -> BaseException:
    """``error`` with its traceback starting at Django's request handler: the frames above it
    are the test client's and this test's, which a deployed site does not have."""
    tb = error.__traceback__
    while tb is not None and not tb.tb_frame.f_globals.get("__name__", "").startswith(
        "django.core.handlers"
    ):
        tb = tb.tb_next
    assert tb is not None, "the exception did not come through Django's handler"
    error.__traceback__ = tb
    return error


def test_a_500_in_the_callback_view_shows_no_code(accepting, client, oauth_settings):
    """A database failure in the callback view is a 500: Django's report shows the request,
    whose query string holds the authorization code, and every frame that holds the request.

    (The request's URL is the app's own concern: the code and state are in it because the
    callback is the app's view.)
    """
    client.force_login(alice())
    refused = DataError("value too long for type character varying(255)")
    with all_debug_logs() as records, failing_grant_save(refused):
        error = from_the_handler(raised(connect_round_trip, client))
    assert isinstance(error, DataError), error
    request = next(
        value
        for _exc, frame, _line in frames(error)
        for value in frame.f_locals.values()
        if isinstance(value, HttpRequest)
    )
    assert request.GET.get("code")
    assert_nothing_shown(
        "callback view 500",
        error,
        accepting,
        records,
        requests=(request,),
        expect={CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, CODE, KEY, KEY_MATERIAL},
    )


# ---- one malformed entry in ENCRYPTION_KEYS next to good keys ---------------------------------


def keys_reading_a_token(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> BaseException:
    _bad_keys(oauth_settings)
    return raised(refresh.ensure_fresh, grant.pk, actor=Event.Actor.APPLICATION)


def keys_refreshing(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> BaseException:
    expire(grant)
    _bad_keys(oauth_settings)
    return raised(refresh.ensure_fresh, grant.pk, actor=Event.Actor.BEAT)


def keys_api_call(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> BaseException:
    session = get_session(alice(), localhost())
    url = session.jira_url("rest/api/3/myself")
    _bad_keys(oauth_settings)
    return raised(session.get, url)


def _save(grant: Grant) -> None:
    # In a savepoint, so the failed save leaves the test's transaction usable.
    with transaction.atomic():
        grant.save()


def keys_saving_a_grant(fake: FakeAtlassian, oauth_settings: Any, grant: Grant) -> BaseException:
    loaded = Grant.objects.get(pk=grant.pk)
    assert loaded.access_token  # read (and cached as plaintext) while the keys were good
    _bad_keys(oauth_settings)
    return raised(_save, loaded)


MALFORMED_KEYS = {
    "ensure_fresh reads the token": keys_reading_a_token,
    "a due grant is refreshed": keys_refreshing,
    "get_session API call": keys_api_call,
    "a grant holding plaintext is saved": keys_saving_a_grant,
}


@pytest.mark.parametrize("case", list(MALFORMED_KEYS))
def test_a_malformed_key_shows_no_good_key(accepting, oauth_settings, case):
    grant = connected_grant(accepting)
    with all_debug_logs() as records:
        error = MALFORMED_KEYS[case](accepting, oauth_settings, grant)
    assert isinstance(error, crypto.KeyConfigurationError), error
    assert len(oauth_settings()["ENCRYPTION_KEYS"]) == 3
    assert_nothing_shown(
        f"malformed key: {case}",
        error,
        accepting,
        records,
        requests=(None, app_request()),
        expect={CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, KEY, KEY_MATERIAL, CIPHERTEXT},
    )


# ---- the DEBUG logs of normal operation -----------------------------------------------------


def test_a_whole_connection_lifetime_logs_no_secret(accepting, client):
    """Connect, refresh, call Jira, disconnect: every record of every logger at DEBUG, SQL
    parameters included, holds no plaintext secret."""
    client.force_login(alice())
    with all_debug_logs() as records:
        response = connect_round_trip(client)
        assert response.status_code == 302
        grant = Grant.objects.get()
        expire(grant)
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
        session = get_session(alice(), localhost())
        assert session.get(session.jira_url("rest/api/3/myself")).status_code == 200
        response = client.post("/atlassian/disconnect/", HTTP_HOST=HOST)
        assert response.status_code == 302
    assert not Grant.objects.exists()
    assert accepting.counts["code_exchange"] == accepting.counts["refresh"] == 1
    # The capture works: the HTTP client and the SQL of the round trip are in it.
    loggers = {record.name for record in records}
    assert "urllib3.connectionpool" in loggers and "django.db.backends" in loggers
    book = SecretBook().collect(accepting)
    kinds = {secret.kind for secret in book}
    assert {CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, CODE, KEY} <= kinds
    leaks = log_leaks("connect, refresh, API call, disconnect", records, book)
    assert not leaks, failure_message(leaks)
