"""The fake's sockets: a kept-alive request is answered without waiting on Nagle's algorithm."""

from __future__ import annotations

import contextlib
import socket

import requests

from atlassian_oauth.testing import FakeAtlassian


def test_accepted_sockets_set_tcp_nodelay(fake_atlassian: FakeAtlassian) -> None:
    # The fake writes the headers and the body in two sends: with Nagle's algorithm on, the body
    # of every request after the first on a kept-alive connection waited for the client's
    # delayed ACK (~40 ms). The benchmark (bench/run.py, the "shipped fake" row) has the figure.
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(2):
            assert session.get(f"{fake_atlassian.url}/me").status_code == 401
        server = fake_atlassian._server
        assert server is not None
        with server._connections_lock:
            connections = list(server._connections)
        options = []
        for connection in connections:
            # Another test's connection may be closing meanwhile; this one's stays open.
            with contextlib.suppress(OSError):
                options.append(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        assert options, "the kept-alive connection is open on the server"
        assert all(options)
