"""Ed25519 and X25519 keys and key files: the published RFC vectors through the wrappers,
rejection of every altered signature, and the key-file contract (formats, 0600, passphrases,
refusals, atomic writes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from medfabric.crypto import keys
from medfabric.crypto.errors import CryptoError, KeyFileError
from medfabric.crypto.keys import (
    EncryptionKey,
    PublicEncryptionKey,
    SigningKey,
    VerifyKey,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)

# RFC 8032 §7.1, "Test Vectors for Ed25519": TEST 1, TEST 2, TEST 3 and TEST SHA(abc)
# (secret key, public key, message, signature), copied from the RFC as hex.
RFC8032_VECTORS = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}

# RFC 7748 §5.2: X25519(scalar, u) = output, the two single-iteration vectors. The second
# u-coordinate has its top bit set, which X25519 must ignore (§5).
RFC7748_SCALAR_MULT = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]

# RFC 7748 §6.1, the Diffie-Hellman example: Alice's and Bob's keys and their shared secret K.
ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED_K = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

PASSPHRASE = b"correct horse battery staple"

KEY = SigningKey.generate()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- RFC vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RFC8032_VECTORS))
def test_rfc8032_vectors(name: str) -> None:
    secret, public, message, signature = (bytes.fromhex(h) for h in RFC8032_VECTORS[name])
    key = SigningKey.from_bytes(secret)
    assert key.verify_key.to_bytes() == public
    assert key.sign(message) == signature  # Ed25519 is deterministic
    verify_key = VerifyKey.from_bytes(public)
    assert verify_key == key.verify_key
    assert verify_key.verify(message, signature)
    assert not verify_key.verify(message + b"\x00", signature)


def test_rfc8032_sha_abc_message_is_sha512_of_abc() -> None:
    assert bytes.fromhex(RFC8032_VECTORS["TEST SHA(abc)"][2]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize(("scalar", "u", "output"), RFC7748_SCALAR_MULT)
def test_rfc7748_scalar_multiplication(scalar: str, u: str, output: str) -> None:
    key = EncryptionKey.from_bytes(bytes.fromhex(scalar))
    peer = PublicEncryptionKey.from_bytes(bytes.fromhex(u))
    assert key.exchange(peer) == bytes.fromhex(output)


def test_rfc7748_diffie_hellman_alice_and_bob() -> None:
    alice = EncryptionKey.from_bytes(bytes.fromhex(ALICE_PRIVATE))
    bob = EncryptionKey.from_bytes(bytes.fromhex(BOB_PRIVATE))
    assert alice.public_key.to_bytes() == bytes.fromhex(ALICE_PUBLIC)
    assert bob.public_key.to_bytes() == bytes.fromhex(BOB_PUBLIC)
    alice_public = PublicEncryptionKey.from_bytes(bytes.fromhex(ALICE_PUBLIC))
    bob_public = PublicEncryptionKey.from_bytes(bytes.fromhex(BOB_PUBLIC))
    assert alice.exchange(bob_public) == bob.exchange(alice_public) == bytes.fromhex(SHARED_K)


def test_exchange_refuses_a_low_order_point() -> None:
    with pytest.raises(CryptoError, match="low-order"):
        EncryptionKey.generate().exchange(PublicEncryptionKey.from_bytes(bytes(32)))


# --- signatures ----------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    message = "检验报告 H01-000042".encode()
    signature = KEY.sign(message)
    assert len(signature) == keys.SIGNATURE_SIZE
    assert KEY.verify_key.verify(message, signature)


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=64), data=st.data())
def test_any_flipped_bit_in_message_or_signature_is_rejected(
    message: bytes, data: st.DataObject
) -> None:
    signature = KEY.sign(message)
    if message:
        bit = data.draw(st.integers(0, 8 * len(message) - 1))
        assert not KEY.verify_key.verify(_flip(message, bit), signature)
    bit = data.draw(st.integers(0, 8 * len(signature) - 1))
    assert not KEY.verify_key.verify(message, _flip(signature, bit))


def test_every_bit_of_a_signature_matters() -> None:
    signature = KEY.sign(b"manifest")
    for bit in range(8 * len(signature)):
        assert not KEY.verify_key.verify(b"manifest", _flip(signature, bit)), bit


@pytest.mark.parametrize("signature", [b"", b"\x00" * 64, b"\x00" * 63, b"\x00" * 65])
def test_malformed_signatures_are_false_not_errors(signature: bytes) -> None:
    assert KEY.verify_key.verify(b"m", signature) is False


def test_truncated_or_extended_signature_is_rejected() -> None:
    signature = KEY.sign(b"m")
    assert not KEY.verify_key.verify(b"m", signature[:-1])
    assert not KEY.verify_key.verify(b"m", signature + b"\x00")


def test_another_keys_signature_is_rejected() -> None:
    other = SigningKey.generate()
    assert not KEY.verify_key.verify(b"m", other.sign(b"m"))
    assert other.verify_key != KEY.verify_key


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_raw_keys_of_the_wrong_length_are_refused(size: int) -> None:
    for build in (
        VerifyKey.from_bytes,
        PublicEncryptionKey.from_bytes,
        SigningKey.from_bytes,
        EncryptionKey.from_bytes,
    ):
        with pytest.raises(CryptoError, match="32 bytes"):
            build(bytes(size))


def test_fingerprint_is_the_first_16_bytes_of_sha256_in_hex() -> None:
    verify_key = KEY.verify_key
    assert verify_key.fingerprint == hashlib.sha256(verify_key.to_bytes()).hexdigest()[:32]
    public = EncryptionKey.generate().public_key
    assert public.fingerprint == hashlib.sha256(public.to_bytes()).digest()[:16].hex()


def test_public_keys_compare_and_hash_by_value() -> None:
    a = VerifyKey.from_bytes(KEY.verify_key.to_bytes())
    assert a == KEY.verify_key
    assert len({a, KEY.verify_key}) == 1
    assert VerifyKey.from_bytes(bytes(32)) != a


def test_repr_shows_no_key_material() -> None:
    seed = bytes(range(32))
    key = SigningKey.from_bytes(seed)
    enc = EncryptionKey.from_bytes(seed)
    for text in (repr(key), repr(enc), str(key), str(enc)):
        assert seed.hex() not in text
        assert "fingerprint" in text or "key=" in text
    assert key.verify_key.fingerprint in repr(key)


def test_keys_are_immutable() -> None:
    with pytest.raises(AttributeError):
        KEY._key = SigningKey.generate()._key  # type: ignore[misc]


# --- key files -----------------------------------------------------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    # A permissive umask must not loosen a private key file.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_private_key_file_round_trip_unencrypted(tmp_path: Path, no_umask: None) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert _mode(path) == 0o600
    loaded = load_private_key(path, None, kind=SigningKey)
    assert loaded.verify_key == KEY.verify_key
    assert loaded.sign(b"m") == KEY.sign(b"m")


def test_private_key_file_with_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "region.key"
    key = EncryptionKey.generate()
    save_private_key(key, path, passphrase=PASSPHRASE)
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    loaded = load_private_key(path, PASSPHRASE, kind=EncryptionKey)
    assert loaded.public_key == key.public_key


def test_wrong_passphrase_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError, match="wrong passphrase") as err:
        load_private_key(path, b"wrong", kind=SigningKey)
    assert str(path) in str(err.value)


def test_missing_passphrase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError, match="is encrypted; its passphrase is needed"):
        load_private_key(path, None, kind=SigningKey)


def test_passphrase_for_an_unencrypted_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    with pytest.raises(KeyFileError, match="is not encrypted"):
        load_private_key(path, PASSPHRASE, kind=SigningKey)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        save_private_key(KEY, tmp_path / "k", passphrase=b"")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o610, 0o777])
def test_group_or_other_permissions_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=r"chmod 600") as err:
        load_private_key(path, None, kind=SigningKey)
    assert str(path) in str(err.value)
    loaded = load_private_key(path, None, kind=SigningKey, allow_insecure_permissions=True)
    assert loaded.verify_key == KEY.verify_key


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    for mode in (0o400, 0o700):
        path.chmod(mode)
        assert load_private_key(path, None, kind=SigningKey).verify_key == KEY.verify_key


def test_overwrite_is_refused_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    before = path.read_bytes()
    other = SigningKey.generate()
    with pytest.raises(KeyFileError, match="already exists"):
        save_private_key(other, path, passphrase=None)
    assert path.read_bytes() == before
    save_private_key(other, path, passphrase=None, overwrite=True)
    assert load_private_key(path, None, kind=SigningKey).verify_key == other.verify_key
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["hospital.key"]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_private_key(KEY, tmp_path / "a.key", passphrase=PASSPHRASE)
    save_public_key(KEY.verify_key, tmp_path / "a.pub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.pub"]


def test_failed_write_leaves_neither_key_nor_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyFileError, match="Input/output error"):
        save_private_key(KEY, tmp_path / "a.key", passphrase=None)
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_folder_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        save_private_key(KEY, tmp_path / "missing" / "a.key", passphrase=None)


def test_missing_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_private_key(tmp_path / "nope.key", None, kind=SigningKey)


def test_a_folder_is_not_a_key_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir.key"
    folder.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(folder, None, kind=SigningKey)


@pytest.mark.parametrize("cut", [0, 10, 40, -40, -1 - len("-----END PRIVATE KEY-----\n")])
def test_truncated_file_is_a_key_file_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=None)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(KeyFileError, match="truncated or corrupted") as err:
        load_private_key(path, None, kind=SigningKey)
    assert str(path) in str(err.value)


def test_truncated_encrypted_file_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "hospital.key"
    save_private_key(KEY, path, passphrase=PASSPHRASE)
    path.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(KeyFileError, match=str(path)):
        load_private_key(path, PASSPHRASE, kind=SigningKey)


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.key"
    path.write_bytes(b"x" * (keys.MAX_KEY_FILE_SIZE + 1))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="larger than"):
        load_private_key(path, None, kind=SigningKey)


def test_wrong_key_type_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "region.key"
    save_private_key(EncryptionKey.generate(), path, passphrase=None)
    with pytest.raises(
        KeyFileError, match="holds an X25519 encryption key, expected an Ed25519 signing key"
    ):
        load_private_key(path, None, kind=SigningKey)


def test_foreign_key_type_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "p256.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(
        KeyFileError, match=r"holds an elliptic-curve \(ECDSA/ECDH\) key, expected an X25519"
    ):
        load_private_key(path, None, kind=EncryptionKey)


def test_public_key_files_round_trip_as_spki_pem(tmp_path: Path) -> None:
    verify_path, enc_path = tmp_path / "h01.pub", tmp_path / "region.pub"
    enc = EncryptionKey.generate().public_key
    save_public_key(KEY.verify_key, verify_path)
    save_public_key(enc, enc_path)
    for path in (verify_path, enc_path):
        assert path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
        assert _mode(path) == 0o644
    assert load_public_key(verify_path, kind=VerifyKey) == KEY.verify_key
    assert load_public_key(enc_path, kind=PublicEncryptionKey) == enc
    with pytest.raises(KeyFileError, match="expected an Ed25519 verify key"):
        load_public_key(enc_path, kind=VerifyKey)
    with pytest.raises(KeyFileError, match="already exists"):
        save_public_key(enc, enc_path)


def test_public_key_file_is_the_openssl_spki_encoding(tmp_path: Path) -> None:
    # RFC 8410 §10.1 fixes the SPKI of an Ed25519 key as a 12-byte prefix then the raw key.
    path = tmp_path / "h01.pub"
    save_public_key(KEY.verify_key, path)
    der = serialization.load_pem_public_key(path.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert der == bytes.fromhex("302a300506032b6570032100") + KEY.verify_key.to_bytes()


def test_corrupted_public_key_file_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "h01.pub"
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(path, kind=VerifyKey)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_key_files_interoperate_with_openssl(tmp_path: Path) -> None:
    # A key made by `openssl genpkey` loads; a key we encrypt, `openssl pkey` decrypts.
    made_by_openssl = tmp_path / "openssl.key"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(made_by_openssl)], check=True
    )
    made_by_openssl.chmod(0o600)
    spki = subprocess.run(
        ["openssl", "pkey", "-in", str(made_by_openssl), "-pubout"],
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "openssl.pub").write_bytes(spki)
    loaded = load_private_key(made_by_openssl, None, kind=SigningKey)
    assert load_public_key(tmp_path / "openssl.pub", kind=VerifyKey) == loaded.verify_key

    ours = tmp_path / "ours.key"
    save_private_key(KEY, ours, passphrase=PASSPHRASE)
    out = subprocess.run(
        ["openssl", "pkey", "-in", str(ours), "-passin", "env:MF_PASS", "-pubout"],
        check=True,
        capture_output=True,
        env={**os.environ, "MF_PASS": PASSPHRASE.decode()},
    ).stdout
    (tmp_path / "ours.pub").write_bytes(out)
    assert load_public_key(tmp_path / "ours.pub", kind=VerifyKey) == KEY.verify_key
