"""SHA-256 of many canonical records at once, over Arrow buffers (docs/canonical.md §15).

DuckDB builds the canonical bytes of a whole chunk (``sqlcanon.record_sql``); this module hashes
them with OpenSSL through :mod:`hashlib`, reading each value as a slice of the Arrow data buffer
(no Python string per record), and returns the digests packed in one byte string: what the
batch's Merkle root (:func:`~medfabric.crypto.merkle.root_of_packed_leaves`) and the hex
``_hash`` column (:func:`hex_column`) are both made from. Measured here: about twice as fast as
DuckDB's own ``sha256`` on the same ~500-byte records, which lacks the CPU's SHA instructions.

Invariants:
- ``sha256_each(a)[32 * i : 32 * (i + 1)]`` is ``hashlib.sha256(a[i]).digest()`` of the value's
  UTF-8 bytes (or raw bytes for binary arrays), for every ``i``, in order, across chunks.
- A null value is refused (a record always has canonical bytes); nothing is silently skipped.
"""

from __future__ import annotations

from hashlib import sha256

import numpy as np
import pyarrow as pa

from medfabric.records.canonical import RecordError

__all__ = ["DIGEST_SIZE", "hex_column", "sha256_each"]

DIGEST_SIZE = 32
"""Bytes of one SHA-256 digest."""

_OFFSET_TYPES: dict[pa.DataType, type[np.integer]] = {
    pa.string(): np.int32,
    pa.binary(): np.int32,
    pa.large_string(): np.int64,
    pa.large_binary(): np.int64,
}


def sha256_each(values: pa.Array | pa.ChunkedArray) -> bytes:
    """The SHA-256 digest of every value, concatenated (32 bytes per value, in order).

    Args:
        values: a string, large_string, binary or large_binary array without nulls.

    Raises:
        RecordError: the array has another type or holds a null.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = bytearray()
    for chunk in chunks:
        offset_type = _OFFSET_TYPES.get(chunk.type)
        if offset_type is None:
            raise RecordError(f"cannot hash an Arrow array of type {chunk.type}")
        if chunk.null_count:
            raise RecordError(f"{chunk.null_count} record(s) without canonical bytes (null)")
        n = len(chunk)
        if n == 0:
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=offset_type)[chunk.offset : chunk.offset + n + 1]
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        bounds = offsets.tolist()
        out += b"".join([sha256(data[bounds[i] : bounds[i + 1]]).digest() for i in range(n)])
    return bytes(out)


def hex_column(digests: bytes) -> pa.StringArray:
    """The digests as an Arrow string array of 64 lowercase hex digits each (built from one
    ``bytes.hex()`` of the whole run, no Python string per digest).

    Raises:
        RecordError: ``digests`` is not a whole number of 32-byte digests.
    """
    if len(digests) % DIGEST_SIZE:
        raise RecordError(f"{len(digests)} bytes are not a whole number of SHA-256 digests")
    n = len(digests) // DIGEST_SIZE
    text = digests.hex().encode("ascii")
    offsets = np.arange(0, 2 * DIGEST_SIZE * (n + 1), 2 * DIGEST_SIZE, dtype=np.int32)
    array = pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(text)]
    )
    assert isinstance(array, pa.StringArray)
    return array
