"""All HTTP to Atlassian: consent URL, code exchange, refresh, accessible-resources, /me, and
the personal data reporting API.

Every failure becomes one of the exceptions below, classified the way docs/atlassian.md's error
table says, so callers decide on the class and never on status codes. Messages carry Atlassian's
``error`` / ``error_description`` (which hold no secrets) and never a token, code or secret.

requests-oauthlib's ``OAuth2Session`` (oauthlib's ``WebApplicationClient`` under it) builds the
consent URL and the token requests and parses the token answers; compliance hooks adapt
Atlassian's side (JSON bodies, its error table, bounded numbers) before oauthlib sees them. The
app's own lease (refresh.py) stays the only refresh path: no ``auto_refresh_url`` anywhere.

Every request goes out through one ``requests.Session`` per process (``http_session()``), built
by the replaceable ``session_factory`` (``create_session`` by default).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import URLValidator, validate_email
from django.views.decorators.debug import sensitive_variables

# oauthlib ships no type hints (setup.cfg lets requests_oauthlib off the same way).
from oauthlib.oauth2 import (
    InsecureTransportError,
    OAuth2Error,
    is_secure_transport,
)
from requests_oauthlib import OAuth2Session

from . import __version__
from .conf import SETTINGS_NAME, conf

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
USER_AGENT = f"django-atlassian-oauth/{__version__} (+requests/{requests.__version__})"
INSECURE_TRANSPORT = (
    "oauthlib refuses the http:// URL {url!r}: use https://, or (a local stand-in of Atlassian "
    "only, never in production) set the environment variable OAUTHLIB_INSECURE_TRANSPORT=1."
)


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


# ---- the process's HTTP session ------------------------------------------------------------


def create_session() -> requests.Session:
    """The default ``session_factory``: a session naming the app, that keeps no cookies."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # One session serves every user's calls: a cookie Atlassian sets for one must never ride
    # along on the next one's (and no call needs a cookie).
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


#: Builds the one ``requests.Session`` this process sends every Atlassian call through (code
#: exchange, refresh, accessible-resources, /me). Replace it to add a proxy, a CA bundle,
#: retries or instrumentation, then call ``reset_session()``; keep the ``User-Agent``::
#:
#:     from atlassian_oauth import client
#:
#:     def my_session() -> requests.Session:
#:         session = client.create_session()
#:         session.proxies = {"https": "http://proxy.internal:3128"}
#:         return session
#:
#:     client.session_factory = my_session
#:     client.reset_session()
#:
#: The session is shared by threads (Celery thread pools, threaded WSGI servers): whatever the
#: factory mounts must be thread-safe, as requests' own HTTPAdapter is.
session_factory: Callable[[], requests.Session] = create_session

_session: requests.Session | None = None
_session_lock = threading.Lock()


def http_session() -> requests.Session:
    """The process's session, built by ``session_factory`` on first use."""
    global _session
    session = _session
    if session is None:
        with _session_lock:
            if _session is None:
                _session = session_factory()
            session = _session
    return session


def reset_session() -> None:
    """Close the process's session; the next call builds a new one with ``session_factory``."""
    global _session
    with _session_lock:
        session, _session = _session, None
    if session is not None:
        session.close()


def _forget_session_after_fork() -> None:
    # A forked child (Celery prefork, gunicorn --preload) must not share the parent's sockets:
    # it builds its own session. Not closed: closing would shut sockets the parent still uses.
    global _session, _session_lock
    _session, _session_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_session_after_fork)


# ---- the consent URL and the token endpoint --------------------------------------------------


def authorize_url(app: OAuthApp, redirect_uri: str, state: str) -> str:
    """The consent page URL, with every parameter Atlassian requires."""
    url = f"{conf.AUTH_BASE_URL}/authorize"
    with OAuth2Session(app.client_id, redirect_uri=redirect_uri, scope=list(app.scopes)) as oauth:
        try:
            consent_url, _state = oauth.authorization_url(
                url, state=state, audience=AUDIENCE, prompt="consent"
            )
        except InsecureTransportError:
            consent_url = ""
    if not consent_url:
        raise ImproperlyConfigured(
            f"{SETTINGS_NAME}['AUTH_BASE_URL']: " + INSECURE_TRANSPORT.format(url=url)
        )
    return str(consent_url)


