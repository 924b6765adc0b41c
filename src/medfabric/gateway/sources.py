"""Source connectors: read a hospital system's tables as typed Arrow batches.

A source is a SQLAlchemy URL. Two readers give the same result for the same database:

- :class:`SqlAlchemyReader` works with any database SQLAlchemy has a driver for (MySQL,
  PostgreSQL, Oracle, SQL Server, SQLite …): the SQL is built with SQLAlchemy Core for the
  source's dialect and rows are fetched in chunks through the driver;
- :class:`SqliteReader` is the fast path for SQLite files (what the simulator writes): DuckDB's
  SQLite scanner reads the file column-wise, about three times faster than a Python driver.

Invariants:
- A column's *kind* (the canonical value type, ``records.ColumnKind``) comes from its declared
  type, never from the values: the same column always hashes with the same type. For SQLite both
  readers follow DuckDB's mapping of declared types (``INT…`` integer, ``CHAR/CLOB/TEXT`` string,
  ``REAL/FLOA/DOUB`` and other numeric affinities float, ``DATE`` date, ``DATETIME/TIMESTAMP``
  datetime, ``BLOB`` or no type bytes), so switching reader never re-hashes a row.
- Readers stream: at most ``batch_rows`` rows are in memory per chunk.
- A value that does not fit its column's kind (SQLite lets ``'abc'`` into an ``INTEGER``
  column) is a :class:`SourceError` naming hospital system, table and column, never the value.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from medfabric.records import ColumnKind
from medfabric.records.sqlcanon import quote_ident as _q
from medfabric.records.sqlcanon import sql_literal


class SourceError(Exception):
    """A source cannot be read as configured; the message names system, table and column."""


@dataclass(frozen=True, slots=True)
class SourceColumn:
    """A source column: its name, declared type (as the database states it) and kind."""

    name: str
    declared: str
    kind: ColumnKind
    arrow: pa.DataType


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Rows whose change column is at or above ``lower`` (or NULL), for incremental reads."""

    column: str
    lower: str | int


class SourceReader(Protocol):
    """Reads tables of one source database.

    ``columns`` reflects a table (SourceError if it does not exist); ``read`` yields typed
    chunks of at most ``batch_rows`` rows with exactly ``columns`` in that order, filtered by
    ``where`` when given; ``keys`` yields only the named key columns of every row.
    """

    url: str

    def columns(self, table: str) -> list[SourceColumn]: ...

    def read(
        self,
        table: str,
        columns: Sequence[SourceColumn],
        *,
        where: RowFilter | None,
        batch_rows: int,
    ) -> Iterator[pa.Table]: ...

    def keys(
        self, table: str, key: Sequence[SourceColumn], *, batch_rows: int
    ) -> Iterator[pa.Table]: ...

    def close(self) -> None: ...


def _arrow_of(kind: ColumnKind, declared: str) -> pa.DataType:
    if kind == "decimal":
        m = re.search(r"\((\d+)\s*,\s*(\d+)\)", declared)
        precision, scale = (int(m.group(1)), int(m.group(2))) if m else (38, 10)
        return pa.decimal128(precision, scale)
    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "float": pa.float64(),
        "boolean": pa.bool_(),
        "bytes": pa.binary(),
        "date": pa.date32(),
        "datetime": pa.timestamp("us"),
        "datetime_tz": pa.timestamp("us", tz="UTC"),
    }[kind]


def sqlite_kind(declared: str) -> ColumnKind:
    """The kind of a SQLite column from its declared type, as DuckDB's SQLite scanner maps it."""
    t = declared.upper().strip()
    if t == "DATE":
        return "date"
    if t in ("DATETIME", "TIMESTAMP"):
        return "datetime"
    if "INT" in t:
        return "integer"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "string"
    if t == "" or "BLOB" in t:
        return "bytes"
    return "float"


def _sqlalchemy_kind(col_type: sa.types.TypeEngine[Any]) -> ColumnKind | None:
    if isinstance(col_type, sa.Boolean):
        return "boolean"
    if isinstance(col_type, sa.Integer):
        return "integer"
    if isinstance(col_type, sa.Float):
        return "float"
    if isinstance(col_type, sa.Numeric):
        return "decimal"
    if isinstance(col_type, sa.DateTime):
        return "datetime_tz" if col_type.timezone else "datetime"
    if isinstance(col_type, sa.Date):
        return "date"
    if isinstance(col_type, sa.LargeBinary | sa.types._Binary):
        return "bytes"
    if isinstance(col_type, sa.String):
        return "string"
    return None


