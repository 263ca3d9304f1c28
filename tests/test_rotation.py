"""rotation.rotate_keys and `atlassian_oauth rotate-keys`: every secret moves to the first key."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db
from django.db import models
from django.utils import timezone

from atlassian_oauth import crypto, rotation, signals
from atlassian_oauth.models import AtlassianApp, Event, Grant

pytestmark = pytest.mark.django_db

OLD_KEY = "old:" + crypto.generate_key()
NEW_KEY = "new:" + crypto.generate_key()
LOST_KEY = "lost:" + crypto.generate_key()


def make_grant(number: int, **fields) -> Grant:
    now = timezone.now()
    defaults = {
        "client_id": "client",
        "account_id": f"account-{number}",
        "access_token": f"access-{number}",
        "refresh_token": f"refresh-{number}",
        "access_token_expires_at": now + timedelta(hours=1),
        "consented_at": now,
        "scopes": "read:jira-work offline_access",
    }
    return Grant.objects.create(**{**defaults, **fields})


def raw(model: type[models.Model], pk: int, column: str) -> str | None:
    with db.cursor() as cursor:
        table, quoted = db.ops.quote_name(model._meta.db_table), db.ops.quote_name(column)
        # Names from the model and the test, not from input.
        cursor.execute(f"SELECT {quoted} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        value: str | None = cursor.fetchone()[0]
    return value


def raw_key_id(model: type[models.Model], pk: int, column: str) -> str:
    value = raw(model, pk, column)
    assert value is not None
    return crypto.key_id_of(value)


def rotate(**kwargs) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("atlassian_oauth", "rotate-keys", stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_every_secret_moves_to_the_new_key_and_still_decrypts(use_keys):
    use_keys(OLD_KEY)
    grants = [make_grant(n) for n in range(3)]
    site = Site.objects.create(domain="tenant.example", name="Tenant")
    app = AtlassianApp.objects.create(site=site, client_id="tenant-app", client_secret="s3cret")
    versions = {g.pk: g.version for g in grants}
    use_keys(NEW_KEY, OLD_KEY)

    report = rotation.rotate_keys()

    assert (report.scanned, report.reencrypted, report.already_current) == (4, 4, 0)
    assert report.failed == [] and report.complete and report.key_id == "new"
    for grant in grants:
        assert raw_key_id(Grant, grant.pk, "access_token") == "new"
        assert raw_key_id(Grant, grant.pk, "refresh_token") == "new"
    assert raw_key_id(AtlassianApp, app.pk, "client_secret") == "new"

    use_keys(NEW_KEY)  # the old key is no longer needed
    for grant in Grant.objects.all():
        n = grant.account_id.removeprefix("account-")
        assert (grant.access_token, grant.refresh_token) == (f"access-{n}", f"refresh-{n}")
        assert grant.version == versions[grant.pk]  # the tokens did not change
    assert AtlassianApp.objects.get().client_secret == "s3cret"


def test_a_rerun_reencrypts_nothing(use_keys):
    use_keys(OLD_KEY)
    make_grant(1)
    use_keys(NEW_KEY, OLD_KEY)
    assert rotation.rotate_keys().reencrypted == 1

    again = rotation.rotate_keys()

    assert (again.scanned, again.reencrypted, again.already_current) == (1, 0, 1)
    assert Event.objects.filter(kind=Event.Kind.KEYS_ROTATED).count() == 1


def test_null_secrets_are_left_alone(use_keys):
    use_keys(OLD_KEY)
    grant = make_grant(1, refresh_token=None)
    use_keys(NEW_KEY, OLD_KEY)

    report = rotation.rotate_keys()

    assert report.reencrypted == 1
    assert raw(Grant, grant.pk, "refresh_token") is None
    assert raw_key_id(Grant, grant.pk, "access_token") == "new"


def test_the_event_records_the_counts_and_no_secret(use_keys):
    use_keys(OLD_KEY)
    make_grant(1)
    make_grant(2)
    use_keys(NEW_KEY, OLD_KEY)

    rotation.rotate_keys()

    event = Event.objects.get(kind=Event.Kind.KEYS_ROTATED)
    assert event.actor == Event.Actor.COMMAND
    assert event.details["reencrypted"] == 2
    assert event.details["scanned"] == 2
    assert event.details["failed"] == 0
    assert event.details["key_id"] == "new"
    assert "access-1" not in str(event.details) + event.message


def test_the_keys_rotated_signal_carries_the_counts(use_keys, django_capture_on_commit_callbacks):
    use_keys(OLD_KEY)
    make_grant(1)
    use_keys(NEW_KEY, OLD_KEY)
    received: list[dict[str, object]] = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    signals.keys_rotated.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):  # sent after the commit
            rotation.rotate_keys()
    finally:
        signals.keys_rotated.disconnect(receiver)
    assert len(received) == 1
    assert (received[0]["reencrypted"], received[0]["failed"]) == (1, 0)
    assert received[0]["actor"] == Event.Actor.COMMAND


def test_no_event_when_nothing_was_reencrypted(use_keys):
    use_keys(OLD_KEY)
    make_grant(1)
    rotation.rotate_keys()
    assert not Event.objects.filter(kind=Event.Kind.KEYS_ROTATED).exists()


def test_an_undecryptable_row_is_reported_and_the_others_rotate(use_keys):
    use_keys(OLD_KEY)
    before = make_grant(1)
    use_keys(LOST_KEY, OLD_KEY)
    lost = make_grant(2)  # written under a key that is about to go missing
    use_keys(OLD_KEY)
    after = make_grant(3)
    use_keys(NEW_KEY, OLD_KEY)

    report = rotation.rotate_keys()

    assert [(f.model, f.pk) for f in report.failed] == [("atlassian_oauth.Grant", lost.pk)]
    assert "'lost'" in str(report.failed[0]) and "access_token" in str(report.failed[0])
    assert report.reencrypted == 2
    assert raw_key_id(Grant, before.pk, "access_token") == "new"
    assert raw_key_id(Grant, after.pk, "access_token") == "new"
    assert raw_key_id(Grant, lost.pk, "access_token") == "lost"  # untouched
    assert Event.objects.get(kind=Event.Kind.KEYS_ROTATED).details["failed_rows"] == [
        f"atlassian_oauth.Grant:{lost.pk}"
    ]


def test_a_limited_run_stops_and_a_rerun_finishes(use_keys):
    use_keys(OLD_KEY)
    grants = [make_grant(n) for n in range(3)]
    use_keys(NEW_KEY, OLD_KEY)

    first = rotation.rotate_keys(limit=1)

    assert (first.reencrypted, first.complete) == (1, False)
    keys = [raw_key_id(Grant, g.pk, "access_token") for g in grants]
    assert keys == ["new", "old", "old"]

    second = rotation.rotate_keys()

    assert (second.reencrypted, second.already_current, second.complete) == (2, 1, True)
    assert {raw_key_id(Grant, g.pk, "refresh_token") for g in grants} == {"new"}


@pytest.mark.django_db(transaction=True)  # real commits, as in production
def test_an_interrupted_run_keeps_the_rows_it_committed(use_keys, monkeypatch):
    use_keys(OLD_KEY)
    grants = [make_grant(n) for n in range(3)]
    use_keys(NEW_KEY, OLD_KEY)
    real_save = Grant.save
    saves = []

    def interrupted_save(self, *args, **kwargs):
        saves.append(self.pk)
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(self, *args, **kwargs)

    monkeypatch.setattr(Grant, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate_keys()
    monkeypatch.setattr(Grant, "save", real_save)

    keys = [raw_key_id(Grant, g.pk, "access_token") for g in grants]
    assert keys == ["new", "old", "old"]
    assert rotation.rotate_keys().reencrypted == 2
    assert {raw_key_id(Grant, g.pk, "access_token") for g in grants} == {"new"}


def test_a_refresh_between_scan_and_lock_is_not_overwritten(use_keys, monkeypatch):
    use_keys(OLD_KEY)
    grant = make_grant(1)
    use_keys(NEW_KEY, OLD_KEY)
    scan = rotation._rows

    def scan_then_refresh(model, fields, keyring):
        for pk, stale in scan(model, fields, keyring):
            if model is Grant:
                # Another worker refreshes after the scan read the old ciphertexts.
                fresh = Grant.objects.get(pk=pk)
                fresh.access_token, fresh.refresh_token = "access-new", "refresh-new"
                fresh.version += 1
                fresh.save()
            yield pk, stale

    monkeypatch.setattr(rotation, "_rows", scan_then_refresh)
    report = rotation.rotate_keys()

    assert (report.reencrypted, report.already_current) == (0, 1)
    grant.refresh_from_db()
    assert (grant.access_token, grant.refresh_token) == ("access-new", "refresh-new")
    assert grant.version == 1


def test_progress_is_reported_every_n_rows(use_keys):
    use_keys(OLD_KEY)
    for n in range(5):
        make_grant(n)
    use_keys(NEW_KEY, OLD_KEY)
    seen: list[int] = []

    rotation.rotate_keys(progress=lambda r: seen.append(r.scanned), progress_every=2)

    assert seen == [2, 4]


def test_the_command_prints_a_summary_and_no_secret(use_keys):
    use_keys(OLD_KEY)
    grant = make_grant(1)
    old_ciphertext = raw(Grant, grant.pk, "access_token")
    assert old_ciphertext is not None
    use_keys(NEW_KEY, OLD_KEY)

    out, err = rotate()

    assert "1 rows scanned, 1 re-encrypted, 0 already under key id 'new', 0 failed" in out
    assert "Every secret is under key id 'new'" in out
    new_ciphertext = raw(Grant, grant.pk, "access_token")
    assert new_ciphertext is not None
    for secret in ("access-1", "refresh-1", old_ciphertext, new_ciphertext, NEW_KEY, OLD_KEY):
        assert secret not in out + err

    out, _err = rotate()
    assert "0 re-encrypted, 1 already under key id 'new'" in out


def test_the_command_fails_after_rotating_the_rest_when_a_row_cannot_be_decrypted(use_keys):
    use_keys(LOST_KEY)
    lost = make_grant(1)
    use_keys(OLD_KEY)
    other = make_grant(2)
    use_keys(NEW_KEY, OLD_KEY)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("atlassian_oauth", "rotate-keys", stdout=out, stderr=err)

    assert raised.value.returncode == 1
    assert f"atlassian_oauth.Grant pk={lost.pk}" in err.getvalue()
    assert "'lost'" in err.getvalue()
    assert "1 re-encrypted" in out.getvalue() and "1 failed" in out.getvalue()
    assert raw_key_id(Grant, other.pk, "access_token") == "new"
    assert "access-1" not in out.getvalue() + err.getvalue() + str(raised.value)


def test_the_command_prints_progress(use_keys, monkeypatch):
    use_keys(OLD_KEY)
    for n in range(3):
        make_grant(n)
    use_keys(NEW_KEY, OLD_KEY)
    real = rotation.rotate_keys
    monkeypatch.setattr(rotation, "rotate_keys", lambda **kw: real(**kw, progress_every=2))

    out, _err = rotate()

    assert "  2 rows scanned: 2 re-encrypted, 0 failed" in out


def test_the_command_names_a_malformed_key_setting(use_keys):
    use_keys("not-a-key")
    with pytest.raises(CommandError, match=r"ENCRYPTION_KEYS'\]\[0\] is malformed"):
        rotate()