# Bare: every variable of this frame and of every frame below (requests-oauthlib's, oauthlib's,
# requests', which hold the code, the client secret and the tokens) is hidden from error reports.
@sensitive_variables()
def exchange_code(app: OAuthApp, code: str, redirect_uri: str) -> TokenResponse:
    """Trade an authorization code for tokens."""
    failure: AtlassianError
    with _TokenSession(app, redirect_uri=redirect_uri) as oauth:
        try:
            token = oauth.fetch_token(
                oauth.token_url,
                code=code,
                include_client_id=True,  # Atlassian wants the credentials in the body
                client_secret=app.client_secret,
            )
        except Exception as error:
            failure = _failure(error, what="authorization_code")
        else:
            return _token_response(token, issued_refresh_token=oauth.issued_refresh_token)
    # Raised outside the handler (and without the library's traceback), so neither the
    # library's exception nor its frames, which hold the request body, come along.
    raise failure


@sensitive_variables()
def refresh_tokens(app: OAuthApp, refresh_token: str) -> TokenResponse:
    """Trade a refresh token for a new access token (and, usually, a rotated refresh token)."""
    failure: AtlassianError
    with _TokenSession(app) as oauth:
        try:
            token = oauth.refresh_token(
                oauth.token_url,
                refresh_token=refresh_token,
                client_id=app.client_id,
                client_secret=app.client_secret,
            )
        except Exception as error:
            failure = _failure(error, what="refresh_token")
        else:
            return _token_response(token, issued_refresh_token=oauth.issued_refresh_token)
    raise failure


class _TokenSession(OAuth2Session):  # type: ignore[misc]  # requests-oauthlib is untyped
    """One token call: requests-oauthlib builds it and parses the answer, the hooks below adapt
    both to Atlassian, and the process's session carries it."""

    def __init__(self, app: OAuthApp, redirect_uri: str | None = None) -> None:
        # No scope: oauthlib would raise a Warning (holding the token) when the granted scopes
        # differ from the requested ones, which is Atlassian's right; the app reads them.
        super().__init__(app.client_id, redirect_uri=redirect_uri)
        self.token_url = f"{conf.AUTH_BASE_URL}/oauth/token"
        #: Whether the answer carried a refresh token (requests-oauthlib's ``refresh_token()``
        #: puts the old one into its result when it did not, and the app must know).
        self.issued_refresh_token = False
        self.register_compliance_hook("access_token_request", self._json_request)
        self.register_compliance_hook("refresh_token_request", self._json_request)
        self.register_compliance_hook("access_token_response", self._adapt_answer)
        self.register_compliance_hook("refresh_token_response", self._adapt_answer)

    @staticmethod
    def _json_request(
        url: str, headers: dict[str, str], body: Any
    ) -> tuple[str, dict[str, str], Any]:
        # Atlassian documents JSON bodies (requests-oauthlib builds form bodies): declare JSON
        # here; request() sends the fields as JSON when a request says so.
        return url, {**headers, "Content-Type": "application/json"}, body

    @sensitive_variables()
    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: dict[str, str] | None = None,
        withhold_token: bool = False,
        **ignored: Any,
    ) -> requests.Response:
        # requests-oauthlib passes auth/verify/proxies/cert as None (credentials go in the
        # body) and a timeout of None; the transport's rules are the app's, set here alone.
        if not is_secure_transport(url):
            raise InsecureTransportError()
        headers = dict(headers or {})
        as_json = headers.get("Content-Type", "").startswith("application/json")
        body = {"json": data} if as_json and isinstance(data, dict) else {"data": data}
        # A redirect would re-send the body, secrets included, to wherever Location points
        # (even http://): never follow one; a 3xx is an unexpected answer.
        return http_session().request(
            method,
            url,
            headers=headers,
            timeout=conf.HTTP_TIMEOUT,
            allow_redirects=False,
            **body,
        )

    @sensitive_variables()
    def _adapt_answer(self, response: requests.Response) -> requests.Response:
        """Atlassian's answer as oauthlib expects it, or the app's error for it.

        Runs before oauthlib parses: oauthlib would read a form-encoded body, accept a string or
        a fraction for expires_in (and drop one under a second), and raise its own exceptions.
        """
        if response.status_code != 200:
            raise _token_error(response)
        data = _json(response, what="the token endpoint", expect=dict)
        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise TransientError(
                "The token endpoint answered without an access_token.", status=response.status_code
            )
        expires_in = data.get("expires_in")
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in)
            or expires_in <= 0
        ):
            raise TransientError(
                "The token endpoint answered without a valid expires_in.",
                status=response.status_code,
            )
        if expires_in < MIN_EXPIRES_IN:
            # A lifetime under the refresh margins would make every call refresh (and 0.5 would
            # truncate to 0): use the token for a minute and say so.
            logger.warning(
                "The token endpoint answered expires_in=%s; treating it as %s seconds.",
                expires_in,
                MIN_EXPIRES_IN,
            )
        token_type = data.get("token_type")
        answer: dict[str, Any] = {
            "access_token": access_token,
            "token_type": token_type if isinstance(token_type, str) and token_type else "Bearer",
            "expires_in": min(max(int(expires_in), MIN_EXPIRES_IN), MAX_EXPIRES_IN),
        }
        scope = data.get("scope")
        if isinstance(scope, str) and scope.split():
            answer["scope"] = " ".join(scope.split())
        refresh_token = data.get("refresh_token")
        self.issued_refresh_token = isinstance(refresh_token, str) and bool(refresh_token)
        if self.issued_refresh_token:
            answer["refresh_token"] = refresh_token
        # The compliance-fix way (requests-oauthlib's own fixes do the same): oauthlib parses
        # this body, with only the fields the app takes, in the types it expects.
        response._content = json.dumps(answer).encode()
        response.encoding = "utf-8"
        return response


