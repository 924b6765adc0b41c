"""Batches: the signed manifest, the MFB1 wire frame and the Merkle root (docs/canonical.md §15).

A batch carries the rows of one source table from a hospital's gateway to the region: a
Parquet payload (meta columns + typed payload columns), sealed for the region's X25519 key
with the batch id as context, and a manifest describing it, signed by the hospital's Ed25519
key. On the wire::

    offset      size  field
    0           4     magic and version: ASCII "MFB1"
    4           4     n, the manifest's length, unsigned big-endian, 1 <= n <= MAX_MANIFEST_SIZE
    8           n     the manifest: canonical JSON (BatchManifest.to_bytes)
    8+n         64    Ed25519 signature of SIGNATURE_DOMAIN ‖ manifest
    72+n        rest  the sealed payload (crypto.sealing, "MFS1" ...), at least 64 bytes

Invariants:

- A :class:`BatchManifest` that exists is valid; :meth:`BatchManifest.from_bytes` accepts only
  the exact bytes :meth:`BatchManifest.to_bytes` writes (sorted keys, no whitespace, the
  escapes of docs/canonical.md §3), so a signed manifest has one spelling.
- Every refusal is a :class:`BatchError` with a stable kebab-case ``code`` (listed in
  :data:`ERROR_CODES`), for the receiver's rejection log; messages name the field, never row
  values.
- The signature covers ``SIGNATURE_DOMAIN ‖ manifest bytes``: a manifest signature can never
  be replayed as a signature of another medfabric message, or the reverse.
- The manifest binds the payload twice: ``payload_sha256`` (of the sealed bytes, checked
  before decryption) and ``merkle_root`` (RFC 6962 over the rows' content hashes in ``_seq``
  order, checked after).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

from medfabric.crypto import merkle
from medfabric.crypto.errors import SealError
from medfabric.crypto.keys import (
    SIGNATURE_SIZE,
    EncryptionKey,
    PublicEncryptionKey,
    SigningKey,
    VerifyKey,
)
from medfabric.crypto.sealing import OVERHEAD, open_sealed, seal
from medfabric.records.canonical import SYSTEMS, RecordError, _check_text
from medfabric.records.canonical import _string as _json_string
from medfabric.records.payload import PAYLOAD_FORMAT, PAYLOAD_FORMATS
from medfabric.records.sqlcanon import COLUMN_KINDS, KEY_KINDS, ColumnKind

__all__ = [
    "ERROR_CODES",
    "FRAME_MAGIC",
    "MANIFEST_VERSION",
    "MAX_MANIFEST_SIZE",
    "PAYLOAD_FORMAT",
    "SIGNATURE_DOMAIN",
    "BatchError",
    "BatchManifest",
    "merkle_root_hex",
    "merkle_root_of_digests",
    "open_payload",
    "pack_frame",
    "seal_payload",
    "sign_manifest",
    "unpack_frame",
    "verify_manifest",
]

MANIFEST_VERSION: Final = 1
SIGNATURE_DOMAIN: Final = b"medfabric/batch-manifest/v1\x00"
FRAME_MAGIC: Final = b"MFB1"
MAX_MANIFEST_SIZE: Final = 1 << 20
"""The largest manifest accepted (1 MiB): thousands of columns fit; a hostile length does not."""

_PREFIX: Final = struct.Struct(">4sI")

ERROR_CODES: Final = frozenset(
    {
        "bad-encoding",  # manifest is not UTF-8
        "bad-json",  # not JSON, not an object, or a duplicate key
        "not-canonical",  # valid, but not the one canonical spelling
        "unknown-field",
        "missing-field",
        "wrong-type",
        "bad-value",  # right type, value out of its domain
        "unsupported-version",  # "v" is not MANIFEST_VERSION
        "wrong-signer",  # signing key is not the one the manifest names
        "truncated",  # frame shorter than its parts
        "bad-magic",  # frame does not start with "MFB1"
        "manifest-too-large",
        "payload-mismatch",  # sealed payload's SHA-256 is not the manifest's
        "payload-unreadable",  # sealed payload cannot be opened with the region key
        "bad-hash",  # a content hash is not 64 lowercase hex digits
    }
)


_HEX_RUN = re.compile(r"[0-9a-f]*")


class BatchError(RecordError):
    """A batch, manifest or frame that is refused; ``code`` is one of :data:`ERROR_CODES`.

    Args:
        code: the stable reason code.
        message: what is wrong, naming the field; never row values.
    """

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code


# --- the manifest ------------------------------------------------------------------------------

_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_BATCH_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CREATED_AT: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{6}))?Z"
)


def _utc_text(value: datetime) -> str:
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    return text + (f".{value.microsecond:06d}" if value.microsecond else "") + "Z"


def _encode_json(value: Any) -> str:
    """Canonical JSON of manifest data: sorted keys, no whitespace, docs/canonical.md escapes."""
    if value is None:
        return "null"
    if type(value) is str:
        return _json_string(value)
    if type(value) is int:
        return str(value)
    if type(value) in (list, tuple):
        return "[" + ",".join(_encode_json(v) for v in value) + "]"
    assert type(value) is dict
    return (
        "{" + ",".join(f"{_json_string(k)}:{_encode_json(value[k])}" for k in sorted(value)) + "}"
    )


def _need(ok: bool, code: str, message: str) -> None:
    if not ok:
        raise BatchError(code, message)


def _check_str(value: object, name: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    _need(type(value) is str, "wrong-type", f"{name} must be a string")
    try:
        _check_text(value, name)
    except RecordError as e:
        raise BatchError("bad-value", str(e)) from None


def _check_count(value: object, name: str) -> None:
    _need(type(value) is int, "wrong-type", f"{name} must be an integer")
    assert isinstance(value, int)
    _need(0 <= value < 2**63, "bad-value", f"{name} must be in [0, 2**63)")


def _check_pattern(value: object, name: str, pattern: re.Pattern[str], form: str) -> None:
    _need(type(value) is str, "wrong-type", f"{name} must be a string")
    assert isinstance(value, str)
    _need(pattern.fullmatch(value) is not None, "bad-value", f"{name} must be {form}")


@dataclass(frozen=True)
class BatchManifest:
    """The signed description of one batch (docs/canonical.md §15).

    Args:
        batch_id: the batch's id, 1-128 of ``A-Z a-z 0-9 . _ : -``, starting alphanumeric;
            also the sealing context of the payload.
        hospital_id: the producing hospital.
        system: ``HIS``, ``LIS``, ``PACS`` or ``EMR``.
        table: the source table.
        seq: the batch's number for this hospital, increasing (>= 0).
        columns: the payload columns as (name, kind) in payload order.
        key_columns: the names of the key columns (among ``columns``, kind string or
            integer), in key order; at least one.
        row_count: the rows in the payload; ``upserts + deletes == row_count``.
        upserts: rows with ``_op = 'upsert'``.
        deletes: rows with ``_op = 'delete'``.
        watermark_column: the source column the extraction advanced on, or None.
        watermark_from: the watermark before this batch, as the source value's text, or None.
        watermark_to: the watermark after this batch, or None; both None without a column.
        merkle_root: 64 lowercase hex, :func:`merkle_root_hex` of the rows' ``_hash``.
        payload_sha256: 64 lowercase hex, SHA-256 of the sealed payload bytes.
        created_at: when the gateway built the batch; aware, stored in UTC.
        region_key: fingerprint of the region's X25519 public key the payload is sealed for.
        signer: fingerprint of the hospital's Ed25519 verify key.
        payload_format: ``arrow-ipc-zstd`` (or ``parquet-zstd``, still read); see
            :mod:`medfabric.records.payload`.
        v: the manifest version, 1.

    Raises:
        BatchError: ``wrong-type`` or ``bad-value`` naming the field (``unsupported-version``
            for ``v``).
    """

    batch_id: str
    hospital_id: str
    system: str
    table: str
    seq: int
    columns: tuple[tuple[str, ColumnKind], ...]
    key_columns: tuple[str, ...]
    row_count: int
    upserts: int
    deletes: int
    watermark_column: str | None
    watermark_from: str | None
    watermark_to: str | None
    merkle_root: str
    payload_sha256: str
    created_at: datetime
    region_key: str
    signer: str
    payload_format: str = PAYLOAD_FORMAT
    v: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        _need(type(self.v) is int, "wrong-type", "v must be an integer")
        _need(self.v == MANIFEST_VERSION, "unsupported-version", f"v must be {MANIFEST_VERSION}")
        _check_pattern(self.batch_id, "batch_id", _BATCH_ID, "1-128 of A-Z a-z 0-9 . _ : -")
        _check_str(self.hospital_id, "hospital_id")
        _check_str(self.system, "system")
        _need(self.system in SYSTEMS, "bad-value", f"system must be one of {sorted(SYSTEMS)}")
        _check_str(self.table, "table")
        _check_count(self.seq, "seq")
        self._check_columns()
        for name in ("row_count", "upserts", "deletes"):
            _check_count(getattr(self, name), name)
        _need(
            self.upserts + self.deletes == self.row_count,
            "bad-value",
            "upserts + deletes must equal row_count",
        )
        self._check_watermark()
        _check_pattern(self.merkle_root, "merkle_root", _HEX64, "64 lowercase hex digits")
        _check_pattern(self.payload_sha256, "payload_sha256", _HEX64, "64 lowercase hex digits")
        _need(type(self.created_at) is datetime, "wrong-type", "created_at must be a datetime")
        _need(self.created_at.utcoffset() is not None, "bad-value", "created_at must be aware")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        _check_pattern(self.region_key, "region_key", _HEX32, "a key fingerprint (32 hex)")
        _check_pattern(self.signer, "signer", _HEX32, "a key fingerprint (32 hex)")
        _check_str(self.payload_format, "payload_format")
        _need(
            self.payload_format in PAYLOAD_FORMATS,
            "bad-value",
            f"payload_format must be one of {', '.join(PAYLOAD_FORMATS)}",
        )

    def _check_columns(self) -> None:
        _need(isinstance(self.columns, tuple | list), "wrong-type", "columns must be a list")
        pairs: list[tuple[str, ColumnKind]] = []
        for i, entry in enumerate(self.columns):
            _need(
                isinstance(entry, tuple | list) and len(entry) == 2,
                "wrong-type",
                f"columns[{i}] must be a [name, kind] pair",
            )
            name, kind = entry
            _check_str(name, f"columns[{i}] name")
            _need(type(kind) is str, "wrong-type", f"columns[{i}] kind must be a string")
            _need(kind in COLUMN_KINDS, "bad-value", f"columns[{i}] kind must be a column kind")
            pairs.append((name, kind))
        kinds = dict(pairs)
        _need(len(kinds) == len(pairs), "bad-value", "columns must have unique names")
        object.__setattr__(self, "columns", tuple(pairs))
        _need(
            isinstance(self.key_columns, tuple | list), "wrong-type", "key_columns must be a list"
        )
        _need(len(self.key_columns) > 0, "bad-value", "key_columns must not be empty")
        for i, name in enumerate(self.key_columns):
            _check_str(name, f"key_columns[{i}]")
            _need(name in kinds, "bad-value", f"key_columns[{i}] must name a column")
            _need(
                kinds[name] in KEY_KINDS, "bad-value", f"key_columns[{i}] must be string or integer"
            )
        _need(
            len(set(self.key_columns)) == len(self.key_columns),
            "bad-value",
            "key_columns must be unique",
        )
        object.__setattr__(self, "key_columns", tuple(self.key_columns))

    def _check_watermark(self) -> None:
        _check_str(self.watermark_column, "watermark_column", optional=True)
        _check_str(self.watermark_from, "watermark_from", optional=True)
        _check_str(self.watermark_to, "watermark_to", optional=True)
        if self.watermark_column is None:
            _need(
                self.watermark_from is None and self.watermark_to is None,
                "bad-value",
                "watermark_from and watermark_to need a watermark_column",
            )

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data (columns as ``[name, kind]`` lists, created_at as text)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["columns"] = [[name, kind] for name, kind in self.columns]
        data["key_columns"] = list(self.key_columns)
        data["created_at"] = _utc_text(self.created_at)
        return data

    def to_bytes(self) -> bytes:
        """The canonical JSON of :meth:`to_dict`: sorted keys, no whitespace, UTF-8.

        These are the bytes that are signed and sent; ``from_bytes(m.to_bytes()) == m``.
        """
        return _encode_json(self.to_dict()).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchManifest:
        """Parse and validate manifest bytes strictly.

        Args:
            data: untrusted bytes, as received.

        Returns:
            The manifest ``m`` with ``m.to_bytes() == data``.

        Raises:
            BatchError: ``bad-encoding``, ``bad-json``, ``unknown-field``, ``missing-field``,
                ``wrong-type``, ``bad-value``, ``unsupported-version``, or ``not-canonical``
                (valid but spelled otherwise than :meth:`to_bytes` would).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BatchError("wrong-type", "manifest must be bytes")
        raw = bytes(data)
        _need(len(raw) <= MAX_MANIFEST_SIZE, "manifest-too-large", "manifest is over 1 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BatchError("bad-encoding", f"manifest is not UTF-8 at byte {e.start}") from None
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicates)
        except BatchError:
            raise
        except (ValueError, RecursionError) as e:
            raise BatchError("bad-json", f"manifest is not JSON: {e}") from None
        _need(type(obj) is dict, "bad-json", "manifest is not a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(obj.keys() - names)
        _need(not unknown, "unknown-field", f"unknown manifest fields {unknown}")
        missing = sorted(names - obj.keys())
        _need(not missing, "missing-field", f"missing manifest fields {missing}")
        created_at = obj["created_at"]
        _need(type(created_at) is str, "wrong-type", "created_at must be a string")
        obj["created_at"] = _parse_created_at(created_at)
        for name in ("columns", "key_columns"):
            _need(type(obj[name]) is list, "wrong-type", f"{name} must be a list")
        manifest = cls(**obj)
        _need(
            manifest.to_bytes() == raw,
            "not-canonical",
            "manifest is valid but not in canonical form (key order, whitespace, escapes)",
        )
        return manifest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        _need(key not in obj, "bad-json", f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _parse_created_at(text: str) -> datetime:
    match = _CREATED_AT.fullmatch(text)
    _need(match is not None, "bad-value", "created_at must be YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    assert match is not None
    year, month, day, hour, minute, second, micro = (int(g) for g in match.groups(default="0"))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        raise BatchError("bad-value", "created_at is not a valid time") from None


# --- signing -----------------------------------------------------------------------------------


def sign_manifest(manifest: BatchManifest, key: SigningKey) -> bytes:
    """Sign a manifest: Ed25519 over ``SIGNATURE_DOMAIN ‖ manifest.to_bytes()``.

    Args:
        manifest: the manifest; its ``signer`` must be ``key``'s fingerprint.
        key: the hospital's signing key.

    Returns:
        The 64-byte signature.

    Raises:
        BatchError: ``wrong-signer`` when the manifest names another key.
    """
    _need(
        manifest.signer == key.verify_key.fingerprint,
        "wrong-signer",
        "manifest.signer is not the fingerprint of the signing key",
    )
    return key.sign(SIGNATURE_DOMAIN + manifest.to_bytes())


def verify_manifest(manifest_bytes: bytes, signature: bytes, key: VerifyKey) -> bool:
    """Whether ``signature`` is ``key``'s signature of this manifest; never raises.

    True only if the Ed25519 signature of ``SIGNATURE_DOMAIN ‖ manifest_bytes`` verifies
    under ``key`` *and* the bytes are a valid canonical manifest whose ``signer`` is
    ``key``'s fingerprint (a hospital's key cannot vouch for a manifest naming another).

    Args:
        manifest_bytes: the manifest as received (untrusted).
        signature: its signature, untrusted (any length; not 64 bytes is False).
        key: the hospital's verify key, as the region registered it.
    """
    if len(manifest_bytes) > MAX_MANIFEST_SIZE:
        return False
    if not key.verify(SIGNATURE_DOMAIN + bytes(manifest_bytes), bytes(signature)):
        return False
    try:
        manifest = BatchManifest.from_bytes(manifest_bytes)
    except BatchError:
        return False
    return manifest.signer == key.fingerprint


# --- the frame ---------------------------------------------------------------------------------


def pack_frame(manifest_bytes: bytes, signature: bytes, sealed: bytes) -> bytes:
    """Build the wire frame ``MFB1 ‖ u32 BE len ‖ manifest ‖ signature ‖ sealed``.

    Raises:
        BatchError: ``manifest-too-large``, ``bad-value`` (empty manifest, signature not 64
            bytes) or ``truncated`` (sealed payload shorter than the sealing overhead).
    """
    _need(len(manifest_bytes) > 0, "bad-value", "manifest must not be empty")
    _need(len(manifest_bytes) <= MAX_MANIFEST_SIZE, "manifest-too-large", "manifest over 1 MiB")
    _need(len(signature) == SIGNATURE_SIZE, "bad-value", "signature must be 64 bytes")
    _need(len(sealed) >= OVERHEAD, "truncated", f"sealed payload under {OVERHEAD} bytes")
    return b"".join(
        (_PREFIX.pack(FRAME_MAGIC, len(manifest_bytes)), manifest_bytes, signature, sealed)
    )


def unpack_frame(body: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a wire frame into (manifest bytes, signature, sealed payload); nothing verified.

    Args:
        body: the frame, untrusted.

    Returns:
        The three parts, as :func:`pack_frame` took them.

    Raises:
        BatchError: ``bad-magic`` (does not start with ``MFB1``), ``truncated`` (shorter than
            its header, manifest, signature and the sealing overhead), ``manifest-too-large``
            (a length above :data:`MAX_MANIFEST_SIZE`) or ``bad-value`` (a zero length).
    """
    view = memoryview(body)
    head = bytes(view[: len(FRAME_MAGIC)])
    _need(head == FRAME_MAGIC[: len(head)], "bad-magic", "frame does not start with MFB1")
    _need(len(view) >= _PREFIX.size, "truncated", f"frame of {len(view)} bytes has no header")
    _, length = _PREFIX.unpack_from(view)
    _need(length <= MAX_MANIFEST_SIZE, "manifest-too-large", f"manifest length {length}")
    _need(length > 0, "bad-value", "manifest length is 0")
    start = _PREFIX.size
    end = start + length + SIGNATURE_SIZE
    _need(
        len(view) >= end + OVERHEAD,
        "truncated",
        f"frame of {len(view)} bytes is shorter than its parts ({end + OVERHEAD} at least)",
    )
    return (
        bytes(view[start : start + length]),
        bytes(view[start + length : end]),
        bytes(view[end:]),
    )


# --- payload -----------------------------------------------------------------------------------


def seal_payload(region: PublicEncryptionKey, payload: bytes, batch_id: str) -> bytes:
    """Seal the Parquet payload for the region, with the batch id as sealing context.

    Raises:
        BatchError: ``bad-value`` for a payload too large to seal or a bad region key.
    """
    try:
        return seal(region, payload, context=batch_id.encode("utf-8"))
    except SealError as e:
        raise BatchError("bad-value", f"cannot seal the payload: {e}") from e


def open_payload(key: EncryptionKey, sealed: bytes, manifest: BatchManifest) -> bytes:
    """Check the sealed payload against the manifest, then open it.

    Raises:
        BatchError: ``payload-mismatch`` (its SHA-256 is not ``manifest.payload_sha256``) or
            ``payload-unreadable`` (wrong region key, or sealed for another batch id).
    """
    _need(
        hashlib.sha256(sealed).hexdigest() == manifest.payload_sha256,
        "payload-mismatch",
        "sealed payload does not match manifest.payload_sha256",
    )
    try:
        return open_sealed(key, sealed, context=manifest.batch_id.encode("utf-8"))
    except SealError as e:
        raise BatchError("payload-unreadable", str(e)) from e


def merkle_root_hex(hashes_hex: Sequence[str]) -> str:
    """The RFC 6962 Merkle root of a batch, hex: leaves are the rows' raw content hashes.

    Leaf ``i`` is the 32 bytes of row ``_seq = i``'s content hash; its leaf hash is
    ``SHA-256(0x00 ‖ content hash)`` (``crypto.merkle``). The empty batch has ``SHA-256("")``.

    Args:
        hashes_hex: content hashes in ``_seq`` order, 64 lowercase hex digits each.

    Returns:
        64 lowercase hex digits.

    Raises:
        BatchError: ``bad-hash`` naming the first index that is not 64 lowercase hex.
    """
    hashes = list(hashes_hex)
    # One check over the whole batch (the common case); the per-hash scan only names the culprit.
    joined = "".join(h if type(h) is str else "?" for h in hashes)
    if (
        len(joined) != 64 * len(hashes)
        or any(len(h) != 64 for h in hashes if type(h) is str)
        or _HEX_RUN.fullmatch(joined) is None
    ):
        for i, text in enumerate(hashes):
            _need(
                type(text) is str and _HEX64.fullmatch(text) is not None,
                "bad-hash",
                f"content hash {i} is not 64 lowercase hex digits",
            )
    return merkle_root_of_digests(bytes.fromhex(joined))


def merkle_root_of_digests(digests: bytes) -> str:
    """:func:`merkle_root_hex` of content hashes given raw and packed: 32 bytes per row, in
    ``_seq`` order (what ``records.digests.sha256_each`` returns).

    Raises:
        BatchError: ``bad-hash`` if the length is not a multiple of 32.
    """
    _need(len(digests) % 32 == 0, "bad-hash", f"{len(digests)} bytes are not whole digests")
    return merkle.root_of_packed_leaves(digests, 32).hex()
