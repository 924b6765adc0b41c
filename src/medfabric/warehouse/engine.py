"""The warehouse engine: the one place that touches the database.

Everything set-based in the warehouse is SQL text handed to an :class:`Engine`; the engine runs
it and wraps every driver error in :class:`WarehouseError` carrying the SQL that failed.
:class:`DuckDBEngine` is the embedded default (a file or ``":memory:"``).

Invariants:
- The session time zone is UTC, so ``TIMESTAMPTZ`` values render and compare the same on every
  machine.
- One connection, guarded by a re-entrant lock: a :meth:`Engine.transaction` holds the lock for
  its whole block, so statements of other threads wait instead of joining the transaction.
- Nested ``transaction()`` blocks join the outermost one (DuckDB has no savepoints): an error
  inside rolls back everything when it reaches the outer block.

Exceptions::

    WarehouseError              any failure of the warehouse (driver errors wrapped, with SQL)
    ├── LandingError            (ods) a batch cannot be landed as given — reject it
    ├── ReplayError             (ods) a landed batch id came back with another manifest
    └── DownlinkError           (ods) a downlink ack names an unknown or foreign message
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

Params = Sequence[object] | Mapping[str, object] | None

_SQL_IN_MESSAGE = 600


class WarehouseError(Exception):
    """Base error of the warehouse. ``sql`` is the statement that failed, when there is one."""

    def __init__(self, message: str, sql: str | None = None) -> None:
        self.sql = sql
        if sql is not None:
            message = f"{message}\n  SQL: {_shorten(sql)}"
        super().__init__(message)


def _shorten(sql: str) -> str:
    flat = " ".join(sql.split())
    if len(flat) <= _SQL_IN_MESSAGE:
        return flat
    return flat[: _SQL_IN_MESSAGE - 1] + "…"


class Engine(Protocol):
    """A SQL engine the warehouse runs on.

    Contract shared by every method: a failure of the underlying database raises
    :class:`WarehouseError` whose message names the error and the (shortened) SQL; no driver
    exception escapes. ``params`` are positional (``?``) or named (``$name``) parameters.
    ``TIMESTAMPTZ`` values are read with :meth:`fetch_arrow` (aware UTC datetimes).
    """

    def execute(self, sql: str, params: Params = None) -> None:
        """Run one statement, discarding any result."""
        ...

    def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run one query and return its rows as tuples."""
        ...

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        """Run one query and return its result as an Arrow table."""
        ...

    def register(self, name: str, table: pa.Table) -> None:
        """Make ``table`` queryable as the view ``name`` (no copy) until :meth:`unregister`."""
        ...

    def unregister(self, name: str) -> None:
        """Remove a view made by :meth:`register`; unknown names are ignored."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Context manager: BEGIN; COMMIT on normal exit; ROLLBACK and re-raise on an exception.

        Nested blocks join the outermost transaction.
        """
        ...

    def close(self) -> None:
        """Release the database; further calls raise :class:`WarehouseError`."""
        ...


class DuckDBEngine:
    """An :class:`Engine` over one DuckDB connection.

    Args:
        path: a database file (created if missing) or ``":memory:"``.
        threads: DuckDB worker threads; ``None`` lets DuckDB use every core.

    Raises:
        WarehouseError: the database cannot be opened (locked by another process, bad file),
            or ``threads`` is not a positive integer.

    Example::

        engine = DuckDBEngine(":memory:")
        engine.fetchall("SELECT 42")  # [(42,)]
    """

    def __init__(self, path: str | Path = ":memory:", *, threads: int | None = None) -> None:
        if threads is not None and (type(threads) is not int or threads < 1):
            raise WarehouseError(f"threads must be a positive integer, got {threads!r}")
        self.path = str(path)
        config: dict[str, str | bool | int | float | list[str]] = {}
        if threads is not None:
            config["threads"] = threads
        try:
            self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(self.path, config=config)
            self._con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open DuckDB database {self.path!r}: {e}") from e
        self._lock = threading.RLock()
        self._depth = 0

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise WarehouseError(f"engine on {self.path!r} is closed")
        return self._con

    def _run(self, sql: str, params: Params) -> duckdb.DuckDBPyConnection:
        con = self._connection()
        try:
            return con.execute(sql, params)
        except duckdb.Error as e:
            raise WarehouseError(f"{type(e).__name__}: {e}", sql) from e

    def execute(self, sql: str, params: Params = None) -> None:
        with self._lock:
            self._run(sql, params)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._run(sql, params)
            try:
                return cur.fetchall()
            except duckdb.Error as e:
                raise WarehouseError(f"{type(e).__name__}: {e}", sql) from e

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        with self._lock:
            cur = self._run(sql, params)
            try:
                return cur.fetch_arrow_table()
            except duckdb.Error as e:
                raise WarehouseError(f"{type(e).__name__}: {e}", sql) from e

    def register(self, name: str, table: pa.Table) -> None:
        with self._lock:
            try:
                self._connection().register(name, table)
            except duckdb.Error as e:
                raise WarehouseError(f"cannot register {name!r}: {e}") from e

    def unregister(self, name: str) -> None:
        with self._lock:
            try:
                self._connection().unregister(name)
            except duckdb.Error as e:
                raise WarehouseError(f"cannot unregister {name!r}: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._run("BEGIN TRANSACTION", None)
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            try:
                self._run("COMMIT", None)
            except WarehouseError:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # A failed statement leaves DuckDB's transaction aborted; ROLLBACK ends it either way.
        # Its own failure must not hide the error that caused it.
        if self._con is not None:
            with suppress(duckdb.Error):
                self._con.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                try:
                    self._con.close()
                finally:
                    self._con = None

    def __enter__(self) -> DuckDBEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
