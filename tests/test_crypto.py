"""atlassian_oauth.crypto: AES-GCM tokens with a key id, bound to a context, keys from settings."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from atlassian_oauth import crypto
from atlassian_oauth.crypto import (
    CryptoError,
    DecryptionError,
    EncryptionError,
    KeyConfigurationError,
    KeyRing,
    MissingKeyError,
    UnknownKeyError,
    decrypt,
    encrypt,
    generate_key,
    get_keyring,
    key_id_of,
    needs_reencryption,
    reencrypt,
)

OLD_KEY = generate_key()
NEW_KEY = generate_key()
SECRET = "atl-refresh-7c1f0e2b9d"
CONTEXT = "atlassian_oauth.grant.refresh_token:0b6f8e1c-3a7d-4a53-9f5e-1d2c3b4a5f60"
OTHER_CONTEXT = "atlassian_oauth.grant.refresh_token:5d2c7a1e-8b4f-4c6a-a0e3-9f1b2c3d4e5f"
RING = KeyRing([NEW_KEY])


def payload(token: str) -> bytes:
    data = token.split(":")[2]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def assert_discreet(error: BaseException, *secrets: str) -> None:
    """Neither the message nor the repr of ``error`` contains any of ``secrets``."""
    for text in (str(error), repr(error)):
        for secret in secrets:
            assert secret not in text


# --- round trip, nonces, key ids ------------------------------------------------------------


@given(plaintext=st.text(), context=st.text())
def test_any_text_round_trips_under_any_context(plaintext, context):
    token = RING.encrypt(plaintext, context=context)
    assert token.isascii()
    assert RING.decrypt(token, context=context) == plaintext


def test_module_functions_use_the_configured_keys(use_keys):
    use_keys(NEW_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    assert SECRET not in token
    assert decrypt(token, context=CONTEXT) == SECRET


def test_the_same_plaintext_encrypts_differently_each_time(use_keys):
    use_keys(NEW_KEY)
    tokens = [encrypt(SECRET, context=CONTEXT) for _ in range(50)]
    assert len(set(tokens)) == len(tokens)
    assert len({payload(token)[:12] for token in tokens}) == len(tokens)


def test_the_key_id_is_stored_beside_the_ciphertext(use_keys):
    use_keys("2026-11:" + NEW_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    assert token.startswith("v1:2026-11:")
    assert key_id_of(token) == "2026-11"


def test_a_key_without_an_id_gets_a_stable_id_that_reveals_nothing(use_keys):
    use_keys(NEW_KEY)
    key_id = KeyRing([NEW_KEY]).current.key_id
    assert key_id == KeyRing([f"  {NEW_KEY}  "]).current.key_id
    assert key_id != KeyRing([OLD_KEY]).current.key_id
    assert len(key_id) == 8
    assert key_id not in NEW_KEY
    assert key_id_of(encrypt(SECRET, context=CONTEXT)) == key_id


def test_generate_key_makes_32_random_bytes_in_urlsafe_base64():
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 44
        assert len(base64.urlsafe_b64decode(key)) == 32
        KeyRing([key])
    assert generate_key("2026-11").startswith("2026-11:")
    KeyRing([generate_key("2026-11")])
    with pytest.raises(ValueError, match="key id"):
        generate_key("bad id")


def test_unpadded_keys_are_accepted():
    assert KeyRing([NEW_KEY.rstrip("=")]).current.key_id == RING.current.key_id


# --- failures -------------------------------------------------------------------------------


def test_a_ciphertext_under_another_context_does_not_decrypt(use_keys):
    use_keys(NEW_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    for context in (OTHER_CONTEXT, "atlassian_oauth.grant.access_token:" + CONTEXT.split(":")[1]):
        with pytest.raises(DecryptionError, match="does not belong to this row and column") as e:
            decrypt(token, context=context)
        assert context in str(e.value)
        assert_discreet(e.value, SECRET, token, NEW_KEY)


def test_a_wrong_key_under_the_same_id_does_not_decrypt(use_keys):
    use_keys("k1:" + OLD_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    use_keys("k1:" + NEW_KEY)
    with pytest.raises(DecryptionError, match="not the one that encrypted it") as e:
        decrypt(token, context=CONTEXT)
    assert_discreet(e.value, SECRET, token, OLD_KEY, NEW_KEY)


def test_an_unknown_key_id_is_named_with_the_setting_to_fix(use_keys):
    use_keys("2025-01:" + OLD_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    use_keys("2026-11:" + NEW_KEY)
    with pytest.raises(UnknownKeyError) as e:
        decrypt(token, context=CONTEXT)
    assert isinstance(e.value, MissingKeyError | DecryptionError | ImproperlyConfigured)
    assert e.value.key_id == "2025-01"
    assert "'2025-01'" in str(e.value)
    assert "ATLASSIAN_OAUTH['ENCRYPTION_KEYS']" in str(e.value)
    assert_discreet(e.value, SECRET, token, OLD_KEY, NEW_KEY)


@pytest.mark.parametrize("keys", [[], (), None])
def test_no_keys_configured_fails_clearly(settings, keys, oauth_settings):
    oauth_settings(ENCRYPTION_KEYS=keys or [])
    if keys is None:
        del settings.ATLASSIAN_OAUTH["ENCRYPTION_KEYS"]
    with pytest.raises(MissingKeyError) as e:
        encrypt(SECRET, context=CONTEXT)
    assert isinstance(e.value, ImproperlyConfigured)
    message = str(e.value)
    assert "ATLASSIAN_OAUTH['ENCRYPTION_KEYS']" in message
    assert "python manage.py atlassian_oauth generate-key" in message


def test_keys_are_not_derived_from_secret_key(settings, oauth_settings):
    settings.SECRET_KEY = "x" * 50
    oauth_settings(ENCRYPTION_KEYS=[])
    with pytest.raises(MissingKeyError):
        encrypt(SECRET, context=CONTEXT)
    oauth_settings(ENCRYPTION_KEYS=[NEW_KEY])
    token = encrypt(SECRET, context=CONTEXT)
    settings.SECRET_KEY = "y" * 50
    assert decrypt(token, context=CONTEXT) == SECRET


MALFORMED = {
    "too short": NEW_KEY[:40],
    "too long": NEW_KEY[:43] + "AAAA",
    "standard base64": "+/" + NEW_KEY[2:],
    "empty": "",
    "bad id": "bad id!:" + NEW_KEY,
    "empty id": ":" + NEW_KEY,
    "id only": "k-1:",
    "long id": "x" * 33 + ":" + NEW_KEY,
    "key in id position": NEW_KEY + ":" + OLD_KEY[:10],
}


@pytest.mark.parametrize("entry", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_key_is_named_by_position_not_value(use_keys, entry):
    use_keys(NEW_KEY, entry)
    with pytest.raises(KeyConfigurationError) as e:
        encrypt(SECRET, context=CONTEXT)
    assert isinstance(e.value, ImproperlyConfigured)
    message = str(e.value)
    assert "ATLASSIAN_OAUTH['ENCRYPTION_KEYS'][1] is malformed" in message
    assert "python manage.py atlassian_oauth generate-key" in message
    assert_discreet(e.value, NEW_KEY, NEW_KEY[:20], OLD_KEY[:10])
    if entry:
        assert_discreet(e.value, entry)


def test_two_keys_with_one_id_are_refused(use_keys):
    use_keys("same:" + NEW_KEY, "same:" + OLD_KEY)
    with pytest.raises(KeyConfigurationError, match=r"\[0\] and \[1\] have the same key id") as e:
        encrypt(SECRET, context=CONTEXT)
    assert_discreet(e.value, NEW_KEY, OLD_KEY)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_fails_authentication(position, bit):
    token = RING.encrypt(SECRET, context=CONTEXT)
    data = bytearray(payload(token))
    data[position % len(data)] ^= 1 << bit
    tampered = "v1:{}:{}".format(
        RING.current.key_id, base64.urlsafe_b64encode(data).decode().rstrip("=")
    )
    with pytest.raises(DecryptionError) as e:
        RING.decrypt(tampered, context=CONTEXT)
    assert_discreet(e.value, SECRET, token, tampered, NEW_KEY)


def test_a_ciphertext_relabelled_with_another_key_id_fails():
    ring = KeyRing(["a:" + NEW_KEY, "b:" + OLD_KEY])
    token = ring.encrypt(SECRET, context=CONTEXT)
    with pytest.raises(DecryptionError):
        ring.decrypt(token.replace("v1:a:", "v1:b:"), context=CONTEXT)
    # Even the right key refuses a header it did not sign.
    same = KeyRing(["a:" + NEW_KEY, "b:" + NEW_KEY[:-2] + "Y="])
    with pytest.raises(DecryptionError):
        same.decrypt(token.replace("v1:a:", "v1:b:"), context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        SECRET,
        "v2:abc:" + "A" * 40,
        "v1:abc",
        "v1::" + "A" * 40,
        "v1:abc:" + "A" * 10,
        "v1:abc:" + "A" * 41,
        "v1:abc:" + "A" * 39 + "+",
        "v1:abc:" + "A" * 40 + "\n",
    ],
)
def test_a_value_that_is_not_a_token_fails_without_echoing_it(token):
    with pytest.raises(DecryptionError, match="not a ciphertext of this app") as e:
        RING.decrypt(token, context=CONTEXT)
    if token:
        assert_discreet(e.value, token)
    assert crypto.is_token(token) is False


def test_a_non_str_token_is_refused():
    with pytest.raises(DecryptionError, match="not bytes"):
        RING.decrypt(b"v1:abc:" + b"A" * 40, context=CONTEXT)  # type: ignore[arg-type]


def test_text_that_is_not_utf8_encodable_is_refused_without_echoing_it():
    plaintext = SECRET + "\ud800"
    with pytest.raises(EncryptionError) as e:
        RING.encrypt(plaintext, context=CONTEXT)
    assert_discreet(e.value, plaintext, SECRET)
    assert e.value.__context__ is None
    with pytest.raises(EncryptionError):
        RING.encrypt(SECRET, context="\udfff")


def test_non_str_plaintext_is_refused():
    with pytest.raises(TypeError, match="not bytes"):
        RING.encrypt(SECRET.encode(), context=CONTEXT)  # type: ignore[arg-type]


def test_every_error_is_a_crypto_error():
    for error in (
        EncryptionError,
        DecryptionError,
        KeyConfigurationError,
        MissingKeyError,
        UnknownKeyError,
    ):
        assert issubclass(error, CryptoError)


# --- rotation -------------------------------------------------------------------------------


def test_rotation_keeps_old_ciphertexts_readable_and_moves_them_to_the_new_key(use_keys):
    use_keys(OLD_KEY)
    token = encrypt(SECRET, context=CONTEXT)
    use_keys(NEW_KEY, OLD_KEY)
    assert decrypt(token, context=CONTEXT) == SECRET
    assert needs_reencryption(token) is True

    rotated = reencrypt(token, context=CONTEXT)
    assert key_id_of(rotated) == get_keyring().current.key_id != key_id_of(token)
    assert needs_reencryption(rotated) is False
    assert reencrypt(rotated, context=CONTEXT) is rotated

    use_keys(NEW_KEY)
    assert decrypt(rotated, context=CONTEXT) == SECRET
    with pytest.raises(UnknownKeyError):
        decrypt(token, context=CONTEXT)


def test_keys_are_read_live_and_parsed_once(use_keys):
    use_keys(NEW_KEY)
    first = get_keyring()
    assert get_keyring() is first
    use_keys(OLD_KEY)
    assert get_keyring() is not first
    assert get_keyring().current.key_id == KeyRing([OLD_KEY]).current.key_id


# --- nothing secret in reprs ----------------------------------------------------------------


def test_reprs_show_key_ids_only():
    ring = KeyRing(["2026-11:" + NEW_KEY, OLD_KEY])
    for text in (repr(ring), repr(ring.current), str(ring)):
        assert NEW_KEY not in text
        assert OLD_KEY not in text
        assert NEW_KEY[:16] not in text
    assert "2026-11" in repr(ring)
