"""Batch manifests, signatures, the MFB1 frame and the Merkle root: round trips and refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfabric.crypto import merkle
from medfabric.crypto.keys import EncryptionKey, SigningKey
from medfabric.records import RecordError
from medfabric.records.batch import (
    ERROR_CODES,
    FRAME_MAGIC,
    MAX_MANIFEST_SIZE,
    SIGNATURE_DOMAIN,
    BatchError,
    BatchManifest,
    merkle_root_hex,
    open_payload,
    pack_frame,
    seal_payload,
    sign_manifest,
    unpack_frame,
    verify_manifest,
)

HOSPITAL = SigningKey.from_bytes(bytes(range(32)))
REGION = EncryptionKey.from_bytes(bytes(range(32, 64)))
PAYLOAD = b"PAR1 pretend parquet bytes PAR1"


def _manifest(**changes: Any) -> BatchManifest:
    sealed_hash = hashlib.sha256(b"sealed").hexdigest()
    base: dict[str, Any] = {
        "batch_id": "H01-000042",
        "hospital_id": "H01",
        "system": "LIS",
        "table": "JY_JG",
        "seq": 42,
        "columns": (("JG_ID", "integer"), ("XM_MC", "string"), ("JG_Z", "decimal")),
        "key_columns": ("JG_ID",),
        "row_count": 3,
        "upserts": 2,
        "deletes": 1,
        "watermark_column": "XM_MC",
        "watermark_from": "2025-02-28 00:00:00",
        "watermark_to": "2025-03-01 00:00:00",
        "merkle_root": merkle_root_hex([hashlib.sha256(b"r%d" % i).hexdigest() for i in range(3)]),
        "payload_sha256": sealed_hash,
        "created_at": datetime(2025, 3, 1, 2, 0, 5, 250000, tzinfo=UTC),
        "region_key": REGION.public_key.fingerprint,
        "signer": HOSPITAL.verify_key.fingerprint,
    }
    return BatchManifest(**(base | changes))


def _code(info: pytest.ExceptionInfo[BatchError]) -> str:
    assert info.value.code in ERROR_CODES
    return info.value.code


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_round_trip_and_form() -> None:
    manifest = _manifest()
    data = manifest.to_bytes()
    assert BatchManifest.from_bytes(data) == manifest
    obj = json.loads(data)
    assert list(obj) == sorted(obj)
    assert obj["v"] == 1 and obj["payload_format"] == "arrow-ipc-zstd"
    assert obj["created_at"] == "2025-03-01T02:00:05.250000Z"
    assert obj["columns"][0] == ["JG_ID", "integer"]
    assert (
        data == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert isinstance(BatchError("bad-json", "x"), RecordError)


def test_manifest_created_at_is_stored_in_utc() -> None:
    cst = timezone(timedelta(hours=8))
    manifest = _manifest(created_at=datetime(2025, 3, 1, 10, 0, tzinfo=cst))
    assert manifest.created_at.utcoffset() == timedelta(0)
    assert json.loads(manifest.to_bytes())["created_at"] == "2025-03-01T02:00:00Z"
    assert BatchManifest.from_bytes(manifest.to_bytes()) == manifest


def test_manifest_without_watermark_and_with_chinese_names() -> None:
    manifest = _manifest(
        columns=(("编号", "string"), ("结果", "float")),
        key_columns=("编号",),
        table="检验结果",
        watermark_column=None,
        watermark_from=None,
        watermark_to=None,
    )
    assert BatchManifest.from_bytes(manifest.to_bytes()) == manifest
    assert "检验结果".encode() in manifest.to_bytes()


def _tampered(**changes: Any) -> bytes:
    obj = json.loads(_manifest().to_bytes())
    for key, value in changes.items():
        if value is _DELETE:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_DELETE = object()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff{}", "bad-encoding"),
        (b"{", "bad-json"),
        (b"[]", "bad-json"),
        (b'{"v":1,"v":1}', "bad-json"),
        (_tampered(extra="x"), "unknown-field"),
        (_tampered(signer=_DELETE), "missing-field"),
        (_tampered(v=2), "unsupported-version"),
        (_tampered(v="1"), "wrong-type"),
        (_tampered(seq="42"), "wrong-type"),
        (_tampered(seq=True), "wrong-type"),
        (_tampered(seq=-1), "bad-value"),
        (_tampered(row_count=4), "bad-value"),
        (_tampered(hospital_id=1), "wrong-type"),
        (_tampered(hospital_id=""), "bad-value"),
        (_tampered(system="RIS"), "bad-value"),
        (_tampered(columns={"a": "string"}), "wrong-type"),
        (_tampered(columns=[["A", "string", 1]]), "wrong-type"),
        (_tampered(columns=[["A", "time"]]), "bad-value"),
        (_tampered(columns=[["A", "string"], ["A", "integer"]]), "bad-value"),
        (_tampered(key_columns="JG_ID"), "wrong-type"),
        (_tampered(key_columns=[]), "bad-value"),
        (_tampered(key_columns=["NOPE"]), "bad-value"),
        (_tampered(key_columns=["JG_Z"]), "bad-value"),
        (_tampered(watermark_column=None), "bad-value"),
        (_tampered(watermark_to=5), "wrong-type"),
        (_tampered(merkle_root="AB" * 32), "bad-value"),
        (_tampered(payload_sha256="ab"), "bad-value"),
        (_tampered(region_key=None), "wrong-type"),
        (_tampered(signer="x" * 32), "bad-value"),
        (_tampered(payload_format="parquet"), "bad-value"),
        (_tampered(created_at="2025-03-01T02:00:05+08:00"), "bad-value"),
        (_tampered(created_at="2025-02-30T02:00:05Z"), "bad-value"),
        (_tampered(created_at=0), "wrong-type"),
        (_tampered(batch_id="../etc"), "bad-value"),
        (_tampered(batch_id=""), "bad-value"),
        (b" " + _manifest().to_bytes(), "not-canonical"),
        (json.dumps(json.loads(_manifest().to_bytes())).encode(), "not-canonical"),
        (_manifest().to_bytes().replace(b'"H01"', b'"\\u0048\\u00301"'), "not-canonical"),
        (_tampered(created_at="2025-03-01T02:00:05.000000Z"), "not-canonical"),
        (b"{" + b" " * MAX_MANIFEST_SIZE + b"}", "manifest-too-large"),
    ],
)
def test_from_bytes_refuses_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(BatchError) as info:
        BatchManifest.from_bytes(data)
    assert _code(info) == code


def test_constructor_validates() -> None:
    with pytest.raises(BatchError) as info:
        _manifest(created_at=datetime(2025, 3, 1))
    assert _code(info) == "bad-value"
    with pytest.raises(BatchError) as info:
        _manifest(v=2)
    assert _code(info) == "unsupported-version"
    with pytest.raises(dataclasses.FrozenInstanceError):
        _manifest().seq = 1  # type: ignore[misc]


# --- signatures -------------------------------------------------------------------------------


def test_sign_and_verify() -> None:
    manifest = _manifest()
    signature = sign_manifest(manifest, HOSPITAL)
    assert len(signature) == 64
    assert verify_manifest(manifest.to_bytes(), signature, HOSPITAL.verify_key)
    # Domain separation: the bare manifest bytes are not what is signed.
    assert not HOSPITAL.verify_key.verify(manifest.to_bytes(), signature)
    assert HOSPITAL.verify_key.verify(SIGNATURE_DOMAIN + manifest.to_bytes(), signature)


def test_every_manifest_byte_is_covered_by_the_signature() -> None:
    data = _manifest().to_bytes()
    signature = sign_manifest(_manifest(), HOSPITAL)
    for i in range(len(data)):
        altered = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        assert verify_manifest(altered, signature, HOSPITAL.verify_key) is False
    assert verify_manifest(data + b" ", signature, HOSPITAL.verify_key) is False
    assert verify_manifest(data[:-1], signature, HOSPITAL.verify_key) is False


def test_tampered_signature_and_wrong_key_are_refused() -> None:
    data = _manifest().to_bytes()
    signature = sign_manifest(_manifest(), HOSPITAL)
    bad = [signature[:i] + bytes([signature[i] ^ 0x80]) + signature[i + 1 :] for i in range(64)]
    bad += [signature[:63], signature + b"\x00", b""]
    for sig in bad:
        assert verify_manifest(data, sig, HOSPITAL.verify_key) is False
    other = SigningKey.generate()
    assert verify_manifest(data, signature, other.verify_key) is False
    # A valid signature by a key the manifest does not name.
    assert verify_manifest(data, other.sign(SIGNATURE_DOMAIN + data), other.verify_key) is False
    with pytest.raises(BatchError) as info:
        sign_manifest(_manifest(), other)
    assert _code(info) == "wrong-signer"


def test_a_validly_signed_invalid_manifest_is_refused() -> None:
    data = _tampered(seq=-1)
    signature = HOSPITAL.sign(SIGNATURE_DOMAIN + data)
    assert verify_manifest(data, signature, HOSPITAL.verify_key) is False
    huge = b"x" * (MAX_MANIFEST_SIZE + 1)
    assert (
        verify_manifest(huge, HOSPITAL.sign(SIGNATURE_DOMAIN + huge), HOSPITAL.verify_key) is False
    )


# --- frame and payload ------------------------------------------------------------------------


def _parts() -> tuple[BatchManifest, bytes, bytes, bytes]:
    sealed = seal_payload(REGION.public_key, PAYLOAD, "H01-000042")
    manifest = _manifest(payload_sha256=hashlib.sha256(sealed).hexdigest())
    return manifest, manifest.to_bytes(), sign_manifest(manifest, HOSPITAL), sealed


def test_frame_round_trip_and_layout() -> None:
    manifest, data, signature, sealed = _parts()
    frame = pack_frame(data, signature, sealed)
    assert frame[:4] == FRAME_MAGIC == b"MFB1"
    assert struct.unpack(">I", frame[4:8])[0] == len(data)
    assert frame[8 : 8 + len(data)] == data
    assert len(frame) == 8 + len(data) + 64 + len(sealed)
    assert unpack_frame(frame) == (data, signature, sealed)
    assert verify_manifest(*unpack_frame(frame)[:2], HOSPITAL.verify_key)
    assert open_payload(REGION, unpack_frame(frame)[2], manifest) == PAYLOAD


def test_truncated_frame_at_every_length_is_refused() -> None:
    manifest, data, signature, sealed = _parts()
    frame = pack_frame(data, signature, sealed)
    minimum = 8 + len(data) + 64 + 64
    for cut in range(len(frame)):
        body = frame[:cut]
        if cut < minimum:
            with pytest.raises(BatchError) as info:
                unpack_frame(body)
            assert _code(info) == "truncated", cut
        else:
            # The frame has no payload length; the manifest's payload hash catches the cut.
            with pytest.raises(BatchError) as info:
                open_payload(REGION, unpack_frame(body)[2], manifest)
            assert _code(info) == "payload-mismatch", cut


@pytest.mark.parametrize("magic", [b"MFB2", b"MFS1", b"XXXX", b"mfb1", b"M\x00"])
def test_bad_magic(magic: bytes) -> None:
    _, data, signature, sealed = _parts()
    frame = magic + pack_frame(data, signature, sealed)[4:]
    with pytest.raises(BatchError) as info:
        unpack_frame(frame[: max(len(magic), 8 + 100)])
    assert _code(info) == "bad-magic"


def test_oversized_and_zero_manifest_length() -> None:
    _, data, signature, sealed = _parts()
    frame = pack_frame(data, signature, sealed)
    cases = [(MAX_MANIFEST_SIZE + 1, "manifest-too-large"), (2**32 - 1, "manifest-too-large")]
    for length, code in [*cases, (0, "bad-value")]:
        with pytest.raises(BatchError) as info:
            unpack_frame(frame[:4] + struct.pack(">I", length) + frame[8:])
        assert _code(info) == code
    with pytest.raises(BatchError) as info:
        pack_frame(b"x" * (MAX_MANIFEST_SIZE + 1), signature, sealed)
    assert _code(info) == "manifest-too-large"
    with pytest.raises(BatchError) as info:
        pack_frame(data, signature[:63], sealed)
    assert _code(info) == "bad-value"
    with pytest.raises(BatchError) as info:
        pack_frame(data, signature, sealed[:63])
    assert _code(info) == "truncated"


def test_payload_bound_to_manifest_and_batch_id() -> None:
    manifest, _, _, sealed = _parts()
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(BatchError) as info:
        open_payload(REGION, altered, manifest)
    assert _code(info) == "payload-mismatch"
    with pytest.raises(BatchError) as info:
        open_payload(EncryptionKey.generate(), sealed, manifest)
    assert _code(info) == "payload-unreadable"
    # Sealed for another batch id: the manifest hash matches, the context does not.
    other = seal_payload(REGION.public_key, PAYLOAD, "H01-000043")
    forged = _manifest(payload_sha256=hashlib.sha256(other).hexdigest())
    with pytest.raises(BatchError) as info:
        open_payload(REGION, other, forged)
    assert _code(info) == "payload-unreadable"


# --- Merkle root ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40))
def test_merkle_root_equals_crypto_merkle(hashes: list[bytes]) -> None:
    expected = merkle.root([h for h in hashes])
    assert merkle_root_hex([h.hex() for h in hashes]) == expected.hex()
    tree = merkle.MerkleTree(merkle.leaf_hash(h) for h in hashes)
    assert merkle_root_hex([h.hex() for h in hashes]) == tree.root().hex()


def test_merkle_root_known_values() -> None:
    assert merkle_root_hex([]) == hashlib.sha256(b"").hexdigest()
    one = hashlib.sha256(b"record").hexdigest()
    assert merkle_root_hex([one]) == hashlib.sha256(b"\x00" + bytes.fromhex(one)).hexdigest()


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, b"ab" * 32, None])
def test_merkle_root_refuses_bad_hashes(bad: Any) -> None:
    with pytest.raises(BatchError, match="content hash 1") as info:
        merkle_root_hex(["00" * 32, bad])
    assert _code(info) == "bad-hash"
