"""All HTTP to Atlassian: consent URL, code exchange, refresh, accessible-resources, /me.

Every failure becomes one of the exceptions below, classified the way ATLASSIAN.md's error
table says, so callers decide on the class and never on status codes. Messages carry Atlassian's
``error`` / ``error_description`` (which hold no secrets) and never a token, code or secret.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.views.decorators.debug import sensitive_variables

from .conf import conf

logger = logging.getLogger(__name__)

AUDIENCE = "api.atlassian.com"
# Bounds on numbers Atlassian sends, so a garbled or hostile header or body cannot park a grant
# for a day, overflow a datetime, or make every call refresh (Atlassian's own values are 3600 s
# and a few seconds).
MAX_RETRY_AFTER = 3600.0
MAX_EXPIRES_IN = 86400
MIN_EXPIRES_IN = 60
# Atlassian sends at most a few hundred bytes of error; more is not an OAuth error body.
MAX_ERROR_TEXT = 200
# The columns Atlassian's values are stored in (Resource, Grant): longer values are cut or
# refused here, so a hostile answer cannot fail the save after the code was spent.
MAX_ID_LENGTH = 64
MAX_ACCOUNT_ID_LENGTH = 128
MAX_EMAIL_LENGTH = 254
MAX_TEXT_LENGTH = 255
MAX_URL_LENGTH = 200
MAX_AVATAR_URL_LENGTH = 500


@dataclass(frozen=True)
class OAuthApp:
    """The client credentials and scopes used for one site."""

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    callback_url: str = ""


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class AccessibleResource:
    cloud_id: str
    name: str
    url: str
    scopes: tuple[str, ...]
    avatar_url: str


@dataclass(frozen=True)
class Profile:
    account_id: str
    name: str
    email: str


class AtlassianError(Exception):
    """Talking to Atlassian failed; ``str()`` is safe to show and log."""

    def __init__(self, message: str, *, status: int | None = None, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class InvalidGrant(AtlassianError):
    """The refresh token is dead (expired, revoked, reused): the user must consent again."""


class InvalidCode(AtlassianError):
    """The authorization code was refused: late, reused, or for another redirect URI."""


class ClientConfigurationError(AtlassianError):
    """Atlassian refused the client id or secret: an admin must fix the app's credentials."""


class TransientError(AtlassianError):
    """Worth retrying later: 5xx, 429, timeouts, dropped connections, bodies that are not JSON."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UnexpectedResponse(AtlassianError):
    """A 4xx the table does not explain, or JSON of the wrong shape: not retried blindly."""


def authorize_url(app: OAuthApp, redirect_uri: str, state: str) -> str:
    """The consent page URL, with every parameter Atlassian requires."""
    query = urlencode(
        {
            "audience": AUDIENCE,
            "client_id": app.client_id,
            "scope": " ".join(app.scopes),
            "redirect_uri": redirect_uri,
            "state": state,
            "response_type": "code",
            "prompt": "consent",
        }
    )
    return f"{conf.AUTH_BASE_URL}/authorize?{query}"


# sensitive_variables keeps codes, secrets and tokens out of Django's error reports.
@sensitive_variables("app", "code", "body")
def exchange_code(app: OAuthApp, code: str, redirect_uri: str) -> TokenResponse:
    """Trade an authorization code for tokens."""
    body = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
    }
    return _token_request(body)


@sensitive_variables("app", "refresh_token", "body")
def refresh_tokens(app: OAuthApp, refresh_token: str) -> TokenResponse:
    """Trade a refresh token for a new access token (and, usually, a rotated refresh token)."""
    body = {
        "grant_type": "refresh_token",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "refresh_token": refresh_token,
    }
    return _token_request(body)


@sensitive_variables("access_token")
def accessible_resources(access_token: str) -> list[AccessibleResource]:
    data = _api_get("/oauth/token/accessible-resources", access_token, expect=list)
    resources = []
    for item in data:
        cloud_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(cloud_id, str) or not cloud_id or len(cloud_id) > MAX_ID_LENGTH:
            raise UnexpectedResponse("accessible-resources answered an entry without a valid id.")
        url = https_url(item.get("url"))
        scopes = item.get("scopes")
        resources.append(
            AccessibleResource(
                cloud_id=cloud_id,
                name=_text(item.get("name")) or url or cloud_id,
                url=url,
                scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
                avatar_url=https_url(item.get("avatarUrl"), max_length=MAX_AVATAR_URL_LENGTH),
            )
        )
    return resources


@sensitive_variables("access_token")
def me(access_token: str) -> Profile:
    data = _api_get("/me", access_token, expect=dict)
    account_id = data.get("account_id")
    if not isinstance(account_id, str) or not account_id or len(account_id) > MAX_ACCOUNT_ID_LENGTH:
        raise UnexpectedResponse("/me answered without a valid account_id.")
    email = _text(data.get("email"), MAX_EMAIL_LENGTH)
    try:
        validate_email(email)
    except ValidationError:
        email = ""  # shown to admins and users as text: a malformed one is worse than none
    return Profile(
        account_id=account_id,
        name=_text(data.get("name")) or _text(data.get("nickname")),
        email=email,
    )


_https_url_validator = URLValidator(schemes=["https"])


def https_url(value: object, *, max_length: int = MAX_URL_LENGTH) -> str:
    """``value`` if it is a well-formed ``https:`` URL that fits its column, else "".

    Atlassian's answers are stored and rendered as links: a ``javascript:`` or ``http:`` URL, or
    a host that is not a host name, must never become one.
    """
    if not isinstance(value, str) or len(value) > max_length:
        return ""
    try:
        _https_url_validator(value)
    except ValidationError:
        return ""
    return value


def _text(value: object, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A display string from Atlassian, cut to fit its column (255 characters)."""
    return value[:max_length] if isinstance(value, str) else ""


