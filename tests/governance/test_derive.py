"""Columns governance derives: the ends of a reference range (the mapping's ``range`` step, with
unit conversion), length of stay, and age at the visit re-derived when a birth date changes."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from medfabric.governance.compile import _range_end
from medfabric.governance.derive import ROW_DERIVED, derive_across, derive_rows
from medfabric.warehouse import DuckDBEngine
from medfabric.warehouse.ddl import schema_sql


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("3.9-6.1", 3.9, 6.1),
        ("3.9~6.1", 3.9, 6.1),
        ("3.9 — 6.1", 3.9, 6.1),
        ("-1.0-1.5", -1.0, 1.5),
        ("<5.2", None, 5.2),
        ("≤5.2", None, 5.2),
        ("-150.6", None, 150.6),  # no lower end, as some LIS write it
        (">60", 60.0, None),
        ("≥60", 60.0, None),
        ("38.7-", 38.7, None),  # no upper end
        ("阴性", None, None),
        ("3.9-6.1 mmol/L", None, None),  # not a bare range: no guess
        (None, None, None),
    ],
)
def test_range_ends(text: str | None, low: float | None, high: float | None) -> None:
    engine = DuckDBEngine(":memory:")
    try:
        got = engine.fetchall(
            f"SELECT {_range_end('low', 'x')}, {_range_end('high', 'x')} "
            "FROM (SELECT CAST(? AS VARCHAR) AS x)",
            [text],
        )
    finally:
        engine.close()
    assert got == [(low, high)]


@pytest.fixture
def dwd() -> DuckDBEngine:
    engine = DuckDBEngine(":memory:")
    for stmt in schema_sql():
        engine.execute(stmt)
    return engine


LINEAGE = ("H01", "HIS", "T", "k", None, "b", "0" * 64, "v")


def _person(engine: DuckDBEngine, pid: str, birth: date) -> None:
    engine.execute(
        "INSERT INTO dwd.person (person_id, name, sex_code, birth_date, _source_hospital, "
        "_source_system, _source_table, _source_key, _source_updated_at, _batch_id, "
        "_ods_content_hash, _mapping_version) VALUES (?, '甲', '1', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [pid, birth, *LINEAGE],
    )


def _visit(engine: DuckDBEngine, vid: str, pid: str, kind: str, **at: datetime | None) -> None:
    engine.execute(
        "INSERT INTO dwd.visit (visit_id, person_id, institution_code, visit_type_code, "
        "visit_at, admitted_at, discharged_at, _source_hospital, _source_system, _source_table, "
        "_source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version) "
        "VALUES (?, ?, 'H01', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            vid,
            pid,
            kind,
            at.get("visit") or at.get("admitted"),
            at.get("admitted"),
            at.get("discharged"),
            *LINEAGE,
        ],
    )


def test_length_of_stay_counts_days_with_a_same_day_stay_as_one(dwd: DuckDBEngine) -> None:
    d = datetime
    _visit(dwd, "v1", "p", "3", admitted=d(2025, 3, 1, 22), discharged=d(2025, 3, 5, 9))
    _visit(dwd, "v2", "p", "3", admitted=d(2025, 3, 1, 8), discharged=d(2025, 3, 1, 17))
    _visit(dwd, "v3", "p", "3", admitted=d(2025, 3, 5, 8), discharged=d(2025, 3, 1, 17))
    _visit(dwd, "v4", "p", "3", admitted=d(2025, 3, 5, 8), discharged=None)
    assert "length_of_stay_days" in ROW_DERIVED["visit"]
    derive_rows(dwd, "visit", "dwd.visit")
    got = dict(dwd.fetchall("SELECT visit_id, length_of_stay_days FROM dwd.visit"))
    assert got == {"v1": 4, "v2": 1, "v3": None, "v4": None}  # v3: discharge before admission


def test_age_at_the_visit_follows_a_corrected_birth_date(dwd: DuckDBEngine) -> None:
    _person(dwd, "p1", date(1980, 6, 15))
    _visit(dwd, "v1", "p1", "1", visit=datetime(2025, 6, 14, 9))  # the day before the birthday
    _visit(dwd, "v2", "p1", "1", visit=datetime(2025, 6, 15, 9))
    _visit(dwd, "v3", "p1", "3", admitted=datetime(2025, 6, 20), visit=datetime(2024, 1, 1))
    _visit(dwd, "v4", "nobody", "1", visit=datetime(2025, 6, 15, 9))
    assert derive_across(dwd) == 3
    ages = dict(dwd.fetchall("SELECT visit_id, age_years FROM dwd.visit"))
    assert ages == {"v1": 44, "v2": 45, "v3": 45, "v4": None}
    assert derive_across(dwd) == 0  # nothing differs: nothing written
    dwd.execute("UPDATE dwd.person SET birth_date = DATE '2030-01-01'")  # after every visit
    assert derive_across(dwd) == 3
    assert {a for (a,) in dwd.fetchall("SELECT age_years FROM dwd.visit")} == {None}
