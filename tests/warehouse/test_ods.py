"""ODS landing: idempotent, versioned, all-or-nothing; intake state and the downlink queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from medfabric.warehouse import (
    DownlinkError,
    DuckDBEngine,
    LandingBatch,
    LandingError,
    OdsStore,
    ReplayError,
    WarehouseError,
)

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
COLUMNS: tuple[tuple[str, str], ...] = (("name", "VARCHAR"), ("value", "BIGINT"))
TABLE = "H01__LIS__JY_JG"

_ARROW = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "DECIMAL(10,2)": pa.decimal128(10, 2),
}


def _hash(key: str, op: str, payload: dict[str, Any]) -> str:
    # A stand-in for the canonical hash: the warehouse only compares hashes, never computes them.
    text = json.dumps([key, op, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def make_batch(
    batch_id: str,
    records: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    columns: tuple[tuple[str, str], ...] = COLUMNS,
    seq: int = 1,
    received_at: datetime = T0,
    hospital_id: str = "H01",
    system: str = "LIS",
    source_table: str = "JY_JG",
    manifest_sha256: str | None = None,
    watermark: tuple[str, str] | None = None,
) -> LandingBatch:
    """A batch of ``(local_key, op, payload)`` records; a delete with an empty payload is hard."""
    n = len(records)
    data: dict[str, pa.Array] = {
        "_seq": pa.array(range(n), pa.int64()),
        "_local_key": pa.array([k for k, _, _ in records], pa.string()),
        "_op": pa.array([op for _, op, _ in records], pa.string()),
        "_has_payload": pa.array([bool(p) or op == "upsert" for _, op, p in records]),
        "_source_updated_at": pa.array(
            [datetime(2024, 2, 1) + timedelta(hours=i) for i in range(n)], pa.timestamp("us")
        ),
        "_extracted_at": pa.array([received_at] * n, pa.timestamp("us", tz="UTC")),
        "_hash": pa.array([_hash(k, op, p) for k, op, p in records], pa.string()),
    }
    for name, type_name in columns:
        data[name] = pa.array([p.get(name) for _, _, p in records], _ARROW[type_name])
    key = columns[0][0]
    return LandingBatch(
        batch_id=batch_id,
        manifest_sha256=manifest_sha256 or hashlib.sha256(batch_id.encode()).hexdigest(),
        hospital_id=hospital_id,
        system=system,
        source_table=source_table,
        seq=seq,
        columns=columns,
        key_columns=(key,),
        watermark_column=watermark[0] if watermark else None,
        watermark_from=None,
        watermark_to=watermark[1] if watermark else None,
        received_at=received_at,
        rows=pa.table(data),
    )


def up(key: str, value: int, name: str = "n") -> tuple[str, str, dict[str, Any]]:
    return (key, "upsert", {"name": name, "value": value})


@pytest.fixture
def engine() -> Iterator[DuckDBEngine]:
    e = DuckDBEngine(":memory:", threads=1)
    yield e
    e.close()


@pytest.fixture
def store(engine: DuckDBEngine) -> OdsStore:
    return OdsStore(engine)


def current(store: OdsStore, table: str = TABLE) -> dict[str, dict[str, Any]]:
    rows = store.engine.fetch_arrow(f"SELECT * FROM {store.current_view(table)}").to_pylist()
    return {r["_local_key"]: r for r in rows}


def snapshot(store: OdsStore) -> dict[str, Any]:
    """Everything landing writes, to compare before and after a failed landing."""
    e = store.engine
    out: dict[str, Any] = {
        t: e.fetch_arrow(f"SELECT * FROM ingest.{t} ORDER BY ALL").to_pylist()
        for t in ("batches", "watermarks", "ods_tables")
    }
    for name in store.tables():
        out[name] = e.fetch_arrow(f'SELECT * FROM ods."{name}" ORDER BY ALL').to_pylist()
    out["objects"] = e.fetchall(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ods' "
        "UNION ALL SELECT view_name FROM duckdb_views() WHERE schema_name = 'ods' ORDER BY 1"
    )
    return out


# -- idempotence and versions -------------------------------------------------------------------


def test_first_landing_creates_the_table_and_landing_twice_changes_nothing(
    store: OdsStore,
) -> None:
    batch = make_batch("b1", [up("1", 10), up("2", 20)], watermark=("value", "20"))
    first = store.land(batch)
    assert (first.status, first.landed, first.skipped_duplicates) == ("landed", 2, 0)
    assert first.ods_table == TABLE == store.table_for("H01", "LIS", "JY_JG")
    before = snapshot(store)

    again = store.land(batch)
    assert (again.status, again.landed, again.skipped_duplicates) == ("duplicate-batch", 0, 0)
    assert again.ods_table == TABLE
    assert snapshot(store) == before
    assert {k: r["value"] for k, r in current(store).items()} == {"1": 10, "2": 20}


def test_replay_with_another_manifest_digest_is_refused(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 10)]))
    assert store.batch_digest("b1") == hashlib.sha256(b"b1").hexdigest()
    assert store.batch_digest("b2") is None
    before = snapshot(store)
    with pytest.raises(ReplayError, match="b1"):
        store.land(make_batch("b1", [up("1", 99)], manifest_sha256="f" * 64))
    assert snapshot(store) == before


def test_a_b_a_keeps_three_versions_and_skips_only_repeats_of_the_latest(
    store: OdsStore,
) -> None:
    store.land(make_batch("b1", [up("1", 1)], seq=1, received_at=T0))
    r2 = store.land(make_batch("b2", [up("1", 2)], seq=2, received_at=T0 + timedelta(hours=1)))
    r3 = store.land(make_batch("b3", [up("1", 1)], seq=3, received_at=T0 + timedelta(hours=2)))
    r4 = store.land(make_batch("b4", [up("1", 1)], seq=4, received_at=T0 + timedelta(hours=3)))
    assert (r2.landed, r3.landed) == (1, 1)
    assert (r4.landed, r4.skipped_duplicates) == (0, 1)

    versions = store.history(TABLE, "1")
    assert [(v["_version"], v["value"], v["_batch_id"]) for v in versions] == [
        (1, 1, "b1"),
        (2, 2, "b2"),
        (3, 1, "b3"),
    ]
    # Each version is closed exactly when its successor arrived; only the last is open.
    assert [v["_valid_from"] for v in versions] == [T0 + timedelta(hours=h) for h in range(3)]
    assert [v["_valid_to"] for v in versions] == [
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
        None,
    ]
    assert current(store)["1"]["_version"] == 3


def test_delete_then_reinsert(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1), up("2", 2)], seq=1))
    store.land(make_batch("b2", [("1", "delete", {})], seq=2, received_at=T0 + timedelta(1)))
    assert set(current(store)) == {"2"}
    assert store.counts_by_table() == {TABLE: 1}

    # The same hard delete again matches the latest version (a delete) and is skipped.
    again = store.land(make_batch("b3", [("1", "delete", {})], seq=3))
    assert (again.landed, again.skipped_duplicates) == (0, 1)

    back = store.land(make_batch("b4", [up("1", 1)], seq=4, received_at=T0 + timedelta(2)))
    assert back.landed == 1  # equal to version 1, but not to the latest (the delete)
    history = store.history(TABLE, "1")
    assert [(v["_version"], v["_op"], v["_has_payload"]) for v in history] == [
        (1, "upsert", True),
        (2, "delete", False),
        (3, "upsert", True),
    ]
    assert current(store)["1"]["_version"] == 3
    assert store.counts_by_table() == {TABLE: 2}


def test_a_delete_of_an_unknown_key_is_kept_as_history_but_not_current(store: OdsStore) -> None:
    store.land(make_batch("b1", [("9", "delete", {})]))
    assert current(store) == {}
    assert [v["_version"] for v in store.history(TABLE, "9")] == [1]


def test_mixed_batch_counts_new_changed_and_unchanged(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1), up("2", 2), up("3", 3)], seq=1))
    r = store.land(make_batch("b2", [up("1", 1), up("2", 22), up("4", 4)], seq=2))
    assert (r.landed, r.skipped_duplicates) == (2, 1)
    assert {k: (r["value"], r["_version"]) for k, r in current(store).items()} == {
        "1": (1, 1),
        "2": (22, 2),
        "3": (3, 1),
        "4": (4, 1),
    }
    (recorded, *_) = store.batches()
    assert (recorded.batch_id, recorded.row_count, recorded.landed) == ("b2", 3, 2)
    assert (recorded.upserts, recorded.deletes, recorded.skipped_duplicates) == (3, 0, 1)


# -- schema evolution -------------------------------------------------------------------------


def test_new_column_is_added_and_a_missing_one_lands_as_null(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1, "a")], seq=1))
    wider = (*COLUMNS, ("price", "DECIMAL(10,2)"))
    priced = {"name": "b", "value": 2, "price": Decimal("3.5")}
    store.land(make_batch("b2", [("2", "upsert", priced)], columns=wider))
    narrower = (("name", "VARCHAR"),)
    store.land(make_batch("b3", [("3", "upsert", {"name": "c"})], columns=narrower, seq=3))

    rows = current(store)
    assert (rows["1"]["value"], rows["1"]["price"]) == (1, None)
    assert str(rows["2"]["price"]) == "3.50"
    assert (rows["3"]["name"], rows["3"]["value"], rows["3"]["price"]) == ("c", None, None)
    # Each batch keeps the exact columns it was sent (and hashed) with.
    sent = {b.batch_id: b.columns for b in store.batches()}
    assert sent == {"b1": COLUMNS, "b2": wider, "b3": narrower}


def test_a_column_changing_type_is_refused(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1)]))
    before = snapshot(store)
    changed = (("name", "VARCHAR"), ("value", "DOUBLE"))
    with pytest.raises(LandingError, match="changed type"):
        store.land(make_batch("b2", [up("2", 2)], columns=changed))
    assert snapshot(store) == before


# -- failures leave nothing ---------------------------------------------------------------------


def test_a_failure_mid_landing_rolls_everything_back(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1)], seq=1, watermark=("value", "1")))
    before = snapshot(store)
    # A new column (ALTER TABLE), a changed record (UPDATE) and a new one, then the INSERT fails
    # on a value the declared type cannot hold: every step before it must be undone.
    wider = (*COLUMNS, ("extra", "BIGINT"))
    bad = make_batch(
        "b2",
        [("1", "upsert", {"name": "x", "value": 5}), ("2", "upsert", {"name": "y", "value": 6})],
        columns=wider,
        seq=2,
        watermark=("value", "6"),
    )
    rows = bad.rows.set_column(
        bad.rows.schema.get_field_index("extra"), "extra", pa.array(["7", "not a number"])
    )
    bad = LandingBatch(**{**bad.__dict__, "rows": rows})
    with pytest.raises(WarehouseError, match="not a number"):
        store.land(bad)
    assert snapshot(store) == before
    assert store.watermarks()[0].value == "1"
    assert store.engine.fetchall("SELECT count(*) FROM duckdb_tables() WHERE temporary") == [(0,)]
    # The store still works afterwards and the same batch id can land once fixed.
    assert store.land(make_batch("b2", [up("2", 6)], seq=2)).status == "landed"


def test_a_batch_repeating_a_key_is_refused_whole(store: OdsStore) -> None:
    with pytest.raises(LandingError, match="repeated"):
        store.land(make_batch("b1", [up("1", 1), up("2", 2), up("1", 3)]))
    assert store.tables() == []
    assert store.batches() == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("_op", "merge", "_op"),
        ("_hash", "ABC", "_hash"),
        ("_seq", 5, "_seq"),
    ],
)
def test_malformed_meta_columns_are_refused(
    store: OdsStore, column: str, value: object, message: str
) -> None:
    batch = make_batch("b1", [up("1", 1), up("2", 2)])
    rows = batch.rows
    i = rows.schema.get_field_index(column)
    values = rows.column(i).to_pylist()
    values[1] = value
    rows = rows.set_column(i, column, pa.array(values, rows.schema.field(i).type))
    with pytest.raises(LandingError, match=message):
        store.land(LandingBatch(**{**batch.__dict__, "rows": rows}))
    assert store.tables() == []


def test_rows_must_match_the_declared_columns() -> None:
    batch = make_batch("b1", [up("1", 1)])
    with pytest.raises(LandingError, match="expected"):
        LandingBatch(**{**batch.__dict__, "rows": batch.rows.drop_columns(["value"])})
    with pytest.raises(LandingError, match="reserved"):
        make_batch("b1", [], columns=(("_HASH", "VARCHAR"),))
    with pytest.raises(LandingError, match="timezone-aware"):
        make_batch("b1", [], received_at=datetime(2024, 1, 1))


# -- names --------------------------------------------------------------------------------------


def test_source_names_differing_only_in_case_are_refused(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1)], source_table="JY_JG"))
    with pytest.raises(LandingError, match="case-insensitive"):
        store.land(make_batch("b2", [up("1", 1)], source_table="jy_jg"))
    with pytest.raises(LandingError, match="case-insensitive"):
        store.land(make_batch("b3", [up("1", 1)], hospital_id="h01"))
    # A column spelled with another case than the table's is a clash too, not a merge.
    recased = (("name", "VARCHAR"), ("VALUE", "BIGINT"))
    with pytest.raises(LandingError, match="case-insensitive"):
        store.land(make_batch("b4", [("2", "upsert", {"name": "n", "VALUE": 2})], columns=recased))
    # Within one batch.
    with pytest.raises(LandingError, match="differ only in case"):
        make_batch("b5", [], columns=(("name", "VARCHAR"), ("Name", "VARCHAR")))
    assert store.tables() == [TABLE]


def test_a_source_table_cannot_take_the_name_of_a_current_view(store: OdsStore) -> None:
    store.land(make_batch("b1", [up("1", 1)], source_table="JY_JG"))
    with pytest.raises(LandingError, match="clashes"):
        store.land(make_batch("b2", [up("1", 1)], source_table="JY_JG__current"))


def test_odd_names_are_quoted(store: OdsStore) -> None:
    columns = (("select", "VARCHAR"), ('we"ird col', "BIGINT"))
    batch = make_batch(
        "b1",
        [("k", "upsert", {"select": "s", 'we"ird col': 1})],
        columns=columns,
        source_table="order",
    )
    assert store.land(batch).ods_table == "H01__LIS__order"
    assert current(store, "H01__LIS__order")["k"]['we"ird col'] == 1


# -- intake state -------------------------------------------------------------------------------


def test_watermarks_follow_the_highest_seq_and_lag_is_measured(store: OdsStore) -> None:
    store.land(make_batch("b2", [up("2", 2)], seq=2, watermark=("value", "2")))
    later = T0 + timedelta(minutes=5)
    store.land(make_batch("b1", [up("1", 1)], seq=1, watermark=("value", "1"), received_at=later))
    (mark,) = store.watermarks()
    assert (mark.column, mark.value, mark.batch_id, mark.seq) == ("value", "2", "b2", 2)

    (lag,) = store.lag(now=T0 + timedelta(hours=1))
    assert (lag.ods_table, lag.batches, lag.last_seq) == (TABLE, 2, 2)
    assert lag.last_received_at == later
    assert lag.lag == timedelta(minutes=55)
    assert lag.max_source_updated_at == datetime(2024, 2, 1)


def test_rejections_are_recorded_newest_first(store: OdsStore) -> None:
    first = store.record_rejection("bad-signature", "sig", hospital_id="H01", received_at=T0)
    second = store.record_rejection("replay", "again", batch_id="b1", remote="10.0.0.9")
    assert second > first
    got = store.rejections(limit=10)
    assert [(r.code, r.batch_id, r.remote) for r in got] == [
        ("replay", "b1", "10.0.0.9"),
        ("bad-signature", None, None),
    ]
    assert got[1].received_at == T0


def test_unknown_table_is_an_error(store: OdsStore) -> None:
    assert store.table_for("H01", "LIS", "JY_JG") is None
    with pytest.raises(WarehouseError, match="no ODS table"):
        store.current_view(TABLE)
    assert store.counts_by_table() == {}


# -- downlink -----------------------------------------------------------------------------------


def test_downlink_queue_and_ack_rules(store: OdsStore) -> None:
    a1 = store.enqueue_downlink("H01", "config", b"\x00signed-1")
    b1 = store.enqueue_downlink("H02", "config", b"signed-2")
    a2 = store.enqueue_downlink("H01", "resend", b"signed-3")
    assert [(m.id, m.body) for m in store.pending_downlink("H01")] == [
        (a1, b"\x00signed-1"),
        (a2, b"signed-3"),
    ]

    with pytest.raises(DownlinkError, match="not addressed"):
        store.ack_downlink("H01", [a1, b1])
    with pytest.raises(DownlinkError, match="unknown"):
        store.ack_downlink("H01", [a1, 10_000])
    assert len(store.pending_downlink("H01")) == 2  # a refused ack acks nothing

    assert store.ack_downlink("H01", [a1]) == 1
    assert store.ack_downlink("H01", [a1]) == 0  # acking again is harmless
    assert [m.id for m in store.pending_downlink("H01")] == [a2]
    assert [m.id for m in store.pending_downlink("H02")] == [b1]


# -- persistence --------------------------------------------------------------------------------


def test_file_backed_store_keeps_everything_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "region.duckdb"
    engine = DuckDBEngine(path)
    store = OdsStore(engine)
    store.land(make_batch("b1", [up("1", 1)], seq=1, watermark=("value", "1")))
    store.land(make_batch("b2", [up("1", 2)], seq=2, watermark=("value", "2")))
    store.record_rejection("bad-hash", "x", batch_id="b9")
    msg = store.enqueue_downlink("H01", "config", b"m")
    before = snapshot(store)
    engine.close()

    reopened = OdsStore(DuckDBEngine(path))
    assert snapshot(reopened) == before
    assert [v["_version"] for v in reopened.history(TABLE, "1")] == [1, 2]
    assert reopened.land(make_batch("b2", [up("1", 2)], seq=2)).status == "duplicate-batch"
    assert reopened.land(make_batch("b3", [up("1", 3)], seq=3)).landed == 1
    assert [m.id for m in reopened.pending_downlink("H01")] == [msg]
    assert reopened.rejections()[0].code == "bad-hash"
    reopened.engine.close()