@sensitive_variables("body", "data", "access_token", "refresh_token")
def _token_request(body: Mapping[str, str]) -> TokenResponse:
    grant_type = body["grant_type"]
    response = _send("POST", f"{conf.AUTH_BASE_URL}/oauth/token", json=body, what=grant_type)
    if response.status_code != 200:
        raise _token_error(response)
    data = _json(response, what="the token endpoint", expect=dict)
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TransientError(
            "The token endpoint answered without an access_token.", status=response.status_code
        )
    refresh_token = data.get("refresh_token")
    expires_in = data.get("expires_in")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise TransientError(
            "The token endpoint answered without a valid expires_in.", status=response.status_code
        )
    if expires_in < MIN_EXPIRES_IN:
        # A lifetime under the refresh margins would make every call refresh (and 0.5 would
        # truncate to 0): use the token for a minute and say so.
        logger.warning(
            "The token endpoint answered expires_in=%s; treating it as %s seconds.",
            expires_in,
            MIN_EXPIRES_IN,
        )
    scope = data.get("scope")
    return TokenResponse(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_in=min(max(int(expires_in), MIN_EXPIRES_IN), MAX_EXPIRES_IN),
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
    )


def _token_error(response: requests.Response) -> AtlassianError:
    status = response.status_code
    error, description = _oauth_error(response)
    summary = f"Atlassian's token endpoint answered {status}" + (
        f" {error}: {description}" if error else ""
    )
    if _transient(status):
        return TransientError(
            summary, status=status, error=error, retry_after=_retry_after(response)
        )
    if error in ("invalid_grant", "unauthorized_client"):
        return InvalidGrant(summary, status=status, error=error)
    if status == 401 or error in ("access_denied", "invalid_client"):
        return ClientConfigurationError(summary, status=status, error=error)
    if error == "invalid_request" and "authorization_code" in description:
        return InvalidCode(summary, status=status, error=error)
    return UnexpectedResponse(summary, status=status, error=error)


@sensitive_variables("access_token")
def _api_get(
    path: str, access_token: str, *, expect: type[dict[str, Any]] | type[list[Any]]
) -> Any:
    response = _send(
        "GET",
        f"{conf.API_BASE_URL}{path}",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        what=path,
    )
    status = response.status_code
    if _transient(status):
        raise TransientError(
            f"{path} answered {status}.", status=status, retry_after=_retry_after(response)
        )
    if status != 200:
        raise UnexpectedResponse(f"{path} answered {status}.", status=status)
    return _json(response, what=path, expect=expect)


# Every variable of this frame and of the requests/urllib3 frames below it (which hold the
# JSON body with the client secret and the code or refresh token) is hidden from error reports.
@sensitive_variables()
def _send(method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
    try:
        # A redirect would re-send the body, secrets included, to wherever Location points
        # (even http://): never follow one; a 3xx is an unexpected answer.
        return requests.request(
            method, url, timeout=conf.HTTP_TIMEOUT, allow_redirects=False, **kwargs
        )
    except requests.Timeout:
        failure = f"Atlassian did not answer {what} in time."
    except requests.RequestException as error:
        # The exception text can echo the URL; the URL carries no secret (bodies do), but the
        # class name is all a reader needs.
        failure = f"Could not reach Atlassian for {what} ({type(error).__name__})."
    # Raised outside the handler, so requests' exception (whose traceback holds the frames
    # with the request body) is neither the cause nor the context of ours.
    raise TransientError(failure)


def _json(
    response: requests.Response, *, what: str, expect: type[dict[str, Any]] | type[list[Any]]
) -> Any:
    try:
        data = response.json()
    except ValueError as error:
        raise TransientError(
            f"{what} answered {response.status_code} with a body that is not JSON.",
            status=response.status_code,
        ) from error
    if not isinstance(data, expect):
        shape = "an object" if expect is dict else "a list"
        raise TransientError(f"{what} answered JSON that is not {shape}.")
    return data


def _oauth_error(response: requests.Response) -> tuple[str, str]:
    try:
        data = response.json()
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error = data.get("error")
    description = data.get("error_description")
    return (
        str(error)[:MAX_ERROR_TEXT] if isinstance(error, str) else "",
        str(description)[:MAX_ERROR_TEXT] if isinstance(description, str) else "",
    )


def _transient(status: int) -> bool:
    """Rate limited (429) or Atlassian's side failing (5xx): worth retrying later."""
    return status == 429 or status >= 500


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # An HTTP-date is allowed by RFC 9110; Atlassian documents seconds.
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
