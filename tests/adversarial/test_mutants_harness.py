"""``make mutation``'s harness: a pytest plugin for mutmut's workers, and the score it prints.

As a plugin (``-p tests.adversarial.test_mutants_harness``, setup.cfg's [mutmut] section): mutmut
forks one worker per mutant from one parent, so every worker inherits the same settings and
would create, use and destroy the same SQLite ``test-db.sqlite3`` at once; each pytest session
gets a file of its own, named by its process id.

As a script (``python -m tests.adversarial.test_mutants_harness [mutants-dir]``): reads mutmut's
results and prints the score, per module and in total, with the surviving mutants' names.

Collected as a test module in the normal suite it holds no tests and registers no hook (only
``-p`` makes a module a plugin).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

#: mutmut's exit codes (mutmut/stats.py): a test failed (1), or pytest failed internally (3).
KILLED = {1, 3}
SURVIVED = {0}
#: Detected all the same: the mutant hung (a timeout) or made pytest crash.
TIMEOUT = {-24, 24, 152, 255, 36}


def pytest_sessionstart(session: pytest.Session) -> None:
    _forget_process_caches()
    from django.conf import settings

    for database in settings.DATABASES.values():
        test = database.setdefault("TEST", {})
        name = test.get("NAME")
        if database["ENGINE"] == "django.db.backends.sqlite3" and name and name != ":memory:":
            # Before pytest-django's session fixture reads it: the suffix holds for the session.
            base = str(name).split(".mutant-", 1)[0]
            test["NAME"] = f"{base}.mutant-{os.getpid()}"


def _forget_process_caches() -> None:
    """mutmut forks every mutant's worker from the process that ran the suite once for its
    stats: what that process cached (the claim's compiled SQL, a connection query, a parsed key
    ring) would be used as it is, and the mutated code that builds it would never run."""
    from atlassian_oauth import api, crypto, refresh

    refresh._statements.clear()
    getattr(api, "_connection_statements", {}).clear()
    crypto._keyring_for.cache_clear()


def _status(exit_code: int | None) -> str:
    if exit_code is None:
        return "not checked"
    if exit_code in KILLED:
        return "killed"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in TIMEOUT:
        return "timeout"
    if exit_code in (5, 33):
        return "no tests"
    return "other"


def score(mutants: Path) -> tuple[str, list[str]]:
    """The score report's text, and the surviving mutants' names."""
    lines: list[str] = []
    survivors: list[str] = []
    total: Counter[str] = Counter()
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(_status(code) for code in codes.values())
        survivors += sorted(name for name, code in codes.items() if _status(code) == "survived")
        total += counts
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        lines.append(_line(module, counts))
    lines.append(_line("total", total))
    return "\n".join(lines), survivors


def _line(label: str, counts: Counter[str]) -> str:
    mutants = sum(counts.values())
    detected = counts["killed"] + counts["timeout"]
    percent = 100.0 * detected / mutants if mutants else 0.0
    extra = ", ".join(
        f"{counts[name]} {name}"
        for name in ("timeout", "no tests", "not checked", "other")
        if counts[name]
    )
    return (
        f"{label:32} {detected:4d} / {mutants:4d} killed ({percent:5.1f} %), "
        f"{counts['survived']:3d} survived" + (f" [{extra}]" if extra else "")
    )


def main(argv: list[str]) -> int:
    mutants = Path(argv[1] if len(argv) > 1 else "mutants")
    if not mutants.is_dir():
        print(f"no mutmut results in {mutants}/ (run `make mutation` first)", file=sys.stderr)
        return 1
    report, survivors = score(mutants)
    print("surviving mutants (`.venv/bin/mutmut show NAME` shows one):")
    print("\n".join(f"  {name}" for name in survivors) or "  none")
    print("mutation score (killed = a test failed or the mutant timed out):")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
