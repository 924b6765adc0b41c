"""The ODS layer: verified batches landed as versioned, append-only tables, plus intake state.

One ODS table per (hospital, system, source table), named ``H01__LIS__JY_JG`` in schema ``ods``,
holds every version of every source record; ``ods."<table>__current"`` is the latest version
per key that is not deleted. Intake state lives in schema ``ingest``: landed batches, watermarks,
rejections, the ODS table registry and the downlink queue to hospitals.

Invariants:
- ``land`` is one transaction: either the batch, its versions, its watermark and its
  ``ingest.batches`` row are all there, or none is.
- A batch id lands once. Landing it again changes nothing (``duplicate-batch``); the same id with
  another manifest digest is a replay and raises :class:`ReplayError`.
- Per ``_local_key``, exactly the latest version has ``_valid_to IS NULL``; versions count up
  from 1 with no gap. A record whose ``_hash`` equals the latest version's hash (a delete
  included) adds no version; an older equal hash does (A → B → A keeps three versions).
- Row work is set-based SQL over the registered Arrow table; Python loops only per batch or
  per column.
- Names are quoted everywhere, and since DuckDB identifiers are case-insensitive, two source
  names differing only in case (tables or columns) are refused rather than merged.
- ``ingest.batches.columns`` keeps the exact (name, type) list a batch was sent with, so the
  hash of any version can be recomputed from the columns it was hashed with.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from medfabric.warehouse.ddl import quote
from medfabric.warehouse.engine import Engine, WarehouseError

ODS_SCHEMA = "ods"
INGEST_SCHEMA = "ingest"
CURRENT_SUFFIX = "__current"

# The meta columns of a batch payload (iface "Batch payload"), in order.
BATCH_META: tuple[str, ...] = (
    "_seq",
    "_local_key",
    "_op",
    "_has_payload",
    "_source_updated_at",
    "_extracted_at",
    "_hash",
)

# The meta columns of an ODS table, in order, with their types.
ODS_META: tuple[tuple[str, str], ...] = (
    ("_batch_id", "VARCHAR NOT NULL"),
    ("_seq", "BIGINT NOT NULL"),
    ("_local_key", "VARCHAR NOT NULL"),
    ("_op", "VARCHAR NOT NULL"),
    ("_has_payload", "BOOLEAN NOT NULL"),
    ("_hash", "VARCHAR NOT NULL"),
    ("_source_updated_at", "TIMESTAMP"),
    ("_extracted_at", "TIMESTAMPTZ"),
    ("_received_at", "TIMESTAMPTZ NOT NULL"),
    ("_valid_from", "TIMESTAMPTZ NOT NULL"),
    ("_valid_to", "TIMESTAMPTZ"),
    ("_version", "BIGINT NOT NULL"),
)

# Staging-only columns; reserved so no payload column can shadow them.
_STAGE_VERSION = "_mf_version"
_STAGE_HAS_PREV = "_mf_has_prev"
RESERVED = frozenset(
    n.lower() for n in (*BATCH_META, *(n for n, _ in ODS_META), _STAGE_VERSION, _STAGE_HAS_PREV)
)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# A DuckDB scalar type name as the receiver writes it: VARCHAR, DECIMAL(18,3),
# TIMESTAMP WITH TIME ZONE. Nested types (LIST, STRUCT, MAP) are not payload kinds.
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?$")


class LandingError(WarehouseError):
    """A batch cannot be landed as given (malformed rows, schema clash); reject it."""


class ReplayError(WarehouseError):
    """A batch id that already landed came back with a different manifest digest."""


class DownlinkError(WarehouseError):
    """A downlink ack names a message that does not exist or belongs to another hospital."""


def ods_table_name(hospital_id: str, system: str, source_table: str) -> str:
    """The ODS table name of a source table: ``ods_table_name("H01", "LIS", "JY_JG")`` →
    ``"H01__LIS__JY_JG"`` (unquoted; quote it for SQL, or use :func:`ods_ref`)."""
    return f"{hospital_id}__{system}__{source_table}"


def ods_ref(name: str) -> str:
    """``name`` as a quoted SQL reference in the ODS schema: ``ods."H01__LIS__JY_JG"``."""
    return f"{ODS_SCHEMA}.{quote(name)}"


@dataclass(frozen=True, eq=False)
class LandingBatch:
    """One verified, decrypted batch ready to land (the receiver builds it from the manifest).

    ``columns`` are the payload columns in payload order as (source name, DuckDB type);
    ``rows`` holds :data:`BATCH_META` then those columns, in that order.

    Raises:
        LandingError: a field is malformed or ``rows`` does not have the stated columns.
    """

    batch_id: str
    manifest_sha256: str
    hospital_id: str
    system: str
    source_table: str
    seq: int
    columns: tuple[tuple[str, str], ...]
    key_columns: tuple[str, ...]
    watermark_column: str | None
    watermark_from: str | None
    watermark_to: str | None
    received_at: datetime
    rows: pa.Table

    def __post_init__(self) -> None:
        where = f"batch {self.batch_id!r}"
        for field in ("batch_id", "hospital_id", "system", "source_table"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value or "\x00" in value:
                raise LandingError(f"{where}: {field} must be a non-empty string, got {value!r}")
        if not isinstance(self.manifest_sha256, str) or not _HEX64.match(self.manifest_sha256):
            raise LandingError(f"{where}: manifest_sha256 must be 64 lowercase hex digits")
        if type(self.seq) is not int or self.seq < 0:
            raise LandingError(f"{where}: seq must be a non-negative int, got {self.seq!r}")
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise LandingError(f"{where}: received_at must be timezone-aware")
        object.__setattr__(self, "received_at", self.received_at.astimezone(UTC))
        object.__setattr__(self, "columns", tuple((n, t) for n, t in self.columns))
        object.__setattr__(self, "key_columns", tuple(self.key_columns))
        seen: dict[str, str] = {}
        for name, type_name in self.columns:
            if not name or "\x00" in name:
                raise LandingError(f"{where}: empty or NUL-bearing column name {name!r}")
            if name.lower() in RESERVED:
                raise LandingError(f"{where}: payload column {name!r} uses a reserved name")
            if name.lower() in seen:
                raise LandingError(
                    f"{where}: columns {seen[name.lower()]!r} and {name!r} differ only in case"
                    " (DuckDB identifiers are case-insensitive)"
                )
            seen[name.lower()] = name
            if not _TYPE.match(type_name):
                raise LandingError(f"{where}: column {name!r} has unsupported type {type_name!r}")
        names = [n for n, _ in self.columns]
        if not self.key_columns or not set(self.key_columns) <= set(names):
            raise LandingError(f"{where}: key columns {self.key_columns!r} not among {names!r}")
        if self.watermark_column is not None and self.watermark_column not in names:
            raise LandingError(f"{where}: watermark column {self.watermark_column!r} unknown")
        expected = [*BATCH_META, *names]
        if list(self.rows.column_names) != expected:
            raise LandingError(
                f"{where}: rows have columns {self.rows.column_names!r}, expected {expected!r}"
            )


@dataclass(frozen=True)
class LandResult:
    """What :meth:`OdsStore.land` did. ``landed`` new versions were appended and
    ``skipped_duplicates`` records equalled their key's latest version; both are 0 for a
    ``duplicate-batch`` (this call changed nothing)."""

    batch_id: str
    status: Literal["landed", "duplicate-batch"]
    landed: int
    skipped_duplicates: int
    ods_table: str


@dataclass(frozen=True)
class BatchRecord:
    """One row of ``ingest.batches``."""

    batch_id: str
    manifest_sha256: str
    hospital_id: str
    system: str
    source_table: str
    ods_table: str
    seq: int
    row_count: int
    upserts: int
    deletes: int
    landed: int
    skipped_duplicates: int
    columns: tuple[tuple[str, str], ...]
    key_columns: tuple[str, ...]
    watermark_column: str | None
    watermark_from: str | None
    watermark_to: str | None
    max_source_updated_at: datetime | None
    received_at: datetime


@dataclass(frozen=True)
class Watermark:
    """How far a source table has been landed: the watermark of its highest-seq batch."""

    hospital_id: str
    system: str
    source_table: str
    column: str
    value: str
    batch_id: str
    seq: int
    updated_at: datetime


@dataclass(frozen=True)
class Rejection:
    """A batch (or request) the receiver refused, with a stable reason ``code``."""

    id: int
    batch_id: str | None
    hospital_id: str | None
    code: str
    detail: str
    received_at: datetime
    remote: str | None


@dataclass(frozen=True)
class DownlinkMessage:
    """An opaque signed message queued for a hospital's gateway."""

    id: int
    hospital_id: str
    kind: str
    body: bytes
    created_at: datetime
    acked_at: datetime | None


