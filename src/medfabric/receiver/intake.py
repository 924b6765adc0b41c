"""Batch intake: every check a batch passes before it lands in ODS, in a fixed order, each with a
stable reason code.

Order (cheap and unauthenticated checks first, decryption only for an authentic manifest):

| # | check | code | HTTP |
|---|---|---|---|
| 1 | body size within the limit | ``too-large`` | 413 |
| 2 | frame layout (magic, lengths) | ``bad-magic`` / ``truncated`` / ``bad-value`` … | 400 |
| 3 | manifest is strict canonical JSON with every field | ``bad-manifest`` … | 400 |
| 4 | hospital registered (its public key is in the keys folder) | ``unknown-hospital`` | 403 |
| 5 | manifest signature by that hospital's key | ``bad-signature`` | 401 |
| 6 | sealed for this region's key | ``wrong-region-key`` | 400 |
| 7 | SHA-256 of the sealed payload equals the manifest's | ``payload-digest-mismatch`` | 400 |
| 8 | batch id not landed before | ``duplicate-batch`` / ``replayed-batch-id`` | 409 |
| 9 | payload decrypts | ``decrypt-failed`` | 400 |
| 10 | payload readable, with the manifest's columns, kinds, rows | ``malformed-payload`` | 400 |
| 11 | every record's hash recomputed from its values | ``record-hash-mismatch`` | 400 |
| 12 | Merkle root of the hashes equals the manifest's | ``merkle-root-mismatch`` | 400 |
| 13 | lands in one transaction | | 200 |

A rejected batch changes nothing in ODS; the rejection is recorded with its code and detail.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medfabric.crypto import EncryptionKey, SealError, VerifyKey, open_sealed
from medfabric.records import ColumnKind
from medfabric.records.batch import (
    BatchError,
    BatchManifest,
    merkle_root_of_digests,
    unpack_frame,
    verify_manifest,
)
from medfabric.records.digests import hex_column, sha256_each
from medfabric.records.payload import PayloadError, read_payload
from medfabric.records.sqlcanon import record_sql
from medfabric.warehouse import DuckDBEngine, OdsStore
from medfabric.warehouse.ods import LandingBatch, LandingError, LandResult, ReplayError


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_ts(t: pa.DataType, *, aware: bool | None) -> bool:
    if not pa.types.is_timestamp(t):
        return False
    return aware is None or (t.tz is not None) == aware


META_TYPES: dict[str, Callable[[pa.DataType], bool]] = {
    "_seq": lambda t: t == pa.int64(),
    "_local_key": _is_text,
    "_op": _is_text,
    "_has_payload": pa.types.is_boolean,
    "_source_updated_at": lambda t: _is_ts(t, aware=None),
    "_extracted_at": lambda t: _is_ts(t, aware=True),
    "_hash": _is_text,
}


class Rejection(Exception):
    """A batch the receiver refuses: ``code`` (stable), ``status`` (HTTP) and a detail that
    never quotes patient data."""

    def __init__(
        self, code: str, status: int, detail: str, *, batch_id: str | None = None,
        hospital_id: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status = status
        self.detail = detail
        self.batch_id = batch_id
        self.hospital_id = hospital_id


def _duckdb_type(kind: ColumnKind, t: pa.DataType) -> str:
    if kind == "decimal" and pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    return {
        "string": "VARCHAR",
        "integer": "BIGINT",
        "float": "DOUBLE",
        "boolean": "BOOLEAN",
        "bytes": "BLOB",
        "date": "DATE",
        "datetime": "TIMESTAMP",
        "datetime_tz": "TIMESTAMPTZ",
    }[kind]


def _kind_fits(kind: ColumnKind, t: pa.DataType) -> bool:
    checks = {
        "string": lambda: (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
        ),
        "integer": lambda: pa.types.is_integer(t) or pa.types.is_null(t),
        "float": lambda: pa.types.is_floating(t) or pa.types.is_null(t),
        "decimal": lambda: pa.types.is_decimal(t),
        "boolean": lambda: pa.types.is_boolean(t) or pa.types.is_null(t),
        "bytes": lambda: (
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t)
        ),
        "date": lambda: pa.types.is_date32(t) or pa.types.is_null(t),
        "datetime": lambda: pa.types.is_timestamp(t) and t.tz is None,
        "datetime_tz": lambda: pa.types.is_timestamp(t) and t.tz is not None,
    }
    check: Callable[[], bool] = checks[kind]
    return bool(check())


@dataclass(frozen=True)
class Registry:
    """Which hospitals the region accepts batches from, by their registered key."""

    keys: dict[str, VerifyKey]

    def key_of(self, hospital_id: str) -> VerifyKey | None:
        """The registered key, or None."""
        return self.keys.get(hospital_id)


class Intake:
    """Verifies and lands batches into one ODS store (one at a time: DuckDB has one writer)."""

    def __init__(
        self,
        store: OdsStore,
        *,
        registry: Registry,
        region_key: EncryptionKey,
        max_body: int,
    ) -> None:
        self.store = store
        self.registry = registry
        self.region_key = region_key
        self.region_fingerprint = region_key.public_key.fingerprint
        self.max_body = max_body
        self._lock = threading.Lock()
        self._hasher = duckdb.connect()
        self._hasher.execute("SET threads = 2")

    def close(self) -> None:
        """Close the hashing connection."""
        self._hasher.close()

    def accept(
        self, body: bytes, *, received_at: datetime | None = None, remote: str | None = None
    ) -> LandResult:
        """Check a batch body and land it; records and raises :class:`Rejection` if it fails."""
        try:
            with self._lock:
                return self._accept(body, received_at or datetime.now(UTC))
        except Rejection as r:
            self.store.record_rejection(
                batch_id=r.batch_id, hospital_id=r.hospital_id, code=r.code,
                detail=r.detail[:2000], remote=remote,
            )  # fmt: skip
            raise

    def _accept(self, body: bytes, received_at: datetime) -> LandResult:
        if len(body) > self.max_body:
            raise Rejection("too-large", 413, f"body of {len(body)} bytes over {self.max_body}")
        try:
            manifest_bytes, signature, sealed = unpack_frame(body)
            manifest = BatchManifest.from_bytes(manifest_bytes)
        except BatchError as e:
            raise Rejection(e.code, 400, str(e)) from None
        bid, hid = manifest.batch_id, manifest.hospital_id
        key = self.registry.key_of(hid)
        if key is None:
            raise Rejection(
                "unknown-hospital", 403, f"hospital {hid} is not registered", batch_id=bid,
                hospital_id=hid,
            )  # fmt: skip
        if not verify_manifest(manifest_bytes, signature, key):
            raise Rejection(
                "bad-signature", 401, f"manifest signature does not verify with {hid}'s key",
                batch_id=bid, hospital_id=hid,
            )  # fmt: skip
        if manifest.region_key != self.region_fingerprint:
            raise Rejection(
                "wrong-region-key", 400, "payload sealed for another region key", batch_id=bid,
                hospital_id=hid,
            )  # fmt: skip
        if hashlib.sha256(sealed).hexdigest() != manifest.payload_sha256:
            raise Rejection(
                "payload-digest-mismatch", 400, "payload bytes differ from the signed digest",
                batch_id=bid, hospital_id=hid,
            )  # fmt: skip
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        landed = self.store.batch_digest(bid)
        if landed is not None:
            if landed == manifest_sha:
                raise Rejection(
                    "duplicate-batch", 409, "this batch has already landed", batch_id=bid,
                    hospital_id=hid,
                )  # fmt: skip
            raise Rejection(
                "replayed-batch-id", 409, "a different batch with this id has landed",
                batch_id=bid, hospital_id=hid,
            )  # fmt: skip
        try:
            payload = open_sealed(self.region_key, sealed, context=bid.encode("utf-8"))
        except SealError as e:
            raise Rejection("decrypt-failed", 400, str(e), batch_id=bid, hospital_id=hid) from None
        table = self._read_payload(payload, manifest)
        digests = self._check_hashes(table, manifest)
        root = merkle_root_of_digests(digests)
        if root != manifest.merkle_root:
            raise Rejection(
                "merkle-root-mismatch", 400, "Merkle root of the record hashes differs from the "
                "signed manifest", batch_id=bid, hospital_id=hid,
            )  # fmt: skip
        columns = tuple(
            (name, _duckdb_type(kind, table.schema.field(name).type))
            for name, kind in manifest.columns
        )
        try:
            return self.store.land(
                LandingBatch(
                    batch_id=bid,
                    manifest_sha256=manifest_sha,
                    hospital_id=hid,
                    system=manifest.system,
                    source_table=manifest.table,
                    seq=manifest.seq,
                    columns=columns,
                    key_columns=manifest.key_columns,
                    watermark_column=manifest.watermark_column,
                    watermark_from=manifest.watermark_from,
                    watermark_to=manifest.watermark_to,
                    received_at=received_at,
                    rows=table,
                )
            )
        except ReplayError as e:
            raise Rejection(
                "replayed-batch-id", 409, str(e), batch_id=bid, hospital_id=hid
            ) from None
        except LandingError as e:
            raise Rejection("landing-refused", 422, str(e), batch_id=bid, hospital_id=hid) from None

    def _read_payload(self, payload: bytes, m: BatchManifest) -> pa.Table:
        def bad(detail: str) -> Rejection:
            return Rejection(
                "malformed-payload", 400, detail, batch_id=m.batch_id, hospital_id=m.hospital_id
            )

        try:
            table = read_payload(payload, m.payload_format)
        except PayloadError as e:
            raise bad(str(e)) from None
        expected = [*META_TYPES, *(n for n, _ in m.columns)]
        if table.column_names != expected:
            raise bad(f"payload columns {table.column_names[:12]} differ from the manifest's")
        for name, fits in META_TYPES.items():
            if not fits(table.schema.field(name).type):
                raise bad(f"meta column {name} has type {table.schema.field(name).type}")
        for name, kind in m.columns:
            t = table.schema.field(name).type
            if not _kind_fits(kind, t):
                raise bad(f"column {name} has Arrow type {t}, not of kind {kind}")
        if table.num_rows != m.row_count:
            raise bad(f"payload has {table.num_rows} rows, the manifest says {m.row_count}")
        seq = table.column("_seq")
        if table.num_rows and (
            pc.min(seq).as_py() != 0
            or pc.max(seq).as_py() != table.num_rows - 1
            or pc.count_distinct(seq).as_py() != table.num_rows
        ):
            raise bad("_seq is not 0 … n-1")
        if table.column("_local_key").null_count:
            raise bad("a _local_key is null")
        if pc.count_distinct(table.column("_local_key")).as_py() != table.num_rows:
            raise bad("a local key appears twice in the batch")
        deletes = int(pc.sum(pc.equal(table.column("_op"), "delete")).as_py() or 0)
        if deletes != m.deletes or table.num_rows - deletes != m.upserts:
            raise bad(f"payload has {deletes} deletes, the manifest says {m.deletes}")
        in_order = pa.array(np.arange(table.num_rows, dtype=np.int64))
        if pc.all(pc.equal(seq, in_order)).as_py() in (True, None):
            return table  # the gateway writes rows in _seq order: no copy
        return table.sort_by("_seq")

    def _check_hashes(self, table: pa.Table, m: BatchManifest) -> bytes:
        """Recompute every record's canonical bytes (DuckDB) and SHA-256 (OpenSSL); each must
        equal the row's ``_hash``. Returns the digests packed in ``_seq`` order."""
        updated_kind: ColumnKind = (
            "datetime_tz" if table.schema.field("_source_updated_at").type.tz else "datetime"
        )
        sql = record_sql(
            hospital_id=m.hospital_id,
            system=m.system,
            table=m.table,
            columns=list(m.columns),
            updated_kind=updated_kind,
        )
        con = self._hasher
        con.register("incoming", table)
        try:
            canon = con.execute(f"SELECT {sql} AS c FROM incoming").fetch_arrow_table()
        except duckdb.Error as e:
            raise Rejection(
                "record-hash-mismatch", 400, f"a record cannot be canonicalized: {e}",
                batch_id=m.batch_id, hospital_id=m.hospital_id,
            ) from None  # fmt: skip
        finally:
            con.unregister("incoming")
        if canon.num_rows != table.num_rows:
            raise Rejection(
                "record-hash-mismatch", 400, "canonical bytes were not produced for every record",
                batch_id=m.batch_id, hospital_id=m.hospital_id,
            )  # fmt: skip
        digests = sha256_each(canon.column(0))
        same = pc.equal(hex_column(digests), table.column("_hash").combine_chunks())
        if not pc.all(pc.fill_null(same, False)).as_py():
            first = int(pc.index(pc.fill_null(same, False), False).as_py())
            seq = table.column("_seq")[first].as_py()
            raise Rejection(
                "record-hash-mismatch", 400, f"record _seq={seq}: its hash does not match its "
                "values", batch_id=m.batch_id, hospital_id=m.hospital_id,
            )  # fmt: skip
        return digests


def open_intake(
    warehouse: str, *, registry: Registry, region_key: EncryptionKey, max_body: int
) -> Intake:
    """An intake over the ODS DuckDB file at ``warehouse`` (created if missing)."""
    engine = DuckDBEngine(warehouse)
    # Checkpoint rarely: each batch's log is tens of MB, over DuckDB's default 16 MB threshold,
    # and a checkpoint per commit doubles landing time. The WAL is replayed after a crash.
    engine.execute("SET checkpoint_threshold = '1GB'")
    store = OdsStore(engine)
    return Intake(store, registry=registry, region_key=region_key, max_body=max_body)
