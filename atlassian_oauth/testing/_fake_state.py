"""The fake Atlassian's state and protocol rules, without HTTP (``fake_atlassian.py`` serves it).

Every public method of ``FakeState`` takes its one ``RLock``, so the HTTP threads and the test
thread may call it at once. Behaviour follows ``docs/atlassian.md``; where Atlassian documents
nothing, the fake does what a plain RFC 6749 server does, and says so where it matters.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._fake_pages import AccountChoice, consent_body, error_body, page

logger = logging.getLogger("atlassian_oauth.testing.fake_atlassian")

DEFAULT_CLIENT_ID: Final = "fake-client-id"
DEFAULT_CLIENT_SECRET: Final = "fake-client-secret"
#: The name the consent page shows for the initial app (Atlassian shows the developer console's).
DEFAULT_APP_NAME: Final = "django-atlassian-oauth demo"
DEFAULT_PORT: Final = 8765
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 3600
AUDIENCE: Final = "api.atlassian.com"

CODE_LIFETIME: Final = 10 * 60.0
REFRESH_REUSE_LEEWAY: Final = 10 * 60.0
REFRESH_INACTIVITY: Final = 90 * 86400.0
ABSOLUTE_LIFETIME: Final = 365 * 86400.0
# Not Atlassian's: only bounds memory when a browser never submits the consent form.
PENDING_CONSENT_LIFETIME: Final = 60 * 60.0

ADA_ACCOUNT_ID: Final = "5b10a2844c20165700ede21g"
GRACE_ACCOUNT_ID: Final = "5b10ac8d82e05b22cc7d4ef5"
ACME_CLOUD_ID: Final = "1324a887-45db-1bf4-1e99-ef0ff456d421"
GLOBEX_CLOUD_ID: Final = "a436116f-02ce-4520-8fbb-7301462a1674"
AVATAR_URL: Final = "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/rocket.png"

KINDS: Final = (
    "authorize",
    "consent_accept",
    "consent_decline",
    "code_exchange",
    "refresh",
    "token_other",
    "accessible_resources",
    "me",
    "jira",
    "report_accounts",
    "not_found",
)
FAULT_KINDS: Final = frozenset((*KINDS, "token", "any"))
AUTO_CONSENT_CHOICES: Final = ("accept", "decline")
DEAD_GRANT_ERRORS: Final = ("invalid_grant", "unauthorized_client")
# Scopes about the grant itself rather than a product: never listed on a resource.
NON_PRODUCT_SCOPES: Final = frozenset({"offline_access", "read:me"})
REQUESTS_LOG_LIMIT: Final = 10_000
#: Atlassian's personal data reporting API takes at most this many accounts per request.
REPORT_BATCH_LIMIT: Final = 90

JsonDict = dict[str, Any]


def default_accounts() -> list[JsonDict]:
    """The two accounts every fresh fake has: Ada reaches "acme" twice (Jira and Confluence)."""
    return [
        {
            "account_id": ADA_ACCOUNT_ID,
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "resources": [
                _resource(ACME_CLOUD_ID, "acme", "jira"),
                _resource(ACME_CLOUD_ID, "acme", "confluence"),
            ],
        },
        {
            "account_id": GRACE_ACCOUNT_ID,
            "email": "grace@example.com",
            "name": "Grace Hopper",
            "resources": [_resource(GLOBEX_CLOUD_ID, "globex", "jira")],
        },
    ]


def _resource(cloud_id: str, name: str, product: str) -> dict[str, str]:
    return {
        "id": cloud_id,
        "name": name,
        "url": f"https://{name}.atlassian.net",
        "avatarUrl": AVATAR_URL,
        "product": product,
    }


class FakeClock:
    """Wall-clock time plus an adjustable offset; every expiry in the fake is measured on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def now(self) -> float:
        """Epoch seconds as the fake sees them."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the fake's time forward by ``seconds`` (negative goes back); returns ``now()``."""
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def set(self, epoch: float) -> float:
        """Make ``now()`` read ``epoch`` from this instant on; returns ``now()``."""
        with self._lock:
            self._offset = float(epoch) - time.time()
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps(payload).encode(),
        "application/json;charset=UTF-8",
        dict(headers or {}),
    )


def html_response(status: int, title: str, body_html: str, *, brand_note: str = "") -> Response:
    document = page(title, body_html, brand_note=brand_note)
    return Response(status, document.encode(), "text/html;charset=UTF-8")


