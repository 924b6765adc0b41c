"""The SQL canonical encoder against the Python one: golden vectors, random rows, refusals.

Every test builds an Arrow batch table with the meta columns of docs/canonical.md §15, runs
the SQL of ``records.sqlcanon`` in an in-memory DuckDB and compares each row's bytes and hash
with ``canonical_bytes`` / ``content_hash`` of the same values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.records import make_golden

from medfabric.records import (
    CanonicalRecord,
    RecordError,
    Value,
    canonical_bytes,
    content_hash,
    from_dict,
)
from medfabric.records.sqlcanon import (
    COLUMN_KINDS,
    META_COLUMNS,
    ColumnKind,
    hash_sql,
    kind_of_duckdb_type,
    local_key_sql,
    local_key_text,
    record_sql,
)

GOLDEN: dict[str, Any] = json.loads(make_golden.GOLDEN.read_text(encoding="utf-8"))
EXTRACTED = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
INT64 = (-(2**63), 2**63 - 1)
Row = dict[str, Any]

# --- building and running a batch -------------------------------------------------------------


def _arrow_type(kind: ColumnKind, values: Sequence[Value]) -> pa.DataType:
    if kind == "decimal":
        exps = [v.as_tuple().exponent for v in values if isinstance(v, Decimal)]
        scale = max([0, *(-e for e in exps if isinstance(e, int))])
        return pa.decimal128(38, scale)
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


def _batch(
    rows: Sequence[Row], columns: Sequence[tuple[str, ColumnKind]], *, aware_updated: bool = False
) -> pa.Table:
    """An Arrow batch table; integers beyond int64 travel as text (cast in :func:`_run`)."""
    updated_type = pa.timestamp("us", tz="UTC") if aware_updated else pa.timestamp("us")
    meta: dict[str, pa.Array] = {
        "_seq": pa.array(range(len(rows)), pa.int64()),
        "_local_key": pa.array([r["local_key"] for r in rows], pa.string()),
        "_op": pa.array([r["op"] for r in rows], pa.string()),
        "_has_payload": pa.array([r["has_payload"] for r in rows], pa.bool_()),
        "_source_updated_at": pa.array([r["updated"] for r in rows], updated_type),
        "_extracted_at": pa.array([EXTRACTED] * len(rows), pa.timestamp("us", tz="UTC")),
        "_hash": pa.array([""] * len(rows), pa.string()),
    }
    for name, kind in columns:
        values = [r["payload"].get(name) for r in rows]
        if kind == "integer" and any(
            isinstance(v, int) and not INT64[0] <= v <= INT64[1] for v in values
        ):
            meta[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        else:
            meta[name] = pa.array(values, _arrow_type(kind, values))
    return pa.table(meta)


def _run(
    con: duckdb.DuckDBPyConnection,
    table: pa.Table,
    columns: Sequence[tuple[str, ColumnKind]],
    *,
    hospital_id: str = "H01",
    system: str = "LIS",
    source_table: str = "JY_JG",
    aware_updated: bool = False,
) -> list[tuple[str, str]]:
    con.register("arrow_batch", table)
    casts = [
        f'CAST("{name}" AS HUGEINT) AS "{name}"'
        for name, kind in columns
        if kind == "integer" and pa.types.is_string(table.schema.field(name).type)
    ]
    replace = f" REPLACE ({', '.join(casts)})" if casts else ""
    con.execute(f"CREATE OR REPLACE TEMP VIEW batch AS SELECT *{replace} FROM arrow_batch")
    args: dict[str, Any] = {"hospital_id": hospital_id, "system": system, "table": source_table}
    if aware_updated:
        args["updated_kind"] = "datetime_tz"
    rec, digest = record_sql(**args, columns=columns), hash_sql(**args, columns=columns)
    result = con.execute(f"SELECT {rec}, {digest} FROM batch ORDER BY _seq").fetchall()
    return [(r[0], r[1]) for r in result]


def _record(row: Row, *, hospital_id: str = "H01", table: str = "JY_JG") -> CanonicalRecord:
    return CanonicalRecord(
        hospital_id=hospital_id,
        system="LIS",
        table=table,
        local_key=row["local_key"],
        op=row["op"],
        source_updated_at=row["updated"],
        extracted_at=EXTRACTED,
        payload=row["payload"] if row["has_payload"] else {},
    )


def _check(
    rows: Sequence[Row],
    columns: Sequence[tuple[str, ColumnKind]],
    *,
    hospital_id: str = "H01",
    table: str = "JY_JG",
) -> None:
    con = duckdb.connect()
    got = _run(con, _batch(rows, columns), columns, hospital_id=hospital_id, source_table=table)
    for row, (text, digest) in zip(rows, got, strict=True):
        record = _record(row, hospital_id=hospital_id, table=table)
        assert text.encode("utf-8") == canonical_bytes(record)
        assert digest == content_hash(record)


def _row(payload: dict[str, Value], **fields: Any) -> Row:
    return {
        "local_key": "K1",
        "op": "upsert",
        "has_payload": True,
        "updated": datetime(2025, 2, 28, 16, 45, 12),
        "payload": payload,
    } | fields


# --- golden vectors ---------------------------------------------------------------------------

_KIND_OF_TYPE: dict[type, ColumnKind] = {
    type(None): "string",
    bool: "boolean",
    int: "integer",
    float: "float",
    Decimal: "decimal",
    str: "string",
    bytes: "bytes",
    date: "date",
}


def _kind_of_value(value: Value) -> ColumnKind:
    if isinstance(value, datetime):
        return "datetime" if value.tzinfo is None else "datetime_tz"
    return _KIND_OF_TYPE[type(value)]


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=lambda v: v["name"])
def test_golden_vector_reproduced_in_sql(vector: dict[str, Any]) -> None:
    record = from_dict(vector["input"])
    columns = [(name, _kind_of_value(value)) for name, value in record.payload.items()]
    row = {
        "local_key": record.local_key,
        "op": record.op,
        "has_payload": bool(record.payload) or record.op == "upsert",
        "updated": record.source_updated_at,
        "payload": dict(record.payload),
    }
    # The batch format's _source_updated_at is naive; a source with aware change times needs
    # the TIMESTAMPTZ variant (vector aware-datetimes).
    aware = record.source_updated_at is not None and record.source_updated_at.tzinfo is not None
    con = duckdb.connect()
    table = _batch([row], columns, aware_updated=aware)
    [(text, digest)] = _run(
        con, table, columns, hospital_id=record.hospital_id, system=record.system,
        source_table=record.table, aware_updated=aware,
    )  # fmt: skip
    assert text == vector["canonical"]
    assert text.encode("utf-8").hex() == vector["canonical_hex"]
    assert digest == vector["sha256"]


# --- random rows ------------------------------------------------------------------------------

# Names chosen for their order: code point versus UTF-16 (ｘ, 𠀾), case, CJK, quotes.
NAMES = ["𠀾", "ｘ", "a", "B", "姓名", "q'uo\"te", "back\\slash", "z"]
OFFSETS = [timedelta(0), timedelta(hours=8), timedelta(hours=-4, minutes=-30)]
OFFSETS += [timedelta(hours=5, minutes=45), timedelta(hours=14), timedelta(hours=-12)]
OFFSETS += [timedelta(hours=1, seconds=30)]

_text = st.lists(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(["\x00", "\x0b", "\x0e", "\x1a", "\x1f", "\x7f", '"', "\\", "林", "𠀾"]),
        st.sampled_from(["\u2028", "\ufeff", "\\u000B", "\\u00", "/", "\n", "\t", "主诉："]),
    ),
    max_size=10,
).map("".join)
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [-0.0, 0.0, 1e16, 9999999999999998.0, 1e-4, 1e-5, 5e-324, 1.7976931348623157e308]
    ),
)
_naive = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
_aware = st.builds(
    lambda d, offset: d.replace(tzinfo=timezone(offset)),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.sampled_from(OFFSETS),
)


def _decimals(scale: int) -> st.SearchStrategy[Decimal]:
    return st.integers(-(10**20), 10**20).map(lambda i: Decimal(i).scaleb(-scale))


_VALUES: dict[ColumnKind, st.SearchStrategy[Any]] = {
    "string": _text,
    "integer": st.integers(*INT64),
    "float": _floats,
    "boolean": st.booleans(),
    "bytes": st.binary(max_size=10),
    "date": st.dates(),
    "datetime": _naive,
    "datetime_tz": _aware,
}


@st.composite
def _batches(draw: st.DrawFn) -> tuple[list[Row], list[tuple[str, ColumnKind]]]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    columns: list[tuple[str, ColumnKind]] = [
        (name, draw(st.sampled_from(COLUMN_KINDS))) for name in names
    ]
    scales = {name: draw(st.integers(0, 8)) for name, _ in columns}
    rows: list[Row] = []
    for _ in range(draw(st.integers(1, 6))):
        hard_delete = draw(st.booleans()) and draw(st.booleans())
        payload: dict[str, Value] = {}
        for name, kind in columns:
            values = _decimals(scales[name]) if kind == "decimal" else _VALUES[kind]
            payload[name] = None if hard_delete else draw(st.none() | values)
        rows.append(
            {
                "local_key": draw(_text.filter(bool)),
                "op": "delete" if hard_delete else draw(st.sampled_from(["upsert", "delete"])),
                "has_payload": not hard_delete,
                "updated": draw(st.none() | _naive),
                "payload": payload,
            }
        )
    return rows, columns


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_random_rows_match_python(batch: tuple[list[Row], list[tuple[str, ColumnKind]]]) -> None:
    rows, columns = batch
    _check(rows, columns)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1))
def test_float32_columns_are_widened_to_double(values: list[float]) -> None:
    # The Python value of a FLOAT column is the double it widens to.
    con = duckdb.connect()
    rows = [_row({"R": v}) for v in values]
    table = _batch(rows, [("R", "float")]).set_column(7, "R", pa.array(values, pa.float32()))
    got = _run(con, table, [("R", "float")])
    assert [t for t, _ in got] == [canonical_bytes(_record(r)).decode() for r in rows]


def test_double_text_is_python_repr_at_the_thresholds() -> None:
    values = [-0.0, 0.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 5e-324, 2.5e-7, 0.1]
    values += [1.7976931348623157e308, 123456789.125, 1 / 3, -1e22, 2.0**53, 2.0**-1074]
    con = duckdb.connect()
    table = pa.table({"x": pa.array(values, pa.float64())})
    con.register("t", table)
    texts = [r[0] for r in con.execute("SELECT CAST(x AS VARCHAR) FROM t").fetchall()]
    assert texts == [repr(v) for v in values]


def test_session_time_zone_does_not_matter() -> None:
    columns: list[tuple[str, ColumnKind]] = [("T", "datetime_tz"), ("N", "datetime")]
    rows = [
        _row({"T": datetime(2025, 1, 1, 3, 0, 0, 5, tzinfo=timezone(timedelta(hours=8))),
              "N": datetime(2025, 1, 1, 3, 0)}),
        _row({"T": datetime(1, 1, 1, 12, tzinfo=UTC), "N": datetime(9999, 12, 31, 23, 59, 59)}),
    ]  # fmt: skip
    for zone in ("Asia/Shanghai", "America/St_Johns", "UTC"):
        con = duckdb.connect()
        con.execute(f"SET TimeZone = '{zone}'")
        got = _run(con, _batch(rows, columns), columns)
        assert [t.encode() for t, _ in got] == [canonical_bytes(_record(r)) for r in rows]


def test_hard_delete_and_empty_payload() -> None:
    columns: list[tuple[str, ColumnKind]] = [("A", "string"), ("B", "integer")]
    rows = [
        _row({"A": None, "B": None}, op="delete", has_payload=False, updated=None),
        _row({"A": None, "B": None}, op="delete"),
        _row({"A": "", "B": 0}),
    ]
    _check(rows, columns)
    _check([_row({}, op="delete", has_payload=False)], [])
    _check([_row({})], [])


def test_names_with_quotes_and_chinese() -> None:
    _check(
        [_row({"名字": "林秀英"})],
        [("名字", "string")],
        hospital_id="H'01\"",
        table="表\"名'",
    )


def test_decimal_scales_and_big_integers() -> None:
    decimals = [
        "1.50",
        "-0.05",
        "100.00",
        "0.000",
        "-12.3400",
        "0.000120",
        "99999999999999999999.9",
    ]
    rows = [_row({"D": Decimal(d), "I": 2**64 + 1}) for d in decimals]
    _check(rows, [("D", "decimal"), ("I", "integer")])


# --- refusals ---------------------------------------------------------------------------------


def _fails(
    rows: Sequence[Row], columns: Sequence[tuple[str, ColumnKind]], table: pa.Table | None = None
) -> str:
    con = duckdb.connect()
    with pytest.raises(duckdb.Error) as info:
        _run(con, table if table is not None else _batch(rows, columns), columns)
    return str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_fails_the_query_naming_the_column(value: float) -> None:
    message = _fails([_row({"VALUE_X": value})], [("VALUE_X", "float")])
    assert "VALUE_X" in message and "row _seq 0" in message
    assert "nan" not in message.lower().replace("nan or", "") and "inf " not in message


@pytest.mark.parametrize(
    ("kind", "sql_value"),
    [
        ("date", "DATE '0001-01-01' - INTERVAL 1 DAY"),
        ("date", "DATE '10000-01-01'"),
        ("date", "'infinity'::DATE"),
        ("datetime", "TIMESTAMP '10000-01-01 00:00:00'"),
        ("datetime", "TIMESTAMP '0001-01-01 00:00:00' - INTERVAL 1 SECOND"),
        ("datetime", "'-infinity'::TIMESTAMP"),
        ("datetime_tz", "TIMESTAMPTZ '0001-01-01 00:00:00+01:00'"),
        ("datetime_tz", "TIMESTAMPTZ '9999-12-31 23:00:00-02:00'"),
    ],
)
def test_out_of_range_years_fail_the_query(kind: ColumnKind, sql_value: str) -> None:
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE batch AS SELECT 0::BIGINT _seq, 'K' _local_key, 'upsert' _op, "
        f"true _has_payload, NULL::TIMESTAMP _source_updated_at, now() _extracted_at, "
        f"'' _hash, ({sql_value})::{_SQL_TYPES[kind]} AS \"SEEN_AT\""
    )
    sql = record_sql(hospital_id="H01", system="LIS", table="T", columns=[("SEEN_AT", kind)])
    with pytest.raises(duckdb.Error, match=r"SEEN_AT.*outside years 0001-9999"):
        con.execute(f"SELECT {sql} FROM batch").fetchall()


_SQL_TYPES = {"date": "DATE", "datetime": "TIMESTAMP", "datetime_tz": "TIMESTAMPTZ"}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"local_key": None}, "_local_key is NULL or empty"),
        ({"local_key": ""}, "_local_key is NULL or empty"),
        ({"op": "merge"}, "_op is not upsert or delete"),
        ({"op": None}, "_op is not upsert or delete"),
        ({"has_payload": None}, "_has_payload"),
        ({"has_payload": False}, "_has_payload"),
    ],
)
def test_bad_meta_columns_fail_the_query(fields: dict[str, Any], match: str) -> None:
    assert match in _fails([_row({"A": "x"}, **fields)], [("A", "string")])


def test_source_updated_at_out_of_range_fails() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE batch AS SELECT 0::BIGINT _seq, 'K' _local_key, 'delete' _op, "
        "false _has_payload, TIMESTAMP '10000-01-01' _source_updated_at"
    )
    sql = record_sql(hospital_id="H01", system="LIS", table="T", columns=[])
    with pytest.raises(duckdb.Error, match="_source_updated_at: datetime outside"):
        con.execute(f"SELECT {sql} FROM batch").fetchall()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"system": "RIS"}, "unknown system"),
        ({"hospital_id": ""}, "hospital_id must not be empty"),
        ({"table": ""}, "table must not be empty"),
        ({"columns": [("A", "time")]}, "kind 'time'"),
        ({"updated_kind": "date"}, "updated_kind must be datetime or datetime_tz"),
        ({"columns": [("A", "string"), ("A", "integer")]}, "appears twice"),
        ({"columns": [("Ab", "string"), ("aB", "integer")]}, "appears twice"),
        ({"columns": [("_SEQ", "string")]}, "meta column"),
        ({"columns": [("", "string")]}, "must not be empty"),
        ({"columns": [("a\x00", "string")]}, r"U\+0000"),
        ({"columns": [("\ud800", "string")]}, "surrogate"),
        ({"columns": "A"}, "sequence of"),
        ({"columns": [["A", "string"]]}, "not a \\(name, kind\\) pair"),
    ],
)
def test_record_sql_refuses_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"hospital_id": "H01", "system": "LIS", "table": "T", "columns": []}
    with pytest.raises(RecordError, match=match):
        record_sql(**(args | kwargs))
    with pytest.raises(RecordError, match=match):
        hash_sql(**(args | kwargs))


def test_meta_columns_are_the_interface_order() -> None:
    assert _batch([_row({})], []).column_names == list(META_COLUMNS)


# --- local keys -------------------------------------------------------------------------------


def _local_keys(
    key_columns: list[tuple[str, ColumnKind]], rows: list[tuple[Any, ...]]
) -> list[str]:
    con = duckdb.connect()
    arrays = {"_seq": pa.array(range(len(rows)), pa.int64())}
    for i, (name, kind) in enumerate(key_columns):
        arrow_type = pa.int64() if kind == "integer" else pa.string()
        arrays[name] = pa.array([r[i] for r in rows], arrow_type)
    con.register("keys", pa.table(arrays))
    sql = local_key_sql(key_columns)
    return [r[0] for r in con.execute(f"SELECT {sql} FROM keys ORDER BY _seq").fetchall()]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["string", "integer"]), min_size=1, max_size=3).flatmap(
        lambda kinds: st.tuples(
            st.just(kinds),
            st.lists(
                st.tuples(
                    *[_text.filter(bool) if k == "string" else st.integers(*INT64) for k in kinds]
                ),
                min_size=1,
                max_size=4,
            ),
        )
    )
)
def test_local_key_sql_matches_python(case: tuple[list[ColumnKind], list[tuple[Any, ...]]]) -> None:
    kinds, rows = case
    key_columns = [(f"K{i}", kind) for i, kind in enumerate(kinds)]
    assert _local_keys(key_columns, rows) == [local_key_text(list(r)) for r in rows]


def test_local_key_text_forms() -> None:
    assert local_key_text(["P000000123"]) == "P000000123"
    assert local_key_text([42]) == "42"
    assert local_key_text(["H01", 42]) == '["H01","42"]'
    assert local_key_text(['a"b', "", "\x0b林"]) == '["a\\"b","","\\u000b林"]'


@pytest.mark.parametrize(
    "values", [[], [""], [True], [1.0], [b"x"], ["\ud800"], [10**1000], "abc", [None]]
)
def test_local_key_text_refuses(values: Any) -> None:
    with pytest.raises(RecordError):
        local_key_text(values)


@pytest.mark.parametrize(
    ("key_columns", "row", "match"),
    [
        ([("K", "string")], (None,), "key column 'K' is NULL"),
        ([("K", "string")], ("",), "key column 'K' is NULL or empty"),
        ([("K", "integer")], (None,), "key column 'K' is NULL"),
        ([("K", "string"), ("L", "integer")], ("a", None), "key column 'L' is NULL"),
    ],
)
def test_local_key_sql_fails_on_null_parts(
    key_columns: list[tuple[str, ColumnKind]], row: tuple[Any, ...], match: str
) -> None:
    with pytest.raises(duckdb.Error, match=match):
        _local_keys(key_columns, [row])


@pytest.mark.parametrize(
    "key_columns", [[], [("K", "float")], [("K", "date")], [("K", "string"), ("k", "string")]]
)
def test_local_key_sql_refuses_bad_columns(key_columns: list[tuple[str, ColumnKind]]) -> None:
    with pytest.raises(RecordError):
        local_key_sql(key_columns)


# --- DuckDB types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql_type", "kind"),
    [
        ("VARCHAR", "string"),
        ("varchar(20)", "string"),
        ("TINYINT", "integer"),
        ("BIGINT", "integer"),
        ("HUGEINT", "integer"),
        ("UBIGINT", "integer"),
        ("DOUBLE", "float"),
        ("FLOAT", "float"),
        ("DECIMAL(18,3)", "decimal"),
        ("DECIMAL(38,10)", "decimal"),
        ("decimal", "decimal"),
        ("BOOLEAN", "boolean"),
        ("BLOB", "bytes"),
        ("DATE", "date"),
        ("TIMESTAMP", "datetime"),
        ("TIMESTAMP_MS", "datetime"),
        ("TIMESTAMP WITH TIME ZONE", "datetime_tz"),
        (" timestamptz ", "datetime_tz"),
    ],
)
def test_kind_of_duckdb_type(sql_type: str, kind: ColumnKind) -> None:
    assert kind_of_duckdb_type(sql_type) == kind


@pytest.mark.parametrize(
    "sql_type",
    ["TIME", "INTERVAL", "UUID", "TIMESTAMP_NS", "INTEGER[]", "STRUCT(a INTEGER)", "JSON",
     "DECIMAL(39,2)", "DECIMAL(5,6)", "MAP(VARCHAR, INTEGER)", "BIT", "TIME WITH TIME ZONE"],
)  # fmt: skip
def test_kind_of_duckdb_type_refuses(sql_type: str) -> None:
    with pytest.raises(RecordError, match="no canonical value kind"):
        kind_of_duckdb_type(sql_type)


def test_kind_of_duckdb_type_matches_what_duckdb_reports() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (a VARCHAR, b INTEGER, c DOUBLE, d DECIMAL(12,2), e BOOLEAN, f BLOB, "
        "g DATE, h TIMESTAMP, i TIMESTAMPTZ, j REAL, k HUGEINT, l SMALLINT)"
    )
    kinds = [kind_of_duckdb_type(t) for _, t, *_ in con.execute("DESCRIBE t").fetchall()]
    assert kinds == [*COLUMN_KINDS, "float", "integer", "integer"]


def test_sha256_is_of_the_utf8_bytes() -> None:
    con = duckdb.connect()
    [(digest,)] = con.execute("SELECT sha256('林𠀾')").fetchall()
    assert digest == hashlib.sha256("林𠀾".encode()).hexdigest()
