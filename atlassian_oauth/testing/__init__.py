"""Test helpers shipped with the app: a fake Atlassian server and its remote-control client.

Names are loaded on first use so that ``python -m atlassian_oauth.testing.fake_atlassian`` does
not import the module twice (which would warn), and importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_atlassian import (
        ABSOLUTE_LIFETIME,
        ACME_CLOUD_ID,
        ADA_ACCOUNT_ID,
        AUDIENCE,
        CODE_LIFETIME,
        DEFAULT_ACCESS_TOKEN_LIFETIME,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_PORT,
        GLOBEX_CLOUD_ID,
        GRACE_ACCOUNT_ID,
        KINDS,
        REFRESH_INACTIVITY,
        REFRESH_REUSE_LEEWAY,
        REPORT_BATCH_LIMIT,
        FakeAtlassian,
        FakeAtlassianClient,
        FakeAtlassianControl,
        FakeClock,
    )

__all__ = [
    "ABSOLUTE_LIFETIME",
    "ACME_CLOUD_ID",
    "ADA_ACCOUNT_ID",
    "AUDIENCE",
    "CODE_LIFETIME",
    "DEFAULT_ACCESS_TOKEN_LIFETIME",
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
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import fake_atlassian

        return getattr(fake_atlassian, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
