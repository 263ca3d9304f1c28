"""Search what error reports and logs show for every secret a test handled.

Three parts, used by ``test_error_reports.py``:

- ``SecretBook``: every secret known at a moment of a test (client secrets, the tokens and codes
  the fake issued, the configured encryption keys, the stored ciphertexts), each searched as is
  and in the encodings a report may show it in (JSON, URL, form, HTML, a bytes repr).
- ``renderings``: what an error report of one exception shows, the way Django's admin error
  mail (``AdminEmailHandler``: HTML and text, ``is_email=True``), Django's 500 page and a
  Sentry-style frame capture render it, each split into located pieces (frame and variable) so
  a failure can say where a secret sat without printing it.
- ``all_debug_logs``: every log record of every logger at DEBUG while a block runs.

A failure message names the scenario, the rendering, the secret's kind and where it was found,
never the secret itself.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote, quote_plus

from django.http import HttpRequest
from django.template.defaultfilters import pprint
from django.test import override_settings
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

import atlassian_oauth
from atlassian_oauth import crypto
from atlassian_oauth.conf import conf
from atlassian_oauth.models import AtlassianApp, Grant
from atlassian_oauth.testing import FakeAtlassian

#: The app's own source: its frames are the ones ``sensitive_variables`` can cover.
APP_DIR = Path(atlassian_oauth.__file__).resolve().parent
# The fake Atlassian ships inside the package, but it is the other side of the wire: its frames
# are Atlassian's, not the app's (they never appear in the app's exceptions anyway).
FAKE_DIR = APP_DIR / "testing"
#: Shorter values would match by chance; every real secret here is far longer.
MIN_SECRET_LENGTH = 8

CLIENT_SECRET = "client secret"
ACCESS_TOKEN = "access token"
REFRESH_TOKEN = "refresh token"
CODE = "authorization code"
KEY = "encryption key"
KEY_MATERIAL = "encryption key (base64 part)"
CIPHERTEXT = "ciphertext of a stored token"


# ---- the secrets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    kind: str
    value: str = field(repr=False)

    def encodings(self) -> dict[str, str]:
        """The forms a report or a log may show this value in, by name (duplicates dropped)."""
        forms = {
            "as is": self.value,
            "JSON-escaped": json.dumps(self.value)[1:-1],
            "URL-encoded": quote(self.value, safe=""),
            "form-encoded": quote_plus(self.value),
            "HTML-escaped": html.escape(self.value),
            # A request body shown as bytes: b'{"client_secret": "..."}'.
            "bytes repr": repr(self.value.encode())[2:-1],
        }
        unique: dict[str, str] = {}
        for name, form in forms.items():
            if form not in unique.values():
                unique[name] = form
        return unique

    def found_in(self, text: str) -> str | None:
        """The name of the first encoding of this secret that occurs in ``text``, or None."""
        for name, form in self.encodings().items():
            if form in text:
                return name
        return None


class SecretBook:
    """The secrets a test must not see in a report or a log, collected as the test goes."""

    def __init__(self) -> None:
        self._secrets: dict[str, Secret] = {}

    def __len__(self) -> int:
        return len(self._secrets)

    def __iter__(self) -> Iterator[Secret]:
        return iter(self._secrets.values())

    def add(self, kind: str, value: str | None) -> None:
        if value and len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
            self._secrets[value] = Secret(kind, value)

    def values(self) -> set[str]:
        return set(self._secrets)

    def without(self, *kinds: str) -> SecretBook:
        book = SecretBook()
        for secret in self:
            if secret.kind not in kinds:
                book.add(secret.kind, secret.value)
        return book

    def collect(self, fake: FakeAtlassian) -> SecretBook:
        """Add what the fake issued and the app holds now; returns self."""
        self.collect_fake(fake)
        self.collect_settings()
        self.collect_database()
        return self

    def collect_fake(self, fake: FakeAtlassian) -> None:
        # The fake runs in this process: its state lists every token and code it ever issued
        # in this test (reset() empties it per test), including rotated and revoked ones.
        state = fake._state
        with state.lock:
            for app in state.apps.values():
                self.add(CLIENT_SECRET, app.client_secret)
            for token in state.access_tokens:
                self.add(ACCESS_TOKEN, token)
            for token in state.refresh_tokens:
                self.add(REFRESH_TOKEN, token)
            for code in state.codes:
                self.add(CODE, code)

    def collect_settings(self) -> None:
        self.add(CLIENT_SECRET, conf.CLIENT_SECRET)
        for entry in conf.ENCRYPTION_KEYS:
            try:
                crypto.KeyRing([entry])
            except crypto.KeyConfigurationError:
                continue  # a malformed entry is no key; only the good ones must stay hidden
            self.add(KEY, entry)
            self.add(KEY_MATERIAL, entry.strip().rpartition(":")[2])

    def collect_database(self) -> None:
        # values_list reads the columns as stored: the ciphertexts, without decrypting them.
        for access, refresh in Grant.objects.values_list("access_token", "refresh_token"):
            self.add(CIPHERTEXT, access)
            self.add(CIPHERTEXT, refresh)
        for sealed in AtlassianApp.objects.values_list("client_secret", flat=True):
            self.add(CIPHERTEXT, sealed)
        for row in AtlassianApp.objects.all():
            # Unreadable under the keys a scenario broke: its ciphertext is listed all the same.
            with contextlib.suppress(crypto.CryptoError):
                self.add(CLIENT_SECRET, row.client_secret)

    def search(self, text: str) -> list[tuple[Secret, str]]:
        """Every secret found in ``text``, with the name of the encoding it was found in."""
        hits = []
        for secret in self:
            encoding = secret.found_in(text)
            if encoding is not None:
                hits.append((secret, encoding))
        return hits


# ---- error reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A part of a rendering and where it comes from (a frame's variable, or a whole report)."""

    where: str
    text: str


