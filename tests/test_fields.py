"""EncryptedTextField: plaintext on the attribute, bound ciphertext in the column, nowhere else."""

from __future__ import annotations

import json
import uuid

import pytest
from django.apps import apps as django_apps
from django.core import serializers
from django.core.exceptions import FieldError
from django.db import connection, models
from django.forms import modelform_factory
from django.test.utils import isolate_apps
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from atlassian_oauth.crypto import (
    DecryptionError,
    KeyRing,
    MissingKeyError,
    UnknownKeyError,
    generate_key,
    key_id_of,
    needs_reencryption,
)
from atlassian_oauth.fields import (
    Ciphertext,
    EncryptedTextField,
    encrypted_fields,
    reencrypt_instance,
)

OLD_KEY = "2025-01:" + generate_key()
NEW_KEY = "2026-11:" + generate_key()
SECRET = "atl-access-4e9a1c7d2b5f"
OTHER_SECRET = "atl-access-8d3b6f0a1e2c"

with isolate_apps("atlassian_oauth"):

    class Vault(models.Model):
        uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        label = models.CharField(max_length=20, blank=True)
        token = EncryptedTextField(bind_field="uuid", null=True, blank=True)
        other = EncryptedTextField("other token", bind_field="uuid", null=True, blank=True)
        objects: models.Manager[Vault] = models.Manager()

        class Meta:
            app_label = "atlassian_oauth"
            db_table = "test_fields_vault"

    class Locker(models.Model):
        uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        token = EncryptedTextField(bind_field="uuid", null=True)
        objects: models.Manager[Locker] = models.Manager()

        class Meta:
            app_label = "atlassian_oauth"
            db_table = "test_fields_locker"


MODELS = (Vault, Locker)


@pytest.fixture
def tables(transactional_db, use_keys):
    """The test models' tables; their tests start from NEW_KEY."""
    use_keys(NEW_KEY)
    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.create_model(model)
    yield
    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.delete_model(model)


