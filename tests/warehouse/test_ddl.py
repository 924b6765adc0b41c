"""The DWD DDL generated from the catalog runs in DuckDB and enforces what the elements say."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import duckdb
import pytest
from tests.warehouse import make_ddl_golden

from medfabric.standards.elements import DataElement, data_elements
from medfabric.standards.model import dwd_model
from medfabric.warehouse.ddl import DdlError, column_type, schema_script, schema_sql


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(":memory:")
    for stmt in schema_sql():
        c.execute(stmt)
    yield c
    c.close()


def _insert(con: duckdb.DuckDBPyConnection, table: str, **values: object) -> None:
    lineage = {
        "_source_hospital": "H001",
        "_source_system": "HIS",
        "_source_table": "PAT_VITAL",
        "_source_key": "k1",
        "_batch_id": "b1",
        "_ods_content_hash": "0" * 64,
        "_mapping_version": "t1",
    }
    row = {**lineage, **values}
    cols = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join("?" for _ in row)
    con.execute(f'INSERT INTO dwd."{table}" ({cols}) VALUES ({marks})', list(row.values()))


def _vital(con: duckdb.DuckDBPyConnection, **values: object) -> None:
    base = {"vital_sign_id": "v1", "person_id": "p1", "measured_at": "2025-03-01 08:00:00"}
    _insert(con, "vital_sign", **{**base, **values})


def test_schema_creates_every_table_with_every_column(con: duckdb.DuckDBPyConnection) -> None:
    got = con.execute(
        "SELECT table_name, count(*) FROM duckdb_columns() WHERE schema_name = 'dwd' GROUP BY 1"
    ).fetchall()
    assert dict(got) == {name: len(t.columns) for name, t in dwd_model().tables.items()}


def test_schema_is_idempotent(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in schema_sql():
        con.execute(stmt)


def test_comments_carry_names_and_identifiers(con: duckdb.DuckDBPyConnection) -> None:
    (table_comment,) = con.execute(
        "SELECT comment FROM duckdb_tables() "
        "WHERE schema_name = 'dwd' AND table_name = 'lab_result'"
    ).fetchone() or (None,)
    assert table_comment is not None and "A0402 检验结果" in table_comment
    (col_comment,) = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE schema_name = 'dwd' "
        "AND table_name = 'lab_result' AND column_name = 'lab_report_id'"
    ).fetchone() or (None,)
    assert (
        col_comment
        == "检验报告标识 / Lab report identifier [DE99.09.001.00] → lab_report.lab_report_id"
    )


def test_valid_row_is_accepted(con: duckdb.DuckDBPyConnection) -> None:
    _vital(con, body_temperature=Decimal("36.5"), systolic_bp=120)
    assert con.execute('SELECT body_temperature FROM dwd."vital_sign"').fetchone() == (
        Decimal("36.5"),
    )


def test_missing_required_value_is_rejected(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        _vital(con, measured_at=None)


def test_missing_lineage_is_rejected(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        _vital(con, _ods_content_hash=None)


def test_too_long_string_is_rejected(con: duckdb.DuckDBPyConnection) -> None:
    _insert(con, "person", person_id="p1", name="王" * 50, sex_code="1")
    with pytest.raises(duckdb.ConstraintException, match="CHECK"):
        _insert(con, "person", person_id="p2", name="王" * 51, sex_code="1")


def test_fixed_length_string_is_enforced(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConstraintException, match="CHECK"):
        _insert(con, "person", person_id="p1", name="王", sex_code="12")


def test_wrong_type_is_rejected(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConversionException):
        _vital(con, measured_at="yesterday")
    with pytest.raises(duckdb.ConversionException):
        _vital(con, systolic_bp="high")


def test_duplicate_primary_key_is_rejected(con: duckdb.DuckDBPyConnection) -> None:
    _vital(con)
    with pytest.raises(duckdb.ConstraintException, match=r"[Dd]uplicate key"):
        _vital(con)


def test_composite_primary_key(con: duckdb.DuckDBPyConnection) -> None:
    _insert(
        con, "department", institution_code="H001", department_code="D1", department_name="内科"
    )
    _insert(
        con, "department", institution_code="H002", department_code="D1", department_name="内科"
    )
    with pytest.raises(duckdb.ConstraintException):
        _insert(
            con, "department", institution_code="H001", department_code="D1", department_name="外科"
        )


def test_decimal_precision_is_as_declared(con: duckdb.DuckDBPyConnection) -> None:
    types = dict(
        con.execute(
            "SELECT table_name || '.' || column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'dwd'"
        ).fetchall()
    )
    assert types["vital_sign.body_temperature"] == "DECIMAL(4,1)"  # N4,1
    assert types["lab_result.value_numeric"] == "DECIMAL(14,4)"  # N..14,4
    assert types["charge.amount"] == "DECIMAL(12,2)"  # N..12,2
    assert types["imaging_study.data_size"] == "BIGINT"  # N..14
    assert types["vital_sign.systolic_bp"] == "INTEGER"  # N..3
    assert types["person.birth_date"] == "DATE"
    assert types["lab_report.mutual_recognition_flag"] == "BOOLEAN"
    # N4,1 holds 999.9 at most: DuckDB refuses a value needing more integer digits.
    with pytest.raises(duckdb.ConversionException):
        _vital(con, body_temperature=Decimal("1000.0"))


def _element(data_type: str, fmt: str) -> DataElement:
    base = data_elements()["DE99.10.005.00"]
    return DataElement(
        base.identifier, "x", "x", "x", data_type, fmt, None, "none", None, base.source
    )


@pytest.mark.parametrize(
    ("data_type", "fmt", "expected"),
    [
        ("N", "N5,2", "DECIMAL(5,2)"),
        ("N", "N..9", "INTEGER"),
        ("N", "N10", "BIGINT"),
        ("N", "N..18", "BIGINT"),
        ("N", "N..20", "DECIMAL(20,0)"),
        ("T", "T6", "TIME"),
        ("BY", "BY", "BLOB"),
        ("DT", "DT15", "TIMESTAMP"),
        ("S2", "N1", "VARCHAR"),
    ],
)
def test_type_mapping(data_type: str, fmt: str, expected: str) -> None:
    assert column_type(_element(data_type, fmt)) == expected


def test_unmappable_format_is_an_error() -> None:
    with pytest.raises(DdlError, match="numeric format"):
        column_type(_element("N", "N..x"))
    with pytest.raises(DdlError, match="exceed"):
        column_type(_element("N", "N..40"))


def test_golden_file_is_what_the_generator_renders() -> None:
    assert make_ddl_golden.GOLDEN.read_bytes() == schema_script().encode("utf-8"), (
        "DWD DDL changed; review and run tests/warehouse/make_ddl_golden.py --rewrite"
    )


def test_golden_script_runs_as_one_script() -> None:
    c = duckdb.connect(":memory:")
    c.execute(make_ddl_golden.GOLDEN.read_text(encoding="utf-8"))
    assert c.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'dwd'"
    ).fetchone() == (15,)