@dataclass(frozen=True)
class Rendering:
    name: str
    pieces: list[Piece]
    #: Whether it prints frame variables (Django's text reports print none).
    shows_variables: bool = True


class AppSensitiveVariablesFilter(SafeExceptionReporterFilter):
    """Django's filter, active whatever DEBUG says: it applies the ``sensitive_variables`` the
    app declared, which Django skips altogether under DEBUG=True."""

    def is_active(self, request: HttpRequest | None) -> bool:
        return True


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception behind it, through both ``__cause__`` and ``__context__``
    (even a suppressed context: a reporter may show it, and its frames still hold locals)."""
    seen: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return seen


def frames(error: BaseException) -> Iterator[tuple[BaseException, FrameType, int]]:
    """Every frame of every traceback in the chain, as a Sentry-style reporter walks them."""
    for exc in chain(error):
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            yield exc, tb.tb_frame, tb.tb_lineno
            tb = tb.tb_next


def frame_name(frame: FrameType, lineno: int) -> str:
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{frame.f_code.co_qualname} (line {lineno})"


def is_app_frame(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(APP_DIR) and not path.is_relative_to(FAKE_DIR)


def sentry_style(error: BaseException, request: HttpRequest | None) -> list[Piece]:
    """Each frame's locals as Django's filter cleanses them under DEBUG=False, one piece per
    variable: what a Sentry-like reporter using Django's filter stores for the event."""
    reporter_filter = SafeExceptionReporterFilter()
    pieces = []
    with override_settings(DEBUG=False):
        for exc, frame, lineno in frames(error):
            where = f"{type(exc).__name__}'s frame {frame_name(frame, lineno)}"
            for name, value in reporter_filter.get_traceback_frame_variables(request, frame):
                pieces.append(Piece(f"{where}, variable {name!r}", _repr(value)))
    return pieces


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as error:  # a broken __repr__ is shown as such by reporters too
        return f"<repr failed: {type(error).__name__}>"


def django_report(
    error: BaseException, request: HttpRequest | None, *, text: bool, is_email: bool
) -> str:
    reporter = ExceptionReporter(request, type(error), error, error.__traceback__, is_email)
    return reporter.get_traceback_text() if text else reporter.get_traceback_html()


