"""The gateway's durable state: one DuckDB file per hospital, beside the spool folder.

Tables (all in ``state.duckdb``):

- ``meta``: the next batch sequence number;
- ``source_tables``: per (system, table) the column list last seen, the watermark, the time of
  the last success, full load and delete scan, a pending full resync, a schema warning;
- ``keys__<system>__<table>``: the key index — each local key's last sent content hash and
  whether it was deleted. It makes incremental reads idempotent (a re-read row whose hash
  equals the last sent version is not sent again) and finds hard deletes by key comparison;
- ``outbox``: batches written to the spool and not yet acknowledged, in sequence order;
- ``quarantine``: batches the receiver rejected, with its reason, kept until an operator acts;
- ``acked``: the last acknowledged batches (history for status);
- ``inbox``: downlink messages received from the region;
- ``notary`` / ``notary_entries``: batches whose records wait to be notarized on the ledger,
  with one entry row per record (written in the batch's outbox transaction; ``notary.py``);
- ``notarized``: batches whose every record got ``f + 1`` matching ledger replies.

Ordering constraints (what makes kill -9 safe):
1. a batch file is written, fsynced and renamed into ``spool/`` *before* the transaction that
   records it in ``outbox`` and advances the key index commits — so the key index never says
   "sent" for a record that is not on disk;
2. the watermark advances only after every batch of the read is committed;
3. a batch leaves ``outbox`` only after the receiver acknowledged it; its file is removed after
   that commit. At start-up, spool files without an ``outbox`` row are leftovers of a crash
   between 1 and its commit (or after 3) and are deleted.
A crash between any two steps therefore re-reads or re-sends, never loses: at-least-once
sending, and the receiver's idempotent landing makes the effect exactly once.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb


class StateError(Exception):
    """The gateway state cannot be opened or is inconsistent; the message says what to do."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS source_tables (
    system VARCHAR NOT NULL, source_table VARCHAR NOT NULL, columns VARCHAR,
    watermark VARCHAR, watermark_type VARCHAR, last_success TIMESTAMPTZ,
    last_full TIMESTAMPTZ, last_delete_scan TIMESTAMPTZ, full_pending BOOLEAN DEFAULT FALSE,
    schema_warning VARCHAR, last_error VARCHAR, rows_sent BIGINT DEFAULT 0,
    PRIMARY KEY (system, source_table));