@dataclass(frozen=True)
class TableLag:
    """Freshness of one source table: ``lag`` = now − ``last_received_at``."""

    hospital_id: str
    system: str
    source_table: str
    ods_table: str
    batches: int
    last_seq: int
    last_received_at: datetime
    lag: timedelta
    max_source_updated_at: datetime | None


def schema_sql() -> list[str]:
    """The statements creating schemas ``ods`` and ``ingest`` and the intake tables (idempotent)."""
    i = INGEST_SCHEMA
    return [
        f"CREATE SCHEMA IF NOT EXISTS {ODS_SCHEMA}",
        f"CREATE SCHEMA IF NOT EXISTS {i}",
        f"CREATE SEQUENCE IF NOT EXISTS {i}.rejection_id",
        f"CREATE SEQUENCE IF NOT EXISTS {i}.downlink_id",
        f"""CREATE TABLE IF NOT EXISTS {i}.ods_tables (
    ods_table VARCHAR PRIMARY KEY,
    hospital_id VARCHAR NOT NULL,
    system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL,
    first_batch_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (hospital_id, system, source_table)
)""",
        f"""CREATE TABLE IF NOT EXISTS {i}.batches (
    batch_id VARCHAR PRIMARY KEY,
    manifest_sha256 VARCHAR NOT NULL,
    hospital_id VARCHAR NOT NULL,
    system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL,
    ods_table VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    upserts BIGINT NOT NULL,
    deletes BIGINT NOT NULL,
    landed BIGINT NOT NULL,
    skipped_duplicates BIGINT NOT NULL,
    columns JSON NOT NULL,
    key_columns JSON NOT NULL,
    watermark_column VARCHAR,
    watermark_from VARCHAR,
    watermark_to VARCHAR,
    max_source_updated_at TIMESTAMP,
    received_at TIMESTAMPTZ NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {i}.watermarks (
    hospital_id VARCHAR NOT NULL,
    system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL,
    watermark_column VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (hospital_id, system, source_table)
)""",
        f"""CREATE TABLE IF NOT EXISTS {i}.rejections (
    id BIGINT PRIMARY KEY DEFAULT nextval('{i}.rejection_id'),
    batch_id VARCHAR,
    hospital_id VARCHAR,
    code VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    remote VARCHAR
)""",
        f"""CREATE TABLE IF NOT EXISTS {i}.notarization (
    batch_id VARCHAR PRIMARY KEY,
    hospital_id VARCHAR NOT NULL,
    ods_table VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    checked INTEGER NOT NULL,
    found INTEGER NOT NULL,
    first_height BIGINT,
    last_height BIGINT,
    notarized_at TIMESTAMPTZ,
    late BOOLEAN NOT NULL,
    detail VARCHAR,
    checked_at TIMESTAMPTZ NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {i}.downlink (
    id BIGINT PRIMARY KEY DEFAULT nextval('{i}.downlink_id'),
    hospital_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    body BLOB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    acked_at TIMESTAMPTZ
)""",
    ]


