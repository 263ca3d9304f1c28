"""Keep tokens, codes and secrets out of requests-oauthlib's and oauthlib's logs.

At DEBUG both libraries log what they send and receive: ``OAuth2Session.fetch_token`` logs the
request body (client secret and code) and the token response, ``refresh_token`` the body with
the refresh token, ``request`` the token dict and the ``Authorization`` header. The app loads
``install()`` from ``AppConfig.ready()``, which attaches ``RedactingFilter`` to every logger of
the two libraries.

A filter on a logger only sees the records created on that very logger (records a child logger
propagates skip the parent's filters), so the filter goes on each module's logger, not just on
``requests_oauthlib`` and ``oauthlib``.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Mapping

#: The libraries whose loggers are filtered.
LOGGER_PREFIXES = ("requests_oauthlib", "oauthlib")
#: Imported before the loggers are walked, so every logger on the app's code path exists.
_MODULES = ("requests_oauthlib", "oauthlib.oauth2", "oauthlib.common")
REDACTED = "[redacted]"

# A secret a message template itself might carry (a few oauthlib messages are formatted before
# logging): `name=value`, `"name": "value"` for the OAuth parameter names, and credentials after
# an HTTP auth scheme.
_SECRET_FIELD = re.compile(
    r"""(?ix)
    (\b(?:access_token|refresh_token|id_token|client_secret|code|code_verifier|password|token)
     ['"]?\s*[:=]\s*['"]?)
    [^'"&\s,;}]+
    """
)
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;}]+")


def scrub(text: str) -> str:
    """``text`` with every OAuth secret parameter's value and every credential replaced."""
    return _CREDENTIALS.sub(rf"\1 {REDACTED}", _SECRET_FIELD.sub(rf"\1{REDACTED}", text))


def _safe(value: object) -> object:
    # Numbers (status codes, counts) carry no secret and are what a reader debugging needs;
    # anything else (bodies, headers, token dicts, URLs with a code) is replaced whole.
    if value is None or isinstance(value, bool | int | float):
        return value
    return REDACTED


class RedactingFilter(logging.Filter):
    """Replace a record's arguments (except numbers) and scrub its message; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):
            # logging turns a single mapping argument into the args themselves ("%s" % dict, or
            # "%(name)s"): keep the keys, replace the values.
            record.args = {key: _safe(value) for key, value in args.items()}
        elif args:
            record.args = tuple(_safe(value) for value in args)
        record.msg = scrub(str(record.msg))
        if record.exc_info or record.exc_text:
            # An exception's text can quote a body (oauthlib's urldecode errors do).
            record.exc_info, record.exc_text = None, None
            record.msg += " (exception details redacted)"
        record.stack_info = None
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Attach the filter to every logger of the two libraries (idempotent)."""
    for module in _MODULES:
        importlib.import_module(module)
    manager = logging.Logger.manager
    names = [
        name
        for name in list(manager.loggerDict)
        if any(name == prefix or name.startswith(f"{prefix}.") for prefix in LOGGER_PREFIXES)
    ]
    for name in {*LOGGER_PREFIXES, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
