"""The demo's encryption key: made once per checkout and kept beside its database."""

from __future__ import annotations

import os
from pathlib import Path

from atlassian_oauth.crypto import generate_key


def demo_encryption_key(path: Path) -> str:
    """Read the key at ``path``, creating it (readable by its owner only) on first use.

    Good enough for a demo on one machine; a deployment sets ATLASSIAN_ENCRYPTION_KEYS from its
    secret store instead, so the key never sits beside the data it protects.
    """
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(generate_key() + "\n")
    return path.read_text().strip()