def app_frames_under_debug(error: BaseException, request: HttpRequest | None) -> list[Piece]:
    """The app's own frames of Django's report under DEBUG=True, each variable as the report
    prints it, with the app's ``sensitive_variables`` applied.

    Under DEBUG=True Django cleanses nothing (``is_active`` is False): a developer's machine
    shows every variable by design, so the report as a whole is not searched. What the issue
    asks of DEBUG=True is that the app's own frames (files under ``atlassian_oauth/``) hide
    their secrets by the app's own declarations; so the frames come from Django's reporter with
    a filter that applies those declarations whatever DEBUG says, and only the app's frames are
    searched. A secret there is one no ``sensitive_variables`` of the app covers.
    """
    with override_settings(DEBUG=True):
        reporter = ExceptionReporter(request, type(error), error, error.__traceback__)
        reporter.filter = AppSensitiveVariablesFilter()
        pieces = []
        for frame in reporter.get_traceback_frames():
            tb = frame.get("tb")
            if tb is None or not is_app_frame(frame["filename"]):
                continue
            where = f"app frame {frame_name(tb.tb_frame, tb.tb_lineno)}"
            for name, value in frame["vars"]:
                pieces.append(Piece(f"{where}, variable {name!r}", pprint(value)))
    return pieces


def renderings(error: BaseException, request: HttpRequest | None) -> list[Rendering]:
    """Every way a report of ``error`` is shown, under the DEBUG setting each is searched in."""
    result = []
    with override_settings(DEBUG=False):
        for name, text, is_email in (
            ("500 page HTML (DEBUG=False)", False, False),
            ("500 page text (DEBUG=False)", True, False),
            ("admin error email HTML (DEBUG=False)", False, True),
            ("admin error email text (DEBUG=False)", True, True),
        ):
            report = django_report(error, request, text=text, is_email=is_email)
            result.append(Rendering(name, [Piece("the report", report)], shows_variables=not text))
    result.append(Rendering("app frames (DEBUG=True)", app_frames_under_debug(error, request)))
    result.append(Rendering("Sentry-style frame walk (DEBUG=False)", sentry_style(error, request)))
    return result


@dataclass(frozen=True)
class Leak:
    scenario: str
    rendering: str
    kind: str
    encoding: str
    where: str

    def __str__(self) -> str:
        encoding = "" if self.encoding == "as is" else f" ({self.encoding})"
        return f"{self.scenario} | {self.rendering} | {self.kind}{encoding} | {self.where}"


def report_sections(error: BaseException, request: HttpRequest | None) -> list[Piece]:
    """The parts of a report that are not frame variables, as pieces that name them."""
    pieces = [
        Piece(f"the message of {type(exc).__name__}", f"{exc} {exc!r}") for exc in chain(error)
    ]
    if request is not None:
        pieces += [
            Piece("the request's URL", request.get_full_path()),
            Piece("the request's GET", repr(request.GET)),
            Piece("the request's POST", repr(request.POST)),
            Piece("the request's META", repr(request.META)),
        ]
    return pieces


def locate(secret: Secret, located: Iterable[Piece]) -> str:
    """Where a secret found in a whole report sits, by the pieces that hold it."""
    places = [piece.where for piece in located if secret.found_in(piece.text)]
    if not places:
        return "somewhere in the report (not a frame variable, message or request part)"
    return "; ".join(dict.fromkeys(places))


def report_leaks(
    scenario: str,
    error: BaseException,
    request: HttpRequest | None,
    book: SecretBook,
    *,
    tally: bool = True,
) -> list[Leak]:
    """Render every report of ``error`` and search each for every secret of ``book``
    (``tally``: count them in the printed figures; a probe of the sweep itself is not)."""
    leaks: list[Leak] = []
    # A hit in a whole report is located by the pieces that name its parts: the Sentry-style
    # ones name each frame and variable (the report cleanses with the same filter and DEBUG).
    sections = report_sections(error, request)
    variables = sentry_style(error, request)
    all_renderings = renderings(error, request)
    for rendering in all_renderings:
        located = sections + variables if rendering.shows_variables else sections
        for piece in rendering.pieces:
            for secret, encoding in book.search(piece.text):
                where = piece.where
                if where == "the report":
                    where = locate(secret, located)
                leaks.append(Leak(scenario, rendering.name, secret.kind, encoding, where))
    if tally:
        ERROR_REPORTS.count(len(all_renderings), book, len(leaks))
    return leaks


