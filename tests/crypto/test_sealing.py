"""Sealing for a recipient: round trips, the byte format re-derived from its documentation with
the raw ``cryptography`` primitives (and pinned by a golden vector), and rejection of every
altered, truncated or misdirected payload.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from medfabric.crypto import sealing
from medfabric.crypto.errors import SealError
from medfabric.crypto.keys import EncryptionKey, PublicEncryptionKey
from medfabric.crypto.sealing import OVERHEAD, open_sealed, seal

REGION = EncryptionKey.generate()
AAD = b"manifest sha256 9f86d081884c7d65"
CONTEXT = b"H01-20250101-000042"
SEALED = seal(REGION.public_key, "检验结果 batch".encode(), aad=AAD, context=CONTEXT)

# RFC 7748 §6.1 keys reused as fixed inputs for the golden vector below: Alice's key plays the
# ephemeral key, Bob's the region's.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
GOLDEN_NONCE = bytes(range(12))
# Computed once by reference_seal (below, written from the module docstring) and frozen: the
# format must never drift, or sealed batches already in a spool would become unreadable.
GOLDEN_SEALED = (
    "4d465331"  # "MFS1"
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"  # Alice's public key
    "000102030405060708090a0b"  # nonce
    "19a836486f"  # AES-256-GCM of b"hello"
    "cda04a97d1de4e52a86dc1059f16637f"  # tag
)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def reference_seal(
    ephemeral: bytes,
    recipient_public: bytes,
    nonce: bytes,
    plaintext: bytes,
    aad: bytes,
    context: bytes,
) -> bytes:
    """The sealing construction as the module docstring states it, from raw primitives."""
    e = x25519.X25519PrivateKey.from_private_bytes(ephemeral)
    big_e = e.public_key().public_bytes_raw()
    shared = e.exchange(x25519.X25519PublicKey.from_public_bytes(recipient_public))
    key = HKDF(
        algorithm=SHA256(),
        length=32,
        salt=big_e + recipient_public,
        info=b"medfabric seal v1" + context,
    ).derive(shared)
    header = b"MFS1" + big_e + nonce
    return header + AESGCM(key).encrypt(nonce, plaintext, header + aad)


def test_round_trip() -> None:
    assert open_sealed(REGION, SEALED, aad=AAD, context=CONTEXT) == "检验结果 batch".encode()


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 1024 * 1024])
def test_round_trip_sizes(size: int) -> None:
    plaintext = os.urandom(size)
    sealed = seal(REGION.public_key, plaintext)
    assert len(sealed) == size + OVERHEAD == size + 64
    assert sealed[:4] == b"MFS1"
    assert open_sealed(REGION, sealed) == plaintext


def test_each_seal_is_fresh() -> None:
    a = seal(REGION.public_key, b"same")
    b = seal(REGION.public_key, b"same")
    assert a != b
    assert a[4:36] != b[4:36]  # a new ephemeral key each time


def test_format_is_as_documented() -> None:
    # Open a payload made by `seal` with the raw primitives, following the docstring.
    header, body = SEALED[:48], SEALED[48:]
    assert header[:4] == b"MFS1"
    big_e, nonce = header[4:36], header[36:48]
    region_public = REGION.public_key.to_bytes()
    shared = REGION._key.exchange(x25519.X25519PublicKey.from_public_bytes(big_e))
    key = HKDF(
        algorithm=SHA256(),
        length=32,
        salt=big_e + region_public,
        info=b"medfabric seal v1" + CONTEXT,
    ).derive(shared)
    assert AESGCM(key).decrypt(nonce, body, header + AAD) == "检验结果 batch".encode()


def test_golden_vector() -> None:
    bob = EncryptionKey.from_bytes(BOB_PRIVATE)
    sealed = reference_seal(
        ALICE_PRIVATE, bob.public_key.to_bytes(), GOLDEN_NONCE, b"hello", b"aad", b"ctx"
    )
    assert sealed.hex() == GOLDEN_SEALED
    assert open_sealed(bob, sealed, aad=b"aad", context=b"ctx") == b"hello"


def test_wrong_key_is_refused() -> None:
    with pytest.raises(SealError, match="wrong key, wrong aad or context, or altered bytes"):
        open_sealed(EncryptionKey.generate(), SEALED, aad=AAD, context=CONTEXT)


@pytest.mark.parametrize(
    ("aad", "context"),
    [(b"", CONTEXT), (AAD + b"x", CONTEXT), (AAD, b""), (AAD, CONTEXT + b"x"), (CONTEXT, AAD)],
)
def test_wrong_aad_or_context_is_refused(aad: bytes, context: bytes) -> None:
    with pytest.raises(SealError):
        open_sealed(REGION, SEALED, aad=aad, context=context)


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(0, 8 * len(SEALED) - 1))
def test_any_flipped_bit_is_refused(bit: int) -> None:
    with pytest.raises(SealError):
        open_sealed(REGION, _flip(SEALED, bit), aad=AAD, context=CONTEXT)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=40), aad=st.binary(max_size=8), data=st.data())
def test_any_flipped_bit_of_any_payload_is_refused(
    plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    sealed = seal(REGION.public_key, plaintext, aad=aad)
    assert open_sealed(REGION, sealed, aad=aad) == plaintext
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1))
    with pytest.raises(SealError):
        open_sealed(REGION, _flip(sealed, bit), aad=aad)


def test_every_bit_matters() -> None:
    sealed = seal(REGION.public_key, b"tiny")
    for bit in range(8 * len(sealed)):
        with pytest.raises(SealError):
            open_sealed(REGION, _flip(sealed, bit))


def test_top_bit_of_the_ephemeral_key_is_authenticated() -> None:
    # X25519 ignores this bit (RFC 7748 §5): the shared secret is unchanged, so only the
    # binding of the raw header (HKDF salt, GCM associated data) can catch the change.
    flipped = _flip(SEALED, 8 * 35 + 7)
    e_flipped = PublicEncryptionKey.from_bytes(flipped[4:36])
    e_original = PublicEncryptionKey.from_bytes(SEALED[4:36])
    assert REGION.exchange(e_flipped) == REGION.exchange(e_original)
    with pytest.raises(SealError):
        open_sealed(REGION, flipped, aad=AAD, context=CONTEXT)


def test_every_truncation_is_refused() -> None:
    for size in range(len(SEALED)):
        with pytest.raises(SealError):
            open_sealed(REGION, SEALED[:size], aad=AAD, context=CONTEXT)
    with pytest.raises(SealError, match="truncated"):
        open_sealed(REGION, SEALED[:63], aad=AAD, context=CONTEXT)


def test_appended_bytes_are_refused() -> None:
    with pytest.raises(SealError):
        open_sealed(REGION, SEALED + b"\x00", aad=AAD, context=CONTEXT)


def test_unknown_magic_and_version_are_refused() -> None:
    with pytest.raises(SealError, match="unsupported version"):
        open_sealed(REGION, b"MFS2" + SEALED[4:], aad=AAD, context=CONTEXT)
    with pytest.raises(SealError, match="not a sealed payload"):
        open_sealed(REGION, b"PK\x03\x04" + SEALED[4:], aad=AAD, context=CONTEXT)


def test_low_order_ephemeral_key_is_refused() -> None:
    forged = SEALED[:4] + bytes(32) + SEALED[36:]
    with pytest.raises(SealError, match="ephemeral key is invalid"):
        open_sealed(REGION, forged, aad=AAD, context=CONTEXT)


def test_sealing_for_a_low_order_key_is_refused() -> None:
    with pytest.raises(SealError, match="low-order"):
        seal(PublicEncryptionKey.from_bytes(bytes(32)), b"x")


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = seal(REGION.public_key, bytes(11))
    monkeypatch.setattr(sealing, "MAX_PLAINTEXT_SIZE", 10)
    with pytest.raises(SealError, match="over the 10-byte limit"):
        seal(REGION.public_key, bytes(11))
    with pytest.raises(SealError, match="size limit"):
        open_sealed(REGION, sealed)
    assert open_sealed(REGION, seal(REGION.public_key, bytes(10))) == bytes(10)


def test_documented_limit_is_one_gibibyte() -> None:
    assert sealing.MAX_PLAINTEXT_SIZE == 2**30
