"""Every bad callback ends in a clear message, an event, and nothing stored. No 500s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from atlassian_oauth.models import AuthorizationState, Connection, Event, Grant
from tests.flow_helpers import callback_params, consent, finish, messages_of, start
from tests.page_helpers import app_frame  # noqa: F401  # a fixture

pytestmark = pytest.mark.django_db

#: What a callback whose state this browser cannot use says, in words for people.
BAD_STATE = "This connection attempt expired or was started in another browser. Connect again."


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


def test_missing_state(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    del params["state"]
    assert_failed(finish(alice_client, params), accepting, "incomplete", reason="missing_state")


def test_wrong_state(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    params["state"] = "x" * 43
    assert_failed(finish(alice_client, params), accepting, BAD_STATE, reason="invalid_state")


def test_reused_state(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    finish(alice_client, params)
    Connection.objects.all().delete()
    Event.objects.all().delete()
    response = finish(alice_client, params)
    assert_failed(response, accepting, BAD_STATE, reason="invalid_state", exchanged=1)


def test_expired_state(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    AuthorizationState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_failed(finish(alice_client, params), accepting, "took too long", reason="expired_state")


def test_state_from_another_session(alice, alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    other_browser = Client()
    other_browser.force_login(alice)
    assert_failed(finish(other_browser, params), accepting, BAD_STATE, reason="invalid_state")
    # The rightful browser can still finish: a stranger cannot burn its state.
    assert AuthorizationState.objects.count() == 1


def test_state_from_another_user(alice, bob, client, sites, accepting):
    client.force_login(alice)
    params = callback_params(consent(start(client)))
    client.force_login(bob)
    assert_failed(finish(client, params), accepting, BAD_STATE, reason="invalid_state")


def test_state_from_another_site(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    response = finish(alice_client, params, host="127.0.0.1")
    assert_failed(response, accepting, BAD_STATE, reason="invalid_state")


def test_the_user_declines(alice_client, accepting):
    accepting.auto_consent = "decline"
    params = callback_params(consent(start(alice_client)))
    assert params["error"] == "access_denied"
    assert_failed(finish(alice_client, params), accepting, "You declined", reason="declined")


def test_another_error_from_atlassian(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    del params["code"]
    params["error"] = "server_error"
    response = finish(alice_client, params)
    assert_failed(
        response, accepting, "did not grant access (server_error)", reason="authorize_error"
    )


def test_an_error_value_is_shown_shortened_and_escaped(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    params["error"] = "<script>" + "x" * 500
    response = finish(alice_client, params)
    (text,) = messages_of(response)
    assert len(text) < 200
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "<script>" not in page


def test_missing_code(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    del params["code"]
    assert_failed(
        finish(alice_client, params), accepting, "no authorization code", reason="missing_code"
    )


def test_a_code_the_token_endpoint_refuses(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    params["code"] = "not-a-code-atlassian-issued"
    response = finish(alice_client, params)
    assert_failed(response, accepting, "already used", reason="invalid_code", exchanged=1)


def test_a_wrong_client_secret_is_an_admin_problem(alice_client, accepting, oauth_settings):
    params = callback_params(consent(start(alice_client)))
    oauth_settings(CLIENT_SECRET="wrong")
    response = finish(alice_client, params)
    assert_failed(response, accepting, "administrator", reason="configuration", exchanged=1)


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
def test_a_failing_token_endpoint(alice_client, accepting, fault):
    params = callback_params(consent(start(alice_client)))
    accepting.inject(kind="code_exchange", **fault)
    response = finish(alice_client, params)
    assert_failed(response, accepting, "try again", reason="atlassian_error", exchanged=1)


def test_a_token_endpoint_that_times_out(alice_client, accepting, oauth_settings):
    oauth_settings(HTTP_TIMEOUT=0.3)
    params = callback_params(consent(start(alice_client)))
    accepting.inject(kind="code_exchange", delay=1.5)
    response = finish(alice_client, params)
    assert_failed(response, accepting, "try again", reason="atlassian_error", exchanged=1)


@pytest.mark.parametrize("kind", ["me", "accessible_resources"])
@pytest.mark.parametrize("status", [500, 401, 403])
def test_failing_me_or_accessible_resources(alice_client, accepting, kind, status):
    params = callback_params(consent(start(alice_client)))
    accepting.inject(kind=kind, status=status)
    response = finish(alice_client, params)
    assert_failed(response, accepting, "try again", reason="atlassian_error", exchanged=1)


def test_no_failure_leaks_the_code_into_messages_or_events(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    accepting.inject(kind="code_exchange", status=400, body={"error": "invalid_request"})
    response = finish(alice_client, params)
    code = params["code"]
    assert all(code not in text for text in messages_of(response))
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert code not in event.message and code not in str(event.details)


def test_connect_without_credentials_says_so(alice_client, accepting, oauth_settings):
    oauth_settings(CLIENT_ID="", CLIENT_SECRET="")
    response = alice_client.post("/atlassian/connect/", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert response["Location"] == "/atlassian/"
    assert messages_of(response) == ["Jira connections are not configured on this site."]
    assert accepting.counts.get("authorize", 0) == 0
    assert not AuthorizationState.objects.exists()


def test_connect_refused_by_oauthlib_logs_why(alice_client, accepting, monkeypatch, caplog):
    """The fake's http:// URLs without OAUTHLIB_INSECURE_TRANSPORT: the user reads "not
    configured", and the log says what to set (check E010 says it before)."""
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
    with caplog.at_level("ERROR", logger="atlassian_oauth.views"):
        response = alice_client.post("/atlassian/connect/", HTTP_HOST="localhost")
    assert messages_of(response) == ["Jira connections are not configured on this site."]
    (record,) = [r for r in caplog.records if r.name == "atlassian_oauth.views"]
    assert record.getMessage().startswith("Connect failed on localhost: ATLASSIAN_OAUTH['AUTH")
    assert "OAUTHLIB_INSECURE_TRANSPORT=1" in record.getMessage()
    assert accepting.counts.get("authorize", 0) == 0


@pytest.mark.usefixtures("app_frame")
def test_the_bad_state_message_names_no_sign_in_link(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    params["state"] = "x" * 43
    response = finish(alice_client, params)
    assert messages_of(response) == [BAD_STATE]
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    # Shown as an error, saying so in words, with the button to start again.
    assert 'class="atlassian-oauth-message atlassian-oauth-message-error' in page
    assert "Error:</strong> " + BAD_STATE in page
    assert ">Connect Jira</button>" in page
    assert "sign-in" not in page


def test_an_expired_state_says_it_expired(alice_client, accepting):
    params = callback_params(consent(start(alice_client)))
    AuthorizationState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    (text,) = messages_of(finish(alice_client, params))
    assert text == "This connection attempt took too long and expired. Connect again."


def test_a_declined_consent_names_the_product_the_scopes_reach(
    alice_client, accepting, oauth_settings
):
    oauth_settings(SCOPES="read:confluence-content.all read:me offline_access")
    accepting.auto_consent = "decline"
    response = finish(alice_client, callback_params(consent(start(alice_client))))
    assert messages_of(response) == ["You declined access, so Confluence is not connected."]