def create_ods_table_sql(
    name: str, columns: Sequence[tuple[str, str]], *, updated_type: str = "TIMESTAMP"
) -> str:
    """``CREATE TABLE`` of an ODS table: :data:`ODS_META` then the payload ``columns``.

    ``updated_type`` is ``TIMESTAMP`` (the source's wall clock) or ``TIMESTAMPTZ`` (sources whose
    change column is an instant, e.g. epoch milliseconds): the type is part of the content hash.
    """
    meta = [(n, updated_type if n == "_source_updated_at" else t) for n, t in ODS_META]
    lines = [f"{quote(n)} {t}" for n, t in (*meta, *columns)]
    body = ",\n".join(f"    {line}" for line in lines)
    return f"CREATE TABLE {ods_ref(name)} (\n{body}\n)"


def current_view_sql(name: str) -> str:
    """The view of the latest, not deleted version per key of ODS table ``name``."""
    return (
        f"CREATE OR REPLACE VIEW {ods_ref(name + CURRENT_SUFFIX)} AS "
        f"SELECT * FROM {ods_ref(name)} WHERE _valid_to IS NULL AND _op = 'upsert'"
    )


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value


class OdsStore:
    """The ODS tables and intake state on an :class:`Engine`; creates its schemas if missing.

    Raises (every method):
        WarehouseError: the engine failed; subclasses as documented per method.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.transaction():
            for stmt in schema_sql():
                engine.execute(stmt)

    def _dicts(self, sql: str, params: Sequence[object] | None = None) -> list[dict[str, Any]]:
        # Read through Arrow: TIMESTAMPTZ arrives as aware datetimes without pytz.
        rows: list[dict[str, Any]] = self.engine.fetch_arrow(sql, params).to_pylist()
        return [{k: _utc(v) for k, v in row.items()} for row in rows]

    # -- landing ------------------------------------------------------------------------------

    def land(self, batch: LandingBatch) -> LandResult:
        """Land ``batch`` into its ODS table, in one transaction.

        Creates the ODS table and its current view on first sight, adds columns a batch brings,
        appends a version for each record whose hash differs from its key's latest version
        (closing that version at ``received_at``), upserts the watermark and records the batch.

        Raises:
            ReplayError: the batch id landed before with another manifest digest.
            LandingError: the rows are malformed (duplicate or null ``_local_key``, bad ``_op``,
                ``_hash`` or ``_seq``), or the table or a column clashes with an existing name
                differing only in case, or a column changed type. Nothing was written.
        """
        name = ods_table_name(batch.hospital_id, batch.system, batch.source_table)
        view = f"_mf_landing_{uuid.uuid4().hex}"
        self.engine.register(view, batch.rows)
        try:
            with self.engine.transaction():
                return self._land(batch, name, view)
        finally:
            self.engine.unregister(view)

    def _land(self, batch: LandingBatch, name: str, view: str) -> LandResult:
        e = self.engine
        seen = e.fetchall(
            f"SELECT manifest_sha256, ods_table FROM {INGEST_SCHEMA}.batches WHERE batch_id = ?",
            [batch.batch_id],
        )
        if seen:
            digest, ods_table = seen[0]
            if digest != batch.manifest_sha256:
                raise ReplayError(
                    f"batch {batch.batch_id!r} already landed with manifest {digest}, "
                    f"now sent with {batch.manifest_sha256}"
                )
            return LandResult(batch.batch_id, "duplicate-batch", 0, 0, ods_table)

        n, deletes, max_updated = self._check_rows(batch, view)
        self._ensure_table(batch, name)

        stage = view + "_stage"
        table = ods_ref(name)
        # Only the keys that get a new version are staged; the payload is read from the
        # registered Arrow table by the INSERT, never copied twice.
        e.execute(
            f"""CREATE TEMP TABLE {quote(stage)} AS
