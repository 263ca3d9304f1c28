"""Profiles for docs/performance.md: where a path's time goes, by pyinstrument.

    python -m bench.profile refresh      # sweep.refresh_if_due of due grants, in this process
    python -m bench.profile token        # get_access_token of a fresh token
    python -m bench.profile sweep        # the sweep's selection and enqueueing, 1,000 due

Starts its own fake Atlassian (answering at once) and uses the database of
``BENCH_DATABASE_URL`` (default: a SQLite file in a temporary folder); prints the profile and
writes it to ``build/bench/profile-<path>.txt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench.harness import REPO, fake_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("path", choices=("refresh", "token", "sweep"))
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    os.environ.setdefault(
        "BENCH_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='bench-profile-')}/db.sqlite3"
    )
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    with fake_server(0.0) as url:
        os.environ["BENCH_FAKE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from pyinstrument import Profiler

        from atlassian_oauth import api, sweep, tasks
        from atlassian_oauth.models import Event
        from atlassian_oauth.testing import FakeAtlassianClient
        from bench import data, suite

        call_command("migrate", verbosity=0)
        suite.fresh_database()
        fake = FakeAtlassianClient(url)
        profiler = Profiler(interval=0.0005)
        if args.path == "refresh":
            ids = data.minted_grants(fake, args.count + 5, prefix="prof", expires_in=-1)
            for grant_id in ids[:5]:  # warm up
                sweep.refresh_if_due(grant_id, actor=Event.Actor.BEAT)
            with profiler:
                for grant_id in ids[5:]:
                    sweep.refresh_if_due(grant_id, actor=Event.Actor.BEAT)
        elif args.path == "token":
            site = suite.bench_site()
            [grant_id] = data.minted_grants(fake, 1, prefix="proft", expires_in=3600)
            user = data.connected_user(grant_id, site, "profiled")
            for _ in range(20):
                api.get_access_token(user, site)
            with profiler:
                for _ in range(args.count * 10):
                    api.get_access_token(user, site)
        else:
            data.bulk_grants(100_000, due=1000)
            suite.analyze()
            tasks.refresh_due_grants()
            with profiler:
                for _ in range(5):
                    tasks.refresh_due_grants()
                    suite._purge_queue()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    out = REPO / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{args.path}.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
