"""DuckDBEngine: errors carry their SQL, transactions are all-or-nothing, Arrow in and out."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from medfabric.warehouse import DuckDBEngine, Engine, WarehouseError


@pytest.fixture
def engine() -> DuckDBEngine:
    return DuckDBEngine(":memory:", threads=1)


def test_it_is_an_engine(engine: DuckDBEngine) -> None:
    e: Engine = engine
    assert e.fetchall("SELECT ? + 1", [41]) == [(42,)]


def test_driver_errors_are_wrapped_with_the_failing_sql(engine: DuckDBEngine) -> None:
    with pytest.raises(WarehouseError) as info:
        engine.execute("SELECT * FROM no_such_table WHERE x = 1")
    assert "no_such_table" in str(info.value)
    assert "SQL: SELECT * FROM no_such_table WHERE x = 1" in str(info.value)
    assert info.value.sql == "SELECT * FROM no_such_table WHERE x = 1"
    assert info.value.__cause__ is not None


def test_long_sql_is_shortened_in_the_message(engine: DuckDBEngine) -> None:
    sql = "SELECT " + " + ".join(["1"] * 2000) + " FROM nowhere"
    with pytest.raises(WarehouseError) as info:
        engine.execute(sql)
    assert len(str(info.value)) < 2000
    assert info.value.sql == sql


def test_transaction_commits_or_rolls_back_everything(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE t (x INTEGER)")
    with engine.transaction():
        engine.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(WarehouseError), engine.transaction():
        engine.execute("INSERT INTO t VALUES (2)")
        engine.execute("INSERT INTO t VALUES ('not a number')")
    with pytest.raises(RuntimeError), engine.transaction():
        engine.execute("INSERT INTO t VALUES (3)")
        raise RuntimeError("caller failure")
    assert engine.fetchall("SELECT x FROM t ORDER BY x") == [(1,)]
    engine.execute("INSERT INTO t VALUES (4)")  # the connection is usable afterwards
    assert engine.fetchall("SELECT count(*) FROM t") == [(2,)]


def test_nested_transaction_joins_the_outer_one(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), engine.transaction():
        with engine.transaction():
            engine.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("outer fails after inner finished")
    assert engine.fetchall("SELECT count(*) FROM t") == [(0,)]


def test_arrow_register_and_fetch(engine: DuckDBEngine) -> None:
    table = pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]})
    engine.register("incoming", table)
    out = engine.fetch_arrow("SELECT k, v * 10 AS v FROM incoming WHERE v > ? ORDER BY k", [1])
    assert isinstance(out, pa.Table)
    assert out.to_pylist() == [{"k": "b", "v": 20}, {"k": "c", "v": 30}]
    engine.unregister("incoming")
    with pytest.raises(WarehouseError):
        engine.fetchall("SELECT * FROM incoming")


def test_timestamptz_reads_as_utc_through_arrow(engine: DuckDBEngine) -> None:
    out = engine.fetch_arrow("SELECT TIMESTAMPTZ '2024-01-01 08:00:00+08' AS t").to_pylist()
    assert out[0]["t"].isoformat() == "2024-01-01T00:00:00+00:00"


def test_closed_engine_refuses_work(engine: DuckDBEngine) -> None:
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(WarehouseError, match="closed"):
        engine.fetchall("SELECT 1")


def test_bad_threads_option_is_refused() -> None:
    with pytest.raises(WarehouseError, match="threads"):
        DuckDBEngine(":memory:", threads=0)


def test_file_database_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with DuckDBEngine(path) as e:
        e.execute("CREATE TABLE t AS SELECT 7 AS x")
    with DuckDBEngine(path) as e:
        assert e.fetchall("SELECT x FROM t") == [(7,)]


def test_a_transaction_blocks_other_threads_until_it_ends(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE t (x INTEGER)")
    seen: list[int] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        seen.append(engine.fetchall("SELECT count(*) FROM t")[0][0])

    with engine.transaction():
        engine.execute("INSERT INTO t VALUES (1)")
        thread = threading.Thread(target=reader)
        thread.start()
        started.wait()
        thread.join(timeout=0.2)
        assert thread.is_alive()  # waiting on the lock, not reading a half-done transaction
        engine.execute("INSERT INTO t VALUES (2)")
    thread.join()
    assert seen == [2]