# ---- logs ------------------------------------------------------------------------------------


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def all_debug_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record every logger emits during the block, at DEBUG.

    Each existing logger is opened to DEBUG for the block (one with its own level would filter
    records out before any root handler sees them), non-propagating ones get the handler
    directly, and ``logging.disable`` is lifted; all restored afterwards.
    """
    collector = _Collector()
    root = logging.getLogger()
    loggers = [root] + [
        item
        for item in logging.root.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]
    saved = [(item, item.level, item.disabled) for item in loggers]
    disabled_level = logging.root.manager.disable
    attached = [root] + [item for item in loggers[1:] if not item.propagate]
    logging.disable(logging.NOTSET)
    for item in loggers:
        item.disabled = False
        if item is root or item.level != logging.NOTSET:
            item.setLevel(logging.DEBUG)
    for item in attached:
        item.addHandler(collector)
    try:
        yield collector.records
    finally:
        for item in attached:
            item.removeHandler(collector)
        for item, level, disabled in saved:
            item.setLevel(level)
            item.disabled = disabled
        logging.disable(disabled_level)


_FORMATTER = logging.Formatter("%(levelname)s %(name)s: %(message)s")


def format_record(record: logging.LogRecord) -> str:
    """The record as a handler writes it: message, traceback text and stack, if any."""
    return _FORMATTER.format(record)


def log_leaks(scenario: str, records: list[logging.LogRecord], book: SecretBook) -> list[Leak]:
    """Search every record for the plaintext secrets of ``book``.

    Ciphertexts are left out: SQL parameters logged by ``django.db.backends`` hold them by
    design, and a ciphertext without the keys is not a secret.
    """
    plaintext = book.without(CIPHERTEXT)
    leaks = []
    for record in records:
        for secret, encoding in plaintext.search(format_record(record)):
            where = (
                f"a {record.levelname} record of logger {record.name!r} "
                f"({record.pathname}:{record.lineno})"
            )
            leaks.append(Leak(scenario, "DEBUG logs", secret.kind, encoding, where))
    DEBUG_LOGS.count(len(records), plaintext, len(leaks))
    return leaks


# ---- the figures printed at the end ----------------------------------------------------------


@dataclass
class Figures:
    title: str
    unit: str
    items: int = 0
    secrets: set[str] = field(default_factory=set, repr=False)
    found: int = 0

    def count(self, items: int, book: SecretBook, found: int) -> None:
        self.items += items
        self.secrets |= book.values()
        self.found += found

    def line(self) -> str:
        return (
            f"{self.title}: {self.unit} {self.items}, "
            f"secrets searched {len(self.secrets)}, found {self.found}"
        )


ERROR_REPORTS = Figures("error-report sweep", "reports rendered")
DEBUG_LOGS = Figures("DEBUG log sweep", "records")


def failure_message(leaks: list[Leak]) -> str:
    lines = "\n  ".join(str(leak) for leak in leaks)
    return f"{len(leaks)} secret(s) shown (scenario | rendering | kind | where):\n  {lines}"


def raised(call: Callable[..., object], /, *args: Any, **kwargs: Any) -> BaseException:
    """The exception ``call(*args, **kwargs)`` raises, its traceback starting at ``call``'s frame.

    This helper's own frame is cut off: it holds the arguments (a code, say) only because the
    test passes them, as the app's caller would hold them in its own frame.
    """
    try:
        call(*args, **kwargs)
    except Exception as error:
        if error.__traceback__ is not None:
            error.__traceback__ = error.__traceback__.tb_next
        return error
    raise AssertionError(f"{getattr(call, '__name__', call)} raised nothing")
