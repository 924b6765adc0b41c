"""Packing a batch: Arrow IPC (zstd) payload, manifest with the Merkle root, hospital signature,
payload sealed for the region, one wire frame written durably into the spool.

Invariant: the frame file is complete and fsynced under its final name before this module
returns; the caller records it in the outbox afterwards (see ``state.py`` for the ordering).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medfabric.crypto import PublicEncryptionKey, SigningKey, seal
from medfabric.gateway.state import fsync_dir
from medfabric.records import ColumnKind
from medfabric.records.batch import (
    BatchManifest,
    merkle_root_of_digests,
    pack_frame,
    sign_manifest,
)
from medfabric.records.payload import PAYLOAD_FORMAT, write_payload


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """A batch on disk in the spool."""

    batch_id: str
    seq: int
    file: str
    rows: int
    bytes: int
    manifest: BatchManifest


def new_batch_id(hospital_id: str, system: str, seq: int) -> str:
    """Unique forever: the sequence number plus 48 random bits (a crashed, never-sent batch may
    leave its sequence number to the next one)."""
    return f"{hospital_id}-{system}-{seq:09d}-{secrets.token_hex(6)}"


def pack_batch(
    table: pa.Table,
    *,
    digests: bytes,
    hospital_id: str,
    system: str,
    source_table: str,
    seq: int,
    columns: list[tuple[str, ColumnKind]],
    key_columns: tuple[str, ...],
    watermark: tuple[str | None, str | None, str | None],
    created_at: datetime,
    signing_key: SigningKey,
    region_key: PublicEncryptionKey,
    spool: Path,
) -> PackedBatch:
    """Write one batch frame into ``spool`` and return what the outbox records.

    ``table`` holds the meta columns (``_seq`` … ``_hash``) and the payload ``columns``;
    ``digests`` the rows' content hashes packed in ``_seq`` order (32 bytes each, the bytes of
    the ``_hash`` column), from which the Merkle root is computed.
    ``watermark`` is (column, from, to) of the read, or Nones for a full or delete scan.
    """
    batch_id = new_batch_id(hospital_id, system, seq)
    payload = write_payload(table)
    sealed = seal(region_key, payload, context=batch_id.encode("ascii"))
    if len(digests) != 32 * table.num_rows:
        raise ValueError(f"{len(digests)} digest bytes for {table.num_rows} rows")
    ops = table.column("_op")
    deletes = int(pc.sum(pc.equal(ops, "delete")).as_py() or 0)
    manifest = BatchManifest(
        batch_id=batch_id,
        hospital_id=hospital_id,
        system=system,
        table=source_table,
        seq=seq,
        columns=tuple(columns),
        key_columns=key_columns,
        row_count=table.num_rows,
        upserts=table.num_rows - deletes,
        deletes=deletes,
        watermark_column=watermark[0],
        watermark_from=watermark[1],
        watermark_to=watermark[2],
        merkle_root=merkle_root_of_digests(digests),
        payload_sha256=hashlib.sha256(sealed).hexdigest(),
        payload_format=PAYLOAD_FORMAT,
        created_at=created_at,
        region_key=region_key.fingerprint,
        signer=signing_key.verify_key.fingerprint,
    )
    manifest_bytes = manifest.to_bytes()
    frame = pack_frame(manifest_bytes, sign_manifest(manifest, signing_key), sealed)
    name = f"{batch_id}.mfb"
    tmp = spool / (name + ".part")
    with open(tmp, "wb") as f:
        f.write(frame)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, spool / name)
    fsync_dir(spool)
    return PackedBatch(batch_id, seq, name, table.num_rows, len(frame), manifest)
