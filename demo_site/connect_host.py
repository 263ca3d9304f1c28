"""The demo's connect host: both tenants share one Atlassian app and its one callback URL.

Imported by the settings, so it imports nothing of Django's models.
"""

from __future__ import annotations

#: A third loopback name, beside the tenants' ``localhost`` and ``127.0.0.1``. It is no Site:
#: it only hands each callback back to its tenant's host. Browsers resolve every *.localhost
#: name to loopback themselves, so nothing needs /etc/hosts.
CONNECT_HOST = "connect.localhost"
#: Who the fake Atlassian's consent page says is asking: all it sees is the connect host.
CONNECT_HOST_NAME = "Acme or Globex, through the connect host"


def connect_host_callback_url(port: int) -> str:
    """The one callback URL of the demo's app (the one to register with real Atlassian)."""
    return f"http://{CONNECT_HOST}:{port}/atlassian/callback/"
