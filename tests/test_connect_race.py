"""Two callbacks of one user and site at the same moment: the one that loses the insert of the
connection (or of the grant) updates the winner's row instead of failing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection as db
from django.db.models.signals import pre_save
from django.utils import timezone

from atlassian_oauth.models import Connection, Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from tests.flow_helpers import connect, messages_of

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_ACCOUNT = "the-other-tabs-account"


def _in_another_transaction(work: Any) -> None:
    """Run ``work`` on a connection of its own, committed before this returns."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # pragma: no cover  (reported below)
            failures.append(error)
        finally:
            db.close()  # this thread's connection

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and not failures, failures


@pytest.fixture
def other_tab_wins_the_connection_insert(alice: Any, sites: Any):
    """Just before the callback inserts alice's connection on localhost, another tab's callback
    (with another Atlassian account) inserts and commits it."""
    localhost, _ = sites

    def win() -> None:
        now = timezone.now()
        grant = Grant.objects.create(
            client_id=DEFAULT_CLIENT_ID,
            account_id=OTHER_ACCOUNT,
            access_token="other-access",
            refresh_token="other-refresh",
            access_token_expires_at=now,
            consented_at=now,
        )
        Connection.objects.create(user=alice, site=localhost, grant=grant)

    def before_insert(sender: Any, instance: Connection, raw: bool = False, **kwargs: Any) -> None:
        if instance.pk is None and not raw:
            pre_save.disconnect(before_insert, sender=Connection)
            _in_another_transaction(win)

    pre_save.connect(before_insert, sender=Connection, weak=False)
    yield
    pre_save.disconnect(before_insert, sender=Connection)


def test_the_loser_of_the_connection_insert_reconnects_the_winners_row(
    alice_client, accepting, other_tab_wins_the_connection_insert
):
    if db.vendor == "sqlite":
        pytest.skip("SQLite lets one writer at a time: the other tab waits for this one")
    if db.vendor == "mysql":
        # Our SELECT ... FOR UPDATE found no connection and InnoDB holds a gap lock there: the
        # other tab's insert waits for this transaction, so it cannot win first.
        pytest.skip("InnoDB's gap lock makes the other tab wait for this one")
    response = connect(alice_client)
    assert response.status_code == 302
    assert any("connected as" in message for message in messages_of(response))
    (connection,) = Connection.objects.all()
    # The last callback's account holds the connection; the other tab's grant went unused.
    assert connection.grant.account_id == ADA_ACCOUNT_ID
    assert list(Grant.objects.values_list("account_id", flat=True)) == [ADA_ACCOUNT_ID]
    assert connection.jira_resource is not None
    assert Event.objects.filter(kind=Event.Kind.CONNECTED).count() == 1


@pytest.fixture
def another_user_wins_the_grant_insert(bob: Any, sites: Any):
    """Just before the callback inserts the grant of Ada's account, bob's callback (the same
    Atlassian account, on another site) inserts and commits it, with its own connection."""
    _, other_site = sites

    def win() -> None:
        now = timezone.now()
        grant = Grant.objects.create(
            client_id=DEFAULT_CLIENT_ID,
            account_id=ADA_ACCOUNT_ID,
            access_token="bobs-access",
            refresh_token="bobs-refresh",
            access_token_expires_at=now,
            consented_at=now,
        )
        Connection.objects.create(user=bob, site=other_site, grant=grant)

    def before_insert(sender: Any, instance: Grant, raw: bool = False, **kwargs: Any) -> None:
        if instance.pk is None and not raw and instance.account_id == ADA_ACCOUNT_ID:
            pre_save.disconnect(before_insert, sender=Grant)
            _in_another_transaction(win)

    pre_save.connect(before_insert, sender=Grant, weak=False)
    yield
    pre_save.disconnect(before_insert, sender=Grant)


def test_the_loser_of_the_grant_insert_stores_its_tokens_in_the_winners_row(
    alice_client, accepting, bob, another_user_wins_the_grant_insert
):
    if db.vendor == "sqlite":
        pytest.skip("SQLite lets one writer at a time: the other callback waits for this one")
    response = connect(alice_client)
    assert response.status_code == 302
    (grant,) = Grant.objects.all()
    assert grant.access_token != "bobs-access"  # the latest tokens: this callback's
    assert grant.version == 1
    assert set(Connection.objects.values_list("user__username", flat=True)) == {"alice", "bob"}
    assert set(Connection.objects.values_list("grant", flat=True)) == {grant.pk}
