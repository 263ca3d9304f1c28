"""The demo's key file survives its processes starting at the same moment."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

from atlassian_oauth.crypto import KeyRing
from demo_site.keys import demo_encryption_key


def test_concurrent_first_use_gives_everyone_the_same_key(tmp_path):
    path = tmp_path / "encryption.key"
    with ThreadPoolExecutor(max_workers=16) as pool:
        keys = set(pool.map(lambda _: demo_encryption_key(path), range(64)))
    assert len(keys) == 1
    KeyRing(keys)  # a well-formed key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["encryption.key"]  # no temporary left


def test_an_existing_key_is_reused(tmp_path):
    path = tmp_path / "encryption.key"
    first = demo_encryption_key(path)
    assert demo_encryption_key(path) == first
