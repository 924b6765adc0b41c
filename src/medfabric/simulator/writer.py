"""Buffered, column-wise writing of canonical rows into a dialect's SQLite database.

Rows are buffered per table and flushed with one ``executemany`` per table, inside
one transaction per flush: bulk inserts, never a commit per row. On first creation the database
runs with ``journal_mode=OFF`` and ``synchronous=OFF`` because it lives in a temporary folder
that is renamed into place only when the whole region is written; ticks on an existing region
use the normal rollback journal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medfabric.simulator.dialects.base import Dialect
from medfabric.simulator.schema import (
    SYSTEM_TABLES,
    TABLE_BY_NAME,
    Column,
    Table,
    key_space,
    ref_system,
)


class TableBuffer:
    """Rows of canonical values waiting to be written, each with its change time last."""

    __slots__ = ("rows", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.rows: list[tuple[Any, ...]] = []

    def add(self, values: tuple[Any, ...], updated: int | None) -> None:
        self.rows.append((*values, updated))

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> list[list[Any]]:
        """The buffered rows as columns (the change time is the last column)."""
        return [list(c) for c in zip(*self.rows, strict=True)]

    def clear(self) -> None:
        self.rows.clear()


def encode_column(
    dialect: Dialect,
    table: Table,
    column: Column,
    values: list[Any],
    peers: Mapping[str, Dialect] | None = None,
) -> list[Any]:
    """Canonical values of one column → the dialect's stored values.

    A reference to another system's row (the LIS's copy of the HIS order number) is stored as
    that system formats its keys, as text: that is what the other system handed over.
    """
    kind = column.kind
    if kind == "key":
        return dialect.format_keys(key_space(table.name), values)
    ref = column.ref_table
    if ref is not None:
        owner = ref_system(ref)
        if owner != table.system and peers is not None:
            keys = peers[owner].format_keys(key_space(ref), values)
            return [None if k is None else str(k) for k in keys]
        return dialect.format_keys(key_space(ref), values)
    domain = column.code_domain
    if domain is not None:
        m = dialect.local_codes(domain)
        return [None if v is None else m.get(v, v) for v in values]
    if kind == "text" and dialect.text_encoding != "utf-8":
        enc = dialect.text_encoding
        return [None if v is None else v.encode(enc, "replace") for v in values]
    if kind == "dt":
        return dialect.format_datetimes(values)
    if kind == "date":
        return [dialect.format_date(v) for v in values]
    return values


class SystemWriter:
    """One source system's SQLite database in one dialect."""

    def __init__(
        self,
        path: Path,
        dialect: Dialect,
        system: str,
        *,
        bulk: bool,
        peers: Mapping[str, Dialect] | None = None,
    ) -> None:
        self.path = path
        self.dialect = dialect
        self.peers = peers
        self.system = system
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        if bulk:
            self.conn.execute("PRAGMA journal_mode=OFF")
            self.conn.execute("PRAGMA synchronous=OFF")
        for table in SYSTEM_TABLES[system]:
            self.conn.execute(dialect.create_table_sql(table))
        self.buffers = {t.name: TableBuffer(t) for t in SYSTEM_TABLES[system]}
        self.rows_written = {t.name: 0 for t in SYSTEM_TABLES[system]}

    def insert_sql(self, table: Table) -> str:
        d = self.dialect
        names = [*d.column_names(table), d.updated_column]
        if d.flag_column:
            names.append(d.flag_column)
        cols = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" for _ in names)
        return f'INSERT INTO "{d.table_name(table.name)}" ({cols}) VALUES ({marks})'

    def flush(self) -> None:
        """Write every buffered row in one transaction."""
        d = self.dialect
        self.conn.execute("BEGIN")
        try:
            for name, buf in self.buffers.items():
                if not buf.rows:
                    continue
                table = TABLE_BY_NAME[name]
                raw = buf.columns()
                cols = [
                    encode_column(d, table, c, v, self.peers)
                    for c, v in zip(table.columns, raw, strict=False)
                ]
                cols.append(d.format_datetimes(raw[-1]))
                if d.flag_column:
                    cols.append([d.flag_live] * len(buf))
                self.conn.executemany(self.insert_sql(table), zip(*cols, strict=True))
                self.rows_written[name] += len(buf)
                buf.clear()
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.flush()
        self.conn.close()