CREATE TABLE IF NOT EXISTS outbox (
    batch_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL, file VARCHAR NOT NULL, rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL, attempts INTEGER DEFAULT 0,
    next_try TIMESTAMPTZ, last_error VARCHAR);
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL, file VARCHAR NOT NULL, rows BIGINT NOT NULL,
    code VARCHAR NOT NULL, detail VARCHAR, quarantined_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS acked (
    batch_id VARCHAR PRIMARY KEY, seq BIGINT, system VARCHAR, source_table VARCHAR,
    rows BIGINT, status VARCHAR, created_at TIMESTAMPTZ, acked_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS inbox (
    id BIGINT PRIMARY KEY, kind VARCHAR, title VARCHAR, file VARCHAR,
    created_at VARCHAR, received_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS notary (
    batch_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL, rows BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'pending', attempts INTEGER DEFAULT 0,
    next_try TIMESTAMPTZ, last_error VARCHAR);
CREATE TABLE IF NOT EXISTS notary_entries (
    batch_id VARCHAR NOT NULL, pos INTEGER NOT NULL, hash VARCHAR NOT NULL,
    local_key VARCHAR NOT NULL, ts_ms BIGINT NOT NULL, patient BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS notarized (
    batch_id VARCHAR PRIMARY KEY, seq BIGINT, system VARCHAR, source_table VARCHAR,
    rows BIGINT, new BIGINT, duplicates BIGINT, created_at TIMESTAMPTZ,
    notarized_at TIMESTAMPTZ);
"""


def key_table(system: str, table: str) -> str:
    """The quoted name of a source table's key index."""
    name = f"keys__{system}__{table}".replace('"', '""')
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class TableState:
    """What the gateway remembers of one source table."""

    system: str
    source_table: str
    columns: list[list[str]] | None
    watermark: str | None
    watermark_type: str | None
    last_success: datetime | None
    last_full: datetime | None
    last_delete_scan: datetime | None
    full_pending: bool
    schema_warning: str | None
    last_error: str | None
    rows_sent: int


def now_utc() -> datetime:
    """The gateway's clock (aware UTC)."""
    return datetime.now(UTC)


def backoff_delay(attempts: int, max_backoff: float) -> float:
    """Seconds to wait before the next try after ``attempts`` failed ones: doubling from 1 s,
    capped at ``max_backoff``."""
    return min(max_backoff, 2.0 ** min(attempts, 20))


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GatewayState:
    """The state of one hospital's gateway (``<dir>/<hospital>/``).

    Opening takes DuckDB's file lock: one gateway process per hospital. ``status`` readers use
    :func:`read_status_snapshot` while a gateway runs.
    """

    def __init__(self, root: Path, hospital_id: str) -> None:
        self.hospital_id = hospital_id
        self.root = root
        self.spool = root / "spool"
        self.quarantine_dir = root / "quarantine"
        self.inbox_dir = root / "inbox"
        for d in (self.root, self.spool, self.quarantine_dir, self.inbox_dir):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(root / "state.duckdb"))
        except duckdb.IOException as e:
            raise StateError(
                f"cannot open gateway state {root / 'state.duckdb'}: {e} "
                "(is another gateway for this hospital running?)"
            ) from e
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(_SCHEMA)
        self._owner = True
        # Transactions of the threads sharing this state (extraction, the background sender)
        # run one at a time: DuckDB would otherwise abort one of two concurrent writers.
        self._write_lock = threading.RLock()
        self.recover()

    def for_thread(self) -> GatewayState:
        """The same state through a connection of its own, for use by another thread (the
        background sender); its transactions are serialized with this one's. Closing it closes
        only that connection."""
        other = copy.copy(self)
        other.con = self.con.cursor()
        other.con.execute("SET TimeZone = 'UTC'")
        other._owner = False
        return other

    def close(self) -> None:
        """Checkpoint and close (a :meth:`for_thread` view closes only its connection)."""
        if not self._owner:
            self.con.close()
            return
        try:
            self.con.execute("CHECKPOINT")
        finally:
            self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN … COMMIT, ROLLBACK on any exception; one at a time across threads."""
        with self._write_lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def recover(self) -> list[str]:
        """Delete spool files no ``outbox`` row owns (crash leftovers); returns their names."""
        owned = {r[0] for r in self.con.execute("SELECT file FROM outbox").fetchall()}
        removed = []
        for path in self.spool.iterdir():
            if path.name not in owned:
                path.unlink()
                removed.append(path.name)
        missing = [f for f in owned if not (self.spool / f).exists()]
        if missing:
            raise StateError(
                f"{len(missing)} outbox batch file(s) are missing from {self.spool} "
                f"(first: {missing[0]}); the spool folder was altered outside the gateway. "
                "Run `medfabric gateway resync` to re-send the affected tables."
            )
        return removed

    # --- sequence numbers --------------------------------------------------------------------

    def next_seq(self) -> int:
        """The sequence number the next batch takes (persisted with that batch's commit)."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(row[0]) if row else 1

    def set_next_seq(self, con: duckdb.DuckDBPyConnection, seq: int) -> None:
        """Inside the batch's transaction."""
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)",
            [str(seq)],
        )

    # --- source tables -----------------------------------------------------------------------

    def table_state(self, system: str, table: str) -> TableState:
        """The remembered state (a fresh row if the table was never read)."""
        row = self.con.execute(
            "SELECT system, source_table, columns, watermark, watermark_type, last_success, "
            "last_full, last_delete_scan, full_pending, schema_warning, last_error, rows_sent "
            "FROM source_tables WHERE system = ? AND source_table = ?",
            [system, table],
        ).fetchone()
        if row is None:
            self.con.execute(
                "INSERT INTO source_tables (system, source_table) VALUES (?, ?)", [system, table]
            )
            return self.table_state(system, table)
        cols = json.loads(row[2]) if row[2] else None
        return TableState(
            row[0], row[1], cols, row[3], row[4], row[5], row[6], row[7], bool(row[8]),
            row[9], row[10], int(row[11] or 0),
        )  # fmt: skip

    def update_table(self, system: str, table: str, **fields: Any) -> None:
        """Set some columns of a source table's row."""
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.con.execute(
            f"UPDATE source_tables SET {sets} WHERE system = ? AND source_table = ?",
            [*fields.values(), system, table],
        )

    def ensure_key_index(self, system: str, table: str) -> str:
        """Create the table's key index if needed; returns its quoted name."""
        name = key_table(system, table)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {name} "
            "(local_key VARCHAR NOT NULL, hash VARCHAR NOT NULL, deleted BOOLEAN NOT NULL)"
        )
        return name

    def tables(self) -> list[TableState]:
        """Every source table the gateway has read."""
        rows = self.con.execute(
            "SELECT system, source_table FROM source_tables ORDER BY system, source_table"
        ).fetchall()
        return [self.table_state(s, t) for s, t in rows]

    # --- status ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything ``gateway status`` shows, JSON-ready."""
        now = now_utc()
        tables = []
        for t in self.tables():
            lag = (now - t.last_success).total_seconds() if t.last_success else None
            tables.append(
                {
                    "system": t.system,
                    "table": t.source_table,
                    "watermark": t.watermark,
                    "last_success": t.last_success.isoformat() if t.last_success else None,
                    "lag_seconds": None if lag is None else round(lag, 1),
                    "rows_sent": t.rows_sent,
                    "full_pending": t.full_pending,
                    "schema_warning": t.schema_warning,
                    "last_error": t.last_error,
                }
            )
        outbox = self.con.execute(
            "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0), min(created_at), "
            "max(attempts), any_value(last_error) FROM outbox"
        ).fetchone()
        assert outbox is not None
        quarantined = [
            {
                "batch_id": r[0],
                "system": r[1],
                "table": r[2],
                "rows": r[3],
                "code": r[4],
                "detail": r[5],
                "quarantined_at": r[6].isoformat(),
            }
            for r in self.con.execute(
                "SELECT batch_id, system, source_table, rows, code, detail, quarantined_at "
                "FROM quarantine ORDER BY seq"
            ).fetchall()
        ]
        notary = self.con.execute(
            "SELECT count(*) FILTER (WHERE status = 'pending'), "
            "coalesce(sum(rows) FILTER (WHERE status = 'pending'), 0), "
            "max(attempts), any_value(last_error) FILTER (WHERE status = 'pending') FROM notary"
        ).fetchone()
        assert notary is not None
        refused = [
            {"batch_id": r[0], "system": r[1], "table": r[2], "rows": r[3], "reason": r[4]}
            for r in self.con.execute(
                "SELECT batch_id, system, source_table, rows, last_error FROM notary "
                "WHERE status = 'refused' ORDER BY seq"
            ).fetchall()
        ]
        done = self.con.execute(
            "SELECT count(*), coalesce(sum(rows), 0), max(notarized_at) FROM notarized"
        ).fetchone()
        assert done is not None
        last_ack = self.con.execute("SELECT max(acked_at) FROM acked").fetchone()
        inbox = self.con.execute("SELECT count(*) FROM inbox").fetchone()
        return {
            "hospital_id": self.hospital_id,
            "as_of": now.isoformat(),
            "spool": {
                "batches": int(outbox[0]),
                "rows": int(outbox[1]),
                "bytes": int(outbox[2]),
                "oldest": outbox[3].isoformat() if outbox[3] else None,
                "max_attempts": int(outbox[4] or 0),
                "last_error": outbox[5],
            },
            "last_ack": last_ack[0].isoformat() if last_ack and last_ack[0] else None,
            "tables": tables,
            "quarantine": quarantined,
            "inbox": int(inbox[0]) if inbox else 0,
            "notary": {
                "queued_batches": int(notary[0]),
                "queued_rows": int(notary[1]),
                "max_attempts": int(notary[2] or 0),
                "last_error": notary[3],
                "refused": refused,
                "notarized_batches": int(done[0]),
                "notarized_rows": int(done[1]),
                "last_notarized": done[2].isoformat() if done[2] else None,
            },
        }

    def write_snapshot(self) -> None:
        """Write ``status.json`` atomically, for ``gateway status`` while this process runs."""
        data = json.dumps(self.snapshot(), ensure_ascii=False, indent=1)
        tmp = self.root / "status.json.tmp"
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, self.root / "status.json")


def read_status_snapshot(root: Path) -> dict[str, Any] | None:
    """The last ``status.json`` a running gateway wrote, or None."""
    path = root / "status.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