def _duckdb_sqlite_extension() -> str:
    try:
        files = importlib.metadata.files("duckdb-ext-sqlite") or []
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(
            "the SQLite fast path needs the duckdb-ext-sqlite package (pinned with duckdb 1.4.4)"
        ) from None
    for f in files:
        if str(f).endswith("sqlite_scanner.duckdb_extension"):
            return str(Path(str(f.locate())).resolve())
    raise SourceError("duckdb-ext-sqlite is installed but carries no sqlite_scanner extension")


def _lit(value: str | int) -> str:
    return str(value) if isinstance(value, int) else sql_literal(value)


class SqliteReader:
    """SQLite files through DuckDB's SQLite scanner (the fast path)."""

    def __init__(self, url: str, *, system: str = "") -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            raise SourceError(f"{url!r} is not a SQLite file URL")
        self.url = url
        self.path = parsed.database
        self.system = system
        if not Path(self.path).exists():
            raise SourceError(f"{system}: SQLite source {self.path} does not exist")
        self._con = duckdb.connect()
        self._con.execute(f"LOAD {_lit(_duckdb_sqlite_extension())}")
        self._con.execute("SET sqlite_all_varchar = false")

    def _scan(self, table: str) -> str:
        return f"sqlite_scan({_lit(self.path)}, {_lit(table)})"

    def columns(self, table: str) -> list[SourceColumn]:
        import sqlite3  # declared types are only visible to SQLite itself

        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            rows = con.execute(f"PRAGMA table_info({_q(table)})").fetchall()
        except sqlite3.Error as e:
            raise SourceError(f"{self.system}.{table}: cannot read the table's columns: {e}") from e
        finally:
            con.close()
        if not rows:
            raise SourceError(f"{self.system}: table {table} does not exist in {self.path}")
        out = []
        for _cid, name, declared, *_ in rows:
            kind = sqlite_kind(declared or "")
            out.append(SourceColumn(name, declared or "", kind, _arrow_of(kind, declared or "")))
        return out

    def read(
        self,
        table: str,
        columns: Sequence[SourceColumn],
        *,
        where: RowFilter | None,
        batch_rows: int,
    ) -> Iterator[pa.Table]:
        cols = ", ".join(_q(c.name) for c in columns)
        sql = f"SELECT {cols} FROM {self._scan(table)}"
        if where is not None:
            c = _q(where.column)
            sql += f" WHERE {c} >= {_lit(where.lower)} OR {c} IS NULL"
        yield from self._stream(sql, table, columns, batch_rows)

    def keys(
        self, table: str, key: Sequence[SourceColumn], *, batch_rows: int
    ) -> Iterator[pa.Table]:
        cols = ", ".join(_q(c.name) for c in key)
        yield from self._stream(f"SELECT {cols} FROM {self._scan(table)}", table, key, batch_rows)

    def _stream(
        self, sql: str, table: str, columns: Sequence[SourceColumn], batch_rows: int
    ) -> Iterator[pa.Table]:
        schema = pa.schema([(c.name, c.arrow) for c in columns])
        try:
            reader = self._con.execute(sql).fetch_record_batch(batch_rows)
            for rb in reader:
                if rb.num_rows:
                    yield pa.Table.from_batches([rb]).cast(schema)
        except duckdb.Error as e:
            raise SourceError(
                f"{self.system}.{table}: reading the SQLite source failed: {e}"
            ) from e

    def close(self) -> None:
        self._con.close()


