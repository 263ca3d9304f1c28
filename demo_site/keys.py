"""The demo's encryption key: made once per checkout and kept beside its database."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from atlassian_oauth.crypto import generate_key


def demo_encryption_key(path: Path) -> str:
    """Read the key at ``path``, creating it (readable by its owner only) on first use.

    The demo's processes (web, worker, beat) start together, so creation must be race-free:
    the key is written to a private temporary file and linked into place, which either
    succeeds whole or finds the key another process made first.

    Good enough for a demo on one machine; a deployment sets ATLASSIAN_ENCRYPTION_KEYS from its
    secret store instead, so the key never sits beside the data it protects.
    """
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            with os.fdopen(descriptor, "w") as handle:  # mkstemp makes it mode 0600
                handle.write(generate_key() + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_text().strip()