def redirect_response(location: str) -> Response:
    return Response(302, b"", None, {"Location": location})


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` appended to whatever query it already has."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def new_token() -> str:
    """An opaque token whose length varies between calls, so no client can rely on it."""
    while True:
        token = secrets.token_urlsafe(32 + secrets.randbelow(33))
        # "eyJ" opens every JWT: a client must never be tempted to decode ours.
        if not token.startswith("eyJ"):
            return token


def split_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes in first-seen order without duplicates, from a space-separated string or a list."""
    items = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes]
    return tuple(dict.fromkeys(s for s in items if s))


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uris: list[str] | None
    scopes: frozenset[str] | None
    name: str | None = None

    def disallowed(self, scopes: Iterable[str]) -> list[str]:
        # offline_access is not configured in the developer console: every app may ask for it.
        if self.scopes is None:
            return []
        return [s for s in scopes if s != "offline_access" and s not in self.scopes]


@dataclass
class Account:
    account_id: str
    email: str
    name: str
    resources: list[dict[str, str]]
    picture: str
    nickname: str
    zoneinfo: str
    locale: str
    #: Closed (deleted) at Atlassian: its tokens stop working, the reporting API says "closed".
    closed: bool = False
    #: When its profile last changed (the fake's clock): reported as "updated" if older.
    profile_updated_at: float | None = None

    def as_dict(self) -> JsonDict:
        return {
            "account_id": self.account_id,
            "email": self.email,
            "name": self.name,
            "resources": [dict(r) for r in self.resources],
            "picture": self.picture,
            "nickname": self.nickname,
            "zoneinfo": self.zoneinfo,
            "locale": self.locale,
            "closed": self.closed,
            "profile_updated_at": self.profile_updated_at,
        }


@dataclass
class Grant:
    client_id: str
    account_id: str
    scopes: tuple[str, ...]
    created_at: float
    consented_at: float
    revoked: bool = False
    family_ids: list[str] = field(default_factory=list)


@dataclass
class Family:
    """The tokens descending from one consent: breach detection and expiry act on all of them."""

    client_id: str
    account_id: str
    scopes: tuple[str, ...]
    consented_at: float
    revoked: bool = False
    refresh_count: int = 0

    def expired(self, now: float) -> bool:
        return now >= self.consented_at + ABSOLUTE_LIFETIME


@dataclass
class Code:
    client_id: str
    account_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    issued_at: float
    used: bool = False


@dataclass
class AccessToken:
    family_id: str
    expires_at: float


@dataclass
class RefreshToken:
    family_id: str
    issued_at: float
    access_token: str
    rotated_at: float | None = None


@dataclass
class PendingConsent:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    created_at: float


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int | None
    headers: Mapping[str, str]
    body: str | JsonDict | None
    delay: float
    drop: bool
    # Seconds to wait after the request took effect (a refresh rotated) and before answering:
    # the window in which a client can die holding an answer it never stored.
    delay_after: float = 0.0

    def matches(self, kind: str) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "token":
            return kind in ("code_exchange", "refresh")
        return self.kind == kind

    def response(self) -> Response | None:
        """The fault's own answer, or None when it only delays (or drops) the normal one."""
        if self.status is None:
            return None
        if isinstance(self.body, str):
            response = Response(self.status, self.body.encode(), "text/html;charset=UTF-8")
        elif self.body is not None:
            response = json_response(self.status, self.body)
        else:
            response = json_response(
                self.status, {"error": "injected_fault", "error_description": "Injected fault."}
            )
        response.headers.update(self.headers)
        return response


@dataclass
class Settings:
    auto_consent: str | None = None
    consent_account_id: str | None = None
    access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME
    invalid_refresh_error: str = "invalid_grant"
    refresh_omits_refresh_token: bool = False
    #: Seconds sent as the reporting API's ``Cycle-Period`` header; None sends none.
    report_cycle_period: int | None = None

    def as_dict(self) -> JsonDict:
        return {
            "auto_consent": self.auto_consent,
            "consent_account_id": self.consent_account_id,
            "access_token_lifetime": self.access_token_lifetime,
            "invalid_refresh_error": self.invalid_refresh_error,
            "refresh_omits_refresh_token": self.refresh_omits_refresh_token,
            "report_cycle_period": self.report_cycle_period,
        }


@dataclass
class _Pending:
    fault: Fault
    remaining: int


UNAUTHORIZED_API: Final[JsonDict] = {"code": 401, "message": "Unauthorized"}
BAD_CLIENT: Final[JsonDict] = {"error": "access_denied", "error_description": "Unauthorized"}
BAD_CODE: Final[JsonDict] = {
    "error": "invalid_request",
    "error_description": "authorization_code is invalid",
}
DEAD_GRANT_BODIES: Final[dict[str, JsonDict]] = {
    "invalid_grant": {
        "error": "invalid_grant",
        "error_description": "Unknown or invalid refresh token.",
    },
    "unauthorized_client": {
        "error": "unauthorized_client",
        "error_description": "refresh_token is invalid",
    },
}
# RFC 6749 section 5.1: token responses must not be cached.
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}

#: The issues every Jira site of the fake has, each assigned to whoever searches, most recently
#: updated first: (number, summary, type, status, status category, priority, hours since update).
ISSUE_TEMPLATES: Final = (
    (
        23,
        "Checkout fails when the basket holds more than 50 items",
        "Bug",
        "In Progress",
        "indeterminate",
        "High",
        1,
    ),
    (21, "Invoice PDF shows last year's VAT number", "Bug", "To Do", "new", "Highest", 3),
    (
        19,
        "Refresh tokens rotate on every use: store the new one first",
        "Task",
        "In Review",
        "indeterminate",
        "Medium",
        20,
    ),
    (17, "Single sign-on for the partner portal", "Story", "To Do", "new", "Medium", 26),
    (12, "Export the monthly usage report as CSV", "Story", "Done", "done", "Low", 75),
    (9, "Write the onboarding guide for new support staff", "Task", "Done", "done", "Low", 140),
)
STATUS_CATEGORY_NAMES: Final = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}


#: The saved state's layout; a file of another format is set aside and the fake starts fresh.
STATE_FORMAT: Final = 1

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _saves(
    method: Callable[Concatenate[FakeState, _P], _R],
) -> Callable[Concatenate[FakeState, _P], _R]:
    """Save the state (when it has a file) once the outermost changing call returns."""

    @functools.wraps(method)
    def wrapper(self: FakeState, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            self._changing += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                self._changing -= 1
                if self._changing == 0:
                    self.save()

    return cast("Callable[Concatenate[FakeState, _P], _R]", wrapper)


class FakeState:
    """Apps, accounts, grants, tokens, faults and counters of one fake Atlassian.

    With a ``state_path`` the apps, accounts, grants, tokens, settings and clock survive a
    restart: they are loaded from that JSON file and written back after every change (faults,
    counts and the request log are per run and never saved). Without one, all is in memory.
    """

    apps: dict[str, App]
    accounts: dict[str, Account]
    grants: dict[tuple[str, str], Grant]
    families: dict[str, Family]
    codes: dict[str, Code]
    access_tokens: dict[str, AccessToken]
    refresh_tokens: dict[str, RefreshToken]
    pending_consents: dict[str, PendingConsent]

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: Iterable[str] | None = None,
        access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME,
        auto_consent: str | None = None,
        app_name: str | None = DEFAULT_APP_NAME,
        tenant_names: Mapping[str, str] | None = None,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = FakeClock()
        self._changing = 0
        self.state_path: Path | None = None
        self._initial_app = (
            client_id,
            client_secret,
            None if redirect_uris is None else list(redirect_uris),
            app_name,
        )
        self._initial_settings = {
            "access_token_lifetime": access_token_lifetime,
            "auto_consent": auto_consent,
        }
        #: Host name (of a redirect_uri) -> the tenant's name, for the consent page.
        self.tenant_names = {k.lower(): v for k, v in (tenant_names or {}).items()}
        self.reset()
        if state_path is not None:
            self.state_path = Path(state_path)
            self._load()

    # ---- persistence ------------------------------------------------------------------------

    def save(self) -> None:
        """Write the state to ``state_path`` atomically (mode 0600); a no-op without one."""
        path = self.state_path
        if path is None:
            return
        # Under the lock from snapshot to rename, so an older snapshot never replaces a newer.
        with self.lock:
            data = json.dumps(self._snapshot(), indent=1, sort_keys=True).encode()
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            # It holds the fake's tokens: only the owner may read it, from its first byte on.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                # A restart reads the old file or the new one, never half of one.
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

    def _snapshot(self) -> JsonDict:
        now = self.clock.now()
        return {
            "format": STATE_FORMAT,
            "clock_offset": self.clock.offset,
            "settings": self.settings.as_dict(),
            "apps": [
                {**asdict(app), "scopes": None if app.scopes is None else sorted(app.scopes)}
                for app in self.apps.values()
            ],
            "accounts": [account.as_dict() for account in self.accounts.values()],
            "grants": [asdict(grant) for grant in self.grants.values()],
            "families": {key: asdict(value) for key, value in self.families.items()},
            "codes": {key: asdict(value) for key, value in self.codes.items()},
            # An expired access token is refused like an unknown one: no need to keep it.
            "access_tokens": {
                key: asdict(value)
                for key, value in self.access_tokens.items()
                if value.expires_at > now
            },
            "refresh_tokens": {key: asdict(value) for key, value in self.refresh_tokens.items()},
            "pending_consents": {
                key: asdict(value) for key, value in self.pending_consents.items()
            },
        }

    def _load(self) -> None:
        path = self.state_path
        if path is None or not path.exists():
            self.save()
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
                raise ValueError(f"not a format {STATE_FORMAT} state file")
            with self.lock:
                self._restore(data)
        except (OSError, ValueError, TypeError, KeyError) as error:
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            logger.warning(
                "Fake Atlassian: could not read its saved state (%s); moved it to %s and "
                "started fresh, so connections made before must connect again.",
                error,
                aside,
            )
            self.reset()

    @_saves
    def _restore(self, data: JsonDict) -> None:
        def scopes(item: JsonDict) -> JsonDict:
            return {**item, "scopes": tuple(item["scopes"])}

        apps = {}
        for item in data["apps"]:
            listed = item["scopes"]
            apps[item["client_id"]] = App(
                **{**item, "scopes": None if listed is None else frozenset(listed)}
            )
        self.apps = apps
        self.accounts = {a["account_id"]: Account(**a) for a in data["accounts"]}
        self.grants = {
            (g["client_id"], g["account_id"]): Grant(**scopes(g)) for g in data["grants"]
        }
        self.families = {k: Family(**scopes(v)) for k, v in data["families"].items()}
        self.codes = {k: Code(**scopes(v)) for k, v in data["codes"].items()}
        self.access_tokens = {k: AccessToken(**v) for k, v in data["access_tokens"].items()}
        self.refresh_tokens = {k: RefreshToken(**v) for k, v in data["refresh_tokens"].items()}
        self.pending_consents = {
            k: PendingConsent(**scopes(v)) for k, v in data["pending_consents"].items()
        }
        self.settings = Settings(**data["settings"])
        self.clock.advance(float(data["clock_offset"]))
        # What this run was started with wins over what was saved (a new token lifetime, a new
        # secret); the scopes an app was registered with stay, or its grants would be revoked.
        self.update_settings(self._initial_settings)
        client_id, client_secret, redirect_uris, app_name = self._initial_app
        app = self.apps.get(client_id)
        if app is None:
            self.register_app(client_id, client_secret, redirect_uris, name=app_name)
        else:
            app.client_secret, app.redirect_uris, app.name = client_secret, redirect_uris, app_name

    # ---- configuration ------------------------------------------------------------------------

    @_saves
    def reset(self) -> None:
        """Back to the initial app, accounts and settings; no grants, codes, faults or counts."""
        with self.lock:
            self.clock.reset()
            self.apps = {}
            self.accounts = {}
            self.grants = {}
            self.families = {}
            self.codes = {}
            self.access_tokens = {}
            self.refresh_tokens = {}
            self.pending_consents = {}
            self.faults: deque[_Pending] = deque()
            self._counts = dict.fromkeys(KINDS, 0)
            self._log: deque[JsonDict] = deque(maxlen=REQUESTS_LOG_LIMIT)
            self.settings = Settings()
            self.update_settings(self._initial_settings)
            client_id, client_secret, redirect_uris, app_name = self._initial_app
            self.register_app(client_id, client_secret, redirect_uris, name=app_name)
            for account in default_accounts():
                self.add_account(**account)

    @_saves
    def update_settings(self, values: Mapping[str, Any]) -> JsonDict:
        """Validate and apply any of the ``Settings`` fields; returns all settings."""
        with self.lock:
            unknown = set(values) - set(Settings().as_dict())
            if unknown:
                raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
            new = Settings(**{**self.settings.as_dict(), **values})
            if new.auto_consent not in (None, *AUTO_CONSENT_CHOICES):
                raise ValueError("auto_consent must be None, 'accept' or 'decline'")
            if new.consent_account_id is not None and new.consent_account_id not in self.accounts:
                raise ValueError(f"consent_account_id {new.consent_account_id!r} is no account")
            lifetime = new.access_token_lifetime
            if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
                raise ValueError("access_token_lifetime must be a positive int (seconds)")
            if new.invalid_refresh_error not in DEAD_GRANT_ERRORS:
                raise ValueError(f"invalid_refresh_error must be one of {DEAD_GRANT_ERRORS}")
            if not isinstance(new.refresh_omits_refresh_token, bool):
                raise ValueError("refresh_omits_refresh_token must be a bool")
            period = new.report_cycle_period
            if period is not None and (
                isinstance(period, bool) or not isinstance(period, int) or period <= 0
            ):
                raise ValueError("report_cycle_period must be None or a positive int (seconds)")
            self.settings = new
            return new.as_dict()

    @_saves
    def register_app(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        """Add or replace an app; a changed scope set revokes its grants, as Atlassian does.
        ``name`` is what the consent page calls it (the client id when None)."""
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        if isinstance(redirect_uris, str) or isinstance(scopes, str):
            raise ValueError("redirect_uris and scopes are lists, not strings")
        app = App(
            client_id,
            client_secret,
            None if redirect_uris is None else list(redirect_uris),
            None if scopes is None else frozenset(scopes),
            None if name is None else str(name),
        )
        with self.lock:
            old = self.apps.get(client_id)
            if old is not None and old.scopes != app.scopes:
                # docs/atlassian.md: changing an app's scopes forces every user to consent again.
                for grant in list(self.grants.values()):
                    if grant.client_id == client_id:
                        self._revoke(grant)
            self.apps[client_id] = app

    @_saves
    def add_account(
        self,
        account_id: str,
        email: str,
        name: str,
        resources: Iterable[Mapping[str, str]] = (),
        *,
        picture: str | None = None,
        nickname: str | None = None,
        zoneinfo: str = "Europe/London",
        locale: str = "en-GB",
    ) -> JsonDict:
        """Add or replace an account; a resource's ``product`` ("jira" if absent) decides whether
        ``/ex/jira/{id}`` reaches it; it is not shown in accessible-resources."""
        if not account_id:
            raise ValueError("account_id must not be empty")
        checked = []
        for resource in resources:
            missing = {"id", "name", "url"} - set(resource)
            if missing:
                raise ValueError(f"resource lacks {', '.join(sorted(missing))}")
            checked.append({"avatarUrl": AVATAR_URL, **{k: str(v) for k, v in resource.items()}})
        account = Account(
            account_id=account_id,
            email=email,
            name=name,
            resources=checked,
            picture=picture or f"https://avatar-management.example/{account_id}/128",
            nickname=nickname or name.split(" ")[0],
            zoneinfo=zoneinfo,
            locale=locale,
        )
        with self.lock:
            self.accounts[account_id] = account
            return account.as_dict()

    def inject(
        self,
        kind: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: str | Mapping[str, Any] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int = 1,
        delay_after: float = 0.0,
    ) -> None:
        """Queue a fault for the next ``times`` requests of ``kind`` (FIFO among faults)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise ValueError("status must be an HTTP status code")
        if body is not None and not isinstance(body, str | Mapping):
            raise ValueError("body must be a str, a dict or None")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive int")
        for name, seconds in (("delay", delay), ("delay_after", delay_after)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")
        fault = Fault(
            kind=kind,
            status=status,
            headers={str(k): str(v) for k, v in (headers or {}).items()},
            body=dict(body) if isinstance(body, Mapping) else body,
            delay=float(delay),
            drop=bool(drop),
            delay_after=float(delay_after),
        )
        with self.lock:
            self.faults.append(_Pending(fault, times))

    # ---- bookkeeping --------------------------------------------------------------------------

    def begin_request(
        self, kind: str, method: str, path: str, extra: Mapping[str, str | int | None]
    ) -> tuple[JsonDict, Fault | None]:
        """Count a request and take the first queued fault for its kind, in one step."""
        entry: JsonDict = {"kind": kind, "method": method, "path": path, "status": None}
        entry.update({k: v for k, v in extra.items() if v is not None})
        with self.lock:
            self._counts[kind] += 1
            self._log.append(entry)
            for pending in self.faults:
                if pending.fault.matches(kind):
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self.faults.remove(pending)
                    return entry, pending.fault
        return entry, None

    def finish_request(self, entry: JsonDict, status: int) -> None:
        with self.lock:
            entry["status"] = status

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)

    def requests_log(self) -> list[JsonDict]:
        with self.lock:
            return [dict(entry) for entry in self._log]

    # ---- /authorize -------------------------------------------------------------------------

    @_saves
    def authorize(self, query: Mapping[str, list[str]]) -> Response:
        """Validate a consent request; show the consent page or act on ``auto_consent``."""

        def param(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values and values[0] else None

        with self.lock:
            audience = param("audience")
            if audience != AUDIENCE:
                return _bad_authorize("audience", audience, f"must be {AUDIENCE}")
            client_id = param("client_id")
            app = self.apps.get(client_id or "")
            if app is None:
                return _bad_authorize("client_id", client_id, "is not a registered app")
            scopes = split_scopes(param("scope") or "")
            if not scopes:
                return _bad_authorize("scope", None, "")
            redirect_uri = param("redirect_uri")
            problem = _redirect_uri_problem(app, redirect_uri)
            if problem or redirect_uri is None:
                return _bad_authorize("redirect_uri", redirect_uri, problem)
            state = param("state")
            if state is None:
                return _bad_authorize("state", None, "")
            response_type = param("response_type")
            if response_type != "code":
                return _bad_authorize("response_type", response_type, "must be code")
            prompt = param("prompt")
            if prompt != "consent":
                return _bad_authorize("prompt", prompt, "must be consent")
            # From here on redirect_uri is verified, so errors may go back to the client.
            disallowed = app.disallowed(scopes)
            if disallowed:
                return redirect_response(
                    with_query(
                        redirect_uri,
                        {
                            "error": "invalid_scope",
                            "error_description": f"Scope not allowed: {' '.join(disallowed)}",
                            "state": state,
                        },
                    )
                )
            now = self.clock.now()
            pending = PendingConsent(app.client_id, redirect_uri, scopes, state, now)
            if self.settings.auto_consent is not None:
                return self._decide(pending, self.settings.auto_consent, None)
            self._purge(now)
            consent_id = secrets.token_urlsafe(24)
            self.pending_consents[consent_id] = pending
            return self._consent_page(consent_id, pending)

    @_saves
    def consent_decision(self, form: Mapping[str, str]) -> Response:
        """The consent form's answer: redirect with a code, or with ``error=access_denied``."""
        decision = form.get("decision")
        if decision not in AUTO_CONSENT_CHOICES:
            return _error_page(400, "The decision must be accept or decline.")
        with self.lock:
            pending = self.pending_consents.pop(form.get("consent_id", ""), None)
            if pending is None or self.clock.now() - pending.created_at > PENDING_CONSENT_LIFETIME:
                return _error_page(400, "This consent request is unknown, used or expired.")
            return self._decide(pending, decision, form.get("account_id") or None)

    def _decide(self, pending: PendingConsent, decision: str, account_id: str | None) -> Response:
        if decision == "decline":
            return redirect_response(
                with_query(
                    pending.redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "User did not authorize the request",
                        "state": pending.state,
                    },
                )
            )
        account = self._consenting_account(account_id)
        app = self.apps.get(pending.client_id)
        if account is None or app is None:
            return _error_page(400, "No such account (or the app was removed meanwhile).")
        now = self.clock.now()
        self._consent(app, account.account_id, pending.scopes, now)
        self._purge(now)
        code = new_token()
        self.codes[code] = Code(
            app.client_id, account.account_id, pending.redirect_uri, pending.scopes, now
        )
        return redirect_response(
            with_query(pending.redirect_uri, {"code": code, "state": pending.state})
        )

    def _consenting_account(self, account_id: str | None) -> Account | None:
        wanted = account_id or self.settings.consent_account_id
        if wanted is not None:
            account = self.accounts.get(wanted)
            return None if account is None or account.closed else account
        return next((a for a in self.accounts.values() if not a.closed), None)

    def _consent_page(self, consent_id: str, pending: PendingConsent) -> Response:
        chosen = self._consenting_account(None)
        app = self.apps.get(pending.client_id)
        body = consent_body(
            app_name=(app.name if app is not None else None) or pending.client_id,
            client_id=pending.client_id,
            tenant=self._tenant(pending.redirect_uri),
            redirect_uri=pending.redirect_uri,
            scopes=pending.scopes,
            accounts=[
                AccountChoice(a.account_id, a.name, a.email, a is chosen)
                for a in self.accounts.values()
                if not a.closed
            ],
            consent_id=consent_id,
        )
        response = html_response(200, "Fake Atlassian consent", body, brand_note="consent")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _tenant(self, redirect_uri: str) -> str:
        """Who asks, as far as the fake can tell: the callback's host, named when it is known."""
        parts = urlsplit(redirect_uri)
        name = self.tenant_names.get((parts.hostname or "").lower())
        return f"{name} ({parts.netloc})" if name else parts.netloc

    def _consent(self, app: App, account_id: str, scopes: tuple[str, ...], now: float) -> Grant:
        grant = self.grants.get((app.client_id, account_id))
        if grant is None:
            grant = Grant(app.client_id, account_id, scopes, created_at=now, consented_at=now)
            self.grants[(app.client_id, account_id)] = grant
        else:
            # Consenting after "Connected apps" removal revives the grant, not its old families.
            grant.scopes, grant.consented_at, grant.revoked = scopes, now, False
        return grant

    def _purge(self, now: float) -> None:
        for code, record in list(self.codes.items()):
            if now - record.issued_at > CODE_LIFETIME:
                del self.codes[code]
        for consent_id, pending in list(self.pending_consents.items()):
            if now - pending.created_at > PENDING_CONSENT_LIFETIME:
                del self.pending_consents[consent_id]

    # ---- /oauth/token -----------------------------------------------------------------------

    @_saves
    def token(self, params: Mapping[str, str], basic: tuple[str, str] | None = None) -> Response:
        """The token endpoint for ``authorization_code`` and ``refresh_token`` grants."""
        grant_type = params.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be authorization_code or refresh_token",
                },
                NO_STORE,
            )
        with self.lock:
            app = self._authenticate(params, basic)
            if app is None:
                return json_response(401, BAD_CLIENT, NO_STORE)
            if grant_type == "authorization_code":
                return self._exchange_code(app, params)
            return self._refresh(app, params)

    def _authenticate(self, params: Mapping[str, str], basic: tuple[str, str] | None) -> App | None:
        # Atlassian documents credentials in the body; HTTP Basic is RFC 6749's other way (and
        # what requests-oauthlib sends by default), so it is accepted when the body has none.
        client_id, secret = params.get("client_id"), params.get("client_secret")
        if secret is None and basic is not None:
            if client_id not in (None, basic[0]):
                return None
            client_id, secret = basic
        app = self.apps.get(client_id or "")
        if app is None or secret is None:
            return None
        if not secrets.compare_digest(app.client_secret.encode(), secret.encode()):
            return None
        return app

    def _exchange_code(self, app: App, params: Mapping[str, str]) -> Response:
        now = self.clock.now()
        record = self.codes.get(params.get("code") or "")
        grant = None if record is None else self.grants.get((record.client_id, record.account_id))
        if (
            record is None
            or grant is None
            or grant.revoked
            or record.used
            or record.client_id != app.client_id
            or now - record.issued_at > CODE_LIFETIME
            or params.get("redirect_uri") != record.redirect_uri
        ):
            # Atlassian answers every bad code alike; so does the fake, whatever the reason.
            return json_response(400, BAD_CODE, NO_STORE)
        record.used = True
        family_id = self._new_family(grant, record.scopes, record.issued_at)
        return json_response(200, self._issue(family_id, now), NO_STORE)

    def _refresh(self, app: App, params: Mapping[str, str]) -> Response:
        presented = params.get("refresh_token")
        if not presented:
            return json_response(
                400,
                {"error": "invalid_request", "error_description": "refresh_token is missing"},
                NO_STORE,
            )
        dead = json_response(403, DEAD_GRANT_BODIES[self.settings.invalid_refresh_error], NO_STORE)
        now = self.clock.now()
        record = self.refresh_tokens.get(presented)
        family = None if record is None else self.families[record.family_id]
        # A token of another client is simply unknown to this one.
        if record is None or family is None or family.client_id != app.client_id:
            return dead
        if family.revoked or family.expired(now) or now >= record.issued_at + REFRESH_INACTIVITY:
            return dead
        account = self.accounts.get(family.account_id)
        if account is None or account.closed:
            return dead
        if record.rotated_at is not None and now - record.rotated_at > REFRESH_REUSE_LEEWAY:
            # Breach detection: docs/atlassian.md says reuse outside the leeway revokes the whole
            # grant (every family of it), and the user must consent again.
            self._revoke(self.grants[(family.client_id, family.account_id)])
            return dead
        previous = self.access_tokens.get(record.access_token)
        if previous is not None:
            previous.expires_at = min(previous.expires_at, now + REFRESH_REUSE_LEEWAY)
        family.refresh_count += 1
        if self.settings.refresh_omits_refresh_token:
            # The client must keep using the presented token, so it is not rotated.
            payload = self._issue(record.family_id, now, with_refresh=False)
            record.access_token = payload["access_token"]
        else:
            if record.rotated_at is None:
                record.rotated_at = now
            payload = self._issue(record.family_id, now)
        return json_response(200, payload, NO_STORE)

    def _new_family(self, grant: Grant, scopes: tuple[str, ...], consented_at: float) -> str:
        family_id = secrets.token_urlsafe(12)
        self.families[family_id] = Family(
            grant.client_id, grant.account_id, scopes, consented_at=consented_at
        )
        grant.family_ids.append(family_id)
        return family_id

    def _issue(self, family_id: str, now: float, *, with_refresh: bool = True) -> JsonDict:
        family = self.families[family_id]
        lifetime = self.settings.access_token_lifetime
        access = new_token()
        self.access_tokens[access] = AccessToken(family_id, now + lifetime)
        payload: JsonDict = {
            "access_token": access,
            "expires_in": lifetime,
            "token_type": "Bearer",
            "scope": " ".join(family.scopes),
        }
        if with_refresh and "offline_access" in family.scopes:
            refresh = new_token()
            self.refresh_tokens[refresh] = RefreshToken(family_id, now, access)
            payload["refresh_token"] = refresh
        return payload

    # ---- API host ---------------------------------------------------------------------------

    def _bearer(self, token: str | None) -> tuple[Family, Account] | None:
        record = self.access_tokens.get(token or "")
        if record is None:
            return None
        now = self.clock.now()
        family = self.families[record.family_id]
        if family.revoked or family.expired(now) or now >= record.expires_at:
            return None
        account = self.accounts.get(family.account_id)
        # A closed account's tokens die with it.
        return None if account is None or account.closed else (family, account)

    def accessible_resources(self, token: str | None) -> Response:
        """The sites the token's grant reaches; one cloud id may be listed once per product."""
        with self.lock:
            found = self._bearer(token)
            if found is None:
                return _unauthorized()
            family, account = found
            # An entry per (site, product) the grant has scopes for, with that product's scopes
            # only, so one cloud id appears once for Jira and once for Confluence.
            granted = [s for s in family.scopes if s not in NON_PRODUCT_SCOPES]
            listed = []
            for r in account.resources:
                product = r.get("product", "jira")
                scopes = [s for s in granted if product in s]
                if scopes:
                    listed.append(
                        {
                            "id": r["id"],
                            "name": r["name"],
                            "url": r["url"],
                            "scopes": scopes,
                            "avatarUrl": r["avatarUrl"],
                        }
                    )
            return json_response(200, listed)

    def me(self, token: str | None) -> Response:
        """The User Identity API profile; needs ``read:me`` in the grant."""
        with self.lock:
            found = self._bearer(token)
            if found is None:
                return _unauthorized()
            family, account = found
            if "read:me" not in family.scopes:
                return json_response(403, {"code": 403, "message": "Forbidden: scope read:me"})
            return json_response(
                200,
                {
                    "account_type": "atlassian",
                    "account_id": account.account_id,
                    "email": account.email,
                    "email_verified": True,
                    "name": account.name,
                    "picture": account.picture,
                    "account_status": "active",
                    "nickname": account.nickname,
                    "zoneinfo": account.zoneinfo,
                    "locale": account.locale,
                    "extended_profile": {},
                },
            )

    def jira(
        self, token: str | None, cloud_id: str, rest_path: str, query: Mapping[str, list[str]]
    ) -> Response:
        """``/ex/jira/{cloud_id}{rest_path}``: ``myself``, ``search`` and ``search/jql``."""
        with self.lock:
            found = self._bearer(token)
            if found is None:
                return _unauthorized()
            _, account = found
            site = next(
                (
                    r
                    for r in account.resources
                    if r["id"] == cloud_id and r.get("product", "jira") == "jira"
                ),
                None,
            )
            if site is None:
                return json_response(404, {"code": 404, "message": "Not Found"})
            if rest_path == "/rest/api/3/myself":
                return json_response(200, _jira_user(site, account))
            if rest_path in ("/rest/api/3/search", "/rest/api/3/search/jql"):
                return _jira_search(
                    site, account, query, rest_path.endswith("/jql"), self.clock.now()
                )
            return json_response(
                404, {"errorMessages": ["No fake for this Jira endpoint."], "errors": {}}
            )

    def report_accounts(self, token: str | None, body: bytes) -> Response:
        """The personal data reporting API: which of the reported accounts were closed, or
        changed their profile after the ``updatedAt`` reported (204 when none did)."""
        with self.lock:
            if self._bearer(token) is None:
                return _unauthorized()
            reported, problem = _reported_accounts(body)
            if problem:
                return json_response(400, {"code": 400, "message": problem})
            statuses = []
            for account_id, updated_at in reported:
                account = self.accounts.get(account_id)
                if account is None:
                    continue  # the fake knows nothing to say of an account it never had
                if account.closed:
                    statuses.append({"accountId": account_id, "status": "closed"})
                elif account.profile_updated_at is not None and updated_at < (
                    account.profile_updated_at
                ):
                    statuses.append({"accountId": account_id, "status": "updated"})
            period = self.settings.report_cycle_period
            headers = {} if period is None else {"Cycle-Period": str(period)}
            if not statuses:
                return Response(204, b"", None, headers)
            return json_response(200, {"accounts": statuses}, headers)

    # ---- test helpers -----------------------------------------------------------------------

    @_saves
    def close_account(self, account_id: str) -> None:
        """Close (delete) the account at Atlassian: its tokens stop working, its grants cannot
        be refreshed, and the reporting API answers "closed" for it."""
        with self.lock:
            account = self.accounts.get(account_id)
            if account is None:
                raise ValueError(f"unknown account_id {account_id!r}")
            account.closed = True

    @_saves
    def update_account(
        self, account_id: str, *, email: str | None = None, name: str | None = None
    ) -> JsonDict:
        """Change the account's profile now (the fake's clock): ``/me`` answers the new one and
        the reporting API answers "updated" to an ``updatedAt`` before now."""
        with self.lock:
            account = self.accounts.get(account_id)
            if account is None:
                raise ValueError(f"unknown account_id {account_id!r}")
            if email is not None:
                account.email = str(email)
            if name is not None:
                account.name = str(name)
            account.profile_updated_at = self.clock.now()
            return account.as_dict()

    @_saves
    def mint_grant(self, client_id: str, account_id: str, scopes: str | Iterable[str]) -> JsonDict:
        """The token response a consent plus code exchange would give, without the browser."""
        wanted = split_scopes(scopes)
        with self.lock:
            app = self.apps.get(client_id)
            if app is None:
                raise ValueError(f"unknown client_id {client_id!r}")
            if account_id not in self.accounts:
                raise ValueError(f"unknown account_id {account_id!r}")
            if not wanted:
                raise ValueError("scopes must not be empty")
            disallowed = app.disallowed(wanted)
            if disallowed:
                raise ValueError(f"scopes not allowed for this app: {' '.join(disallowed)}")
            now = self.clock.now()
            grant = self._consent(app, account_id, wanted, now)
            return self._issue(self._new_family(grant, wanted, now), now)

    @_saves
    def revoke_grant(self, client_id: str, account_id: str) -> bool:
        """Kill every token of the grant, as removing the app in "Connected apps" does."""
        with self.lock:
            grant = self.grants.get((client_id, account_id))
            if grant is None:
                return False
            self._revoke(grant)
            return True

    def _revoke(self, grant: Grant) -> None:
        grant.revoked = True
        for family_id in grant.family_ids:
            self.families[family_id].revoked = True
        for code, record in list(self.codes.items()):
            if (record.client_id, record.account_id) == (grant.client_id, grant.account_id):
                del self.codes[code]

    def grant_info(self, client_id: str, account_id: str) -> JsonDict | None:
        """What a test may assert about a grant, without any token value."""
        with self.lock:
            grant = self.grants.get((client_id, account_id))
            if grant is None:
                return None
            now = self.clock.now()
            families = [self.families[f] for f in grant.family_ids]
            return {
                "client_id": grant.client_id,
                "account_id": grant.account_id,
                "revoked": grant.revoked,
                "scopes": list(grant.scopes),
                "families": len(families),
                "live_families": sum(1 for f in families if not f.revoked and not f.expired(now)),
                "refresh_count": sum(f.refresh_count for f in families),
                "created_at": grant.created_at,
                "consented_at": grant.consented_at,
            }


def _reported_accounts(body: bytes) -> tuple[list[tuple[str, float]], str]:
    """The ``(accountId, updatedAt as epoch seconds)`` pairs of a report, or why it is refused."""
    try:
        data = json.loads(body)
    except ValueError:
        return [], "The body is not JSON."
    accounts = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(accounts, list) or not accounts:
        return [], "accounts must be a non-empty list."
    if len(accounts) > REPORT_BATCH_LIMIT:
        return [], f"accounts may hold at most {REPORT_BATCH_LIMIT} entries, not {len(accounts)}."
    reported = []
    for item in accounts:
        account_id = item.get("accountId") if isinstance(item, dict) else None
        updated_at = item.get("updatedAt") if isinstance(item, dict) else None
        if not isinstance(account_id, str) or not account_id or not isinstance(updated_at, str):
            return [], "Each account needs an accountId and an updatedAt string."
        try:
            moment = datetime.fromisoformat(updated_at)
        except ValueError:
            return [], f"updatedAt {updated_at!r} is not an ISO 8601 date and time."
        if moment.tzinfo is None:
            return [], f"updatedAt {updated_at!r} lacks its time zone."
        reported.append((account_id, moment.timestamp()))
    return reported, ""


def _redirect_uri_problem(app: App, redirect_uri: str | None) -> str:
    if redirect_uri is None:
        return "is missing"
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http(s) URL"
    if parts.fragment:
        # RFC 6749 section 3.1.2: a redirection endpoint must not include a fragment.
        return "must not contain a fragment"
    if app.redirect_uris is not None and redirect_uri not in app.redirect_uris:
        return "does not match the app's callback URL"
    return ""


def _bad_authorize(name: str, value: str | None, problem: str) -> Response:
    # Never redirect here: the redirect_uri is not verified yet (an open redirect otherwise).
    if value is None:
        sentence = f"The parameter <code>{name}</code> is missing."
    else:
        sentence = f"The parameter <code>{name}</code> {html.escape(problem)}."
    response = _error_page(400, sentence)
    response.headers["X-Fake-Atlassian-Invalid-Parameter"] = name
    return response


def _error_page(status: int, sentence_html: str) -> Response:
    return html_response(status, "Fake Atlassian: invalid request", error_body(sentence_html))


def _unauthorized() -> Response:
    return json_response(401, UNAUTHORIZED_API, {"WWW-Authenticate": "Bearer"})


def _jira_user(site: Mapping[str, str], account: Account) -> JsonDict:
    return {
        "self": f"{site['url']}/rest/api/3/user?accountId={account.account_id}",
        "accountId": account.account_id,
        "accountType": "atlassian",
        "emailAddress": account.email,
        "displayName": account.name,
        "active": True,
        "timeZone": account.zoneinfo,
        "locale": account.locale.replace("-", "_"),
        "avatarUrls": {"48x48": account.picture},
    }


def _jira_search(
    site: Mapping[str, str],
    account: Account,
    query: Mapping[str, list[str]],
    jql: bool,
    now: float,
) -> Response:
    def number(name: str, default: int) -> int:
        values = query.get(name)
        return int(values[0]) if values and values[0] else default

    try:
        start_at, max_results = number("startAt", 0), number("maxResults", 50)
    except ValueError:
        return json_response(
            400, {"errorMessages": ["startAt and maxResults must be integers."], "errors": {}}
        )
    start_at, max_results = max(start_at, 0), min(max(max_results, 0), 100)
    prefix = "".join(c for c in site["name"].upper() if c.isalnum()) or "FAKE"
    assignee = {
        "accountId": account.account_id,
        "displayName": account.name,
        "emailAddress": account.email,
    }
    issues = [
        {
            "id": str(10000 + n),
            "key": f"{prefix}-{n}",
            "self": f"{site['url']}/rest/api/3/issue/{10000 + n}",
            "fields": {
                "summary": summary,
                "issuetype": {"name": kind},
                "status": {
                    "name": status,
                    "statusCategory": {"key": category, "name": STATUS_CATEGORY_NAMES[category]},
                },
                "priority": {"name": priority},
                "assignee": assignee,
                # Jira's own format: milliseconds and a numeric offset without a colon.
                "updated": time.strftime(
                    "%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(now - hours * 3600)
                ),
            },
        }
        for n, summary, kind, status, category, priority, hours in ISSUE_TEMPLATES
    ]
    page = issues[start_at : start_at + max_results]
    payload: JsonDict = {
        "issues": page,
        "total": len(issues),
        "startAt": start_at,
        "maxResults": max_results,
    }
    if jql:
        # The newer endpoint pages with isLast (and nextPageToken) instead of counting.
        payload["isLast"] = start_at + len(page) >= len(issues)
    return json_response(200, payload)