@sensitive_variables()
def _token_response(token: dict[str, Any], *, issued_refresh_token: bool) -> TokenResponse:
    """The app's view of the token oauthlib parsed (from the body ``_adapt_answer`` wrote)."""
    scope = token.get("scope")
    return TokenResponse(
        access_token=str(token["access_token"]),
        refresh_token=str(token["refresh_token"]) if issued_refresh_token else None,
        expires_in=int(token["expires_in"]),
        scopes=tuple(str(s) for s in scope if s) if isinstance(scope, list) else (),
    )


def _failure(error: Exception, *, what: str) -> AtlassianError:
    """The app's error for what a token call raised; never the library's exception itself."""
    if isinstance(error, AtlassianError):
        # Raised by a hook inside requests-oauthlib: the traceback through its frames goes.
        return error.with_traceback(None)
    if isinstance(error, requests.Timeout):
        return TransientError(f"Atlassian did not answer {what} in time.")
    if isinstance(error, requests.RequestException):
        # The exception text can echo the URL; the class name is all a reader needs.
        return TransientError(f"Could not reach Atlassian for {what} ({type(error).__name__}).")
    if isinstance(error, InsecureTransportError):
        return ClientConfigurationError(
            f"{SETTINGS_NAME}['AUTH_BASE_URL']: "
            + INSECURE_TRANSPORT.format(url=f"{conf.AUTH_BASE_URL}/oauth/token")
        )
    if isinstance(error, OAuth2Error | ValueError | Warning):
        # The answer passed _adapt_answer, so oauthlib should accept it; if it does not, the
        # message names the class only (oauthlib's texts and attributes can quote the body).
        return UnexpectedResponse(
            f"oauthlib could not read the token endpoint's answer ({type(error).__name__})."
        )
    raise error


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
# Authorization header with the access token) is hidden from error reports. The API reads stay
# on the process's session directly: a Bearer GET is all they are, nothing for oauthlib to build.
@sensitive_variables()
def _send(method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
    try:
        # A redirect would re-send the body, secrets included, to wherever Location points
        # (even http://): never follow one; a 3xx is an unexpected answer.
        return http_session().request(
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


_NOT_JSON = object()


def _json(
    response: requests.Response, *, what: str, expect: type[dict[str, Any]] | type[list[Any]]
) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = _NOT_JSON
    if data is _NOT_JSON:
        # Raised outside the handler: the decoding error keeps the whole body (``.doc``).
        raise TransientError(
            f"{what} answered {response.status_code} with a body that is not JSON.",
            status=response.status_code,
        )
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


# ---- personal data reporting -------------------------------------------------------------------

#: Atlassian's personal data reporting API takes at most this many accounts per request.
REPORT_BATCH_SIZE = 90
REPORT_ACCOUNTS_PATH = "/app/report-accounts/"
#: Bounds on a ``Cycle-Period`` header (seconds), so a garbled one neither reports every minute
#: nor never again.
MIN_CYCLE_PERIOD = 3600
MAX_CYCLE_PERIOD = 90 * 86400
REPORT_STATUSES = frozenset({"closed", "updated"})


@dataclass(frozen=True)
class ReportedAccount:
    """An account id the app holds personal data of, and when it last read that data."""

    account_id: str
    updated_at: datetime


@dataclass(frozen=True)
class ReportAnswer:
    #: ``closed`` (erase the account's data) or ``updated`` (read it again) per account id; only
    #: accounts of the request: an answer about any other is ignored.
    statuses: dict[str, str]
    #: Seconds until the next report, when Atlassian sent a ``Cycle-Period`` header.
    cycle_period: int | None


class AccessTokenRefused(AtlassianError):
    """The API refused the access token (401): it died early, or its account was closed."""


def atlassian_time(moment: datetime) -> str:
    """``2026-11-30T10:00:00.000Z``: UTC with milliseconds, as Atlassian writes ``updatedAt``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@sensitive_variables("access_token")
def report_accounts(access_token: str, accounts: Sequence[ReportedAccount]) -> ReportAnswer:
    """Report up to ``REPORT_BATCH_SIZE`` accounts; what Atlassian says of them (204: nothing).

    Raises ``AccessTokenRefused`` on a 401 (use another grant's token), ``TransientError`` on
    429 and 5xx (with ``retry_after``), ``UnexpectedResponse`` on any other answer.
    """
    if not 1 <= len(accounts) <= REPORT_BATCH_SIZE:
        raise ValueError(f"A report holds 1 to {REPORT_BATCH_SIZE} accounts, not {len(accounts)}.")
    what = REPORT_ACCOUNTS_PATH
    response = _send(
        "POST",
        f"{conf.API_BASE_URL}{REPORT_ACCOUNTS_PATH}",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        json={
            "accounts": [
                {"accountId": a.account_id, "updatedAt": atlassian_time(a.updated_at)}
                for a in accounts
            ]
        },
        what=what,
    )
    status = response.status_code
    if _transient(status):
        raise TransientError(
            f"{what} answered {status}.", status=status, retry_after=_retry_after(response)
        )
    if status == 401:
        raise AccessTokenRefused(f"{what} refused the access token (401).", status=status)
    cycle_period = _cycle_period(response)
    if status == 204:
        return ReportAnswer({}, cycle_period)
    if status != 200:
        raise UnexpectedResponse(f"{what} answered {status}.", status=status)
    items = _json(response, what=what, expect=dict).get("accounts")
    if not isinstance(items, list):
        raise UnexpectedResponse(f"{what} answered 200 without a list of accounts.", status=status)
    asked = {account.account_id for account in accounts}
    statuses: dict[str, str] = {}
    for item in items:
        account_id = item.get("accountId") if isinstance(item, dict) else None
        state = item.get("status") if isinstance(item, dict) else None
        # Only what was asked: an answer must never erase an account this request did not name.
        if isinstance(account_id, str) and account_id in asked and state in REPORT_STATUSES:
            statuses[account_id] = str(state)
    return ReportAnswer(statuses, cycle_period)


def _cycle_period(response: requests.Response) -> int | None:
    value = response.headers.get("Cycle-Period", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return int(min(max(seconds, MIN_CYCLE_PERIOD), MAX_CYCLE_PERIOD))
