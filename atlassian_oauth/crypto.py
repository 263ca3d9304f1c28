"""Encryption at rest: AES-256-GCM, a key id beside each ciphertext, and the row bound in.

A ciphertext is the ASCII token ``v1:<key id>:<urlsafe base64 of nonce + ciphertext + tag>``.
The associated data is the token's header plus a caller-chosen *context* (the field uses
``<app>.<model>.<field>:<row uuid>``), so a token copied to another row or column, or under
another key that reuses the id, fails authentication instead of decrypting.

Keys come from ``ATLASSIAN_OAUTH["ENCRYPTION_KEYS"]``, read live: the first key encrypts, every
key decrypts. A key is 32 random bytes in urlsafe base64, optionally prefixed with an id and a
colon (``"2026-11:<key>"``); without a prefix the id is derived from the key. Keys are never
derived from ``SECRET_KEY``. No exception message or ``repr()`` here contains a plaintext, a
ciphertext or a key; key ids and contexts are not secret and are named to help the admin. Every
function that holds a key, a key setting or a plaintext hides all its variables (and those of
what it calls) from Django's error reports.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from .conf import SETTINGS_NAME, conf

__all__ = [
    "CryptoError",
    "DecryptionError",
    "EncryptionError",
    "Key",
    "KeyConfigurationError",
    "KeyRing",
    "MissingKeyError",
    "UnknownKeyError",
    "decrypt",
    "encrypt",
    "generate_key",
    "get_keyring",
    "is_token",
    "key_id_of",
    "needs_reencryption",
    "reencrypt",
]

VERSION = "v1"
NONCE_BYTES = 12
KEYS_SETTING = f"{SETTINGS_NAME}['ENCRYPTION_KEYS']"
GENERATE_KEY_COMMAND = "python manage.py atlassian_oauth generate-key"

_KEY_ID = r"[A-Za-z0-9._-]{1,32}"
_KEY_ID_RE = re.compile(_KEY_ID)
# 32 bytes are 43 base64 characters, plus one "=" when padded.
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}=?")
# The shortest payload is a nonce and a tag around an empty plaintext: 28 bytes, 38 characters.
_TOKEN_RE = re.compile(rf"{VERSION}:({_KEY_ID}):([A-Za-z0-9_-]{{38,}})")
_KEY_ID_DOMAIN = b"atlassian-oauth-key-id"


class CryptoError(Exception):
    """Base of every error raised here; messages never contain plaintext, ciphertext or keys."""


class EncryptionError(CryptoError):
    """The plaintext or context cannot be encrypted (e.g. it is not encodable as UTF-8)."""


class KeyConfigurationError(CryptoError, ImproperlyConfigured):
    """``ENCRYPTION_KEYS`` is malformed; the message names the entry by position, not its value."""


class MissingKeyError(KeyConfigurationError):
    """No key is configured, or (as ``UnknownKeyError``) not the one a ciphertext needs."""


class DecryptionError(CryptoError):
    """A ciphertext is malformed, was tampered with, or belongs to another row, column or key."""


class UnknownKeyError(DecryptionError, MissingKeyError):
    """The ciphertext names a key id that is not configured."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class Key:
    """One configured key: its id and its AES-GCM cipher (the key bytes are not kept here)."""

    __slots__ = ("aead", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self.aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"<key {self.key_id!r}>"


def _derive_key_id(key: bytes) -> str:
    digest = hashlib.sha256(_KEY_ID_DOMAIN + key).digest()
    return base64.urlsafe_b64encode(digest)[:8].decode("ascii")


def _malformed(position: int, reason: str) -> KeyConfigurationError:
    return KeyConfigurationError(
        f"{KEYS_SETTING}[{position}] is malformed: {reason}. A key is 32 random bytes in urlsafe "
        "base64 (43 or 44 characters), optionally prefixed with an id and a colon "
        f'("2026-11:<key>"). Make one with `{GENERATE_KEY_COMMAND}`.'
    )


@sensitive_variables()
def _parse_entry(position: int, entry: str) -> Key:
    # The base64 alphabet has no ":", so the last colon separates an explicit id from the key.
    key_id, colon, encoded = entry.strip().rpartition(":")
    if colon and not _KEY_ID_RE.fullmatch(key_id):
        raise _malformed(position, "its id must be 1-32 letters, digits, '.', '_' or '-'")
    if not _KEY_RE.fullmatch(encoded):
        raise _malformed(position, "the key is not 32 bytes of urlsafe base64")
    key = base64.urlsafe_b64decode(encoded.rstrip("=") + "=")
    return Key(key_id if colon else _derive_key_id(key), key)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@sensitive_variables()
def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Raised outside the handler so the UnicodeEncodeError, which holds the text, is not chained.
    raise EncryptionError(f"The {what} cannot be encoded as UTF-8 (it contains lone surrogates).")


def _split(token: str) -> tuple[str, bytes]:
    """Return a token's key id and payload, or raise ``DecryptionError`` naming neither."""
    if not isinstance(token, str):
        raise DecryptionError(f"A ciphertext is a str, not {type(token).__name__}.")
    match = _TOKEN_RE.fullmatch(token)
    payload = None
    if match and len(match[2]) % 4 != 1:
        try:
            payload = base64.urlsafe_b64decode(match[2] + "=" * (-len(match[2]) % 4))
        except (binascii.Error, ValueError):
            payload = None
    if match is None or payload is None:
        raise DecryptionError(
            f"The stored value is not a ciphertext of this app (expected "
            f"'{VERSION}:<key id>:<data>'): it is corrupt, of an unknown version, or was "
            "written around the encrypting field."
        )
    return match[1], payload


def _associated_data(key_id: str, context: str) -> bytes:
    if not isinstance(context, str):
        raise TypeError(f"context must be a str, not {type(context).__name__}.")
    # The key id cannot contain ":", so the header and context cannot be confused.
    return _utf8(f"{VERSION}:{key_id}:", "key id") + _utf8(context, "context")


class KeyRing:
    """The configured keys, parsed: ``current`` encrypts, any key decrypts by its id."""

    @sensitive_variables()
    def __init__(self, entries: Iterable[str]) -> None:
        keys: dict[str, Key] = {}
        positions: dict[str, int] = {}
        for position, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise _malformed(position, f"it is a {type(entry).__name__}, not a str")
            key = _parse_entry(position, entry)
            if key.key_id in keys:
                raise KeyConfigurationError(
                    f"{KEYS_SETTING}[{positions[key.key_id]}] and [{position}] have the same "
                    f"key id {key.key_id!r}: give each key its own id, and list a key only once."
                )
            keys[key.key_id] = key
            positions[key.key_id] = position
        if not keys:
            raise MissingKeyError(
                f"No encryption key is configured: set {KEYS_SETTING} to a list whose first "
                f"entry is a key made with `{GENERATE_KEY_COMMAND}` (keep it secret, e.g. in an "
                "environment variable). Keys are not derived from SECRET_KEY."
            )
        self._keys = keys
        self.current: Key = next(iter(keys.values()))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"

    def get(self, key_id: str) -> Key:
        try:
            return self._keys[key_id]
        except KeyError:
            pass
        raise UnknownKeyError(
            f"Cannot decrypt: the value was encrypted with key id {key_id!r}, which is not in "
            f"{KEYS_SETTING} (configured ids: {', '.join(self.key_ids)}). Add that key back, "
            "after the first one, to read it.",
            key_id=key_id,
        )

    @sensitive_variables()
    def encrypt(self, plaintext: str, *, context: str) -> str:
        if not isinstance(plaintext, str):
            raise TypeError(f"plaintext must be a str, not {type(plaintext).__name__}.")
        key = self.current
        associated_data = _associated_data(key.key_id, context)
        # A fresh random 96-bit nonce per message; under one key stay far below 2**32 messages.
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, _utf8(plaintext, "plaintext"), associated_data)
        return f"{VERSION}:{key.key_id}:{_b64encode(nonce + sealed)}"

    @sensitive_variables()
    def decrypt(self, token: str, *, context: str) -> str:
        key_id, payload = _split(token)
        key = self.get(key_id)
        associated_data = _associated_data(key_id, context)
        nonce, sealed = payload[:NONCE_BYTES], payload[NONCE_BYTES:]
        plaintext: bytes | None
        try:
            plaintext = key.aead.decrypt(nonce, sealed, associated_data)
        except InvalidTag:
            plaintext = None
        if plaintext is None:
            raise DecryptionError(
                f"Cannot decrypt with key id {key_id!r}: authentication failed. The ciphertext "
                f"does not belong to this row and column ({context}), was tampered with, or the "
                f"key configured under id {key_id!r} in {KEYS_SETTING} is not the one that "
                "encrypted it."
            )
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            pass
        raise DecryptionError(f"The plaintext under key id {key_id!r} is not UTF-8 text.")

    def needs_reencryption(self, token: str) -> bool:
        return key_id_of(token) != self.current.key_id


