"""GET /authorize and the consent form."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    GRACE_ACCOUNT_ID,
    FakeAtlassian,
)

from .conftest import REDIRECT_URI, OAuth

REQUIRED = ("audience", "client_id", "scope", "redirect_uri", "state", "response_type", "prompt")


def consent_id(page: str) -> str:
    found = re.search(r'name="consent_id" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_parameter_is_a_400_page_naming_it_never_a_redirect(
    oauth: OAuth, missing: str
) -> None:
    response = oauth.authorize(**{missing: None})

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<code>{missing}</code> is missing" in response.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("audience", "api.example.com"),
        ("response_type", "token"),
        ("prompt", "none"),
        ("client_id", "nobody"),
        ("redirect_uri", "not a url"),
        ("redirect_uri", "https://app.example/callback#fragment"),
    ],
)
def test_a_wrong_parameter_is_a_400_page_naming_it(oauth: OAuth, name: str, value: str) -> None:
    response = oauth.authorize(**{name: value})

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert f"<code>{name}</code>" in response.text
    assert response.headers["X-Fake-Atlassian-Invalid-Parameter"] == name


def test_a_redirect_uri_the_app_does_not_list_is_refused_without_redirect(oauth: OAuth) -> None:
    oauth.fake.register_app(DEFAULT_CLIENT_ID, "s3cret", redirect_uris=[REDIRECT_URI])

    response = oauth.authorize(redirect_uri="https://evil.example/callback")

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "<code>redirect_uri</code>" in response.text


def test_a_scope_the_app_lacks_redirects_with_invalid_scope(oauth: OAuth) -> None:
    oauth.fake.register_app(DEFAULT_CLIENT_ID, "s3cret", scopes={"read:jira-work"})

    response = oauth.authorize(scope="read:jira-work write:jira-work offline_access")

    assert response.status_code == 302
    query = oauth.redirect_query(response)
    assert query["error"] == "invalid_scope"
    assert query["state"] == "the-state"
    assert "code" not in query


def test_the_consent_page_shows_the_app_the_scopes_and_accept_and_decline(oauth: OAuth) -> None:
    response = oauth.authorize(scope="read:jira-work offline_access")

    assert response.status_code == 200
    page = response.text
    assert "<title>Fake Atlassian consent</title>" in page
    # The app by the name it was registered with, its client id, and who asks.
    assert (
        '<h2><span id="app-name">django-atlassian-oauth demo</span> is requesting access to '
        "your Atlassian account</h2>"
    ) in page
    assert f'<code id="client-id">{DEFAULT_CLIENT_ID}</code>' in page
    assert '<strong id="tenant">app.example</strong>' in page
    # Each scope in Atlassian's words, with its name beside.
    assert re.search(
        r'<li data-scope="read:jira-work"><strong>View Jira issue data</strong>.*?'
        r"<code>read:jira-work</code></li>",
        page,
    )
    assert re.search(
        r'<li data-scope="offline_access"><strong>Keep access when you are not using the app'
        r"</strong>.*?<code>offline_access</code></li>",
        page,
    )
    assert 'name="decision" value="accept">Accept</button>' in page
    assert 'name="decision" value="decline">Decline</button>' in page
    assert f'<option value="{ADA_ACCOUNT_ID}" selected>' in page
    assert f'<option value="{GRACE_ACCOUNT_ID}">' in page
    # The form carries an opaque id, not the request's parameters.
    assert "the-state" not in page


def test_the_consent_page_names_a_known_tenant_and_a_named_app() -> None:
    with FakeAtlassian(
        client_id="acme-app", app_name="Acme's Jira reports", tenant_names={"app.example": "Acme"}
    ) as fake:
        response = requests.get(
            f"{fake.url}/authorize",
            params={
                "audience": "api.atlassian.com",
                "client_id": "acme-app",
                "scope": "read:jira-work manage:made-up offline_access",
                "redirect_uri": "https://app.example:8443/atlassian/callback/",
                "state": "s",
                "response_type": "code",
                "prompt": "consent",
            },
            timeout=5,
        )

    page = response.text
    assert '<span id="app-name">Acme&#x27;s Jira reports</span>' in page
    assert '<strong id="tenant">Acme (app.example:8443)</strong>' in page
    # A scope Atlassian's screen has no words for is shown by its name.
    assert '<li data-scope="manage:made-up"><strong>manage:made-up</strong>' in page


def test_the_consent_page_escapes_what_it_echoes(oauth: OAuth) -> None:
    response = oauth.authorize(scope="read:jira-work <script>alert(1)</script>")

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_accept_redirects_with_a_code_and_the_state(oauth: OAuth) -> None:
    page = oauth.authorize().text

    response = oauth.http.post(
        oauth.url("/authorize"),
        data={"consent_id": consent_id(page), "decision": "accept", "account_id": ADA_ACCOUNT_ID},
        allow_redirects=False,
    )

    assert response.status_code == 302
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    query = oauth.redirect_query(response)
    assert set(query) == {"code", "state"}
    assert query["state"] == "the-state"


def test_accept_keeps_the_query_string_of_the_redirect_uri(oauth: OAuth) -> None:
    redirect_uri = "https://app.example/cb?tenant=a%20b&x=1"
    page = oauth.authorize(redirect_uri=redirect_uri).text

    response = oauth.http.post(
        oauth.url("/authorize"),
        data={"consent_id": consent_id(page), "decision": "accept"},
        allow_redirects=False,
    )

    location = urlsplit(response.headers["Location"])
    assert location.query.startswith("tenant=a%20b&x=1&code=")
    query = oauth.redirect_query(response)
    assert query["tenant"] == "a b"
    assert query["state"] == "the-state"


def test_decline_redirects_with_access_denied_and_the_state(oauth: OAuth) -> None:
    page = oauth.authorize(redirect_uri="https://app.example/cb?tenant=a").text

    response = oauth.http.post(
        oauth.url("/authorize"),
        data={"consent_id": consent_id(page), "decision": "decline"},
        allow_redirects=False,
    )

    assert response.status_code == 302
    query = oauth.redirect_query(response)
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert query["state"] == "the-state"
    assert query["tenant"] == "a"
    assert "code" not in query


def test_a_consent_form_is_single_use(oauth: OAuth) -> None:
    form = {"consent_id": consent_id(oauth.authorize().text), "decision": "accept"}
    assert oauth.http.post(oauth.url("/authorize"), data=form, allow_redirects=False).ok

    again = oauth.http.post(oauth.url("/authorize"), data=form, allow_redirects=False)

    assert again.status_code == 400
    assert "Location" not in again.headers


def test_the_chosen_account_is_the_one_that_consents(oauth: OAuth) -> None:
    page = oauth.authorize().text
    response = oauth.http.post(
        oauth.url("/authorize"),
        data={"consent_id": consent_id(page), "decision": "accept", "account_id": GRACE_ACCOUNT_ID},
        allow_redirects=False,
    )

    assert oauth.fake.grant_info(DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID) is not None
    assert oauth.fake.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID) is None
    assert response.status_code == 302


@pytest.mark.parametrize("decision", ["accept", "decline"])
def test_auto_consent_answers_at_once(oauth: OAuth, decision: str) -> None:
    oauth.fake.auto_consent = decision
    oauth.fake.consent_account_id = GRACE_ACCOUNT_ID

    response = oauth.authorize()

    assert response.status_code == 302
    query = oauth.redirect_query(response)
    assert query["state"] == "the-state"
    if decision == "accept":
        assert "code" in query
        assert oauth.fake.grant_info(DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID) is not None
    else:
        assert query["error"] == "access_denied"
        assert oauth.fake.grant_info(DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID) is None