SELECT b._local_key, coalesce(c._version, 0) + 1 AS {_STAGE_VERSION},
       c._version IS NOT NULL AS {_STAGE_HAS_PREV}
FROM {quote(view)} AS b
LEFT JOIN (SELECT _local_key, _hash, _version FROM {table} WHERE _valid_to IS NULL) AS c
  ON c._local_key = b._local_key
WHERE c._hash IS DISTINCT FROM b._hash"""
        )
        e.execute(
            f"""UPDATE {table} AS t SET _valid_to = ?
FROM {quote(stage)} AS s
WHERE s.{_STAGE_HAS_PREV} AND t._valid_to IS NULL AND t._local_key = s._local_key""",
            [batch.received_at],
        )
        payload = [quote(c) for c, _ in batch.columns]
        meta = "_batch_id, _seq, _local_key, _op, _has_payload, _hash, _source_updated_at, "
        meta += "_extracted_at, _received_at, _valid_from, _valid_to, _version"
        e.execute(
            f"""INSERT INTO {table} ({", ".join([meta, *payload])})
SELECT ?, b._seq, b._local_key, b._op, b._has_payload, b._hash, b._source_updated_at,
       b._extracted_at, ?, ?, NULL, s.{_STAGE_VERSION}{"".join(", b." + p for p in payload)}
