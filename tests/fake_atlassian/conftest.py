"""Fixtures for the fake Atlassian's own tests, built on the plugin's ``fake_atlassian``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FakeAtlassian,
)

REDIRECT_URI = "https://app.example/atlassian/callback"
SCOPES = "read:jira-work read:jira-user read:me offline_access"


class OAuth:
    """The HTTP calls a real client makes, spelled out once for the tests."""

    def __init__(self, fake: FakeAtlassian, http: requests.Session) -> None:
        self.fake = fake
        self.http = http

    def url(self, path: str) -> str:
        return f"{self.fake.url}{path}"

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        params: dict[str, str | None] = {
            "audience": "api.atlassian.com",
            "client_id": DEFAULT_CLIENT_ID,
            "scope": SCOPES,
            "redirect_uri": REDIRECT_URI,
            "state": "the-state",
            "response_type": "code",
            "prompt": "consent",
            **overrides,
        }
        return {k: v for k, v in params.items() if v is not None}

    def authorize(self, **overrides: str | None) -> requests.Response:
        return self.http.get(
            self.url("/authorize"), params=self.authorize_params(**overrides), allow_redirects=False
        )

    def code(self, **overrides: str | None) -> str:
        """Consent through auto-consent and return the code from the redirect."""
        previous = self.fake.auto_consent
        self.fake.auto_consent = "accept"
        try:
            response = self.authorize(**overrides)
        finally:
            self.fake.auto_consent = previous
        assert response.status_code == 302, response.text
        return self.redirect_query(response)["code"]

    def token(self, body: dict[str, str], use_form: bool = False) -> requests.Response:
        if use_form:
            return self.http.post(self.url("/oauth/token"), data=body)
        return self.http.post(self.url("/oauth/token"), json=body)

    def exchange(self, code: str, **overrides: str) -> requests.Response:
        body = {
            "grant_type": "authorization_code",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "code": code,
            "redirect_uri": REDIRECT_URI,
            **overrides,
        }
        return self.token(body)

    def refresh(self, refresh_token: str, **overrides: str) -> requests.Response:
        body = {
            "grant_type": "refresh_token",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "refresh_token": refresh_token,
            **overrides,
        }
        return self.token(body)

    def mint(self, scopes: str = SCOPES, account_id: str = ADA_ACCOUNT_ID) -> dict[str, Any]:
        return self.fake.mint_grant(DEFAULT_CLIENT_ID, account_id, scopes)

    @staticmethod
    def redirect_query(response: requests.Response) -> dict[str, str]:
        """The query of a 302's Location, one value per name."""
        location = response.headers["Location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def api(self, path: str, access_token: str, **params: str) -> requests.Response:
        return self.http.get(
            self.url(path), params=params, headers={"Authorization": f"Bearer {access_token}"}
        )


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # never send loopback traffic through an environment proxy
    yield session
    session.close()


@pytest.fixture
def oauth(fake_atlassian: FakeAtlassian, http: requests.Session) -> OAuth:
    return OAuth(fake_atlassian, http)