@functools.lru_cache(maxsize=8)
@sensitive_variables()
def _keyring_for(entries: tuple[str, ...]) -> KeyRing:
    return KeyRing(entries)


def get_keyring() -> KeyRing:
    """The key ring for the current settings (parsed once per distinct setting value)."""
    return _keyring_for(conf.ENCRYPTION_KEYS)


def generate_key(key_id: str | None = None) -> str:
    """A new random key for ``ENCRYPTION_KEYS``, prefixed with ``key_id`` when given."""
    if key_id is not None and not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError("A key id is 1-32 letters, digits, '.', '_' or '-'.")
    encoded = base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")
    return encoded if key_id is None else f"{key_id}:{encoded}"


@sensitive_variables()
def encrypt(plaintext: str, *, context: str) -> str:
    """Encrypt ``plaintext`` under the first configured key, bound to ``context``."""
    return get_keyring().encrypt(plaintext, context=context)


@sensitive_variables()
def decrypt(token: str, *, context: str) -> str:
    """Decrypt a token made by ``encrypt`` with the same ``context``, or raise ``CryptoError``."""
    return get_keyring().decrypt(token, context=context)


def key_id_of(token: str) -> str:
    """The id of the key that encrypted ``token`` (``DecryptionError`` if it is not a token)."""
    return _split(token)[0]


def is_token(value: str) -> bool:
    """Whether ``value`` has the shape of a ciphertext (says nothing about its authenticity)."""
    try:
        _split(value)
    except DecryptionError:
        return False
    return True


def needs_reencryption(token: str) -> bool:
    """Whether ``token`` was encrypted under a key other than the current (first) one."""
    return get_keyring().needs_reencryption(token)


@sensitive_variables()
def reencrypt(token: str, *, context: str) -> str:
    """``token`` under the current key: itself if it already is, else decrypted and re-encrypted."""
    keyring = get_keyring()
    if not keyring.needs_reencryption(token):
        return token
    return keyring.encrypt(keyring.decrypt(token, context=context), context=context)
