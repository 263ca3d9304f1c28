"""Key rotation: move every encrypted secret to the first key of ``ENCRYPTION_KEYS``.

Rows are handled one at a time, each in its own short transaction that locks and re-reads the
row, so a run can be interrupted at any point and rerun (it skips what is already current), and a
refresh that writes new tokens meanwhile is never overwritten with the stale ones read earlier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from django.apps import apps
from django.db import models, transaction

from . import crypto
from .events import emit
from .fields import EncryptedTextField, encrypted_fields
from .models import Event

logger = logging.getLogger(__name__)

#: Rows read per query while looking for stale ciphertexts.
BATCH_SIZE = 500
#: Most failed rows named in the KEYS_ROTATED event's details.
MAX_FAILED_IN_EVENT = 100


@dataclass(frozen=True)
class RowFailure:
    """A row whose secrets the configured keys cannot decrypt; it names fields, never values."""

    model: str
    pk: Any
    #: Field name -> why it cannot be re-encrypted (key ids only, which are not secret).
    reasons: dict[str, str]

    def __str__(self) -> str:
        why = "; ".join(f"{name}: {reason}" for name, reason in self.reasons.items())
        return f"{self.model} pk={self.pk}: {why}"


@dataclass
class RotationReport:
    """What ``rotate_keys`` did. ``already_current`` includes rows deleted during the run."""

    key_id: str
    scanned: int = 0
    reencrypted: int = 0
    already_current: int = 0
    failed: list[RowFailure] = field(default_factory=list)
    #: False when ``limit`` stopped the run before every row was scanned.
    complete: bool = True


def encrypted_models() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every installed concrete model with encrypted fields, and those fields."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue  # its rows are its concrete model's rows
        fields = encrypted_fields(model)
        if fields:
            found.append((model, fields))
    return found


def rotate_keys(
    *,
    actor: Event.Actor = Event.Actor.COMMAND,
    limit: int | None = None,
    progress: Callable[[RotationReport], None] | None = None,
    progress_every: int = 100,
) -> RotationReport:
    """Re-encrypt every stored secret not under the first key; report counts and failed rows.

    Stops after re-encrypting ``limit`` rows when given. Calls ``progress`` every
    ``progress_every`` scanned rows. Records a KEYS_ROTATED event when any row was re-encrypted.
    Raises ``crypto.KeyConfigurationError`` when ``ENCRYPTION_KEYS`` itself is wrong.
    """
    keyring = crypto.get_keyring()
    report = RotationReport(key_id=keyring.current.key_id)
    for model, fields in encrypted_models():
        for pk, stale in _rows(model, fields, keyring):
            if limit is not None and report.reencrypted >= limit:
                report.complete = False
                break
            report.scanned += 1
            if not stale:
                report.already_current += 1
            else:
                outcome = _rotate_row(model, fields, pk)
                if isinstance(outcome, RowFailure):
                    logger.warning("atlassian_oauth key rotation cannot re-encrypt %s", outcome)
                    report.failed.append(outcome)
                elif outcome == "reencrypted":
                    report.reencrypted += 1
                else:
                    report.already_current += 1
            if progress is not None and report.scanned % progress_every == 0:
                progress(report)
        if not report.complete:
            break

    if report.reencrypted:
        emit(
            Event.Kind.KEYS_ROTATED,
            actor=actor,
            message=f"Re-encrypted {report.reencrypted} rows under key id {report.key_id!r}",
            details={
                "key_id": report.key_id,
                "scanned": report.scanned,
                "reencrypted": report.reencrypted,
                "already_current": report.already_current,
                "failed": len(report.failed),
                "failed_rows": [f"{f.model}:{f.pk}" for f in report.failed[:MAX_FAILED_IN_EVENT]],
                "complete": report.complete,
            },
            arguments={"reencrypted": report.reencrypted, "failed": len(report.failed)},
        )
    return report


def _rows(
    model: type[models.Model], fields: list[EncryptedTextField], keyring: crypto.KeyRing
) -> Iterator[tuple[Any, bool]]:
    """Every row's pk, in pk order, and whether any of its ciphertexts may need work.

    Reads ciphertexts only (never decrypts) and locks nothing, so rows that are already current
    cost one shared read per batch.
    """
    manager = model._base_manager  # every row, whatever the default manager filters
    attnames = [f.attname for f in fields]
    last_pk = None
    while True:
        query = manager.order_by("pk")
        if last_pk is not None:
            query = query.filter(pk__gt=last_pk)
        batch = list(query.values_list("pk", *attnames)[:BATCH_SIZE])
        if not batch:
            return
        for pk, *values in batch:
            yield pk, any(_may_be_stale(value, keyring) for value in values)
        last_pk = batch[-1][0]


def _may_be_stale(value: str | None, keyring: crypto.KeyRing) -> bool:
    if value is None:
        return False
    try:
        return keyring.needs_reencryption(value)
    except crypto.DecryptionError:
        return True  # not a token at all: the locked pass reports it


def _rotate_row(
    model: type[models.Model], fields: list[EncryptedTextField], pk: Any
) -> Literal["reencrypted", "current"] | RowFailure:
    # durable: each row is committed on its own, so an interrupted run keeps what it did.
    with transaction.atomic(durable=True):
        # Re-read under the lock: re-encrypt what is stored now, not what the scan saw.
        instance = model._base_manager.select_for_update().filter(pk=pk).first()
        if instance is None:
            return "current"
        changed: list[str] = []
        reasons: dict[str, str] = {}
        for encrypted in fields:
            try:
                if encrypted.reencrypt(instance):
                    changed.append(encrypted.attname)
            except crypto.CryptoError as error:
                reasons[encrypted.name] = _reason(error)
        if reasons:
            return RowFailure(model=model._meta.label, pk=pk, reasons=reasons)
        if not changed:
            return "current"
        # Only the secrets: Grant.version and updated_at stay, as the tokens did not change.
        instance.save(update_fields=changed)
    return "reencrypted"


def _reason(error: crypto.CryptoError) -> str:
    if isinstance(error, crypto.UnknownKeyError):
        return f"encrypted with key id {error.key_id!r}, which is not in {crypto.KEYS_SETTING}"
    # crypto's messages name key ids and row contexts, never a value or a key.
    return str(error)