def raw_or_none(model: type[models.Model], pk: int, column: str = "token") -> str | None:
    """The column's value as stored, read around the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        row = cursor.fetchone()
    assert row is not None
    value: str | None = row[0]
    return value


def raw(model: type[models.Model], pk: int, column: str = "token") -> str:
    value = raw_or_none(model, pk, column)
    assert value is not None
    return value


def field_of(model: type[models.Model], name: str = "token") -> EncryptedTextField:
    field = model._meta.get_field(name)
    assert isinstance(field, EncryptedTextField)
    return field


def write_raw(model: type[models.Model], pk: int, value: str | None, column: str = "token"):
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {model._meta.db_table} SET {column} = %s WHERE id = %s",  # noqa: S608
            [value, pk],
        )


def assert_discreet(error: BaseException, *secrets: str) -> None:
    for text in (str(error), repr(error)):
        for secret in secrets:
            assert secret not in text


# --- storing and reading --------------------------------------------------------------------


def test_the_column_holds_ciphertext_and_the_attribute_plaintext(tables):
    vault = Vault.objects.create(token=SECRET)
    stored = raw(Vault, vault.pk)
    assert stored is not None
    assert SECRET not in stored
    assert stored.startswith("v1:2026-11:")
    assert key_id_of(stored) == "2026-11"
    assert vault.token == SECRET
    assert Vault.objects.get(pk=vault.pk).token == SECRET


@given(plaintext=st.text())
@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_round_trips_through_the_database(tables, plaintext):
    vault = Vault.objects.create(token=plaintext, other=plaintext)
    assert raw(Vault, vault.pk) != raw(Vault, vault.pk, "other")
    loaded = Vault.objects.get(pk=vault.pk)
    assert loaded.token == plaintext
    assert loaded.other == plaintext


def test_none_is_stored_as_null_and_empty_text_is_encrypted(tables):
    vault = Vault.objects.create(token=None, other="")
    assert raw_or_none(Vault, vault.pk) is None
    assert raw(Vault, vault.pk, "other").startswith("v1:")
    loaded = Vault.objects.get(pk=vault.pk)
    assert loaded.token is None
    assert loaded.other == ""
    assert Vault.objects.filter(token__isnull=True).count() == 1
    assert Vault.objects.filter(token=None).count() == 1


def test_loading_does_not_decrypt_until_the_attribute_is_read(tables, use_keys):
    pk = Vault.objects.create(token=SECRET).pk
    use_keys(OLD_KEY)
    vault = Vault.objects.get(pk=pk)  # no error: nothing decrypted yet
    assert isinstance(vault.__dict__["token"], Ciphertext)
    assert field_of(Vault).has_value(vault) is True
    with pytest.raises(UnknownKeyError):
        vault.token  # noqa: B018


def test_the_plaintext_is_cached_after_the_first_read(tables):
    pk = Vault.objects.create(token=SECRET).pk
    vault = Vault.objects.get(pk=pk)
    assert vault.token == SECRET
    assert vault.__dict__["token"] == SECRET
    assert not isinstance(vault.__dict__["token"], Ciphertext)


def test_a_deferred_field_loads_in_one_query(tables, django_assert_num_queries):
    pk = Vault.objects.create(token=SECRET).pk
    vault = Vault.objects.only("id").get(pk=pk)
    with django_assert_num_queries(1):
        assert vault.token == SECRET


def test_refresh_from_db_drops_the_cached_plaintext(tables):
    vault = Vault.objects.create(token=SECRET)
    assert vault.token == SECRET
    other = Vault.objects.get(pk=vault.pk)
    other.token = OTHER_SECRET
    other.save()
    vault.refresh_from_db()
    assert vault.token == OTHER_SECRET
    vault.token = "unsaved"
    vault.refresh_from_db(fields=["token"])
    assert vault.token == OTHER_SECRET


def test_values_and_values_list_give_ciphertext_not_plaintext(tables):
    vault = Vault.objects.create(token=SECRET)
    value = Vault.objects.values_list("token", flat=True).get(pk=vault.pk)
    assert isinstance(value, Ciphertext)
    assert value == raw(Vault, vault.pk)
    assert Vault.objects.filter(token=value).get() == vault
    assert Vault.objects.filter(token__in=[value]).count() == 1


def test_the_attribute_takes_only_text(tables):
    with pytest.raises(TypeError, match="takes a str or None, not int"):
        Vault(token=12345)


def test_saving_without_keys_fails_and_writes_nothing(tables, use_keys):
    use_keys()
    with pytest.raises(MissingKeyError):
        Vault.objects.create(token=SECRET)
    assert Vault.objects.count() == 0


def test_an_empty_bind_field_is_refused(tables):
    vault = Vault(token=SECRET)
    vault.uuid = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="bound to 'uuid', which is empty") as e:
        vault.save()
    assert_discreet(e.value, SECRET)


def test_a_uuid_given_as_text_binds_like_the_loaded_uuid(tables):
    row_id = uuid.uuid4()
    vault = Vault.objects.create(uuid=str(row_id).upper(), token=SECRET)
    assert Vault.objects.get(pk=vault.pk).token == SECRET


# --- binding: a moved ciphertext does not decrypt ------------------------------------------


def test_a_ciphertext_copied_to_another_row_fails(tables):
    source = Vault.objects.create(token=SECRET)
    target = Vault.objects.create(token=OTHER_SECRET)
    stolen = raw(Vault, source.pk)
    write_raw(Vault, target.pk, stolen)
    with pytest.raises(DecryptionError, match="does not belong to this row and column") as e:
        Vault.objects.get(pk=target.pk).token  # noqa: B018
    assert str(target.uuid) in str(e.value)
    assert_discreet(e.value, SECRET, OTHER_SECRET, stolen)


def test_a_ciphertext_copied_to_another_column_fails(tables):
    vault = Vault.objects.create(token=SECRET)
    write_raw(Vault, vault.pk, raw(Vault, vault.pk), column="other")
    loaded = Vault.objects.get(pk=vault.pk)
    assert loaded.token == SECRET
    with pytest.raises(DecryptionError):
        loaded.other  # noqa: B018


def test_a_ciphertext_copied_to_another_model_with_the_same_uuid_fails(tables):
    vault = Vault.objects.create(token=SECRET)
    locker = Locker.objects.create(uuid=vault.uuid, token=OTHER_SECRET)
    write_raw(Locker, locker.pk, raw(Vault, vault.pk))
    with pytest.raises(DecryptionError):
        Locker.objects.get(pk=locker.pk).token  # noqa: B018


def test_a_copied_instance_with_a_new_uuid_cannot_read_the_old_ciphertext(tables):
    vault = Vault.objects.create(token=SECRET)
    copy = Vault.objects.get(pk=vault.pk)
    copy.pk = None
    copy.uuid = uuid.uuid4()
    copy.save()
    with pytest.raises(DecryptionError):
        Vault.objects.get(pk=copy.pk).token  # noqa: B018


def test_a_tampered_ciphertext_fails(tables):
    vault = Vault.objects.create(token=SECRET)
    stored = raw(Vault, vault.pk)
    flipped = stored[:-3] + ("A" if stored[-3] != "A" else "B") + stored[-2:]
    write_raw(Vault, vault.pk, flipped)
    with pytest.raises(DecryptionError) as e:
        Vault.objects.get(pk=vault.pk).token  # noqa: B018
    assert_discreet(e.value, SECRET, stored, flipped)


def test_plaintext_written_around_the_field_fails_loudly(tables):
    vault = Vault.objects.create()
    write_raw(Vault, vault.pk, SECRET)
    with pytest.raises(DecryptionError, match="not a ciphertext") as e:
        Vault.objects.get(pk=vault.pk).token  # noqa: B018
    assert_discreet(e.value, SECRET)


def test_a_wrong_key_under_the_same_id_fails(tables, use_keys):
    use_keys("k:" + generate_key())
    pk = Vault.objects.create(token=SECRET).pk
    use_keys("k:" + generate_key())
    with pytest.raises(DecryptionError, match="not the one that encrypted it"):
        Vault.objects.get(pk=pk).token  # noqa: B018


def test_a_missing_key_is_named(tables, use_keys):
    pk = Vault.objects.create(token=SECRET).pk
    use_keys(OLD_KEY)
    with pytest.raises(UnknownKeyError, match="key id '2026-11'") as e:
        Vault.objects.get(pk=pk).token  # noqa: B018
    assert "ATLASSIAN_OAUTH['ENCRYPTION_KEYS']" in str(e.value)
    assert_discreet(e.value, SECRET, NEW_KEY, OLD_KEY, raw(Vault, pk))


# --- key rotation ---------------------------------------------------------------------------


def test_after_rotation_old_rows_decrypt_and_saving_moves_them_to_the_new_key(tables, use_keys):
    use_keys(OLD_KEY)
    pk = Vault.objects.create(token=SECRET).pk
    use_keys(NEW_KEY, OLD_KEY)
    stored = raw(Vault, pk)
    assert key_id_of(stored) == "2025-01"
    assert needs_reencryption(stored) is True

    vault = Vault.objects.get(pk=pk)
    vault.label = "touched"
    vault.save()  # the token was never read: the field re-encrypts it anyway
    assert key_id_of(raw(Vault, pk)) == "2026-11"
    assert needs_reencryption(raw(Vault, pk)) is False
    assert Vault.objects.get(pk=pk).token == SECRET


def test_reencrypt_instance_names_the_fields_to_save(tables, use_keys):
    use_keys(OLD_KEY)
    pk = Vault.objects.create(token=SECRET, other=None).pk
    use_keys(NEW_KEY, OLD_KEY)

    vault = Vault.objects.get(pk=pk)
    assert reencrypt_instance(vault) == ["token"]
    vault.save(update_fields=["token"])
    use_keys(NEW_KEY)
    assert Vault.objects.get(pk=pk).token == SECRET
    assert reencrypt_instance(Vault.objects.get(pk=pk)) == []


def test_reading_and_saving_reencrypts_under_the_first_key(tables, use_keys):
    use_keys(OLD_KEY)
    pk = Vault.objects.create(token=SECRET).pk
    use_keys(NEW_KEY, OLD_KEY)
    vault = Vault.objects.get(pk=pk)
    assert vault.token == SECRET
    vault.save(update_fields=["token"])
    assert key_id_of(raw(Vault, pk)) == "2026-11"


def test_an_untouched_current_ciphertext_is_written_back_unchanged(tables):
    vault = Vault.objects.create(token=SECRET)
    stored = raw(Vault, vault.pk)
    loaded = Vault.objects.get(pk=vault.pk)
    loaded.label = "x"
    loaded.save()
    assert raw(Vault, vault.pk) == stored


# --- the query layer refuses plaintext ------------------------------------------------------


def test_update_with_plaintext_is_refused(tables):
    vault = Vault.objects.create(token=SECRET)
    with pytest.raises(TypeError, match="refuses a str in a query") as e:
        Vault.objects.filter(pk=vault.pk).update(token=OTHER_SECRET)
    assert_discreet(e.value, OTHER_SECRET)
    assert Vault.objects.get(pk=vault.pk).token == SECRET


def test_filter_with_plaintext_is_refused(tables):
    Vault.objects.create(token=SECRET)
    with pytest.raises(TypeError) as e:
        list(Vault.objects.filter(token=SECRET))
    assert_discreet(e.value, SECRET)
    with pytest.raises(TypeError):
        list(Vault.objects.filter(token__in=[SECRET]))
    with pytest.raises(FieldError):
        list(Vault.objects.filter(token__contains=SECRET))
    with pytest.raises(FieldError):
        list(Vault.objects.filter(token__lower=SECRET))


def test_bulk_update_cannot_bypass_encryption(tables):
    vault = Vault.objects.create(token=SECRET)
    vault.token = OTHER_SECRET
    with pytest.raises(TypeError):
        Vault.objects.bulk_update([vault], ["token"])


def test_bulk_create_encrypts(tables):
    Vault.objects.bulk_create([Vault(token=SECRET), Vault(token=OTHER_SECRET)])
    stored = [raw(Vault, pk) for pk in Vault.objects.values_list("pk", flat=True)]
    assert all(value.startswith("v1:") and "atl-" not in value for value in stored)
    assert sorted(v.token or "" for v in Vault.objects.all()) == [SECRET, OTHER_SECRET]


# --- serialization, forms, cleaning ---------------------------------------------------------


@pytest.fixture
def deserializable(monkeypatch):
    """Let the deserializers find the isolated model, which the global registry does not hold."""
    get_model = django_apps.get_model

    def find(app_label, model_name=None, require_ready=True):
        if f"{app_label}.{model_name or ''}".lower().rstrip(".") == "atlassian_oauth.vault":
            return Vault
        return get_model(app_label, model_name, require_ready)

    monkeypatch.setattr(django_apps, "get_model", find)


def test_dumpdata_emits_the_stored_ciphertext_and_loaddata_restores_it(tables, deserializable):
    vault = Vault.objects.create(token=SECRET)
    assert vault.token == SECRET  # the cached plaintext must not leak into the dump
    for format_ in ("json", "xml", "python"):
        assert SECRET not in str(serializers.serialize(format_, Vault.objects.all()))
    assert SECRET not in str(serializers.serialize("json", [vault]))
    stored = raw(Vault, vault.pk)
    data = serializers.serialize("json", Vault.objects.all())
    assert json.loads(data)[0]["fields"]["token"] == stored

    Vault.objects.all().delete()
    for item in serializers.deserialize("json", data):
        item.save()
    assert raw(Vault, vault.pk) == stored
    loaded = Vault.objects.get(pk=vault.pk)
    assert loaded.token == SECRET
    assert "_atlassian_oauth_raw_save" not in item.object.__dict__
    assert isinstance(item.object, Vault)
    assert item.object.token == SECRET


def test_a_hand_written_fixture_with_plaintext_is_encrypted_on_load(tables, deserializable):
    fixture = [
        {
            "model": "atlassian_oauth.vault",
            "pk": 7,
            "fields": {"uuid": str(uuid.uuid4()), "label": "", "token": SECRET, "other": None},
        }
    ]
    for item in serializers.deserialize("python", fixture):
        item.save()
    stored = raw(Vault, 7)
    assert stored.startswith("v1:")
    assert SECRET not in stored
    assert Vault.objects.get(pk=7).token == SECRET


def test_value_to_string_never_gives_plaintext(tables):
    vault = Vault(token=SECRET)
    field = field_of(Vault)
    text = field.value_to_string(vault)
    assert text.startswith("v1:") and SECRET not in text
    assert field.value_from_object(vault) != SECRET
    assert field.value_to_string(Vault(token=None)) == ""


def test_model_forms_leave_the_secret_out(tables):
    form_class = modelform_factory(Vault, fields="__all__")
    assert "token" not in form_class.base_fields
    assert "label" in form_class.base_fields
    vault = Vault.objects.create(token=SECRET)
    assert SECRET not in form_class(instance=vault).as_div()


def test_full_clean_keeps_plaintext_plaintext(tables):
    vault = Vault(token=SECRET, other="v1:abc:" + "A" * 40)
    vault.full_clean()
    assert vault.token == SECRET
    assert not isinstance(vault.__dict__["other"], Ciphertext)
    vault.save()
    assert Vault.objects.get(pk=vault.pk).other == "v1:abc:" + "A" * 40


def test_nothing_secret_in_reprs(tables):
    vault = Vault.objects.create(token=SECRET)
    loaded = Vault.objects.get(pk=vault.pk)
    stored = raw(Vault, vault.pk)
    ciphertext = loaded.__dict__["token"]
    for text in (repr(vault), repr(loaded), repr(ciphertext), repr(Vault.token)):
        assert SECRET not in text
        assert stored not in text
        assert stored.split(":")[2][:12] not in text
    assert repr(ciphertext) == "<Ciphertext key_id='2026-11'>"


# --- the field itself -----------------------------------------------------------------------


def test_deconstruct_round_trips_with_bind_field():
    field = field_of(Vault, "other")
    _name, path, args, kwargs = field.deconstruct()
    assert path == "atlassian_oauth.fields.EncryptedTextField"
    assert kwargs["bind_field"] == "uuid"
    assert kwargs["null"] is True
    rebuilt = EncryptedTextField(*args, **kwargs)
    assert rebuilt.deconstruct()[1:] == (path, args, kwargs)
    custom = EncryptedTextField(bind_field="public_id")
    assert custom.deconstruct()[3] == {"bind_field": "public_id"}
    assert EncryptedTextField(*custom.deconstruct()[2], **custom.deconstruct()[3]).bind_field == (
        "public_id"
    )


def test_encrypted_fields_lists_the_models_secrets():
    assert [f.name for f in encrypted_fields(Vault)] == ["token", "other"]


def test_the_context_names_model_field_and_row():
    vault = Vault()
    field = field_of(Vault)
    assert field.context(vault) == f"atlassian_oauth.vault.token:{vault.uuid}"


@isolate_apps("atlassian_oauth")
def test_system_checks_refuse_a_bad_binding():
    class NoBind(models.Model):
        token = EncryptedTextField(bind_field="uuid")

        class Meta:
            app_label = "atlassian_oauth"

    class NotUnique(models.Model):
        uuid = models.UUIDField(default=uuid.uuid4)
        token = EncryptedTextField(bind_field="uuid", unique=True)

        class Meta:
            app_label = "atlassian_oauth"

    class ByAutoPk(models.Model):
        token = EncryptedTextField(bind_field="id")

        class Meta:
            app_label = "atlassian_oauth"

    def ids(model: type[models.Model]) -> set[str]:
        return {error.id for error in field_of(model).check() if error.id}

    assert ids(NoBind) == {"atlassian_oauth.fields.E001"}
    assert ids(NotUnique) == {"atlassian_oauth.fields.E002", "atlassian_oauth.fields.E003"}
    assert ids(ByAutoPk) == {"atlassian_oauth.fields.E002"}
    assert not [e for e in Vault.check() if (e.id or "").startswith("atlassian_oauth.fields")]


def test_keyring_used_by_the_field_is_the_configured_one(use_keys):
    use_keys(NEW_KEY)
    vault = Vault(token=SECRET)
    token = field_of(Vault).pre_save(vault, add=True)
    assert token is not None
    assert KeyRing([NEW_KEY]).decrypt(token, context=f"atlassian_oauth.vault.token:{vault.uuid}")
