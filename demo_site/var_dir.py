"""The demo's var dir (``DEMO_VAR_DIR``, ``.demo/``): what lives there, and starting over.

Imported by the settings, so nothing here imports Django's settings.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

#: The fake Atlassian's grants and tokens (it writes it; a restart reads it back).
FAKE_STATE_FILE: Final = "fake-atlassian.json"
#: The running fake's URL, for commands run from another shell; removed on a clean stop.
FAKE_URL_FILE: Final = "fake-atlassian-url"
#: The running ``rundemo``'s process id, so ``make demo-reset`` does not pull the floor from it.
RUNDEMO_PID_FILE: Final = "rundemo.pid"
SQLITE_FILE: Final = "db.sqlite3"
KEY_FILE: Final = "encryption.key"

#: What ``reset`` removes, by name (never the whole folder: DEMO_VAR_DIR may point anywhere).
RESET_FILES: Final = (
    SQLITE_FILE,
    f"{SQLITE_FILE}-journal",
    f"{SQLITE_FILE}-wal",
    f"{SQLITE_FILE}-shm",
    FAKE_STATE_FILE,
    f"{FAKE_STATE_FILE}.unreadable",
    FAKE_URL_FILE,
    RUNDEMO_PID_FILE,
    "heartbeat",  # demo_site.tasks.heartbeat's last run
)
RESET_GLOBS: Final = ("celerybeat-schedule*", f".{FAKE_STATE_FILE}.*.tmp")
RESET_FOLDERS: Final = ("broker", "logs", "static")


def running_fake_url(var_dir: Path) -> str | None:
    """The URL the running demo's fake Atlassian listens on, if a demo is running."""
    try:
        url = (var_dir / FAKE_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return url or None


def running_demo_pid(var_dir: Path) -> int | None:
    """The process id of the ``rundemo`` using ``var_dir``, or None when none runs."""
    try:
        pid = int((var_dir / RUNDEMO_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, someone else's
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: trust the file
    # A pid left by a demo killed long ago may belong to another program by now.
    return pid if b"rundemo" in command else None


def reset(var_dir: Path, *, database_is_here: bool) -> list[str]:
    """Remove the demo's data from ``var_dir``; return the names removed.

    The encryption key goes too when the database went (it protected nothing else); with a
    database elsewhere (DATABASE_URL) the key stays, or that database's tokens could not be read.
    """
    names = list(RESET_FILES)
    if database_is_here:
        names.append(KEY_FILE)
    removed = []
    for name in names:
        path = var_dir / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    for pattern in RESET_GLOBS:
        for path in sorted(var_dir.glob(pattern)):
            if path.is_file():
                path.unlink()
                removed.append(path.name)
    for name in RESET_FOLDERS:
        path = var_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(f"{name}/")
    return removed
