"""Envelope encryption: master keys from files and variables, wrapping and rotation of data keys,
field encryption (format re-derived from its documentation, every alteration refused), and
blind indexes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from medfabric.crypto.envelope import (
    FIELD_OVERHEAD,
    WRAPPED_KEY_SIZE,
    DataKey,
    MasterKey,
    WrappedKey,
    blind_index,
    decrypt_field,
    encrypt_field,
    rewrap,
    save_master_key,
    unwrap,
    wrap,
)
from medfabric.crypto.errors import CryptoError, EnvelopeError, KeyFileError

MASTER = MasterKey.generate()
DATA_KEY = DataKey.generate()
WRAPPED = wrap(MASTER, DATA_KEY)
AAD = b"dwd.patient|id_no|H01:000042"
FIELD = encrypt_field(DATA_KEY, b"350102199001011234", AAD)
INDEX_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _same_key(a: DataKey, b: DataKey) -> bool:
    """Two data keys are the same key if each opens what the other sealed."""
    return decrypt_field(b, encrypt_field(a, b"probe", b""), b"") == b"probe"


# --- master keys ---------------------------------------------------------------------------


def test_key_id_is_derived_from_the_key() -> None:
    raw = os.urandom(32)
    expected = hmac.new(raw, b"medfabric master key id v1", hashlib.sha256).digest()[:8].hex()
    assert MasterKey(raw).key_id == MasterKey(raw).key_id == expected
    assert len(MASTER.key_id) == 16
    assert MasterKey.generate().key_id != MASTER.key_id


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_keys_must_be_32_bytes(size: int) -> None:
    with pytest.raises(EnvelopeError, match="32 bytes"):
        MasterKey(bytes(size))
    with pytest.raises(EnvelopeError, match="32 bytes"):
        DataKey(bytes(size))


def test_repr_shows_no_key_material() -> None:
    raw = bytes(range(32))
    for text in (repr(MasterKey(raw)), repr(DataKey(raw))):
        assert raw.hex() not in text
        assert base64.b64encode(raw).decode() not in text
    assert MasterKey(raw).key_id in repr(MasterKey(raw))


def test_master_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    save_master_key(MASTER, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes(), validate=False)) == 32
    assert MasterKey.from_file(path).key_id == MASTER.key_id
    with pytest.raises(KeyFileError, match="already exists"):
        save_master_key(MasterKey.generate(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_master_key_file_as_openssl_rand_writes_it(tmp_path: Path) -> None:
    raw = os.urandom(32)
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(raw).decode() + "\n")  # `openssl rand -base64 32`
    path.chmod(0o600)
    assert MasterKey.from_file(path).key_id == MasterKey(raw).key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_master_key_file_permissions(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    save_master_key(MASTER, path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        MasterKey.from_file(path)
    assert MasterKey.from_file(path, allow_insecure_permissions=True).key_id == MASTER.key_id


@pytest.mark.parametrize(
    "content", [b"", b"not base64!\n", base64.b64encode(bytes(31)), base64.b64encode(bytes(33))]
)
def test_bad_master_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="base64 of 32 random bytes") as err:
        MasterKey.from_file(path)
    assert str(path) in str(err.value)


def test_master_key_from_environment() -> None:
    raw = os.urandom(32)
    env = {"MEDFABRIC_MASTER_KEY": base64.b64encode(raw).decode()}
    assert MasterKey.from_env("MEDFABRIC_MASTER_KEY", environ=env).key_id == MasterKey(raw).key_id


def test_master_key_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MF_TEST_MASTER", base64.b64encode(bytes(32)).decode())
    assert MasterKey.from_env("MF_TEST_MASTER").key_id == MasterKey(bytes(32)).key_id


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_environment_variable(value: str | None) -> None:
    env = {} if value is None else {"MEDFABRIC_MASTER_KEY": value}
    with pytest.raises(KeyFileError, match="MEDFABRIC_MASTER_KEY is not set"):
        MasterKey.from_env("MEDFABRIC_MASTER_KEY", environ=env)


@pytest.mark.parametrize("value", ["s3cr3t-but-not-base64", base64.b64encode(bytes(16)).decode()])
def test_bad_environment_variable_is_named_not_echoed(value: str) -> None:
    with pytest.raises(KeyFileError, match="environment variable MEDFABRIC_MASTER_KEY") as err:
        MasterKey.from_env("MEDFABRIC_MASTER_KEY", environ={"MEDFABRIC_MASTER_KEY": value})
    assert value not in str(err.value)


# --- wrapping and rotation -----------------------------------------------------------------


def test_wrap_unwrap_round_trip() -> None:
    assert WRAPPED.master_key_id == MASTER.key_id
    assert _same_key(unwrap(MASTER, WRAPPED), DATA_KEY)
    assert decrypt_field(unwrap(MASTER, WRAPPED), FIELD, AAD) == b"350102199001011234"


def test_wrapped_key_serialization() -> None:
    data = WRAPPED.to_bytes()
    assert len(data) == WRAPPED_KEY_SIZE == 72
    assert data[:4] == b"MFW1"
    assert data[4:12].hex() == MASTER.key_id
    assert WrappedKey.from_bytes(data) == WRAPPED


def test_wrapped_key_format_is_as_documented() -> None:
    data = WRAPPED.to_bytes()
    secret = AESGCM(MASTER._secret).decrypt(data[12:24], data[24:], data[:12])
    assert _same_key(DataKey(secret), DATA_KEY)


def test_each_wrap_is_fresh() -> None:
    assert wrap(MASTER, DATA_KEY).to_bytes() != WRAPPED.to_bytes()


def test_unwrap_under_another_master_names_both_ids() -> None:
    other = MasterKey.generate()
    with pytest.raises(EnvelopeError, match=f"{MASTER.key_id}, not under {other.key_id}"):
        unwrap(other, WRAPPED)


def test_every_flipped_bit_of_a_wrapped_key_is_refused() -> None:
    data = WRAPPED.to_bytes()
    for bit in range(8 * len(data)):
        with pytest.raises(EnvelopeError):
            unwrap(MASTER, WrappedKey.from_bytes(_flip(data, bit)))


@pytest.mark.parametrize("data", [b"", b"MFW1", b"MFW1" + bytes(67), b"MFW1" + bytes(69)])
def test_malformed_wrapped_keys(data: bytes) -> None:
    with pytest.raises(EnvelopeError, match="72 bytes"):
        WrappedKey.from_bytes(data)


def test_unknown_wrapped_key_format() -> None:
    with pytest.raises(EnvelopeError, match="not a wrapped key"):
        WrappedKey.from_bytes(b"MFW2" + WRAPPED.to_bytes()[4:])


def test_wrapped_key_fields_are_validated() -> None:
    with pytest.raises(EnvelopeError, match="hex"):
        WrappedKey("ABCDEF0123456789", WRAPPED.nonce, WRAPPED.ciphertext)
    with pytest.raises(EnvelopeError, match="wrong size"):
        WrappedKey(MASTER.key_id, WRAPPED.nonce[:-1], WRAPPED.ciphertext)


def test_rewrap_rotates_the_master_key_without_touching_the_data() -> None:
    new_master = MasterKey.generate()
    rewrapped = rewrap(MASTER, new_master, WRAPPED)
    assert rewrapped.master_key_id == new_master.key_id
    # The field encrypted before rotation opens with the data key unwrapped after it.
    assert decrypt_field(unwrap(new_master, rewrapped), FIELD, AAD) == b"350102199001011234"
    with pytest.raises(EnvelopeError):
        unwrap(MASTER, rewrapped)
    with pytest.raises(EnvelopeError):
        rewrap(new_master, MasterKey.generate(), WRAPPED)  # not wrapped under new_master


# --- fields --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=256), aad=st.binary(max_size=64))
def test_field_round_trip(plaintext: bytes, aad: bytes) -> None:
    token = encrypt_field(DATA_KEY, plaintext, aad)
    assert len(token) == len(plaintext) + FIELD_OVERHEAD
    assert token[:4] == b"MFE1"
    assert decrypt_field(DATA_KEY, token, aad) == plaintext


def test_field_format_is_as_documented() -> None:
    header = FIELD[:16]
    assert header[:4] == b"MFE1"
    plaintext = AESGCM(DATA_KEY._secret).decrypt(header[4:], FIELD[16:], header + AAD)
    assert plaintext == b"350102199001011234"


def test_each_field_encryption_is_fresh() -> None:
    assert encrypt_field(DATA_KEY, b"x", b"") != encrypt_field(DATA_KEY, b"x", b"")


def test_wrong_data_key_or_aad_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="wrong data key, wrong aad, or altered bytes"):
        decrypt_field(DataKey.generate(), FIELD, AAD)
    with pytest.raises(EnvelopeError):
        decrypt_field(DATA_KEY, FIELD, b"dwd.patient|id_no|H01:000043")  # another row
    with pytest.raises(EnvelopeError):
        decrypt_field(DATA_KEY, FIELD, b"")


def test_every_flipped_bit_of_a_field_is_refused() -> None:
    for bit in range(8 * len(FIELD)):
        with pytest.raises(EnvelopeError):
            decrypt_field(DATA_KEY, _flip(FIELD, bit), AAD)


def test_truncated_or_extended_fields_are_refused() -> None:
    for size in range(len(FIELD)):
        with pytest.raises(EnvelopeError):
            decrypt_field(DATA_KEY, FIELD[:size], AAD)
    with pytest.raises(EnvelopeError, match="truncated"):
        decrypt_field(DATA_KEY, FIELD[:31], AAD)
    with pytest.raises(EnvelopeError):
        decrypt_field(DATA_KEY, FIELD + b"\x00", AAD)


def test_unknown_field_format_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="not an encrypted field"):
        decrypt_field(DATA_KEY, b"MFE2" + FIELD[4:], AAD)


# --- blind index ---------------------------------------------------------------------------


def test_blind_index_is_hmac_sha256_hex() -> None:
    expected = hmac.new(INDEX_KEY, "林秀英".encode(), hashlib.sha256).hexdigest()
    assert blind_index(INDEX_KEY, "林秀英") == expected
    assert len(expected) == 64


def test_blind_index_is_stable_and_keyed() -> None:
    a = blind_index(INDEX_KEY, "350102199001011234")
    assert a == blind_index(INDEX_KEY, "350102199001011234")
    assert a != blind_index(bytes(32), "350102199001011234")
    assert a != blind_index(INDEX_KEY, "350102199001011235")


@pytest.mark.parametrize(
    "variant",
    ["林秀英", "  林秀英 ", "\t林秀英\n", "\u3000林秀英\u3000", "\u00a0林秀英"],
)
def test_blind_index_strips_surrounding_whitespace(variant: str) -> None:
    assert blind_index(INDEX_KEY, variant) == blind_index(INDEX_KEY, "林秀英")


def test_blind_index_normalizes_to_nfc() -> None:
    composed, decomposed = "Zo\u00eb", "Zoe\u0308"
    assert composed != decomposed
    assert blind_index(INDEX_KEY, composed) == blind_index(INDEX_KEY, decomposed)


def test_blind_index_keeps_case_and_inner_whitespace() -> None:
    assert blind_index(INDEX_KEY, "11010519491231002X") != blind_index(
        INDEX_KEY, "11010519491231002x"
    )
    assert blind_index(INDEX_KEY, "林 秀英") != blind_index(INDEX_KEY, "林秀英")


def test_blind_index_refuses_a_short_key() -> None:
    with pytest.raises(CryptoError, match="at least 16 bytes"):
        blind_index(bytes(15), "x")
