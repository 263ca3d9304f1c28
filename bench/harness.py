"""What every bench row needs: timing by medians, CPU of processes, subprocesses, results."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One line of the final table: what was measured against which target."""

    path: str
    database: str
    measured: str
    target: str
    met: bool | None  # None: not measurable here (the note says why)
    note: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def expect(condition: object, what: object = "") -> None:
    """A check of the bench's own run (asserts vanish under ``python -O``)."""
    if not condition:
        raise RuntimeError(f"bench: unexpected {what!r}")


def per_call(function: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``function``, over ``calls`` calls in a row."""
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def side_by_side(
    candidates: dict[str, Callable[[], object]], *, calls: int, repeats: int, warmup: int = 3
) -> dict[str, float]:
    """The median seconds per call of each candidate, measured in alternation (a round of each
    per repeat), so a load that comes and goes weighs on all of them alike."""
    for function in candidates.values():
        for _ in range(warmup):
            function()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, function in candidates.items():
            samples[name].append(per_call(function, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def median_of(function: Callable[[], float], repeats: int) -> float:
    return statistics.median(function() for _ in range(repeats))


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses; the fields after the last ")" do not.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of the process (``children``: plus its reaped children's)."""
    try:
        values = _stat_fields(pid)
    except OSError:
        return 0.0
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime; here shifted by the 2 before ")".
    ticks = int(values[11]) + int(values[12])
    if children:
        ticks += int(values[13]) + int(values[14])
    return ticks / CLOCK_TICK


def tree(pid: int) -> set[int]:
    """``pid`` and every live process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = {pid}, [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s whole tree: live processes, and those already reaped."""
    return sum(cpu_seconds(p, children=True) for p in tree(pid))


def postgres_cpu() -> float:
    """CPU seconds of the local PostgreSQL server: the postmaster's reaped children (backends
    that ended) plus every live backend. Other databases' work counts too: the bench's share
    is what changes across a run while nothing else runs."""
    postmasters = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and _comm(int(p.name)) == "postgres"
        and _parent_comm(p.name) != "postgres"
    ]
    return sum(tree_cpu(pid) for pid in postmasters)


def backends_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each of these PostgreSQL backends (those still alive)."""
    return {pid: cpu_seconds(pid) for pid in pids if Path(f"/proc/{pid}").exists()}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _parent_comm(pid: str) -> str:
    try:
        return _comm(int(_stat_fields(int(pid))[1]))
    except (OSError, IndexError, ValueError):
        return ""


def load_average() -> float:
    return os.getloadavg()[0]


def env(**overrides: str) -> dict[str, str]:
    values = dict(os.environ)
    values["PYTHONPATH"] = str(REPO)
    values["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    values.update(overrides)
    return values


@contextmanager
def process(
    argv: list[str], environment: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (in its own process group) for the block; stop the whole group after."""
    with log.open("ab") as out:
        child = subprocess.Popen(  # noqa: S603  (the bench's own argv)
            argv,
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, 15)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, 9)
                child.wait()


@contextmanager
def fake_server(delay: float, *, nagle: bool = False) -> Iterator[str]:
    """A fake Atlassian in a process of its own (``bench.fake``); yields its URL."""
    argv = [PYTHON, "-m", "bench.fake", f"--delay={delay}"] + (["--nagle"] if nagle else [])
    child = subprocess.Popen(  # noqa: S603  (the bench's own argv)
        argv, cwd=REPO, env=env(), stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        expect(child.stdout is not None)
        url = child.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake did not start: {url!r}")
        yield url
    finally:
        os.killpg(child.pid, 15)
        child.wait(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def write_rows(path: Path, rows: list[Row]) -> None:
    path.write_text(json.dumps([asdict(row) for row in rows], indent=2, default=str))


def read_rows(path: Path) -> list[Row]:
    return [Row(**item) for item in json.loads(path.read_text())]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"
