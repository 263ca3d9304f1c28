"""``make bench``: every row of docs/performance.md's table, then the table.

    python -m bench.run                      # everything, PostgreSQL and SQLite (a few minutes)
    python -m bench.run --quick              # smaller sizes, fewer repeats (a smoke run)
    python -m bench.run --rows sweep,token --databases sqlite

Starts the fake Atlassian twice in processes of their own (answering after ``--delay``, 100 ms,
for the worker rows; at once for the CPU and overhead rows), runs ``bench.suite`` once per
database, ``bench.workers`` on PostgreSQL, and measures the shipped fake itself. Each row's
comparison is measured in the same run as its baseline, as medians over repeats. Nothing here
fails on a target not met: the table says so. Figures and logs go to ``build/bench/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.harness import PYTHON, REPO, Row, env, fake_server, load_average, ms, read_rows

OUT = REPO / "build" / "bench"
SUITE_ROWS = ("sweep", "enqueue", "token", "session", "refresh", "admin", "callback")
ALL_ROWS = (*SUITE_ROWS, "workers", "fake")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/perf"


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    # Whether a mutation run shares the machine (the figures say so).
    mutation = subprocess.run(
        ["pgrep", "-c", "-f", "mutmut"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_average():.2f} at the start"
        + (f" (mutmut processes running: {mutation})" if mutation not in ("", "0") else "")
    )


def ensure_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def kept_alive_ms(url: str, requests_count: int = 30) -> float:
    with requests.Session() as session:
        session.get(f"{url}/me", timeout=10)
        samples = []
        for _ in range(requests_count):
            started = time.perf_counter()
            session.get(f"{url}/me", timeout=10)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def new_connection_ms(url: str, requests_count: int = 30) -> float:
    samples = []
    for _ in range(requests_count):
        started = time.perf_counter()
        requests.get(f"{url}/me", timeout=10, headers={"Connection": "close"})
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def row_fake() -> list[Row]:
    say("== the shipped fake")
    with fake_server(0.0) as shipped, fake_server(0.0, nagle=True) as nagle:
        kept = kept_alive_ms(shipped)
        fresh = new_connection_ms(shipped)
        with_nagle = kept_alive_ms(nagle)
    say(
        f"  kept-alive request {ms(kept)}, a new connection each {ms(fresh)}; with Nagle's "
        f"algorithm on (the fake before TCP_NODELAY) {ms(with_nagle)}"
    )
    return [
        Row(
            path="the shipped fake, a kept-alive request",
            database="-",
            measured=f"{ms(kept)} (new connection {ms(fresh)}, Nagle on {ms(with_nagle)})",
            target="<= 2 ms",
            met=kept <= 0.002,
            figures={"kept_alive": kept, "new_connection": fresh, "nagle": with_nagle},
        )
    ]


def run_suite(
    database: str, url: str, rows: list[str], fast_url: str, args: argparse.Namespace
) -> list[Row]:
    out = OUT / f"suite-{database}.json"
    argv = [
        *(PYTHON, "-m", "bench.suite", f"--out={out}", f"--rows={','.join(rows)}"),
        f"--fake-url={fast_url}",
        f"--small={args.small}",
        f"--large={args.large}",
        f"--due={args.due}",
        f"--repeats={args.repeats}",
        f"--calls={args.calls}",
        f"--refreshes={args.refreshes}",
        f"--admin-rows={args.admin_rows}",
        f"--callbacks={args.callbacks}",
    ]
    environment = env(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DATABASE_URL=url,
        BENCH_QUEUE=f"atlassian-oauth-bench-{database}",
        BENCH_FAKE_URL=fast_url,
    )
    subprocess.run(argv, cwd=REPO, env=environment, check=True)  # noqa: S603
    return read_rows(out)


def run_workers(url: str, slow_url: str, fast_url: str, args: argparse.Namespace) -> list[Row]:
    out = OUT / "workers.json"
    folder = OUT / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        *(PYTHON, "-m", "bench.workers", f"--out={out}", f"--folder={folder}"),
        f"--fake-url={slow_url}",
        f"--fast-fake-url={fast_url}",
        f"--grants={args.grants}",
        f"--setups={args.setups}",
    ]
    environment = env(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DATABASE_URL=url,
        BENCH_QUEUE="atlassian-oauth-bench-workers",
        BENCH_FAKE_URL=slow_url,
    )
    subprocess.run(argv, cwd=REPO, env=environment, check=True)  # noqa: S603
    return read_rows(out)


def table(rows: list[Row]) -> str:
    lines = [
        "| path | database | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "met", False: "NOT MET", None: "-"}[row.met]
        path = row.path + (f" ({row.note})" if row.note else "")
        lines.append(f"| {path} | {row.database} | {row.measured} | {row.target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ALL_ROWS), help=", ".join(ALL_ROWS))
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--delay", type=float, default=0.1, help="the fake's answer delay")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--refreshes", type=int, default=100)
    parser.add_argument("--admin-rows", type=int, default=10_000)
    parser.add_argument("--callbacks", type=int, default=30)
    parser.add_argument("--grants", type=int, default=1000, help="due grants of the worker rows")
    parser.add_argument("--setups", default="0,1,2", help="worker setups (bench.workers.SETUPS)")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.large, args.due = 1000, 10_000, 100
        args.repeats, args.calls, args.refreshes = 3, 50, 50
        args.admin_rows, args.callbacks, args.grants = 1000, 10, 200
    wanted = args.rows.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    say(f"Machine: {machine()}")
    rows: list[Row] = []
    scratch = Path(tempfile.mkdtemp(prefix="atlassian-oauth-bench-"))
    try:
        with fake_server(args.delay) as slow_url, fake_server(0.0) as fast_url:
            suite_rows = [name for name in wanted if name in SUITE_ROWS]
            for database in args.databases.split(","):
                if not suite_rows:
                    break
                if database == "postgres":
                    ensure_postgres(args.postgres_url)
                    url = args.postgres_url
                else:
                    url = f"sqlite:///{scratch / 'bench.sqlite3'}"
                rows += run_suite(database, url, suite_rows, fast_url, args)
            if "workers" in wanted:
                ensure_postgres(args.postgres_url)
                rows += run_workers(args.postgres_url, slow_url, fast_url, args)
        if "fake" in wanted:
            rows += row_fake()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows.sort(key=lambda row: (ALL_ROWS.index(_kind(row)), row.database))
    say(f"\nMachine: {machine().replace('at the start', 'at the end')}\n")
    say(table(rows))
    (OUT / "table.md").write_text(table(rows) + "\n")
    return 0


def _kind(row: Row) -> str:
    order = {
        "beat sweep": "sweep",
        "sweep enqueue": "enqueue",
        "get_access_token": "token",
        "get_session": "session",
        "refresh,": "refresh",
        "event rows": "refresh",
        "refresh:": "workers",
        "refresh throughput": "workers",
        "PostgreSQL CPU": "workers",
        "admin": "admin",
        "callback": "callback",
        "the shipped fake": "fake",
    }
    for prefix, kind in order.items():
        if row.path.startswith(prefix):
            return kind
    return row.path if row.path in ALL_ROWS else "fake"


if __name__ == "__main__":
    sys.exit(main())
