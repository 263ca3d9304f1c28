"""The fake Atlassian as the bench runs it: in a process of its own, answering after a delay.

``python -m bench.fake --delay 0.1`` serves the shipped fake (``atlassian_oauth.testing``) with
every Atlassian request (not the control API) answered ``--delay`` seconds late, through the
fake's own fault injection. The shipped fake sets TCP_NODELAY on its sockets (it writes headers
and body in two sends); ``--nagle`` leaves Nagle's algorithm on, as the fake did before, for the
"shipped fake" row to show what that cost (~40 ms per kept-alive request, the client's delayed
ACK). Prints its URL on the first line once it listens.
"""

from __future__ import annotations

import argparse

from atlassian_oauth.testing import fake_atlassian

#: Enough delayed answers for any run (the fault is consumed one per request).
FOREVER = 10**9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--nagle", action="store_true", help="leave Nagle's algorithm on")
    parser.add_argument("--token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    if args.nagle:
        # socketserver's StreamRequestHandler sets TCP_NODELAY on each accepted socket when
        # this class attribute is true; cleared here, in this process only.
        fake_atlassian._Handler.disable_nagle_algorithm = False
    fake = fake_atlassian.FakeAtlassian(
        port=args.port, auto_consent="accept", access_token_lifetime=args.token_lifetime
    )
    if args.delay:
        fake.inject("any", delay=args.delay, times=FOREVER)

    def announce(running: fake_atlassian.FakeAtlassian) -> None:
        print(running.url, flush=True)

    fake.serve_forever(ready=announce)


if __name__ == "__main__":
    main()