FROM {quote(view)} AS b JOIN {quote(stage)} AS s ON s._local_key = b._local_key""",
            [batch.batch_id, batch.received_at, batch.received_at],
        )
        landed = int(e.fetchall(f"SELECT count(*) FROM {quote(stage)}")[0][0])
        # On failure the rollback removes the stage with everything else.
        e.execute(f"DROP TABLE {quote(stage)}")

        if batch.watermark_column is not None and batch.watermark_to is not None:
            e.execute(
                f"""INSERT INTO {INGEST_SCHEMA}.watermarks
    (hospital_id, system, source_table, watermark_column, value, batch_id, seq, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hospital_id, system, source_table) DO UPDATE SET
    watermark_column = excluded.watermark_column, value = excluded.value,
    batch_id = excluded.batch_id, seq = excluded.seq, updated_at = excluded.updated_at
WHERE excluded.seq >= watermarks.seq""",
                [
                    batch.hospital_id,
                    batch.system,
                    batch.source_table,
                    batch.watermark_column,
                    batch.watermark_to,
                    batch.batch_id,
                    batch.seq,
                    batch.received_at,
                ],
            )
        e.execute(
            f"""INSERT INTO {INGEST_SCHEMA}.batches VALUES
(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                batch.batch_id,
                batch.manifest_sha256,
                batch.hospital_id,
                batch.system,
                batch.source_table,
                name,
                batch.seq,
                n,
                n - deletes,
                deletes,
                landed,
                n - landed,
                json.dumps([list(c) for c in batch.columns], ensure_ascii=False),
                json.dumps(list(batch.key_columns), ensure_ascii=False),
                batch.watermark_column,
                batch.watermark_from,
                batch.watermark_to,
                max_updated,
                batch.received_at,
            ],
        )
        return LandResult(batch.batch_id, "landed", landed, n - landed, name)

    def _check_rows(self, batch: LandingBatch, view: str) -> tuple[int, int, datetime | None]:
        v = quote(view)
        row = self.engine.fetchall(
            f"""SELECT count(*), count(DISTINCT _local_key),
    count(*) FILTER (WHERE _local_key IS NULL),
    count(*) FILTER (WHERE _op IS NULL OR _op NOT IN ('upsert', 'delete')),
    count(*) FILTER (WHERE _hash IS NULL OR NOT regexp_full_match(_hash, '[0-9a-f]{{64}}')),
    count(*) FILTER (WHERE _has_payload IS NULL OR (NOT _has_payload AND _op <> 'delete')),
    count(DISTINCT _seq), min(_seq), max(_seq),
    count(*) FILTER (WHERE _op = 'delete'),
    max(_source_updated_at)
FROM {v}"""
        )[0]
        n, keys, null_keys, bad_ops, bad_hashes, bad_flags, seqs, lo, hi, deletes, max_up = row
        where = (
            f"batch {batch.batch_id!r} ({batch.hospital_id}/{batch.system}/{batch.source_table})"
        )
        if null_keys:
            raise LandingError(f"{where}: {null_keys} records without _local_key")
        if keys != n:
            dup = self.engine.fetchall(
                f"SELECT _local_key FROM {v} GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 3"
            )
            raise LandingError(
                f"{where}: _local_key repeated within the batch, e.g. {[d[0] for d in dup]!r}"
            )
        if bad_ops:
            raise LandingError(f"{where}: {bad_ops} records with _op not 'upsert'/'delete'")
        if bad_hashes:
            raise LandingError(f"{where}: {bad_hashes} records whose _hash is not 64 lower hex")
        if bad_flags:
            raise LandingError(f"{where}: {bad_flags} records without payload that are not deletes")
        if n and (seqs != n or lo != 0 or hi != n - 1):
            raise LandingError(f"{where}: _seq is not 0..{n - 1} without gaps or repeats")
        return int(n), int(deletes), max_up

    def _ensure_table(self, batch: LandingBatch, name: str) -> None:
        e = self.engine
        where = f"batch {batch.batch_id!r}"
        clash = e.fetchall(
            f"""SELECT ods_table, hospital_id, system, source_table FROM {INGEST_SCHEMA}.ods_tables
WHERE lower(ods_table) = lower(?) OR lower(ods_table || ?) = lower(?)
   OR lower(ods_table) = lower(? || ?)""",
            [name, CURRENT_SUFFIX, name, name, CURRENT_SUFFIX],
        )
        triple = (batch.hospital_id, batch.system, batch.source_table)
        exists = False
        for table, *owner in clash:
            if table == name and tuple(owner) == triple:
                exists = True
                continue
            raise LandingError(
                f"{where}: ODS table {name!r} for {'/'.join(triple)} clashes with existing "
                f"{table!r} of {'/'.join(owner)} (DuckDB names are case-insensitive)"
            )
        types = self._canonical_types(batch)
        aware = batch.rows.schema.field("_source_updated_at").type.tz is not None
        updated_type = "TIMESTAMPTZ" if aware else "TIMESTAMP"
        if not exists:
            e.execute(
                create_ods_table_sql(
                    name,
                    list(zip([c for c, _ in batch.columns], types, strict=True)),
                    updated_type=updated_type,
                )
            )
            e.execute(
                f"""INSERT INTO {INGEST_SCHEMA}.ods_tables VALUES (?, ?, ?, ?, ?, ?)""",
                [name, *triple, batch.batch_id, batch.received_at],
            )
            e.execute(current_view_sql(name))
            return
        have = {
            col.lower(): (col, typ)
            for col, typ in e.fetchall(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = ? AND table_name = ?",
                [ODS_SCHEMA, name],
            )
        }
        stored_updated = have["_source_updated_at"][1]
        if ("TIME ZONE" in stored_updated.upper()) != aware:
            raise LandingError(
                f"{where}: _source_updated_at of {name} is {stored_updated}, this batch's is "
                f"{updated_type} (the source's change-time format changed)"
            )
        added = False
        for (col, _), typ in zip(batch.columns, types, strict=True):
            old = have.get(col.lower())
            if old is None:
                e.execute(f"ALTER TABLE {ods_ref(name)} ADD COLUMN {quote(col)} {typ}")
                added = True
            elif old[0] != col:
                raise LandingError(
                    f"{where}: column {col!r} of {name} clashes with existing {old[0]!r} "
                    "(DuckDB names are case-insensitive)"
                )
            elif old[1] != typ:
                raise LandingError(
                    f"{where}: column {col!r} of {name} changed type from {old[1]} to {typ}"
                )
        if added:
            # A DuckDB view fixes its column list when created; rebuild it to show the new ones.
            e.execute(current_view_sql(name))

    def _canonical_types(self, batch: LandingBatch) -> list[str]:
        if not batch.columns:
            return []
        casts = ", ".join(f"typeof(CAST(NULL AS {t}))" for _, t in batch.columns)
        try:
            return [str(t) for t in self.engine.fetchall(f"SELECT {casts}")[0]]
        except WarehouseError as err:
            raise LandingError(f"batch {batch.batch_id!r}: unknown column type: {err}") from err

    # -- rejections, batches, watermarks ------------------------------------------------------

    def record_rejection(
        self,
        code: str,
        detail: str,
        *,
        batch_id: str | None = None,
        hospital_id: str | None = None,
        remote: str | None = None,
        received_at: datetime | None = None,
    ) -> int:
        """Record a refused batch or request; returns the rejection id."""
        at = received_at if received_at is not None else datetime.now(UTC)
        rows = self.engine.fetchall(
            f"""INSERT INTO {INGEST_SCHEMA}.rejections
    (batch_id, hospital_id, code, detail, received_at, remote)
VALUES (?, ?, ?, ?, ?, ?) RETURNING id""",
            [batch_id, hospital_id, code, detail, at, remote],
        )
        return int(rows[0][0])

    def rejections(self, limit: int = 100) -> list[Rejection]:
        """The latest ``limit`` rejections, newest first."""
        rows = self._dicts(
            f"SELECT * FROM {INGEST_SCHEMA}.rejections ORDER BY id DESC LIMIT ?", [limit]
        )
        return [Rejection(**r) for r in rows]

    def batches(self, *, hospital_id: str | None = None, limit: int = 100) -> list[BatchRecord]:
        """Landed batches, newest first (of one hospital when ``hospital_id`` is given)."""
        rows = self._dicts(
            f"""SELECT * FROM {INGEST_SCHEMA}.batches WHERE ? IS NULL OR hospital_id = ?
ORDER BY received_at DESC, seq DESC LIMIT ?""",
            [hospital_id, hospital_id, limit],
        )
        out = []
        for r in rows:
            r["columns"] = tuple((c[0], c[1]) for c in json.loads(r["columns"]))
            r["key_columns"] = tuple(json.loads(r["key_columns"]))
            out.append(BatchRecord(**r))
        return out

    def batch_digest(self, batch_id: str) -> str | None:
        """The manifest digest ``batch_id`` landed with, or None if it has not landed."""
        rows = self.engine.fetchall(
            f"SELECT manifest_sha256 FROM {INGEST_SCHEMA}.batches WHERE batch_id = ?", [batch_id]
        )
        return str(rows[0][0]) if rows else None

    def watermarks(self) -> list[Watermark]:
        """Every source table's watermark, ordered by hospital, system, table."""
        rows = self._dicts(
            f"""SELECT hospital_id, system, source_table, watermark_column AS column, value,
    batch_id, seq, updated_at
FROM {INGEST_SCHEMA}.watermarks ORDER BY hospital_id, system, source_table"""
        )
        return [Watermark(**r) for r in rows]

    def lag(self, now: datetime | None = None) -> list[TableLag]:
        """Per source table: batches landed, last seq, last received_at, ``now`` − that, and the
        highest ``_source_updated_at`` seen. ``now`` defaults to the current UTC time."""
        at = now if now is not None else datetime.now(UTC)
        rows = self._dicts(
            f"""SELECT hospital_id, system, source_table, ods_table, count(*) AS batches,
    max(seq) AS last_seq, max(received_at) AS last_received_at,
    max(max_source_updated_at) AS max_source_updated_at
FROM {INGEST_SCHEMA}.batches GROUP BY ALL ORDER BY hospital_id, system, source_table"""
        )
        return [TableLag(**r, lag=at - r["last_received_at"]) for r in rows]

    # -- ODS tables ---------------------------------------------------------------------------

    def table_for(self, hospital_id: str, system: str, source_table: str) -> str | None:
        """The ODS table name (unquoted) of a source table, or None if nothing landed yet."""
        rows = self.engine.fetchall(
            f"""SELECT ods_table FROM {INGEST_SCHEMA}.ods_tables
WHERE hospital_id = ? AND system = ? AND source_table = ?""",
            [hospital_id, system, source_table],
        )
        return str(rows[0][0]) if rows else None

    def tables(self) -> list[str]:
        """Every ODS table name (unquoted), sorted."""
        rows = self.engine.fetchall(
            f"SELECT ods_table FROM {INGEST_SCHEMA}.ods_tables ORDER BY ods_table"
        )
        return [str(r[0]) for r in rows]

    def _known(self, ods_table: str) -> None:
        if ods_table not in self.tables():
            raise WarehouseError(f"no ODS table {ods_table!r}")

    def current_view(self, ods_table: str) -> str:
        """The quoted SQL reference of ``ods_table``'s current view, e.g.
        ``ods."H01__LIS__JY_JG__current"``: one row per key, its latest version, not deleted.

        Raises:
            WarehouseError: no such ODS table.
        """
        self._known(ods_table)
        return ods_ref(ods_table + CURRENT_SUFFIX)

    def counts_by_table(self) -> dict[str, int]:
        """Current (latest, not deleted) rows per ODS table."""
        names = self.tables()
        if not names:
            return {}
        parts = [f"SELECT ? AS t, count(*) AS n FROM {ods_ref(n + CURRENT_SUFFIX)}" for n in names]
        rows = self.engine.fetchall(" UNION ALL ".join(parts), names)
        return {str(t): int(n) for t, n in rows}

    def history(self, ods_table: str, local_key: str) -> list[dict[str, Any]]:
        """Every version of one record, oldest first, as column → value.

        Raises:
            WarehouseError: no such ODS table.
        """
        self._known(ods_table)
        return self._dicts(
            f"SELECT * FROM {ods_ref(ods_table)} WHERE _local_key = ? ORDER BY _version",
            [local_key],
        )

    # -- downlink -----------------------------------------------------------------------------

    def enqueue_downlink(
        self, hospital_id: str, kind: str, body: bytes, *, now: datetime | None = None
    ) -> int:
        """Queue an opaque message for ``hospital_id``; returns its id (increasing)."""
        at = now if now is not None else datetime.now(UTC)
        rows = self.engine.fetchall(
            f"""INSERT INTO {INGEST_SCHEMA}.downlink (hospital_id, kind, body, created_at)
VALUES (?, ?, ?, ?) RETURNING id""",
            [hospital_id, kind, body, at],
        )
        return int(rows[0][0])

    def pending_downlink(self, hospital_id: str, *, limit: int = 100) -> list[DownlinkMessage]:
        """``hospital_id``'s unacknowledged messages, oldest first."""
        rows = self._dicts(
            f"""SELECT * FROM {INGEST_SCHEMA}.downlink
WHERE hospital_id = ? AND acked_at IS NULL ORDER BY id LIMIT ?""",
            [hospital_id, limit],
        )
        return [DownlinkMessage(**r) for r in rows]

    def ack_downlink(
        self, hospital_id: str, ids: Sequence[int], *, now: datetime | None = None
    ) -> int:
        """Mark ``hospital_id``'s messages ``ids`` delivered; returns how many were newly acked
        (acking twice is harmless).

        Raises:
            DownlinkError: an id does not exist or belongs to another hospital; nothing is acked.
        """
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        at = now if now is not None else datetime.now(UTC)
        with self.engine.transaction():
            owners = dict(
                self.engine.fetchall(
                    f"""SELECT id, hospital_id FROM {INGEST_SCHEMA}.downlink
WHERE id IN (SELECT unnest(?::BIGINT[]))""",
                    [wanted],
                )
            )
            missing = [i for i in wanted if i not in owners]
            foreign = [i for i in wanted if i in owners and owners[i] != hospital_id]
            if missing or foreign:
                raise DownlinkError(
                    f"{hospital_id} cannot ack downlink messages: unknown {missing}, "
                    f"not addressed to it {foreign}"
                )
            rows = self.engine.fetchall(
                f"""UPDATE {INGEST_SCHEMA}.downlink SET acked_at = ?
WHERE id IN (SELECT unnest(?::BIGINT[])) AND acked_at IS NULL RETURNING id""",
                [at, wanted],
            )
        return len(rows)
