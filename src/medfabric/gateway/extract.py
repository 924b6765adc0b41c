"""Extraction: read a source table (full, incremental by watermark, or its keys for deletes),
turn rows into canonical records with their content hash, drop what the region already has,
and pack the rest into spooled batches.

Row work is SQL in the gateway's DuckDB (canonical bytes, key comparison) and OpenSSL over
Arrow buffers (SHA-256); Python handles chunks, never rows as objects — except decoding GBK
text columns, which DuckDB cannot do offline.

Invariants:
- A record is sent when its hash differs from the key index's last sent hash for its key, so a
  re-read (overlap window, crash, resync) sends nothing twice and an A → B → A change sends
  three versions.
- The watermark moves only after every batch of the read is committed (``state.py``).
- Incremental reads take rows whose change column is ``>=`` (watermark − overlap) or NULL: a
  late row stamped inside the overlap is caught; rows with no change time are compared by hash
  each cycle. Text change columns must sort as text (fixed-width formats such as
  ``%Y%m%d%H%M%S`` or ``%Y-%m-%d %H:%M:%S``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medfabric.crypto import PublicEncryptionKey, SigningKey
from medfabric.gateway.notary import entry_rows
from medfabric.gateway.pack import PackedBatch, pack_batch
from medfabric.gateway.sources import RowFilter, SourceColumn, SourceError, SourceReader
from medfabric.gateway.state import GatewayState, now_utc
from medfabric.records import ColumnKind, RecordError, decode_source_text
from medfabric.records.digests import DIGEST_SIZE, hex_column, sha256_each
from medfabric.records.sqlcanon import local_key_sql, record_sql
from medfabric.records.sqlcanon import quote_ident as _q
from medfabric.records.sqlcanon import sql_literal as _lit
from medfabric.standards.sources import SourceTable

log = logging.getLogger("medfabric.gateway")

META = ("_seq", "_local_key", "_op", "_has_payload", "_source_updated_at", "_extracted_at", "_hash")


@dataclass
class TableRun:
    """What one read of one table did."""

    system: str
    table: str
    mode: str  # full | incremental | deletes
    rows_read: int = 0
    records: int = 0
    deletes: int = 0
    batches: list[PackedBatch] = field(default_factory=list)
    skipped_null_keys: int = 0
    schema_warning: str | None = None


@dataclass(frozen=True)
class _Hashed:
    """Batch rows in ``_seq`` order with their content hashes, packed (32 bytes per row)."""

    rows: pa.Table
    digests: bytes
    dropped: int = 0  # rows of the chunk left out for a NULL key part


@dataclass
class Extractor:
    """Everything extraction needs for one hospital."""

    hospital_id: str
    state: GatewayState
    signing_key: SigningKey
    region_key: PublicEncryptionKey
    batch_rows: int = 50_000
    overlap_seconds: int = 300
    crash_point: Callable[[str], None] = lambda label: None
    on_spooled: Callable[[], None] = lambda: None  # a batch was committed to the outbox
    # Set when batches are notarized: the pseudonym key (notary.py); entries are then queued
    # in the batch's outbox transaction.
    notary_key: bytes | None = None

    # --- public ------------------------------------------------------------------------------

    def run_table(
        self,
        reader: SourceReader,
        system: str,
        spec: SourceTable,
        *,
        full: bool = False,
        delete_scan: bool = False,
    ) -> TableRun:
        """Read one table and spool its changes; then, if asked, look for hard deletes.

        Args:
            full: read every row (still sending only changed ones) instead of the delta.
            delete_scan: compare keys with the key index afterwards (hard deletes).
        Raises:
            SourceError: the table cannot be read as configured (missing column, bad value).
        """
        st = self.state.table_state(system, spec.name)
        columns = reader.columns(spec.name)
        warning = self._check_schema(system, spec, columns, st.columns)
        by_name = {c.name: c for c in columns}
        key_cols = [by_name[k] for k in spec.key]
        mode = (
            "full"
            if (full or st.full_pending or st.watermark is None or not spec.track)
            else "incremental"
        )
        where = None
        if mode == "incremental" and spec.track is not None and st.watermark is not None:
            where = RowFilter(
                spec.track.column, self._lower_bound(spec, st.watermark, st.watermark_type)
            )
        run = TableRun(system, spec.name, mode, schema_warning=warning)
        payload = self._payload_kinds(spec, columns)
        ki = self.state.ensure_key_index(system, spec.name)
        high: str | int | None = None
        started = now_utc()
        for chunk in reader.read(spec.name, columns, where=where, batch_rows=self.batch_rows):
            run.rows_read += chunk.num_rows
            chunk = self._decode(system, spec, chunk)
            if spec.track is not None:
                high = _max(high, chunk.column(spec.track.column))
            batch = self._changed(chunk, system, spec, key_cols, payload, ki, run)
            self.crash_point("chunk-hashed")
            if batch.rows.num_rows:
                self._spool(batch, system, spec, payload, ki, run, (where, high))
        self.crash_point("table-read")
        fields: dict[str, object] = {"last_success": started, "columns": _columns_json(columns)}
        if high is not None:
            fields["watermark"] = str(high)
            fields["watermark_type"] = "int" if isinstance(high, int) else "text"
        if mode == "full":
            fields["last_full"] = started
            fields["full_pending"] = False
        fields["schema_warning"] = warning
        fields["last_error"] = None
        with self.state.transaction():
            if (
                st.watermark is not None
                and high is not None
                and not _above(high, st.watermark, st.watermark_type)
            ):
                fields.pop("watermark")  # a late row below the watermark never moves it back
            self.state.update_table(system, spec.name, **fields)
        if delete_scan and spec.delete.mode != "none":
            self.scan_deletes(reader, system, spec, columns, run)
        return run

    def scan_deletes(
        self,
        reader: SourceReader,
        system: str,
        spec: SourceTable,
        columns: Sequence[SourceColumn],
        run: TableRun,
    ) -> None:
        """Keys in the key index (not deleted) that the source no longer has → delete records."""
        by_name = {c.name: c for c in columns}
        key_cols = [by_name[k] for k in spec.key]
        ki = self.state.ensure_key_index(system, spec.name)
        con = self.state.con
        con.execute("CREATE OR REPLACE TEMP TABLE seen_keys (k VARCHAR)")
        key_expr = local_key_sql([(c.name, c.kind) for c in key_cols])
        for chunk in reader.keys(spec.name, key_cols, batch_rows=max(self.batch_rows, 200_000)):
            con.register("key_chunk", chunk)
            not_null = " AND ".join(f"{_q(c.name)} IS NOT NULL" for c in key_cols)
            con.execute(
                f"INSERT INTO seen_keys SELECT {key_expr} FROM "
                f"(SELECT 0 AS _seq, * FROM key_chunk WHERE {not_null})"
            )
            con.unregister("key_chunk")
        gone = con.execute(
            f"SELECT local_key FROM {ki} WHERE NOT deleted "
            "AND local_key NOT IN (SELECT k FROM seen_keys WHERE k IS NOT NULL) ORDER BY local_key"
        ).fetch_arrow_table()
        payload = self._payload_kinds(spec, columns)
        arrow_of = {c.name: c.arrow for c in columns}
        for start in range(0, gone.num_rows, self.batch_rows):
            keys = gone.column(0).slice(start, self.batch_rows)
            n = len(keys)
            arrays: list[pa.Array] = [keys]
            names = ["_local_key"]
            for name, kind in payload:
                arrays.append(pa.nulls(n, pa.string() if kind == "string" else arrow_of[name]))
                names.append(name)
            table = pa.Table.from_arrays(arrays, names=names)
            hashed = self._hash(table, system, spec, payload, op="delete", has_payload=False)
            batch = self._select(hashed, None)
            self._spool(batch, system, spec, payload, ki, run, (None, None))
        with self.state.transaction():
            self.state.update_table(system, spec.name, last_delete_scan=now_utc())

    # --- steps -------------------------------------------------------------------------------

    def _check_schema(
        self,
        system: str,
        spec: SourceTable,
        columns: Sequence[SourceColumn],
        before: list[list[str]] | None,
    ) -> str | None:
        names = {c.name for c in columns}
        needed = list(spec.key)
        if spec.track is not None:
            needed.append(spec.track.column)
        if spec.delete.mode == "flag" and spec.delete.column is not None:
            needed.append(spec.delete.column)
        needed += list(spec.encoded_columns)
        missing = [n for n in needed if n not in names]
        if missing:
            raise SourceError(
                f"{system}.{spec.name}: configured column(s) {', '.join(missing)} not in the "
                "source table; fix region.toml or the dialect profile"
            )
        for c in columns:
            if c.name in spec.encoded_columns and c.kind not in ("bytes", "string"):
                raise SourceError(
                    f"{system}.{spec.name}.{c.name}: declared as encoded text but its type is "
                    f"{c.declared}"
                )
        if before is None:
            return None
        old = {n: d for n, d in before}
        new = {c.name: c.declared for c in columns}
        added = [n for n in new if n not in old]
        dropped = [n for n in old if n not in new]
        changed = [n for n in new if n in old and old[n] != new[n]]
        if not (added or dropped or changed):
            return None
        parts = []
        if added:
            parts.append("added " + ", ".join(added))
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        if changed:
            parts.append("retyped " + ", ".join(f"{n} {old[n]}→{new[n]}" for n in changed))
        warning = f"source schema changed: {'; '.join(parts)}"
        log.warning(
            "schema-changed",
            extra={"fields": {"system": system, "table": spec.name, "change": warning}},
        )
        return warning

    @staticmethod
    def _payload_kinds(
        spec: SourceTable, columns: Sequence[SourceColumn]
    ) -> list[tuple[str, ColumnKind]]:
        return [(c.name, "string" if c.name in spec.encoded_columns else c.kind) for c in columns]

    def _lower_bound(self, spec: SourceTable, watermark: str, wtype: str | None) -> str | int:
        assert spec.track is not None
        fmt = spec.track.format
        if wtype == "int":
            value = int(watermark)
            if fmt == "epoch_ms":
                return value - self.overlap_seconds * 1000
            if fmt == "epoch_s":
                return value - self.overlap_seconds
            return value
        try:
            t = datetime.strptime(watermark, fmt)
        except ValueError:
            return watermark  # not parseable with the format: no overlap, but nothing skipped
        return (t - timedelta(seconds=self.overlap_seconds)).strftime(fmt)

    def _decode(self, system: str, spec: SourceTable, chunk: pa.Table) -> pa.Table:
        if not spec.encoded_columns or spec.text_encoding is None:
            return chunk
        codec = "gb18030" if spec.text_encoding in ("gbk", "gb18030") else spec.text_encoding
        for name in spec.encoded_columns:
            i = chunk.schema.get_field_index(name)
            col = chunk.column(i)
            if pa.types.is_string(col.type):
                continue
            values = col.to_pylist()
            try:
                text = [None if v is None else v.decode(codec) for v in values]
            except UnicodeDecodeError:
                for row, v in enumerate(values):
                    if v is None:
                        continue
                    try:
                        decode_source_text(v, codec)
                    except RecordError as e:
                        raise SourceError(
                            f"{system}.{spec.name}.{name}: row {row} of the chunk: {e}"
                        ) from None
                raise
            chunk = chunk.set_column(i, name, pa.array(text, type=pa.string()))
        return chunk

    def _hash(
        self,
        table: pa.Table,
        system: str,
        spec: SourceTable,
        payload: list[tuple[str, ColumnKind]],
        *,
        op: str | None = None,
        has_payload: bool = True,
        key_cols: Sequence[SourceColumn] = (),
    ) -> _Hashed:
        """The chunk as batch rows — meta columns, payload, content hash — in read order.

        DuckDB builds the meta columns and each row's canonical bytes in one query over the
        chunk; OpenSSL hashes the bytes (``records.digests``). Rows with a NULL key part are
        dropped and counted.
        """
        con = self.state.con
        if op is not None:
            op_sql = _lit(op)
        elif spec.delete.mode == "flag" and spec.delete.column is not None:
            flag = _q(spec.delete.column)
            deleted = _lit(spec.delete.deleted or "")
            op_sql = (
                f"CASE WHEN CAST({flag} AS VARCHAR) = {deleted} THEN 'delete' ELSE 'upsert' END"
            )
        else:
            op_sql = "'upsert'"
        key_sql = local_key_sql([(c.name, c.kind) for c in key_cols]) if key_cols else "_local_key"
        updated_sql, updated_kind = _updated_sql(spec, has_payload)
        cols = "".join(", " + _q(n) for n, _ in payload)
        not_null = (
            " AND ".join(f"{_q(c.name)} IS NOT NULL" for c in key_cols) or "_local_key IS NOT NULL"
        )
        record = record_sql(
            hospital_id=self.hospital_id,
            system=system,
            table=spec.name,
            columns=payload,
            updated_kind=updated_kind,
        )
        numbered = table.add_column(0, "_seq", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        con.register("chunk", numbered)
        try:
            rows = con.execute(
                f"SELECT *, {record} AS _canon FROM (SELECT _seq, {key_sql} AS _local_key, "
                f"{op_sql} AS _op, {'TRUE' if has_payload else 'FALSE'} AS _has_payload, "
                f"{updated_sql} AS _source_updated_at, ?::TIMESTAMPTZ AS _extracted_at{cols} "
                f"FROM chunk WHERE {not_null})",
                [now_utc()],
            ).fetch_arrow_table()
        finally:
            con.unregister("chunk")
        digests = sha256_each(rows.column("_canon"))
        rows = rows.drop_columns(["_canon"])
        rows = rows.add_column(META.index("_hash"), "_hash", hex_column(digests))
        return _Hashed(rows, digests, table.num_rows - rows.num_rows)

    def _select(self, hashed: _Hashed, ki: str | None) -> _Hashed:
        """The rows the key index does not already hold (all if ``ki`` is None), in read
        order, ``_seq`` renumbered from 0."""
        table, digests = hashed.rows, hashed.digests
        if ki is not None:
            con = self.state.con
            probe = pa.table(
                {
                    "_pos": pa.array(np.arange(table.num_rows, dtype=np.int64)),
                    "_seq": table.column("_seq"),
                    "_local_key": table.column("_local_key"),
                    "_hash": table.column("_hash"),
                }
            )
            con.register("probe", probe)
            try:
                keep = con.execute(
                    f"SELECT h._pos FROM probe h LEFT JOIN {ki} k ON k.local_key = h._local_key "
                    "WHERE k.hash IS DISTINCT FROM h._hash ORDER BY h._seq"
                ).fetch_arrow_table()
            finally:
                con.unregister("probe")
            positions = keep.column(0).to_numpy()
        else:
            positions = np.argsort(table.column("_seq").to_numpy(), kind="stable")
        if len(positions) != table.num_rows or not np.array_equal(
            positions, np.arange(len(positions))
        ):
            table = table.take(pa.array(positions))
            digests = (
                np.frombuffer(digests, dtype=np.uint8).reshape(-1, DIGEST_SIZE)[positions].tobytes()
            )
        table = table.set_column(0, "_seq", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        return _Hashed(table, digests, hashed.dropped)

    def _changed(
        self,
        chunk: pa.Table,
        system: str,
        spec: SourceTable,
        key_cols: Sequence[SourceColumn],
        payload: list[tuple[str, ColumnKind]],
        ki: str,
        run: TableRun,
    ) -> _Hashed:
        hashed = self._hash(chunk, system, spec, payload, key_cols=key_cols)
        run.skipped_null_keys += hashed.dropped
        return self._select(hashed, ki)

    def _spool(
        self,
        hashed: _Hashed,
        system: str,
        spec: SourceTable,
        payload: list[tuple[str, ColumnKind]],
        ki: str,
        run: TableRun,
        watermark: tuple[RowFilter | None, str | int | None],
    ) -> None:
        where, high = watermark
        batch = hashed.rows
        seq = self.state.next_seq()
        track_col = spec.track.column if spec.track is not None and where is not None else None
        packed = pack_batch(
            batch,
            digests=hashed.digests,
            hospital_id=self.hospital_id,
            system=system,
            source_table=spec.name,
            seq=seq,
            columns=payload,
            key_columns=spec.key,
            watermark=(
                track_col,
                None if where is None else str(where.lower),
                None if high is None or where is None else str(high),
            ),
            created_at=now_utc(),
            signing_key=self.signing_key,
            region_key=self.region_key,
            spool=self.state.spool,
        )
        self.crash_point("batch-written")
        con = self.state.con
        con.register("sent_batch", batch.select(["_local_key", "_op", "_hash"]))
        if self.notary_key is not None:
            con.register(
                "notary_batch",
                entry_rows(batch, patient_column=spec.patient, key=self.notary_key),
            )
        try:
            with self.state.transaction():
                if self.notary_key is not None:
                    con.execute(
                        "INSERT INTO notary (batch_id, seq, system, source_table, rows, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [packed.batch_id, seq, system, spec.name, packed.rows,
                         packed.manifest.created_at],
                    )  # fmt: skip
                    con.execute(
                        "INSERT INTO notary_entries SELECT ?, pos, hash, local_key, ts_ms, "
                        "patient FROM notary_batch",
                        [packed.batch_id],
                    )
                con.execute(
                    f"DELETE FROM {ki} WHERE local_key IN (SELECT _local_key FROM sent_batch)"
                )
                con.execute(
                    f"INSERT INTO {ki} SELECT _local_key, _hash, _op = 'delete' FROM sent_batch"
                )
                con.execute(
                    "INSERT INTO outbox (batch_id, seq, system, source_table, file, rows, bytes, "
                    "created_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                    [
                        packed.batch_id, seq, system, spec.name, packed.file, packed.rows,
                        packed.bytes, packed.manifest.created_at,
                    ],
                )  # fmt: skip
                con.execute(
                    "UPDATE source_tables SET rows_sent = rows_sent + ? "
                    "WHERE system = ? AND source_table = ?",
                    [packed.rows, system, spec.name],
                )
                self.state.set_next_seq(con, seq + 1)
        finally:
            con.unregister("sent_batch")
            if self.notary_key is not None:
                con.unregister("notary_batch")
        self.crash_point("batch-committed")
        self.on_spooled()
        run.batches.append(packed)
        run.records += packed.rows
        run.deletes += packed.manifest.deletes
        log.info(
            "batch-spooled",
            extra={
                "fields": {
                    "system": system,
                    "table": spec.name,
                    "batch_id": packed.batch_id,
                    "rows": packed.rows,
                    "bytes": packed.bytes,
                }
            },
        )


def _updated_sql(spec: SourceTable, has_payload: bool) -> tuple[str, ColumnKind]:
    """SQL for ``_source_updated_at`` from the change column, and its kind."""
    if not has_payload or spec.track is None or not spec.track.is_time:
        return "NULL::TIMESTAMP", "datetime"
    col = _q(spec.track.column)
    fmt = spec.track.format
    if fmt == "epoch_ms":
        return f"timezone('UTC', make_timestamp(CAST({col} AS BIGINT) * 1000))", "datetime_tz"
    if fmt == "epoch_s":
        return f"timezone('UTC', make_timestamp(CAST({col} AS BIGINT) * 1000000))", "datetime_tz"
    return f"try_strptime(CAST({col} AS VARCHAR), {_lit(fmt)})", "datetime"


def _columns_json(columns: Sequence[SourceColumn]) -> str:
    return json.dumps([[c.name, c.declared] for c in columns], ensure_ascii=False)


def _max(current: str | int | None, column: pa.ChunkedArray) -> str | int | None:
    raw: object = pc.max(column).as_py()
    if raw is None:
        return current
    value: str | int
    if isinstance(raw, bytes):
        value = raw.decode("utf-8", "replace")
    elif isinstance(raw, str | int):
        value = raw
    else:
        value = str(raw)
    if current is None:
        return value
    if isinstance(value, int) and isinstance(current, int):
        return max(value, current)
    return max(str(value), str(current))


def _above(value: str | int, watermark: str, wtype: str | None) -> bool:
    if isinstance(value, int) and wtype == "int":
        return value >= int(watermark)
    return str(value) >= watermark
