"""Tests that kill mutants of atlassian_oauth/crypto.py that `make mutation` found surviving.

An admin with a broken ``ENCRYPTION_KEYS`` reads only the error: it must name the entry by its
position and say what is wrong with it, without echoing the key.
"""

from __future__ import annotations

import pytest

from atlassian_oauth.crypto import KeyConfigurationError, KeyRing, generate_key

GOOD = generate_key()
SETTING = "ATLASSIAN_OAUTH['ENCRYPTION_KEYS']"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (123, "it is a int, not a str"),
        (b"bytes", "it is a bytes, not a str"),
        ("bad id!:" + GOOD, "its id must be 1-32 letters, digits, '.', '_' or '-'"),
        ("x" * 33 + ":" + GOOD, "its id must be 1-32 letters, digits, '.', '_' or '-'"),
        (GOOD[:40], "the key is not 32 bytes of urlsafe base64"),
        ("k-1:" + GOOD[:40], "the key is not 32 bytes of urlsafe base64"),
    ],
)
def test_a_malformed_entry_is_named_by_position_with_the_reason(entry, reason):
    with pytest.raises(KeyConfigurationError) as refused:
        KeyRing([GOOD, entry])  # a misconfiguration on purpose
    message = str(refused.value)
    assert message.startswith(f"{SETTING}[1] is malformed: {reason}. ")
    assert GOOD not in message and GOOD[:20] not in message
    if isinstance(entry, str):
        assert entry not in message
