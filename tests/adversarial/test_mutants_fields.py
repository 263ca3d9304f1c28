"""Tests that kill mutants of atlassian_oauth/fields.py that `make mutation` found surviving.

What a developer sees: the system check that names a field bound to itself, where its messages
point (the field, with a hint), the positional label, ``to_python``'s error, model validation of
the plaintext, key rotation of a token that code set or already read, and the raw-save
(loaddata) handling of a model declared after startup.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.test.utils import isolate_apps

from atlassian_oauth.crypto import generate_key, key_id_of
from atlassian_oauth.fields import EncryptedTextField, encrypted_fields, reencrypt_instance
from atlassian_oauth.models import Grant
from tests.refresh_helpers import connected_grant

OLD_KEY = "old:" + generate_key()
NEW_KEY = "new:" + generate_key()


def field_of(model: type[models.Model], name: str = "token") -> EncryptedTextField:
    field = model._meta.get_field(name)
    assert isinstance(field, EncryptedTextField)
    return field


@isolate_apps("atlassian_oauth")
def test_a_field_bound_to_itself_is_refused_and_every_check_points_at_the_field():
    class SelfBound(models.Model):
        token = EncryptedTextField(bind_field="token")

        class Meta:
            app_label = "atlassian_oauth"

    class NotUnique(models.Model):
        uuid = models.UUIDField(default=uuid.uuid4)
        token = EncryptedTextField(bind_field="uuid", unique=True)

        class Meta:
            app_label = "atlassian_oauth"

    (self_bound,) = field_of(SelfBound).check()
    assert self_bound.id == "atlassian_oauth.fields.E001"
    assert "'token' is not a concrete field of atlassian_oauth.SelfBound" in self_bound.msg
    checks = [*field_of(SelfBound).check(), *field_of(NotUnique).check()]
    assert {c.id for c in checks} == {f"atlassian_oauth.fields.E00{n}" for n in (1, 2, 3)}
    for check in checks:
        assert check.obj is not None and check.msg, check
    by_id = {c.id: c for c in checks}
    for with_hint in ("atlassian_oauth.fields.E001", "atlassian_oauth.fields.E002"):
        hint = by_id[with_hint].hint
        assert hint is not None and "UUIDField" in hint
    assert "must be unique" in by_id["atlassian_oauth.fields.E002"].msg
    assert "cannot be unique" in by_id["atlassian_oauth.fields.E003"].msg


def test_the_positional_argument_is_the_label():
    field = EncryptedTextField("API token", bind_field="uuid")
    assert field.verbose_name == "API token"
    assert EncryptedTextField().bind_field == "uuid"


def test_to_python_refuses_what_is_not_text_with_an_invalid_error():
    field = Grant._meta.get_field("access_token")
    with pytest.raises(ValidationError) as refused:
        field.to_python(12)
    assert refused.value.code == "invalid"
    (message,) = refused.value.messages
    assert message.endswith(" takes text.") and "access_token" in message


@pytest.mark.django_db
def test_model_validation_checks_the_plaintext(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    field = Grant._meta.get_field("access_token")
    assert isinstance(field, EncryptedTextField)
    assert field.clean("a token", grant) == "a token"
    # A validator sees the plaintext, not nothing: an empty value is what blank=False refuses.
    field.validators.append(_refuse("forbidden"))
    try:
        with pytest.raises(ValidationError, match="forbidden"):
            field.clean("forbidden", grant)
    finally:
        field.validators.pop()
    with pytest.raises(ValidationError):
        field.clean("", grant)  # blank=False


def _refuse(word: str):
    def validator(value: object) -> None:
        if value == word:
            raise ValidationError(word)

    return validator


@pytest.mark.django_db
def test_rotation_moves_a_token_that_code_set_to_the_first_key(fake_atlassian, use_keys):
    use_keys(OLD_KEY)
    grant = connected_grant(fake_atlassian)
    use_keys(NEW_KEY, OLD_KEY)

    loaded = Grant.objects.get(pk=grant.pk)
    loaded.access_token = "set by code"
    names = reencrypt_instance(loaded)
    assert "access_token" in names, "a plaintext set by code was left out of the rotation"
    assert set(names) == {f.attname for f in encrypted_fields(Grant)}
    loaded.save(update_fields=names)

    use_keys(NEW_KEY)
    again = Grant.objects.get(pk=grant.pk)
    assert again.access_token == "set by code"
    assert key_id_of(str(Grant._meta.get_field("access_token").sealed_value(again))) == "new"


@pytest.mark.django_db
def test_a_saved_instance_still_reads_its_tokens(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    loaded = Grant.objects.get(pk=grant.pk)  # ciphertexts, not read yet
    loaded.save()
    assert loaded.access_token == grant.access_token
    assert loaded.refresh_token == grant.refresh_token


@pytest.mark.django_db
def test_loaddata_of_a_model_without_encrypted_fields_works(tmp_path):
    from django.contrib.sites.models import Site
    from django.core import serializers
    from django.core.management import call_command

    fixture = tmp_path / "sites.json"
    site = Site(pk=4242, domain="fixture.example", name="fixture")
    fixture.write_text(serializers.serialize("json", [site]))
    call_command("loaddata", str(fixture), verbosity=0)
    assert Site.objects.get(pk=4242).domain == "fixture.example"


@pytest.mark.django_db(transaction=True)  # the table is made here: SQLite's schema editor
@isolate_apps("atlassian_oauth")  # needs no transaction open
def test_a_model_declared_after_startup_loads_its_dumped_ciphertext_as_it_is(use_keys):
    """The raw-save handling is wired per model when its class is made (a model of another
    app, or declared later, is covered too): a raw save (loaddata) writes the dumped ciphertext
    as it is instead of reading it through the attribute as plaintext."""
    use_keys(NEW_KEY)

    class LateModel(models.Model):
        uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        token = EncryptedTextField(bind_field="uuid")

        class Meta:
            app_label = "atlassian_oauth"

    field = field_of(LateModel)
    with connection.schema_editor() as editor:
        editor.create_model(LateModel)
    try:
        source = LateModel(token="the-secret")
        dumped = field.value_from_object(source)  # what dumpdata writes
        assert dumped is not None and dumped != "the-secret"

        loaded = LateModel(pk=7, uuid=source.uuid, token=field.to_python(dumped))
        loaded.save_base(raw=True)  # as loaddata saves each object
        assert loaded.token == "the-secret", "the saved instance still reads its ciphertext"

        stored = LateModel._default_manager.get(pk=7)
        assert field.value_from_object(stored) == dumped
        assert stored.token == "the-secret"
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(LateModel)
