"""One way to emit an event: every kind has one signal, documented, sent after commit."""

from __future__ import annotations

import inspect
import re

import pytest
from django.contrib.sites.models import Site
from django.dispatch import Signal

from atlassian_oauth import signals
from atlassian_oauth.events import SIGNALS, emit
from atlassian_oauth.models import Connection, Event
from tests.flow_helpers import finish


def documented_arguments(signal_name: str) -> set[str]:
    """The ``name`` words of the ``#:`` comment block above ``signal_name = Signal()``."""
    source = inspect.getsource(signals)
    match = re.search(rf"((?:^#:.*\n)+){signal_name} = Signal\(\)", source, re.MULTILINE)
    assert match, f"signals.{signal_name} has no #: comment"
    text = match.group(1)
    return set(re.findall(r"``(\w+)``", text.split("Arguments:", 1)[-1]))


def test_every_kind_has_a_signal_with_documented_arguments():
    assert set(SIGNALS) == set(Event.Kind)
    assert set(signals.ARGUMENTS) == set(Event.Kind)
    for kind, (signal, _sender) in SIGNALS.items():
        assert isinstance(signal, Signal)
        name = next(n for n, value in vars(signals).items() if value is signal)
        assert signals.ARGUMENTS[kind] <= documented_arguments(name) | {"actor"}, kind
        assert "actor" in signals.ARGUMENTS[kind]


@pytest.mark.django_db
def test_emit_refuses_arguments_the_signal_does_not_document():
    with pytest.raises(TypeError, match="refreshed signal takes"):
        emit(Event.Kind.REFRESHED, actor=Event.Actor.BEAT, arguments={"token": "x"})
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_failed_connect_sends_connect_failed_after_commit(
    alice, alice_client, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, **kwargs):
        received.append((sender, kwargs))

    signals.connect_failed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            finish(alice_client, {"state": "forged", "code": "c"})
        assert received == []  # not before the commit
        for callback in callbacks:
            callback()
    finally:
        signals.connect_failed.disconnect(receiver)
    assert len(received) == 1
    sender, arguments = received[0]
    assert sender is Connection
    assert arguments["user"] == alice
    assert arguments["site"] == Site.objects.get(domain="localhost")
    assert arguments["reason"] == "invalid_state"
    assert arguments["actor"] == Event.Actor.USER
