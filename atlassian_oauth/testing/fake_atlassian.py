"""A fake Atlassian OAuth 2.0 (3LO) and Jira gateway on loopback, for tests and demos.

One HTTP server plays both hosts: ``auth.atlassian.com`` (``/authorize``, ``/oauth/token``) and
``api.atlassian.com`` (``/oauth/token/accessible-resources``, ``/me``, ``/ex/jira/...`` and the
personal data reporting API ``/app/report-accounts/``). A JSON control API under ``/_fake/``
lets another process drive it (see ``FakeAtlassianClient``). The server needs the standard
library only, and never Django::

    with FakeAtlassian() as fake:
        tokens = fake.mint_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID, "read:jira-work offline_access")

    python -m atlassian_oauth.testing.fake_atlassian --port 8765 --auto-consent accept
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Protocol, Self, cast, runtime_checkable
from urllib.parse import parse_qs, parse_qsl, urlsplit

from ._fake_state import (
    ABSOLUTE_LIFETIME,
    ACME_CLOUD_ID,
    ADA_ACCOUNT_ID,
    AUDIENCE,
    CODE_LIFETIME,
    DEFAULT_ACCESS_TOKEN_LIFETIME,
    DEFAULT_APP_NAME,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PORT,
    GLOBEX_CLOUD_ID,
    GRACE_ACCOUNT_ID,
    KINDS,
    REFRESH_INACTIVITY,
    REFRESH_REUSE_LEEWAY,
    REPORT_BATCH_LIMIT,
    FakeClock,
    FakeState,
    JsonDict,
    Response,
    json_response,
)

__all__ = [
    "ABSOLUTE_LIFETIME",
    "ACME_CLOUD_ID",
    "ADA_ACCOUNT_ID",
    "AUDIENCE",
    "CODE_LIFETIME",
    "DEFAULT_ACCESS_TOKEN_LIFETIME",
    "DEFAULT_APP_NAME",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORT",
    "GLOBEX_CLOUD_ID",
    "GRACE_ACCOUNT_ID",
    "KINDS",
    "REFRESH_INACTIVITY",
    "REFRESH_REUSE_LEEWAY",
    "REPORT_BATCH_LIMIT",
    "FakeAtlassian",
    "FakeAtlassianClient",
    "FakeAtlassianControl",
    "FakeClock",
    "main",
]

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
JIRA_PREFIX = "/ex/jira/"
REPORT_ACCOUNTS_PATH = "/app/report-accounts/"
CONTROL_PREFIX = "/_fake/"


class _Server(ThreadingHTTPServer):
    # Tests open dozens of connections at once from several processes: a short backlog would
    # turn a burst into connection-refused errors that Atlassian never causes.
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on a machine
        # without working DNS; the fake has no use for the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections, so a stopped fake cannot answer through them."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client went away: nothing to report
        logger.exception("Fake Atlassian: unhandled error while serving a request")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAtlassian/1.0"
    # An idle keep-alive connection must not hold a thread forever.
    timeout = 30
    # TCP_NODELAY on every accepted socket (socketserver's StreamRequestHandler sets it): the
    # headers and the body go out in two sends, and with Nagle's algorithm on, the body waits
    # for the client's delayed ACK of the headers, ~40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True

    _responded = False

    @property
    def _state(self) -> FakeState:
        return cast(_Server, self.server).state

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # The request line carries authorization codes in its query: log the path only, at DEBUG.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, self._bare_path(), code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s: request error", getattr(self, "command", None), self._bare_path())

    def version_string(self) -> str:
        return self.server_version

    def _bare_path(self) -> str:
        return str(getattr(self, "path", "")).split("?", 1)[0]

    def _handle(self) -> None:
        self._responded = False
        try:
            self._dispatch()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            logger.exception(
                "Fake Atlassian: error answering %s %s", self.command, self._bare_path()
            )
            if not self._responded:
                self._send(json_response(500, {"error": "fake_atlassian_bug"}))
            self.close_connection = True

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        split = urlsplit(self.path)
        path = split.path
        if path.startswith(CONTROL_PREFIX):
            self._send(self._control(path[len(CONTROL_PREFIX) :], split.query, body))
            return
        kind, extra, answer = self._route(path, parse_qs(split.query, keep_blank_values=True), body)
        entry, fault = self._state.begin_request(kind, self.command, path, extra)
        response = None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self._drop()
                self._state.finish_request(entry, 0)
                return
            response = fault.response()
        if response is None:
            response = answer()
            if fault is not None:
                response.headers.update(fault.headers)
                if fault.delay_after:
                    time.sleep(fault.delay_after)
        self._state.finish_request(entry, response.status)
        self._send(response)

    def _route(
        self, path: str, query: Mapping[str, list[str]], body: bytes
    ) -> tuple[str, dict[str, str | int | None], Callable[[], Response]]:
        """The request's counter kind, what the log may say of it, and how to answer it."""
        state, method = self._state, self.command
        if path in ("/authorize", "/authorize/decision"):
            if method == "GET" and path == "/authorize":
                client_ids = query.get("client_id") or [""]
                return (
                    "authorize",
                    {"client_id": client_ids[0] or None},
                    lambda: state.authorize(query),
                )
            if method == "POST":
                form = _parse_form(body)
                decision = form.get("decision")
                kind = f"consent_{decision}" if decision in ("accept", "decline") else "authorize"
                return kind, {}, lambda: state.consent_decision(form)
            return "authorize", {}, lambda: _not_allowed("GET, POST")
        if path == "/oauth/token":
            if method != "POST":
                return "token_other", {}, lambda: _not_allowed("POST")
            params = _parse_token_body(body, self.headers.get("Content-Type", ""))
            if params is None:
                return "token_other", {}, _unparseable
            basic = self._basic_credentials()
            grant_type = params.get("grant_type")
            kind = {"authorization_code": "code_exchange", "refresh_token": "refresh"}.get(
                grant_type or "", "token_other"
            )
            client_id = params.get("client_id") or (basic[0] if basic else None)
            extra: dict[str, str | int | None] = {
                "grant_type": grant_type,
                "client_id": client_id,
            }
            return kind, extra, lambda: state.token(params, basic)
        token = self._bearer_token()
        if path == "/oauth/token/accessible-resources":
            if method != "GET":
                return "accessible_resources", {}, lambda: _not_allowed("GET")
            return "accessible_resources", {}, lambda: state.accessible_resources(token)
        if path == "/me":
            if method != "GET":
                return "me", {}, lambda: _not_allowed("GET")
            return "me", {}, lambda: state.me(token)
        if path.startswith(JIRA_PREFIX):
            cloud_id, _, rest = path[len(JIRA_PREFIX) :].partition("/")
            if method == "POST" and rest.startswith("rest/api/3/search"):
                # Jira's search also takes its parameters as a JSON body.
                query = {**query, **_json_as_query(body)}
            return "jira", {}, lambda: state.jira(token, cloud_id, f"/{rest}", query)
        if path == REPORT_ACCOUNTS_PATH:
            if method != "POST":
                return "report_accounts", {}, lambda: _not_allowed("POST")
            # The log says how many accounts a report held (never which).
            extra = {"accounts": _report_size(body)}
            return "report_accounts", extra, lambda: state.report_accounts(token, body)
        return "not_found", {}, lambda: json_response(404, {"code": 404, "message": "Not Found"})

    def _bearer_token(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None

    def _basic_credentials(self) -> tuple[str, str] | None:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, colon, secret = decoded.partition(":")
        return (client_id, secret) if colon else None

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(json_response(411, {"error": "length_required"}))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(json_response(413, {"error": "bad_content_length"}))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        self._responded = True
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _drop(self) -> None:
        # Nothing at all is written: the client sees the connection closed under it.
        self._responded = True
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _control(self, name: str, raw_query: str, body: bytes) -> Response:
        state, method = self._state, self.command
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return json_response(400, {"error": "the body is not JSON"})
        if not isinstance(data, dict):
            return json_response(400, {"error": "the body must be a JSON object"})
        try:
            return _control_action(state, method, name, dict(parse_qsl(raw_query)), data)
        except (TypeError, ValueError) as error:
            return json_response(400, {"error": str(error)})


def _control_action(
    state: FakeState, method: str, name: str, query: Mapping[str, str], data: JsonDict
) -> Response:
    if (method, name) == ("POST", "reset"):
        state.reset()
        return json_response(200, {"ok": True})
    if (method, name) == ("GET", "counts"):
        return json_response(200, state.counts())
    if (method, name) == ("GET", "requests"):
        return json_response(200, state.requests_log())
    if name == "clock" and method in ("GET", "POST"):
        if set(data) - {"advance", "set"} or len(data) > 1:
            raise ValueError('send {"advance": seconds} or {"set": epoch}')
        if "advance" in data:
            state.clock.advance(_number(data["advance"]))
        elif "set" in data:
            state.clock.set(_number(data["set"]))
        if data:
            state.save()
        return json_response(200, {"now": state.clock.now()})
    if name == "settings" and method in ("GET", "POST"):
        return json_response(200, state.update_settings(data))
    if (method, name) == ("POST", "inject"):
        state.inject(**data)
        return json_response(200, {"ok": True})
    if (method, name) == ("POST", "apps"):
        state.register_app(**data)
        return json_response(200, {"ok": True})
    if (method, name) == ("POST", "accounts"):
        return json_response(200, state.add_account(**data))
    if (method, name) == ("POST", "mint"):
        return json_response(200, state.mint_grant(**data))
    if (method, name) == ("POST", "revoke"):
        return json_response(200, {"revoked": state.revoke_grant(**data)})
    if (method, name) == ("GET", "grant"):
        info = state.grant_info(query.get("client_id", ""), query.get("account_id", ""))
        return json_response(200 if info else 404, info)
    if (method, name) == ("POST", "close-account"):
        state.close_account(**data)
        return json_response(200, {"ok": True})
    if (method, name) == ("POST", "update-account"):
        return json_response(200, state.update_account(**data))
    return json_response(404, {"error": f"no control endpoint {method} /_fake/{name}"})


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("the clock takes a number of seconds")
    return float(value)


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    form: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(key, value)
    return form


def _parse_token_body(body: bytes, content_type: str) -> dict[str, str] | None:
    """The token request's parameters, or None when the body cannot be read."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return _parse_form(body)
    # JSON is what Atlassian documents, so any other media type is read as JSON.
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {key: value for key, value in data.items() if isinstance(value, str)}


def _json_as_query(body: bytes) -> dict[str, list[str]]:
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: [str(value)] for key, value in data.items() if isinstance(value, str | int)}


def _report_size(body: bytes) -> int | None:
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    accounts = data.get("accounts") if isinstance(data, dict) else None
    return len(accounts) if isinstance(accounts, list) else None


def _unparseable() -> Response:
    return json_response(
        400,
        {"error": "invalid_request", "error_description": "The request body could not be read."},
        {"Cache-Control": "no-store"},
    )


def _not_allowed(allow: str) -> Response:
    return json_response(405, {"code": 405, "message": "Method Not Allowed"}, {"Allow": allow})


@runtime_checkable
class FakeAtlassianControl(Protocol):
    """What a test can do with a fake Atlassian, in this process (``FakeAtlassian``) or in
    another (``FakeAtlassianClient`` over the ``/_fake/`` control API): the same names, the
    same kinds (a property is a property on both)."""

    @property
    def url(self) -> str: ...

    def reset(self) -> None: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def requests_log(self) -> list[JsonDict]: ...

    def now(self) -> float: ...

    def advance_clock(self, seconds: float) -> float: ...

    def set_clock(self, epoch: float) -> float: ...

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
    ) -> None: ...

    def settings(self, **values: Any) -> JsonDict: ...

    def register_app(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None: ...

    def add_account(
        self,
        account_id: str,
        email: str,
        name: str,
        resources: Iterable[Mapping[str, str]] = (),
        **profile: str,
    ) -> JsonDict: ...

    def mint_grant(
        self, client_id: str, account_id: str, scopes: str | Iterable[str]
    ) -> JsonDict: ...

    def revoke_grant(self, client_id: str, account_id: str) -> bool: ...

    def grant_info(self, client_id: str, account_id: str) -> JsonDict | None: ...

    def close_account(self, account_id: str) -> None: ...

    def update_account(
        self, account_id: str, *, email: str | None = None, name: str | None = None
    ) -> JsonDict: ...

    auto_consent: str | None
    consent_account_id: str | None
    access_token_lifetime: int
    invalid_refresh_error: str
    refresh_omits_refresh_token: bool
    report_cycle_period: int | None


class FakeAtlassian:
    """A fake Atlassian on ``host:port`` (port 0 picks a free one); state survives stop/start.

    ``state_path`` (a JSON file) makes the state survive a restart of the process too: the
    apps, accounts, grants and tokens are read from it at start and written after every change.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
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
        # The keyword arguments define the initial state that reset() returns to.
        self.host = host
        self._port = port
        self._state = FakeState(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uris,
            access_token_lifetime=access_token_lifetime,
            auto_consent=auto_consent,
            app_name=app_name,
            tenant_names=tenant_names,
            state_path=state_path,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve from a daemon thread; returns self once the port accepts connections."""
        if self._server is not None:
            raise RuntimeError("this FakeAtlassian is already running")
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-atlassian:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; a no-op when not running."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
            thread.join(timeout=5)
        server.server_close()
        server.close_connections()
        self._state.save()

    def serve_forever(self, ready: Callable[[FakeAtlassian], None] | None = None) -> None:
        """Serve from this thread until KeyboardInterrupt; ``ready`` is called once bound."""
        if self._server is not None:
            raise RuntimeError("this FakeAtlassian is already running")
        server = self._bind()
        try:
            if ready is not None:
                ready(self)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._server = None
            server.server_close()
            server.close_connections()
            self._state.save()

    def _bind(self) -> _Server:
        self._server = _Server((self.host, self._port), self._state)
        return self._server

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port once running (the real one when constructed with port 0)."""
        return self._server.server_port if self._server is not None else self._port

    @property
    def url(self) -> str:
        """``http://host:port``: the base of both the auth and the API endpoints."""
        if self._server is None:
            raise RuntimeError("start() the FakeAtlassian before asking for its url")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ---- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the initial state: default app and accounts, nothing issued, clock at 0."""
        self._state.reset()

    @property
    def clock(self) -> FakeClock:
        return self._state.clock

    @property
    def tenant_names(self) -> dict[str, str]:
        """Host name -> tenant name, for the consent page (a dict to change in place; reset()
        keeps it, as it keeps the constructor's other arguments)."""
        return self._state.tenant_names

    def now(self) -> float:
        """The fake's clock, in seconds since the epoch (it decides every expiry)."""
        return self._state.clock.now()

    def advance_clock(self, seconds: float) -> float:
        """Move the fake's clock forward; returns its new ``now``."""
        now = self._state.clock.advance(seconds)
        self._state.save()
        return now

    def set_clock(self, epoch: float) -> float:
        now = self._state.clock.set(epoch)
        self._state.save()
        return now

    @property
    def counts(self) -> dict[str, int]:
        """A copy of how many requests of each kind arrived (control API excluded)."""
        return self._state.counts()

    @property
    def requests_log(self) -> list[JsonDict]:
        """A copy of ``{kind, method, path, status[, grant_type, client_id]}`` per request."""
        return self._state.requests_log()

    def register_app(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        """Add or replace an app; None means any redirect_uri, or any scope, is accepted.
        ``name`` is what the consent page calls the app (its client id when None)."""
        self._state.register_app(client_id, client_secret, redirect_uris, scopes, name)

    def add_account(
        self,
        account_id: str,
        email: str,
        name: str,
        resources: Iterable[Mapping[str, str]] = (),
        **profile: str,
    ) -> JsonDict:
        """Add or replace an account; ``profile`` may set picture, nickname, zoneinfo, locale."""
        return self._state.add_account(account_id, email, name, resources, **profile)

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
        """Make the next ``times`` requests of ``kind`` ("token" and "any" included) misbehave.

        ``delay`` waits before the request takes effect; ``delay_after`` waits after it took
        effect (a refresh has rotated the token) and before the answer is sent.
        """
        self._state.inject(kind, status, headers, body, delay, drop, times, delay_after)

    def mint_grant(self, client_id: str, account_id: str, scopes: str | Iterable[str]) -> JsonDict:
        """A token response as if the account had just consented; no browser involved."""
        return self._state.mint_grant(client_id, account_id, scopes)

    def revoke_grant(self, client_id: str, account_id: str) -> bool:
        """Kill every token of the grant (the user removed the app); False if there was none."""
        return self._state.revoke_grant(client_id, account_id)

    def grant_info(self, client_id: str, account_id: str) -> JsonDict | None:
        return self._state.grant_info(client_id, account_id)

    def close_account(self, account_id: str) -> None:
        """Close the account at Atlassian: its tokens stop working (401, a refresh is refused)
        and ``POST /app/report-accounts/`` answers ``closed`` for it."""
        self._state.close_account(account_id)

    def update_account(
        self, account_id: str, *, email: str | None = None, name: str | None = None
    ) -> JsonDict:
        """Change the account's profile now: ``/me`` answers the new one, and
        ``POST /app/report-accounts/`` answers ``updated`` to an ``updatedAt`` before now."""
        return self._state.update_account(account_id, email=email, name=name)

    def settings(self, **values: Any) -> JsonDict:
        """Change any of the settings below at once; returns them all."""
        return self._state.update_settings(values)

    @property
    def auto_consent(self) -> str | None:
        return self._state.settings.auto_consent

    @auto_consent.setter
    def auto_consent(self, value: str | None) -> None:
        self._state.update_settings({"auto_consent": value})

    @property
    def consent_account_id(self) -> str | None:
        return self._state.settings.consent_account_id

    @consent_account_id.setter
    def consent_account_id(self, value: str | None) -> None:
        self._state.update_settings({"consent_account_id": value})

    @property
    def access_token_lifetime(self) -> int:
        return self._state.settings.access_token_lifetime

    @access_token_lifetime.setter
    def access_token_lifetime(self, value: int) -> None:
        self._state.update_settings({"access_token_lifetime": value})

    @property
    def invalid_refresh_error(self) -> str:
        return self._state.settings.invalid_refresh_error

    @invalid_refresh_error.setter
    def invalid_refresh_error(self, value: str) -> None:
        self._state.update_settings({"invalid_refresh_error": value})

    @property
    def refresh_omits_refresh_token(self) -> bool:
        return self._state.settings.refresh_omits_refresh_token

    @refresh_omits_refresh_token.setter
    def refresh_omits_refresh_token(self, value: bool) -> None:
        self._state.update_settings({"refresh_omits_refresh_token": value})

    @property
    def report_cycle_period(self) -> int | None:
        """Seconds the reporting API sends as its ``Cycle-Period`` header (None: no header)."""
        return self._state.settings.report_cycle_period

    @report_cycle_period.setter
    def report_cycle_period(self, value: int | None) -> None:
        self._state.update_settings({"report_cycle_period": value})


class FakeAtlassianClient:
    """Drives a fake Atlassian running elsewhere through its ``/_fake/`` control API.

    A rejected call (400) raises ValueError with the fake's message, like the in-process API.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        # Imported here so that serving the fake needs nothing beyond the standard library.
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # A proxy from the environment must never see loopback control traffic.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, name: str, payload: JsonDict | None = None, **params: str) -> Any:
        response = self._session.request(
            method,
            f"{self.base_url}{CONTROL_PREFIX}{name}",
            json=payload,
            params=params or None,
            timeout=self.timeout,
        )
        if response.status_code == 400:
            raise ValueError(response.json().get("error", response.text))
        if response.status_code == 404 and name == "grant":
            return None
        response.raise_for_status()
        return response.json()

    @property
    def url(self) -> str:
        return self.base_url

    def reset(self) -> None:
        self._call("POST", "reset")

    @property
    def counts(self) -> dict[str, int]:
        return cast(dict[str, int], self._call("GET", "counts"))

    @property
    def requests_log(self) -> list[JsonDict]:
        return cast(list[JsonDict], self._call("GET", "requests"))

    def now(self) -> float:
        return float(self._call("GET", "clock")["now"])

    def advance_clock(self, seconds: float) -> float:
        """Move the fake's clock forward; returns its new ``now``."""
        return float(self._call("POST", "clock", {"advance": seconds})["now"])

    def set_clock(self, epoch: float) -> float:
        return float(self._call("POST", "clock", {"set": epoch})["now"])

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
        payload = {
            "kind": kind,
            "status": status,
            "headers": dict(headers or {}),
            "body": dict(body) if isinstance(body, Mapping) else body,
            "delay": delay,
            "drop": drop,
            "times": times,
            "delay_after": delay_after,
        }
        self._call("POST", "inject", payload)

    def settings(self, **values: Any) -> JsonDict:
        """Change any settings (auto_consent, access_token_lifetime, ...); returns them all."""
        return cast(JsonDict, self._call("POST", "settings", values))

    # The same settings as attributes, as on the in-process fake.

    @property
    def auto_consent(self) -> str | None:
        return cast(str | None, self.settings()["auto_consent"])

    @auto_consent.setter
    def auto_consent(self, value: str | None) -> None:
        self.settings(auto_consent=value)

    @property
    def consent_account_id(self) -> str | None:
        return cast(str | None, self.settings()["consent_account_id"])

    @consent_account_id.setter
    def consent_account_id(self, value: str | None) -> None:
        self.settings(consent_account_id=value)

    @property
    def access_token_lifetime(self) -> int:
        return int(self.settings()["access_token_lifetime"])

    @access_token_lifetime.setter
    def access_token_lifetime(self, value: int) -> None:
        self.settings(access_token_lifetime=value)

    @property
    def invalid_refresh_error(self) -> str:
        return str(self.settings()["invalid_refresh_error"])

    @invalid_refresh_error.setter
    def invalid_refresh_error(self, value: str) -> None:
        self.settings(invalid_refresh_error=value)

    @property
    def refresh_omits_refresh_token(self) -> bool:
        return bool(self.settings()["refresh_omits_refresh_token"])

    @refresh_omits_refresh_token.setter
    def refresh_omits_refresh_token(self, value: bool) -> None:
        self.settings(refresh_omits_refresh_token=value)

    @property
    def report_cycle_period(self) -> int | None:
        value = self.settings()["report_cycle_period"]
        return None if value is None else int(value)

    @report_cycle_period.setter
    def report_cycle_period(self, value: int | None) -> None:
        self.settings(report_cycle_period=value)

    def register_app(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        payload = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": None if redirect_uris is None else list(redirect_uris),
            "scopes": None if scopes is None else sorted(scopes),
            "name": name,
        }
        self._call("POST", "apps", payload)

    def add_account(
        self,
        account_id: str,
        email: str,
        name: str,
        resources: Iterable[Mapping[str, str]] = (),
        **profile: str,
    ) -> JsonDict:
        payload = {
            "account_id": account_id,
            "email": email,
            "name": name,
            "resources": [dict(r) for r in resources],
            **profile,
        }
        return cast(JsonDict, self._call("POST", "accounts", payload))

    def mint_grant(self, client_id: str, account_id: str, scopes: str | Iterable[str]) -> JsonDict:
        scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
        payload = {"client_id": client_id, "account_id": account_id, "scopes": scope_list}
        return cast(JsonDict, self._call("POST", "mint", payload))

    def revoke_grant(self, client_id: str, account_id: str) -> bool:
        payload = {"client_id": client_id, "account_id": account_id}
        return bool(self._call("POST", "revoke", payload)["revoked"])

    def grant_info(self, client_id: str, account_id: str) -> JsonDict | None:
        info = self._call("GET", "grant", client_id=client_id, account_id=account_id)
        return cast(JsonDict | None, info)

    def close_account(self, account_id: str) -> None:
        self._call("POST", "close-account", {"account_id": account_id})

    def update_account(
        self, account_id: str, *, email: str | None = None, name: str | None = None
    ) -> JsonDict:
        payload = {"account_id": account_id, "email": email, "name": name}
        return cast(JsonDict, self._call("POST", "update-account", payload))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Run a fake Atlassian in the foreground until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m atlassian_oauth.testing.fake_atlassian",
        description="A fake Atlassian OAuth 2.0 (3LO) and Jira API on loopback, for tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed)"
    )
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_ACCESS_TOKEN_LIFETIME)
    parser.add_argument("--auto-consent", choices=("accept", "decline"), default=None)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        help="an allowed callback URL (repeatable; default: any)",
    )
    parser.add_argument(
        "--app-name", default=DEFAULT_APP_NAME, help="the app's name on the consent page"
    )
    parser.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="HOST=NAME",
        help="name the tenant whose callback is on HOST on the consent page (repeatable)",
    )
    parser.add_argument(
        "--state-file",
        help="keep the state (grants, tokens) in this JSON file across restarts; default: memory",
    )
    args = parser.parse_args(argv)
    if args.token_lifetime <= 0:
        parser.error("--token-lifetime must be positive")
    tenants: dict[str, str] = {}
    for item in args.tenant:
        host, _, name = item.partition("=")
        if not host or not name:
            parser.error("--tenant takes HOST=NAME")
        tenants[host] = name
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    fake = FakeAtlassian(
        args.host,
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=args.redirect_uris,
        access_token_lifetime=args.token_lifetime,
        auto_consent=args.auto_consent,
        app_name=args.app_name,
        tenant_names=tenants,
        state_path=args.state_file,
    )

    def announce(running: FakeAtlassian) -> None:
        print(f"Fake Atlassian listening on {running.url}", flush=True)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM (what process managers and subprocess.terminate send) stops as cleanly as Ctrl-C;
    # SIGINT too, even when the shell started us as a background job with SIGINT ignored.
    stopping = (signal.SIGTERM, signal.SIGINT)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {number: signal.signal(number, interrupt) for number in stopping} if in_main_thread else {}
    )
    try:
        fake.serve_forever(ready=announce)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
