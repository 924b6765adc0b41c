"""ADS themes over the governed simulated region: figures against independent computations from
DWD, incremental refresh equal to a full rebuild after inserts, moves and deletes, idempotence,
the conditions file's checks, and the CLI."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.governance.regionkit import GovernedRegion, copy_warehouse
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.governance.ads import (
    AdsError,
    headline,
    load_conditions,
    models,
    refresh_ads,
    theme_tables,
)
from medfabric.governance.ads.spec import load_model
from medfabric.warehouse import DuckDBEngine


@pytest.fixture
def engine(engine: DuckDBEngine) -> DuckDBEngine:
    """A refreshed copy of the governed warehouse."""
    refresh_ads(engine)
    return engine


def _dicts(e: DuckDBEngine, sql: str) -> list[dict[str, Any]]:
    return list(e.fetch_arrow(sql).to_pylist())


def _minutes(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds() / 60


# --- operations ----------------------------------------------------------------------------------


def test_visits_per_day_equal_a_count_over_dwd_visits(engine: DuckDBEngine) -> None:
    expected = Counter(
        (r["institution_code"], r["visit_at"].date(), r["department_code"],
         r["standard_department_code"], r["visit_type_code"])
        for r in _dicts(engine, "SELECT * FROM dwd.visit")
    )  # fmt: skip
    got = {
        (r["institution_code"], r["visit_date"], r["department_code"],
         r["standard_department_code"], r["visit_type_code"]): r["visits"]
        for r in _dicts(engine, "SELECT * FROM ads.visits_daily")
    }  # fmt: skip
    assert got == dict(expected)
    assert sum(got.values()) > 1000 and len({k[0] for k in got}) == 3


def _stay_days(v: dict[str, Any]) -> int | None:
    if v["length_of_stay_days"] is not None:
        return int(v["length_of_stay_days"])
    if v["admitted_at"] is None:
        return None
    days = (v["discharged_at"].date() - v["admitted_at"].date()).days
    return -1 if days < 0 else max(days, 1)


def test_length_of_stay_and_discharges_per_month(engine: DuckDBEngine) -> None:
    stays: dict[tuple[str, date], list[int | None]] = defaultdict(list)
    for v in _dicts(engine, "SELECT * FROM dwd.visit WHERE discharged_at IS NOT NULL"):
        month = v["discharged_at"].date().replace(day=1)
        stays[(v["institution_code"], month)].append(_stay_days(v))
    rows = _dicts(engine, "SELECT * FROM ads.inpatient_monthly WHERE level = 'hospital'")
    assert len(rows) == len(stays) > 0
    for r in rows:
        los = stays[(r["institution_code"], r["month"])]
        measured = [d for d in los if d is not None and d >= 0]
        assert r["discharges"] == len(los)
        assert r["negative_stays"] == sum(1 for d in los if d is not None and d < 0)
        assert r["los_days_total"] == sum(measured)
        if measured:
            assert r["avg_los_days"] == pytest.approx(sum(measured) / len(measured), abs=0.0051)
        # The simulated region records no beds: turnover is said to be unavailable.
        assert r["beds"] is None and r["beds_source"] == "not available"
    per_department = engine.fetchall(
        "SELECT institution_code, month, sum(discharges) FROM ads.inpatient_monthly "
        "WHERE level = 'department' GROUP BY ALL"
    )
    assert {(h, m): n for h, m, n in per_department} == {k: len(v) for k, v in stays.items()}


def test_bed_turnover_uses_open_beds_then_approved_beds(engine: DuckDBEngine) -> None:
    h, dept, month, n = engine.fetchall(
        "SELECT institution_code, department_code, month, discharges FROM ads.inpatient_monthly "
        "WHERE level = 'department' AND department_code IS NOT NULL ORDER BY discharges DESC "
        "LIMIT 1"
    )[0]
    engine.execute(
        "UPDATE dwd.department SET open_beds = 20 WHERE institution_code = ? AND "
        "department_code = ?",
        [h, dept],
    )
    refresh_ads(engine)
    row = _dicts(
        engine,
        f"SELECT * FROM ads.inpatient_monthly WHERE institution_code = '{h}' AND "
        f"department_code = '{dept}' AND month = DATE '{month}'",
    )[0]
    assert row["beds"] == 20 and row["beds_source"] == "dwd.department.open_beds"
    assert row["bed_turnover"] == pytest.approx(n / 20, abs=0.001)
    hospital = _dicts(
        engine,
        f"SELECT * FROM ads.inpatient_monthly WHERE institution_code = '{h}' AND "
        f"level = 'hospital' AND month = DATE '{month}'",
    )[0]
    assert hospital["beds_source"] == "sum of dwd.department.open_beds"
    engine.execute(
        "INSERT INTO dwd.institution (institution_code, institution_name, approved_beds, "
        "_source_hospital, _source_system, _source_table, _source_key, _batch_id, "
        "_ods_content_hash, _mapping_version) VALUES (?, 'x', 500, ?, 'HIS', 'T', 'k', 'b', "
        "repeat('0', 64), 't')",
        [h, h],
    )
    refresh_ads(engine)
    hospital = _dicts(
        engine,
        f"SELECT * FROM ads.inpatient_monthly WHERE institution_code = '{h}' AND "
        f"level = 'hospital' AND month = DATE '{month}'",
    )[0]
    assert hospital["beds"] == 500 and hospital["beds_source"] == "dwd.institution.approved_beds"
    assert hospital["bed_turnover"] == pytest.approx(hospital["discharges"] / 500, abs=0.001)


def _quantiles(values: list[float]) -> tuple[float, float]:
    """Median and 90th percentile by linear interpolation (DuckDB's quantile_cont)."""
    s = sorted(values)
    if len(s) == 1:
        return s[0], s[0]
    return statistics.median(s), statistics.quantiles(s, n=10, method="inclusive")[8]


def test_lab_volumes_and_turnaround_equal_python_over_dwd(engine: DuckDBEngine) -> None:
    groups: dict[tuple[str, date, str | None], list[dict[str, Any]]] = defaultdict(list)
    for r in _dicts(engine, "SELECT * FROM dwd.lab_report"):
        groups[(r["institution_code"], r["reported_at"].date(), r["panel_code"])].append(r)
    rows = _dicts(engine, "SELECT * FROM ads.lab_daily")
    assert len(rows) == len(groups) and sum(r["reports"] for r in rows) > 1000
    checked = 0
    for row in rows:
        reports = groups[(row["institution_code"], row["report_date"], row["panel_code"])]
        assert row["reports"] == len(reports)
        tat = [_minutes(r["collected_at"], r["reported_at"]) for r in reports]
        ok = [t for t in tat if t is not None and t >= 0]
        if ok:
            median, p90 = _quantiles(ok)
            assert float(row["tat_collected_median_min"]) == pytest.approx(median, abs=0.051)
            assert float(row["tat_collected_p90_min"]) == pytest.approx(p90, abs=0.051)
            checked += 1
        req = [_minutes(r["requested_at"], r["reported_at"]) for r in reports]
        ok = [t for t in req if t is not None and t >= 0]
        if ok:
            assert float(row["tat_requested_median_min"]) == pytest.approx(
                _quantiles(ok)[0], abs=0.051
            )
    assert checked > 100


def test_exam_volumes_and_turnaround_by_modality(engine: DuckDBEngine) -> None:
    groups: dict[tuple[str, date, str | None], list[float]] = defaultdict(list)
    for r in _dicts(engine, "SELECT * FROM dwd.exam_report"):
        key = (r["institution_code"], r["reported_at"].date(), r["modality"])
        t = _minutes(r["requested_at"], r["reported_at"])
        groups[key].append(-1.0 if t is None else t)
    rows = _dicts(engine, "SELECT * FROM ads.exam_daily")
    assert {(r["institution_code"], r["report_date"], r["modality"]): r["exams"] for r in rows} == {
        k: len(v) for k, v in groups.items()
    }
    for r in rows:
        ok = [t for t in groups[(r["institution_code"], r["report_date"], r["modality"])] if t >= 0]
        if ok:
            assert float(r["tat_median_min"]) == pytest.approx(_quantiles(ok)[0], abs=0.051)


# --- chronic disease registry ------------------------------------------------------------------


def _latest(engine: DuckDBEngine, item: str) -> dict[str, tuple[float, datetime | None]]:
    """Per person: the latest value of a lab item, by collected (else reported) time, then id."""
    best: dict[str, tuple[tuple[int, datetime, str], float, datetime | None]] = {}
    for r in _dicts(
        engine,
        "SELECT x.person_id, x.lab_result_id, x.value_numeric, r.collected_at, r.reported_at "
        f"FROM dwd.lab_result x LEFT JOIN dwd.lab_report r USING (lab_report_id) "
        f"WHERE x.item_code = '{item}' AND x.value_numeric IS NOT NULL",
    ):
        at = r["collected_at"] or r["reported_at"]
        rank = (0 if at is None else 1, at or datetime.min, r["lab_result_id"])
        if r["person_id"] not in best or rank > best[r["person_id"]][0]:
            best[r["person_id"]] = (rank, float(r["value_numeric"]), at)
    return {p: (v, at) for p, (_, v, at) in best.items()}


def test_diabetics_and_their_latest_hba1c(engine: DuckDBEngine) -> None:
    diagnosed: dict[str, list[datetime]] = defaultdict(list)
    hospitals: dict[str, set[str]] = defaultdict(set)
    for d in _dicts(
        engine,
        "SELECT d.*, v.visit_at FROM dwd.diagnosis d LEFT JOIN dwd.visit v USING (visit_id) "
        "WHERE d.diagnosis_code IS NOT NULL",
    ):
        if d["diagnosis_code"][:3] in {"E10", "E11", "E12", "E13", "E14"}:
            diagnosed[d["person_id"]].append(d["diagnosed_at"] or d["visit_at"])
            hospitals[d["person_id"]].add(d["institution_code"])
    hba1c = _latest(engine, "HBA1C")
    rows = {
        r["person_id"]: r
        for r in _dicts(
            engine, "SELECT * FROM ads.chronic_registry WHERE condition_code = 'diabetes'"
        )
    }
    assert set(rows) == set(diagnosed) and len(rows) > 50
    measured = 0
    for person, r in rows.items():
        assert r["first_diagnosed_at"] == min(diagnosed[person])
        assert r["diagnoses"] == len(diagnosed[person])
        assert r["hospitals_seen"] == sorted(hospitals[person])
        assert r["indicator_item"] == "HBA1C"
        if person in hba1c:
            value, at = hba1c[person]
            assert float(r["indicator_value"]) == pytest.approx(value)
            assert r["indicator_at"] == at
            assert r["controlled"] is (value < 7.0)
            assert r["indicators"][0]["item"] == "HBA1C"
            measured += 1
        else:
            assert r["indicator_value"] is None and r["controlled"] is None
    assert measured > 5


def test_ckd_follows_egfr_and_summary_counts_the_registry(engine: DuckDBEngine) -> None:
    egfr = _latest(engine, "EGFR")
    for r in _dicts(engine, "SELECT * FROM ads.chronic_registry WHERE condition_code = 'ckd'"):
        assert r["indicator_item"] == "EGFR"
        if r["person_id"] in egfr:
            value = egfr[r["person_id"]][0]
            assert float(r["indicator_value"]) == pytest.approx(value)
            assert r["controlled"] is (value >= 60)
    registry = _dicts(engine, "SELECT * FROM ads.chronic_registry")
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in registry:
        for h in r["hospitals_seen"]:
            e = expected[(h, r["condition_code"])]
            e[0] += 1
            e[1] += r["indicator_value"] is not None
            e[2] += r["controlled"] is True
            e[3] += r["controlled"] is not None
    summary = _dicts(engine, "SELECT * FROM ads.chronic_summary")
    assert len(summary) == len(expected)
    for s in summary:
        n, with_indicator, controlled, targeted = expected[
            (s["institution_code"], s["condition_code"])
        ]
        assert (s["patients"], s["with_indicator"], s["controlled"]) == (
            n, with_indicator, controlled,
        )  # fmt: skip
        if targeted:
            assert float(s["controlled_share"]) == pytest.approx(controlled / targeted, abs=1e-4)


# --- data quality ----------------------------------------------------------------------------


def test_quality_theme_counts_gov_findings(engine: DuckDBEngine) -> None:
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for i, table in enumerate(("quarantine", "duplicates", "value_issues", "unmapped_rows")):
        for h, t, n in engine.fetchall(
            f"SELECT hospital, dwd_table, count(*) FROM gov.{table} GROUP BY ALL"
        ):
            expected[(h, t)][i] = n
    got = {
        (r["hospital"], r["dwd_table"]): [
            r["quarantined"], r["duplicates_removed"], r["values_nulled"], r["unmapped_rows"],
        ]
        for r in _dicts(engine, "SELECT * FROM ads.dq_current")
    }  # fmt: skip
    assert got == dict(expected) and got
    (run_at,) = engine.fetchall("SELECT max(started_at) FROM gov.runs")[0]
    per_run = engine.fetchall("SELECT run_at, sum(quarantined) FROM ads.dq_runs GROUP BY 1")
    assert per_run == [(run_at, sum(v[0] for v in expected.values()))]


def test_quality_checks_and_score_when_dq_results_exist(engine: DuckDBEngine) -> None:
    assert "dq_checks" not in {t.name for t in theme_tables(engine, "quality")}
    engine.execute("CREATE SCHEMA dq")
    engine.execute(
        "CREATE TABLE dq.results (run_id VARCHAR, run_at TIMESTAMPTZ, hospital VARCHAR, "
        "dwd_table VARCHAR, check_id VARCHAR, category VARCHAR, subcategory VARCHAR, "
        "status VARCHAR, rows_checked BIGINT, rows_failed BIGINT, threshold DOUBLE)"
    )
    rows = [
        ("r1", "H01", "visit", "c1", "completeness", "passed", 100, 0),
        ("r1", "H01", "visit", "c2", "completeness", "failed", 100, 7),
        ("r1", "H01", "visit", "c3", "conformance", "passed", 100, 0),
        ("r1", "H01", "visit", "c4", "conformance", "error", 0, 0),
        ("r1", "H02", "lab_result", "c1", "completeness", "passed", 50, 0),
    ]
    for run, h, t, c, cat, status, checked, failed in rows:
        engine.execute(
            "INSERT INTO dq.results VALUES (?, TIMESTAMPTZ '2026-01-01 00:00:00+00', ?, ?, ?, ?, "
            "NULL, ?, ?, ?, 0.0)",
            [run, h, t, c, cat, status, checked, failed],
        )
    report = refresh_ads(engine)
    assert {m.model: m.mode for m in report.models}["dq_checks"] == "full"
    got = {
        (r["hospital"], r["dwd_table"], r["category"]): (
            r["checks_passed"], r["checks_failed"], r["score"],
        )
        for r in _dicts(engine, "SELECT * FROM ads.dq_checks")
    }  # fmt: skip
    assert got == {
        ("H01", "visit", "*"): (2, 1, pytest.approx(2 / 3, abs=1e-4)),
        ("H01", "visit", "completeness"): (1, 1, 0.5),
        ("H01", "visit", "conformance"): (1, 0, 1.0),
        ("H02", "lab_result", "*"): (1, 0, 1.0),
        ("H02", "lab_result", "completeness"): (1, 0, 1.0),
    }
    assert any(label.startswith("quality score, run r1") for label, _ in headline(engine))
    engine.execute("DROP SCHEMA dq CASCADE")
    report = refresh_ads(engine)
    assert {m.model: m.mode for m in report.models}["dq_checks"] == "skipped"
    assert not engine.fetchall(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'ads' "
        "AND table_name = 'dq_checks'"
    )


# --- incremental refresh ---------------------------------------------------------------------


def _tables(e: DuckDBEngine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for m in models():
        if e.fetchall(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = 'ads' AND table_name = ?",
            [m.name],
        ):
            rows = e.fetchall(f"SELECT * FROM {m.table}")
            out[m.name] = sorted(rows, key=repr)
    return out


LINEAGE = "'H01', 'LIS', 'T', 'k', NULL, 'b', repeat('0', 64), 't'"


def _change_dwd(e: DuckDBEngine) -> None:
    """Inserts, updates that move rows to another partition, and deletes across the inputs."""
    visit = e.fetchall("SELECT visit_id, person_id FROM dwd.visit ORDER BY visit_id LIMIT 3")
    e.execute(
        "UPDATE dwd.visit SET visit_at = visit_at + INTERVAL 3 DAY WHERE visit_id = ?",
        [visit[0][0]],
    )
    e.execute("DELETE FROM dwd.visit WHERE visit_id = ?", [visit[1][0]])
    e.execute(
        "INSERT INTO dwd.visit (visit_id, person_id, institution_code, visit_type_code, visit_at, "
        "admitted_at, discharged_at, _source_hospital, _source_system, _source_table, "
        "_source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version) "
        "VALUES ('H01/new/visit', ?, 'H01', '3', TIMESTAMP '2030-01-02 08:00', "
        f"TIMESTAMP '2030-01-02 08:00', TIMESTAMP '2030-01-01 08:00', {LINEAGE})",
        [visit[2][1]],
    )
    # a diabetic gets a new latest HbA1c; another's report moves to another day; a result goes
    diabetic = e.fetchall(
        "SELECT person_id FROM ads.chronic_registry WHERE condition_code = 'diabetes' "
        "ORDER BY person_id LIMIT 1"
    )[0][0]
    e.execute(
        "INSERT INTO dwd.lab_report (lab_report_id, person_id, institution_code, panel_code, "
        "collected_at, reported_at, _source_hospital, _source_system, _source_table, "
        "_source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version) "
        "VALUES ('H01/new/report', ?, 'H01', 'HBA1C', TIMESTAMP '2030-01-01 09:00', "
        f"TIMESTAMP '2030-01-01 11:00', {LINEAGE})",
        [diabetic],
    )
    e.execute(
        "INSERT INTO dwd.lab_result (lab_result_id, lab_report_id, person_id, institution_code, "
        "item_code, item_name, value_numeric, unit, _source_hospital, _source_system, "
        "_source_table, _source_key, _source_updated_at, _batch_id, _ods_content_hash, "
        f"_mapping_version) VALUES ('H01/new/result', 'H01/new/report', ?, 'H01', 'HBA1C', "
        f"'糖化血红蛋白', 6.4, '%', {LINEAGE})",
        [diabetic],
    )
    e.execute(
        "UPDATE dwd.lab_report SET reported_at = reported_at + INTERVAL 2 DAY WHERE lab_report_id "
        "= (SELECT min(lab_report_id) FROM dwd.lab_result WHERE item_code = 'EGFR')"
    )
    e.execute(
        "DELETE FROM dwd.lab_result WHERE lab_result_id = (SELECT max(lab_result_id) FROM "
        "dwd.lab_result WHERE item_code = 'HBA1C')"
    )
    e.execute(
        "DELETE FROM dwd.lab_report WHERE lab_report_id = (SELECT max(lab_report_id) FROM "
        "dwd.lab_report)"
    )
    e.execute("UPDATE dwd.exam_report SET modality = 'CT' WHERE exam_report_id = "
              "(SELECT min(exam_report_id) FROM dwd.exam_report)")  # fmt: skip
    # a person becomes hypertensive, a diabetes diagnosis is withdrawn
    e.execute(
        "UPDATE dwd.diagnosis SET diagnosis_code = 'I10' WHERE diagnosis_id = (SELECT "
        "min(diagnosis_id) FROM dwd.diagnosis WHERE diagnosis_code LIKE 'J%')"
    )
    e.execute(
        "DELETE FROM dwd.diagnosis WHERE diagnosis_id = (SELECT max(diagnosis_id) FROM "
        "dwd.diagnosis WHERE diagnosis_code LIKE 'E11%')"
    )
    e.execute("DELETE FROM gov.quarantine WHERE source_key = (SELECT min(source_key) FROM "
              "gov.quarantine)")  # fmt: skip


def test_incremental_refresh_equals_full_rebuild_and_is_idempotent(
    governed: GovernedRegion, tmp_path: Path
) -> None:
    path = copy_warehouse(governed, tmp_path / "inc")
    with DuckDBEngine(path) as e:
        first = refresh_ads(e)
        assert {m.mode for m in first.models} == {"full", "skipped"}
        before = _tables(e)
        _change_dwd(e)
        report = refresh_ads(e)
        modes = {m.model: (m.mode, m.partitions) for m in report.models}
        # only the partitions touched were recomputed
        assert modes["visits_daily"][0] == "incremental" and 2 <= modes["visits_daily"][1] <= 4
        assert modes["chronic_registry"][0] == "incremental"
        assert modes["chronic_registry"][1] < 10
        for name in ("lab_daily", "exam_daily", "inpatient_monthly", "dq_current", "dq_runs"):
            assert modes[name][0] == "incremental", name
        incremental = _tables(e)
        assert incremental != before
        again = refresh_ads(e)
        assert {m.mode for m in again.models} <= {"unchanged", "skipped"}
        assert _tables(e) == incremental
    full_path = tmp_path / "full.duckdb"
    full_path.write_bytes(path.read_bytes())
    with DuckDBEngine(full_path) as f:
        rebuilt = refresh_ads(f, full=True)
        assert {m.mode for m in rebuilt.models} == {"full", "skipped"}
        assert _tables(f) == incremental
    with DuckDBEngine(path) as e:
        diabetic_row = e.fetchall(
            "SELECT indicator_value, indicator_at FROM ads.chronic_registry "
            "WHERE condition_code = 'diabetes' ORDER BY person_id LIMIT 1"
        )
        assert float(diabetic_row[0][0]) == 6.4 and diabetic_row[0][1] == datetime(2030, 1, 1, 9)
        assert e.fetchall("SELECT negative_stays FROM ads.inpatient_monthly WHERE "
                          "month = DATE '2030-01-01' AND level = 'hospital'") == [(1,)]  # fmt: skip


def test_a_partition_without_input_is_removed(engine: DuckDBEngine) -> None:
    h, day = engine.fetchall("SELECT institution_code, visit_date FROM ads.visits_daily LIMIT 1")[0]
    engine.execute(
        "DELETE FROM dwd.visit WHERE institution_code = ? AND CAST(visit_at AS DATE) = ?", [h, day]
    )
    refresh_ads(engine)
    assert not engine.fetchall(
        "SELECT * FROM ads.visits_daily WHERE institution_code = ? AND visit_date = ?", [h, day]
    )


def test_a_changed_model_or_conditions_file_rebuilds_it(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    engine.execute("UPDATE ads._models SET digest = 'old' WHERE model = 'exam_daily'")
    modes = {m.model: m.mode for m in refresh_ads(engine).models}
    assert modes["exam_daily"] == "full" and modes["visits_daily"] == "unchanged"
    text = load_conditions().conditions  # the shipped file, without stroke
    assert any(c.code == "stroke" for c in text)
    shipped = (Path(__file__).resolve().parents[2] / "src/medfabric/governance/ads"
               / "chronic_conditions.yaml").read_text("utf-8")  # fmt: skip
    trimmed = tmp_path / "conditions.yaml"
    trimmed.write_text(shipped.split("  - code: stroke")[0], "utf-8")
    modes = {m.model: m.mode for m in refresh_ads(engine, conditions=trimmed).models}
    assert modes["chronic_registry"] == "full" and modes["lab_daily"] == "unchanged"
    assert not engine.fetchall("SELECT * FROM ads.chronic_registry WHERE condition_code = 'stroke'")


# --- files -------------------------------------------------------------------------------------


def _bad(tmp_path: Path, body: str) -> str:
    path = tmp_path / "conditions.yaml"
    path.write_text(body, "utf-8")
    with pytest.raises(AdsError) as err:
        load_conditions(path)
    return str(err.value)


def test_bad_conditions_files_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    ok = "  - {code: dm, name_zh: 糖尿病, name_en: Diabetes, icd10: [E10-E14], indicators: %s}\n"
    head = 'version: "1"\nconditions:\n'
    assert "not a lab item" in _bad(tmp_path, head + ok % "[{item: NOPE}]")
    assert "not numeric" in _bad(tmp_path, head + ok % "[{item: U-GLU}]")
    assert "not both" in _bad(
        tmp_path, head + ok % "[{item: HBA1C, controlled_below: 7, controlled_at_least: 1}]"
    )
    assert "must be a number" in _bad(tmp_path, head + ok % "[{item: HBA1C, controlled_below: x}]")
    assert "condition 1 (dm): icd10 range 'E14-E10'" in _bad(
        tmp_path, head + ok.replace("E10-E14", "E14-E10") % "[]"
    )
    assert "not a three-character" in _bad(tmp_path, head + ok.replace("E10-E14", "E1") % "[]")
    assert "defined twice" in _bad(tmp_path, head + ok % "[]" + ok % "[]")
    assert "unknown key 'icd9'" in _bad(tmp_path, head + ok.replace("icd10", "icd9") % "[]")
    assert "not valid YAML" in _bad(tmp_path, head + "  - {code: [\n")
    assert "expected exactly the keys" in _bad(tmp_path, "conditions: []\n")
    conds = load_conditions()
    diabetes = next(c for c in conds.conditions if c.code == "diabetes")
    assert diabetes.categories == ("E10", "E11", "E12", "E13", "E14")
    assert diabetes.indicators[0].item == "HBA1C" and diabetes.indicators[0].controlled_below == 7


def test_a_refresh_with_a_bad_conditions_file_writes_nothing(
    governed: GovernedRegion, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nconditions: [{code: x}]\n', "utf-8")
    with DuckDBEngine(copy_warehouse(governed, tmp_path)) as e:
        with pytest.raises(AdsError, match="name_zh is required"):
            refresh_ads(e, conditions=bad)
        assert not e.fetchall("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'ads'")


def test_a_warehouse_without_dwd_is_refused(tmp_path: Path) -> None:
    with DuckDBEngine(tmp_path / "empty.duckdb") as e:
        with pytest.raises(AdsError, match=r"no DWD table dwd\.charge.*run governance"):
            refresh_ads(e)
        assert not e.fetchall("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'ads'")


def test_model_files_are_checked(tmp_path: Path) -> None:
    assert [m.name for m in models()][:2] == ["visits_daily", "inpatient_monthly"]
    path = tmp_path / "m.sql"
    header = (
        "/*\nname: m\ntheme: operations\npartition: {h: VARCHAR}\ninputs:\n"
        "  - {name: v, from: dwd.visit, key: [%s], hash: [visit_id]}\n*/\n%s"
    )
    assert load_model(path, header % ("institution_code", "SELECT * FROM {{v}}")).partition == (
        ("h", "VARCHAR"),
    )
    with pytest.raises(AdsError, match="names no input"):
        load_model(path, header % ("institution_code", "SELECT * FROM {{w}}"))
    with pytest.raises(AdsError, match="2 key expressions for 1 partition"):
        load_model(path, header % ("institution_code, visit_at", "SELECT 1"))
    with pytest.raises(AdsError, match="header"):
        load_model(path, "SELECT 1")
    with pytest.raises(AdsError, match="theme must be one of"):
        load_model(path, (header % ("a", "SELECT 1")).replace("operations", "finance"))


# --- headline and CLI --------------------------------------------------------------------------


def test_headline_figures(engine: DuckDBEngine) -> None:
    figures = dict(headline(engine))
    (visits,) = engine.fetchall("SELECT count(*) FROM dwd.visit")[0]
    assert figures["visits"] == f"{visits:,}"
    per_day = Counter(r[0].date() for r in engine.fetchall("SELECT visit_at FROM dwd.visit"))
    half = statistics.median(per_day.values()) / 2
    last = max(d for d, n in per_day.items() if n >= half)
    window = sum(n for d, n in per_day.items() if 0 <= (last - d).days < 30)
    assert figures[f"visits, 30 days to {last}"] == f"{window:,}" and window > 100
    (diabetics,) = engine.fetchall(
        "SELECT count(DISTINCT person_id) FROM dwd.diagnosis WHERE left(diagnosis_code, 3) "
        "IN ('E10', 'E11', 'E12', 'E13', 'E14')"
    )[0]
    assert figures["diabetics"] == f"{diabetics:,}"
    assert "average length of stay" in figures and figures["lab reports"]
    tat = [
        (r - c).total_seconds() / 60
        for c, r in engine.fetchall("SELECT collected_at, reported_at FROM dwd.lab_report")
        if c is not None and c <= r
    ]
    assert figures["lab turnaround, collected → reported, median"] == (
        f"{statistics.median(tat):.0f} min"
    )
    assert any(k.startswith("diabetics with HBA1C measured") for k in figures)


def test_cli_refresh_and_show(governed: GovernedRegion, tmp_path: Path) -> None:
    warehouse = copy_warehouse(governed, tmp_path)
    config = tmp_path / "region.toml"
    config.write_text(
        (governed.root / "region.toml")
        .read_text("utf-8")
        .replace(str(governed.warehouse), str(warehouse)),
        "utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["ads", "refresh", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert {m["mode"] for m in json.loads(result.output)["models"]} == {"full", "skipped"}
    result = runner.invoke(app, ["ads", "refresh", "-c", str(config)])
    assert result.exit_code == 0 and "unchanged" in result.output
    result = runner.invoke(app, ["ads", "show", "chronic", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert set(shown) == {"chronic_registry", "chronic_summary"}
    assert len(shown["chronic_registry"]["rows"]) == 10
    result = runner.invoke(app, ["ads", "show", "-c", str(config), "--json"])
    assert result.exit_code == 0 and "diabetics" in json.loads(result.output)
    result = runner.invoke(app, ["ads", "show", "finance", "-c", str(config)])
    assert result.exit_code == 2 and "unknown theme" in result.output


def test_labs_of_a_person_who_becomes_chronic_are_picked_up(
    governed: GovernedRegion, tmp_path: Path
) -> None:
    """Lab results of people without a chronic diagnosis are not fingerprinted; when such a
    person is diagnosed, the refresh still finds their earlier results."""
    path = copy_warehouse(governed, tmp_path)
    with DuckDBEngine(path) as e:
        refresh_ads(e)
        person, visit = e.fetchall(
            "SELECT person_id, visit_id FROM dwd.visit WHERE person_id NOT IN (SELECT person_id "
            "FROM ads.chronic_registry) ORDER BY visit_id LIMIT 1"
        )[0]
        e.execute(
            "INSERT INTO dwd.lab_result (lab_result_id, lab_report_id, person_id, "
            "institution_code, item_code, item_name, value_numeric, unit, _source_hospital, "
            "_source_system, _source_table, _source_key, _source_updated_at, _batch_id, "
            f"_ods_content_hash, _mapping_version) VALUES ('H01/new/a1c', 'none', ?, 'H01', "
            f"'HBA1C', '糖化血红蛋白', 8.2, '%', {LINEAGE})",
            [person],
        )
        modes = {m.model: m.mode for m in refresh_ads(e).models}
        assert modes["chronic_registry"] == "unchanged"
        e.execute(
            "INSERT INTO dwd.diagnosis (diagnosis_id, visit_id, person_id, institution_code, "
            "diagnosis_code, diagnosed_at, _source_hospital, _source_system, _source_table, "
            "_source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version) "
            f"VALUES ('H01/new/dx', ?, ?, 'H01', 'E11.9', NULL, {LINEAGE})",
            [visit, person],
        )
        refresh_ads(e)
        row = _dicts(e, f"SELECT * FROM ads.chronic_registry WHERE person_id = '{person}'")[0]
        assert row["condition_code"] == "diabetes" and float(row["indicator_value"]) == 8.2
        assert row["controlled"] is False and row["indicator_at"] is None
        incremental = _tables(e)
        refresh_ads(e, full=True)
        assert _tables(e) == incremental


def test_a_failing_model_leaves_every_table_as_it_was(
    engine: DuckDBEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medfabric.governance.ads.refresh as refresh

    before = _tables(engine)
    engine.execute("DELETE FROM dwd.visit WHERE visit_id = (SELECT min(visit_id) FROM dwd.visit)")
    broken = load_model(
        tmp_path / "99_broken.sql",
        "/*\nname: broken\ntheme: operations\npartition: {h: VARCHAR}\ninputs:\n"
        "  - {name: v, from: dwd.visit, key: [institution_code], hash: [visit_id]}\n*/\n"
        "SELECT institution_code AS h, no_such_column FROM {{v}}",
    )
    monkeypatch.setattr(refresh, "models", lambda: (*models(), broken))
    with pytest.raises(AdsError, match=r"ADS model broken \(99_broken.sql\)"):
        refresh_ads(engine)
    assert _tables(engine) == before
    monkeypatch.undo()
    assert refresh_ads(engine).changed() and _tables(engine) != before
