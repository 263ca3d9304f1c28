"""Every bad callback ends in a clear message, an event, and nothing stored. No 500s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from atlassian_oauth.models import AuthorizationState, Connection, Event, Grant
from demo_site.demo_data import seed
from tests.flow_helpers import callback_params, consent, finish, messages_of, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client):
    seed()
    user = get_user_model().objects.get(username="alice")
    client.force_login(user)
    return user


@pytest.fixture
def fake(fake_atlassian):
    fake_atlassian.auto_consent = "accept"
    return fake_atlassian


def assert_failed(response, fake, message: str, *, reason: str, exchanged: int = 0) -> None:
    assert response.status_code == 302
    assert response["Location"] == "/atlassian/"
    shown = messages_of(response)
    assert any(message in text for text in shown), shown
    assert fake.counts.get("code_exchange", 0) == exchanged
    assert Grant.objects.count() == 0
    assert Connection.objects.count() == 0
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert event.details["reason"] == reason


def test_missing_state(alice, client, fake):
    params = callback_params(consent(start(client)))
    del params["state"]
    assert_failed(finish(client, params), fake, "incomplete", reason="missing_state")


def test_wrong_state(alice, client, fake):
    params = callback_params(consent(start(client)))
    params["state"] = "x" * 43
    assert_failed(finish(client, params), fake, "not valid", reason="invalid_state")


def test_reused_state(alice, client, fake):
    params = callback_params(consent(start(client)))
    finish(client, params)
    Connection.objects.all().delete()
    Event.objects.all().delete()
    response = finish(client, params)
    assert_failed(response, fake, "not valid", reason="invalid_state", exchanged=1)


def test_expired_state(alice, client, fake):
    params = callback_params(consent(start(client)))
    AuthorizationState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_failed(finish(client, params), fake, "took too long", reason="expired_state")


def test_state_from_another_session(alice, client, fake):
    params = callback_params(consent(start(client)))
    other_browser = Client()
    other_browser.force_login(alice)
    assert_failed(finish(other_browser, params), fake, "not valid", reason="invalid_state")
    # The rightful browser can still finish: a stranger cannot burn its state.
    assert AuthorizationState.objects.count() == 1


def test_state_from_another_user(alice, client, fake):
    params = callback_params(consent(start(client)))
    client.force_login(get_user_model().objects.get(username="bob"))
    assert_failed(finish(client, params), fake, "not valid", reason="invalid_state")


def test_state_from_another_site(alice, client, fake):
    params = callback_params(consent(start(client)))
    response = finish(client, params, host="127.0.0.1")
    assert_failed(response, fake, "not valid", reason="invalid_state")


def test_the_user_declines(alice, client, fake):
    fake.auto_consent = "decline"
    params = callback_params(consent(start(client)))
    assert params["error"] == "access_denied"
    assert_failed(finish(client, params), fake, "You declined", reason="declined")


def test_another_error_from_atlassian(alice, client, fake):
    params = callback_params(consent(start(client)))
    del params["code"]
    params["error"] = "server_error"
    response = finish(client, params)
    assert_failed(response, fake, "did not grant access (server_error)", reason="authorize_error")


def test_an_error_value_is_shown_shortened_and_escaped(alice, client, fake):
    params = callback_params(consent(start(client)))
    params["error"] = "<script>" + "x" * 500
    response = finish(client, params)
    (text,) = messages_of(response)
    assert len(text) < 200
    page = client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "<script>" not in page


def test_missing_code(alice, client, fake):
    params = callback_params(consent(start(client)))
    del params["code"]
    assert_failed(finish(client, params), fake, "no authorization code", reason="missing_code")


def test_a_code_the_token_endpoint_refuses(alice, client, fake):
    params = callback_params(consent(start(client)))
    params["code"] = "not-a-code-atlassian-issued"
    response = finish(client, params)
    assert_failed(response, fake, "already used", reason="invalid_code", exchanged=1)


def test_a_wrong_client_secret_is_an_admin_problem(alice, client, fake, oauth_settings):
    params = callback_params(consent(start(client)))
    oauth_settings(CLIENT_SECRET="wrong")
    response = finish(client, params)
    assert_failed(response, fake, "administrator", reason="configuration", exchanged=1)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503, "headers": {"Retry-After": "30"}},
        {"status": 429, "headers": {"Retry-After": "30"}},
        {"status": 200, "body": "<html>maintenance</html>"},
        {"status": 200, "body": {"token_type": "Bearer"}},
        {"status": 400, "body": {"error": "something_new"}},
        {"drop": True},
    ],
    ids=["500", "503", "429", "not-json", "no-access-token", "unknown-4xx", "dropped"],
)
def test_a_failing_token_endpoint(alice, client, fake, fault):
    params = callback_params(consent(start(client)))
    fake.inject(kind="code_exchange", **fault)
    response = finish(client, params)
    assert_failed(response, fake, "try again", reason="atlassian_error", exchanged=1)


def test_a_token_endpoint_that_times_out(alice, client, fake, oauth_settings):
    oauth_settings(HTTP_TIMEOUT=0.3)
    params = callback_params(consent(start(client)))
    fake.inject(kind="code_exchange", delay=1.5)
    response = finish(client, params)
    assert_failed(response, fake, "try again", reason="atlassian_error", exchanged=1)


@pytest.mark.parametrize("kind", ["me", "accessible_resources"])
@pytest.mark.parametrize("status", [500, 401, 403])
def test_failing_me_or_accessible_resources(alice, client, fake, kind, status):
    params = callback_params(consent(start(client)))
    fake.inject(kind=kind, status=status)
    response = finish(client, params)
    assert_failed(response, fake, "try again", reason="atlassian_error", exchanged=1)


def test_no_failure_leaks_the_code_into_messages_or_events(alice, client, fake):
    params = callback_params(consent(start(client)))
    fake.inject(kind="code_exchange", status=400, body={"error": "invalid_request"})
    response = finish(client, params)
    code = params["code"]
    assert all(code not in text for text in messages_of(response))
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert code not in event.message and code not in str(event.details)


def test_connect_without_credentials_says_so(alice, client, fake, oauth_settings):
    oauth_settings(CLIENT_ID="", CLIENT_SECRET="")
    response = client.get("/atlassian/connect/", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert "not configured" in " ".join(messages_of(response))
    assert fake.counts.get("authorize", 0) == 0
