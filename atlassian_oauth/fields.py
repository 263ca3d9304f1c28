"""``EncryptedTextField``: a text column that only ever holds ciphertext bound to its row.

Code reads and assigns plaintext on the model attribute; the column holds a token from
:mod:`atlassian_oauth.crypto`, whose associated data is ``<app>.<model>.<field>:<bind value>``
(the bind field is a unique, never-changing field such as a ``uuid``), so a ciphertext copied to
another row, column or model does not decrypt. Values are decrypted lazily on first attribute
access and the plaintext is then cached on the instance (``refresh_from_db()`` replaces it with
the freshly loaded value, decrypting it then).

The query layer refuses plaintext: ``filter(field="x")`` and ``update(field="x")`` raise
``TypeError``, and only the ``exact``, ``in`` and ``isnull`` lookups exist. So ``bulk_update()``
cannot write these fields either: assign and ``save()`` instead. ``dumpdata`` emits the stored
ciphertext and ``loaddata`` writes it back unchanged (no key needed); a fixture may also hold
plaintext, which is encrypted on load. Model forms and the admin get no form field for a secret.

Error reports (``sensitive_variables``) show no variable of the methods that hold plaintext, nor
of anything they call.

Key rotation: put the new key first in ``ENCRYPTION_KEYS`` (keeping the old ones), then for each
row ``fields = reencrypt_instance(obj)`` and ``obj.save(update_fields=fields)`` when it is not
empty. Any ``save()`` of the field also writes it under the first key. Then drop the old key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.db import models
from django.db.models.fields import AutoFieldMixin
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_save, pre_save
from django.views.decorators.debug import sensitive_variables

from . import crypto

if TYPE_CHECKING:
    from django.db.models.lookups import Lookup, Transform

    _TextField = models.TextField[str | None, str | None]
else:
    # Django's fields are not subscriptable at run time.
    _TextField = models.TextField

__all__ = ["Ciphertext", "EncryptedTextField", "encrypted_fields", "reencrypt_instance"]

ALLOWED_LOOKUPS = frozenset({"exact", "in", "isnull"})
_RAW_SAVE = "_atlassian_oauth_raw_save"


class Ciphertext(str):
    """A ciphertext token as stored in the column, as opposed to plaintext set by code."""

    __slots__ = ()

    def __repr__(self) -> str:
        try:
            key_id = crypto.key_id_of(self)
        except crypto.DecryptionError:
            key_id = "?"
        return f"<Ciphertext key_id={key_id!r}>"


class EncryptedAttribute(DeferredAttribute):
    """The model attribute: plaintext (or None) on read; accepts plaintext or ``Ciphertext``."""

    field: EncryptedTextField

    @overload
    def __get__(
        self, instance: None, cls: type[models.Model] | None = None
    ) -> EncryptedAttribute: ...

    @overload
    def __get__(
        self, instance: models.Model, cls: type[models.Model] | None = None
    ) -> str | None: ...

    def __get__(
        self, instance: models.Model | None, cls: type[models.Model] | None = None
    ) -> EncryptedAttribute | str | None:
        if instance is None:
            return self
        if instance.__dict__.get(_RAW_SAVE):
            # A raw save (loaddata) reads values through this attribute and writes what it gets.
            return self.field.sealed_value(instance)
        return self.field.plaintext(instance)

    def __set__(self, instance: models.Model, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{self.field.label} takes a str or None, not {type(value).__name__}.")
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(_TextField):
    """A ``TextField`` stored encrypted with the first key and bound to ``bind_field``'s value."""

    descriptor_class = EncryptedAttribute
    description = "Text encrypted with AES-GCM and bound to its row"

    def __init__(self, *args: Any, bind_field: str = "uuid", **kwargs: Any) -> None:
        self.bind_field = bind_field
        super().__init__(*args, **kwargs)

    @property
    def label(self) -> str:
        model = getattr(self, "model", None)
        owner = model._meta.label if model is not None else "an unbound model"
        return f"EncryptedTextField {owner}.{self.name}"

    def contribute_to_class(
        self, cls: type[models.Model], name: str, private_only: bool = False
    ) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        if not cls._meta.abstract:
            # Connected per model, here rather than in AppConfig.ready(), so a model declared
            # later (another app's, a test's) is covered too.
            uid = f"atlassian_oauth_raw_save_{cls._meta.label_lower}"
            pre_save.connect(mark_raw_save, sender=cls, dispatch_uid=uid)
            post_save.connect(unmark_raw_save, sender=cls, dispatch_uid=uid)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["bind_field"] = self.bind_field
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *self._check_binding()]

    def _check_binding(self) -> list[checks.CheckMessage]:
        hint = (
            "Bind to a unique field that never changes and is set before the first save, e.g. "
            "uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)."
        )
        errors: list[checks.CheckMessage] = []
        try:
            bind = self.model._meta.get_field(self.bind_field)
        except FieldDoesNotExist:
            bind = None
        if not isinstance(bind, models.Field) or not bind.concrete or bind is self:
            errors.append(
                checks.Error(
                    f"bind_field {self.bind_field!r} is not a concrete field of "
                    f"{self.model._meta.label}.",
                    hint=hint,
                    obj=self,
                    id="atlassian_oauth.fields.E001",
                )
            )
        elif not bind.unique or isinstance(bind, AutoFieldMixin):
            errors.append(
                checks.Error(
                    f"bind_field {self.bind_field!r} must be unique and set before the row is "
                    "saved, or two rows could share ciphertexts, or none could be encrypted.",
                    hint=hint,
                    obj=self,
                    id="atlassian_oauth.fields.E002",
                )
            )
        if self.unique:
            errors.append(
                checks.Error(
                    "An EncryptedTextField cannot be unique or a primary key: every encryption "
                    "of the same text differs.",
                    obj=self,
                    id="atlassian_oauth.fields.E003",
                )
            )
        return errors

    def _bind(self) -> models.Field[Any, Any]:
        bind = self.model._meta.get_field(self.bind_field)
        if not isinstance(bind, models.Field):
            raise ImproperlyConfigured(f"{self.label}: bind_field {self.bind_field!r} is invalid.")
        return bind

    def context(self, instance: models.Model) -> str:
        """The associated data binding this field's ciphertext to ``instance``'s row."""
        bind = self._bind()
        value = bind.to_python(getattr(instance, bind.attname))
        if value is None or value == "":
            raise ValueError(
                f"{self.label} is bound to {self.bind_field!r}, which is empty on this instance."
            )
        return f"{self.model._meta.label_lower}.{self.name}:{value}"

    def _held(self, instance: models.Model) -> str | None:
        """What the instance holds (plaintext, ``Ciphertext`` or None), loading it if deferred."""
        data = instance.__dict__
        if self.attname not in data:
            fields = [self.attname]
            bind_attname = self._bind().attname
            if bind_attname not in data:
                # Loaded together, the copy refresh_from_db() reads can decrypt without a query.
                fields.append(bind_attname)
            instance.refresh_from_db(fields=fields)
        value: str | None = data[self.attname]
        return value

    def has_value(self, instance: models.Model) -> bool:
        """Whether the instance holds a secret, without decrypting it (e.g. for admin lists)."""
        return self._held(instance) is not None

    @sensitive_variables()
    def plaintext(self, instance: models.Model) -> str | None:
        """The plaintext, decrypting a loaded ciphertext once and caching the result."""
        value = self._held(instance)
        if isinstance(value, Ciphertext):
            value = crypto.decrypt(value, context=self.context(instance))
            instance.__dict__[self.attname] = value
        return value

    @sensitive_variables()
    def sealed_value(self, instance: models.Model, *, rotate: bool = False) -> Ciphertext | None:
        """The ciphertext for what the instance holds, re-encrypted if ``rotate`` and stale."""
        value = self._held(instance)
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            if rotate and crypto.needs_reencryption(value):
                return Ciphertext(crypto.reencrypt(value, context=self.context(instance)))
            return value
        return Ciphertext(crypto.encrypt(value, context=self.context(instance)))

    @sensitive_variables()
    def reencrypt(self, instance: models.Model) -> bool:
        """Move a loaded ciphertext to the first key; True if the field needs saving."""
        held = self._held(instance)
        if held is None:
            return False
        if not isinstance(held, Ciphertext):
            # Plaintext set by code or already decrypted: save() encrypts it under the first key.
            return True
        sealed = self.sealed_value(instance, rotate=True)
        instance.__dict__[self.attname] = sealed
        return sealed is not held

    @sensitive_variables()
    def pre_save(self, model_instance: models.Model, add: bool) -> Ciphertext | None:
        sealed = self.sealed_value(model_instance, rotate=True)
        if isinstance(model_instance.__dict__.get(self.attname), Ciphertext):
            # Keep the re-encrypted token so the next save does not re-encrypt it again.
            model_instance.__dict__[self.attname] = sealed
        return sealed

    def from_db_value(
        self, value: str | None, expression: object, connection: object
    ) -> Ciphertext | None:
        return None if value is None else Ciphertext(value)

    def get_prep_value(self, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            return str.__str__(value)
        raise TypeError(
            f"{self.label} refuses a {type(value).__name__} in a query: the column holds only "
            "ciphertext. Assign the plaintext to the model attribute and call save()."
        )

    def to_python(self, value: object) -> str | None:
        # Deserialization (loaddata) passes the dumped ciphertext here; plaintext stays plaintext.
        if value is None or isinstance(value, Ciphertext):
            return value
        if isinstance(value, str):
            return Ciphertext(value) if crypto.is_token(value) else value
        raise ValidationError(f"{self.label} takes text.", code="invalid")

    def clean(self, value: Any, model_instance: models.Model | None) -> Any:
        # Not to_python(): full_clean() passes plaintext, which must not turn into a Ciphertext.
        self.validate(value, model_instance)
        self.run_validators(value)
        return value

    def value_from_object(self, obj: models.Model) -> str | None:
        """The ciphertext (serializers emit this), never the plaintext."""
        sealed = self.sealed_value(obj)
        # A plain str, as serializers such as YAML's reject str subclasses.
        return None if sealed is None else str.__str__(sealed)

    def value_to_string(self, obj: models.Model) -> str:
        return self.value_from_object(obj) or ""

    def formfield(self, **kwargs: Any) -> None:
        """None: model forms and the admin leave secrets out unless a form declares them."""
        return None

    def get_lookup(self, lookup_name: str) -> type[Lookup] | None:
        # Other lookups would put plaintext into SQL and could never match a ciphertext.
        return super().get_lookup(lookup_name) if lookup_name in ALLOWED_LOOKUPS else None

    def get_transform(self, lookup_name: str) -> type[Transform] | None:
        return None


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    """The model's encrypted fields."""
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


def reencrypt_instance(instance: models.Model) -> list[str]:
    """Prepare every encrypted field for key rotation; the attnames to pass to ``update_fields``."""
    return [f.attname for f in encrypted_fields(type(instance)) if f.reencrypt(instance)]


def mark_raw_save(
    sender: type[models.Model], instance: models.Model, raw: bool, **kwargs: Any
) -> None:
    """pre_save: a raw save (loaddata) writes the stored ciphertext as it is."""
    if raw:
        instance.__dict__[_RAW_SAVE] = True


def unmark_raw_save(
    sender: type[models.Model], instance: models.Model, raw: bool, **kwargs: Any
) -> None:
    if raw:
        instance.__dict__.pop(_RAW_SAVE, None)
