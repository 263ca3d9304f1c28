"""Drive the connect round trip the way a browser would: our views, then the fake's consent."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests
from django.contrib.messages import get_messages
from django.test import Client

HOST = "localhost"


def start(client: Client, next_url: str | None = None, host: str = HOST) -> str:
    """POST connect (the button); return the consent URL it redirects to."""
    data = {"next": next_url} if next_url is not None else {}
    response = client.post("/atlassian/connect/", data, HTTP_HOST=host)
    assert response.status_code == 302, response
    return str(response["Location"])


def consent(authorize_url: str) -> str:
    """Follow the consent URL at the fake (set to auto-consent); return the callback URL."""
    response = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.content.decode()
    return str(response.headers["Location"])


def callback_params(callback_url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(callback_url).query).items()}


def finish(client: Client, params: dict[str, str], host: str = HOST):
    return client.get("/atlassian/callback/", params, HTTP_HOST=host)


def connect(client: Client, next_url: str | None = None, host: str = HOST):
    """The whole round trip; returns the callback's response."""
    return finish(client, callback_params(consent(start(client, next_url, host))), host)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]