class SqlAlchemyReader:
    """Any database with a SQLAlchemy driver; SQL built with SQLAlchemy Core for its dialect."""

    def __init__(self, url: str, *, system: str = "") -> None:
        self.url = url
        self.system = system
        try:
            self._engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
            raise SourceError(f"{system}: cannot open source {url!r}: {e}") from e
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._meta = sa.MetaData()

    def _table(self, table: str) -> sa.Table:
        if table not in self._meta.tables:
            try:
                sa.Table(table, self._meta, autoload_with=self._engine)
            except sa.exc.NoSuchTableError:
                raise SourceError(f"{self.system}: table {table} does not exist") from None
            except sa.exc.SQLAlchemyError as e:
                raise SourceError(f"{self.system}.{table}: cannot reflect the table: {e}") from e
        return self._meta.tables[table]

    def columns(self, table: str) -> list[SourceColumn]:
        if table in self._meta.tables:  # reflect afresh: the schema may have changed
            self._meta.remove(self._meta.tables[table])
        t = self._table(table)
        out = []
        for c in t.columns:
            declared = str(c.type.compile(dialect=self._engine.dialect))
            kind = sqlite_kind(declared) if self._sqlite else _sqlalchemy_kind(c.type)
            if kind is None:
                raise SourceError(
                    f"{self.system}.{table}.{c.name}: type {declared} has no canonical kind "
                    "(supported: text, integer, float, decimal, boolean, binary, date, datetime); "
                    "expose the table through a view that casts it"
                )
            if kind == "decimal":
                precision = getattr(c.type, "precision", None)
                if precision is not None and precision > 38:
                    raise SourceError(
                        f"{self.system}.{table}.{c.name}: DECIMAL precision {precision} is over 38"
                    )
            out.append(SourceColumn(str(c.name), declared, kind, _arrow_of(kind, declared)))
        return out

    def read(
        self,
        table: str,
        columns: Sequence[SourceColumn],
        *,
        where: RowFilter | None,
        batch_rows: int,
    ) -> Iterator[pa.Table]:
        t = self._table(table)
        stmt = sa.select(*[t.c[c.name] for c in columns])
        if where is not None:
            col = t.c[where.column]
            stmt = stmt.where(sa.or_(col >= where.lower, col.is_(None)))
        yield from self._stream(stmt, table, columns, batch_rows)

    def keys(
        self, table: str, key: Sequence[SourceColumn], *, batch_rows: int
    ) -> Iterator[pa.Table]:
        t = self._table(table)
        yield from self._stream(sa.select(*[t.c[c.name] for c in key]), table, key, batch_rows)

    def _stream(
        self,
        stmt: sa.Select[Any],
        table: str,
        columns: Sequence[SourceColumn],
        batch_rows: int,
    ) -> Iterator[pa.Table]:
        names = [c.name for c in columns]
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                    stmt
                )
                for rows in result.partitions(batch_rows):
                    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
                    arrays = [
                        _to_arrow(list(values), c, self.system, table)
                        for values, c in zip(cols, columns, strict=True)
                    ]
                    yield pa.Table.from_arrays(arrays, names=names)
        except sa.exc.SQLAlchemyError as e:
            raise SourceError(f"{self.system}.{table}: reading the source failed: {e}") from e

    def close(self) -> None:
        self._engine.dispose()


def _to_arrow(values: list[Any], col: SourceColumn, system: str, table: str) -> pa.Array:
    where = f"{system}.{table}.{col.name}"
    try:
        if col.kind in ("date", "datetime") and any(isinstance(v, str) for v in values):
            # SQLite stores dates as text; parse like DuckDB's scanner (ISO 8601).
            parsed = pa.array(values, type=pa.string())
            target = pa.date32() if col.kind == "date" else pa.timestamp("us")
            return parsed.cast(target)
        if col.kind == "float":
            values = [float(v) if isinstance(v, int | Decimal) else v for v in values]
        if col.kind == "bytes":
            values = [v.encode() if isinstance(v, str) else v for v in values]
        if col.kind == "datetime_tz":
            values = [_utc(v) for v in values]
        return pa.array(values, type=col.arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
        raise SourceError(
            f"{where}: a value does not fit the column's kind {col.kind} ({type(e).__name__})"
        ) from None


def _utc(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is None:
        raise ValueError("naive datetime in a time-zone column")
    return v


def open_reader(url: str, *, system: str = "", fast_sqlite: bool = True) -> SourceReader:
    """The reader for a source URL: the SQLite fast path when possible, SQLAlchemy otherwise."""
    try:
        backend = make_url(url).get_backend_name()
    except sa.exc.ArgumentError as e:
        raise SourceError(f"{system}: {url!r} is not a SQLAlchemy URL: {e}") from None
    if backend == "sqlite" and fast_sqlite:
        return SqliteReader(url, system=system)
    return SqlAlchemyReader(url, system=system)
