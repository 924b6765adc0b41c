"""Master data over a governed region: one institution per configured hospital (also in
dwd.institution, with the configuration as its lineage), departments mapped to the standard
list by code, name or synonym with the rest queued, staff with cross-references to existing
source rows, and a refresh that is idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.governance.regionkit import GovernedRegion

from medfabric.governance.master import (
    CONFIG_SYSTEM,
    MDM_TABLES,
    MasterDataError,
    department_name_rules,
    department_synonyms,
    refresh_master,
)
from medfabric.standards import codes
from medfabric.warehouse import DuckDBEngine
from medfabric.warehouse.ods import ods_ref, ods_table_name


def _rows(engine: DuckDBEngine, sql: str, params: list[Any] | None = None) -> list[Any]:
    return engine.fetchall(sql, params)


def _snapshot(engine: DuckDBEngine) -> dict[str, list[Any]]:
    out = {}
    for name in MDM_TABLES:
        if name != "refreshes":
            out[name] = sorted(map(repr, _rows(engine, f"SELECT * FROM mdm.{name}")))
    out["dwd.institution"] = sorted(map(repr, _rows(engine, "SELECT * FROM dwd.institution")))
    return out


def test_every_hospital_has_one_institution_master_and_a_dwd_row_from_the_configuration(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    settings = governed.env.settings
    refresh_master(engine, settings)
    expected = {(h.id, h.name) for h in settings.hospitals}
    assert set(_rows(engine, "SELECT institution_id, name FROM mdm.institution")) == expected
    assert _rows(engine, "SELECT count(*) FROM mdm.institution") == [(len(expected),)]
    seen = _rows(
        engine,
        "SELECT institution_id, in_settings, in_sources, systems_seen, departments, staff "
        "FROM mdm.institution ORDER BY 1",
    )
    for hid, in_settings, in_sources, systems, departments, staff in seen:
        assert in_settings and in_sources and systems == ["EMR", "HIS", "LIS", "PACS"]
        assert (
            departments
            == _rows(engine, "SELECT count(*) FROM mdm.department WHERE institution_id = ?", [hid])[
                0
            ][0]
        )
        assert departments > 0
        assert (
            staff
            == _rows(engine, "SELECT count(*) FROM dwd.staff WHERE institution_code = ?", [hid])[0][
                0
            ]
        )
    dwd = _rows(
        engine,
        "SELECT institution_code, institution_name, hospital_level, _source_hospital, "
        "_source_system, _source_key, length(_ods_content_hash) FROM dwd.institution",
    )
    assert {(r[0], r[1]) for r in dwd} == expected
    for code, _, level, hospital, system, key, hash_len in dwd:
        assert (hospital, system, key, level, hash_len) == (code, CONFIG_SYSTEM, code, "3", 64)
    # Every DWD row's institution_code now resolves.
    for table in ("visit", "lab_result", "department", "staff"):
        orphans = _rows(
            engine,
            f'SELECT count(*) FROM dwd."{table}" WHERE institution_code NOT IN '
            "(SELECT institution_code FROM dwd.institution)",
        )
        assert orphans == [(0,)], table


def test_departments_map_to_standard_codes_and_every_source_department_is_referenced(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    report = refresh_master(engine, governed.env.settings)
    standard = set(codes.value_domain("department"))
    n_dwd = _rows(engine, "SELECT count(*) FROM dwd.department")[0][0]
    assert report.table("mdm.department_xref").rows == n_dwd > 0
    xref = _rows(
        engine,
        "SELECT standard_department_code, department_id, match_method FROM mdm.department_xref",
    )
    assert all(code in standard for code, _, _ in xref)
    masters = {
        r[0]: r[1:]
        for r in _rows(
            engine, "SELECT department_id, institution_id, standard_department_code "
            "FROM mdm.department"
        )
    }  # fmt: skip
    for code, department_id, method in xref:
        assert method == "code"  # the simulated hospitals' codes are all in the code tables
        assert masters[department_id][1] == code
    # One master per (institution, standard code).
    distinct = _rows(
        engine,
        "SELECT count(DISTINCT (institution_code, standard_department_code)) FROM dwd.department",
    )
    assert len(masters) == distinct[0][0]


def test_departments_outside_the_code_table_map_by_name_and_synonym_or_are_queued(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    h = governed.env.settings.hospitals[0].id
    cardio = _rows(
        engine,
        "SELECT count(*) FROM dwd.department WHERE institution_code = ? "
        "AND standard_department_code = '03.04'",
        [h],
    )[0][0]
    added = [
        ("X01", "心内科", None),  # synonym → 03.04
        ("X02", "呼吸 内科", None),  # derived from 呼吸内科专业 after normalization → 03.01
        ("X03", "重症医学科", "99"),  # code not in the list; the standard name → 28
        ("X04", "行政办公室", None),  # nothing maps it: queued
    ]
    for code, name, std in added:
        engine.execute(
            "INSERT INTO dwd.department VALUES (?, ?, ?, ?, NULL, NULL, ?, 'HIS', 'TEST_DEPT', "
            "?, NULL, 'b-test', ?, 'test')",
            [h, code, name, std, h, code, "0" * 64],
        )
    report = refresh_master(engine, governed.env.settings)
    got = {
        r[0]: r[1:]
        for r in _rows(
            engine,
            "SELECT local_code, standard_department_code, match_method, department_id "
            "FROM mdm.department_xref WHERE source_table = 'TEST_DEPT'",
        )
    }
    assert got == {
        "X01": ("03.04", "synonym", f"{h}/03.04"),
        "X02": ("03.01", "derived", f"{h}/03.01"),
        "X03": ("28", "name", f"{h}/28"),
        "X04": (None, None, None),
    }
    queue = _rows(engine, "SELECT local_code, local_name, reason FROM mdm.department_queue")
    assert [q[:2] for q in queue] == [("X04", "行政办公室")]
    assert "matches no standard name or synonym" in queue[0][2]
    assert report.departments_queued == 1
    master = _rows(
        engine,
        "SELECT name, source_departments, local_names FROM mdm.department WHERE department_id = ?",
        [f"{h}/03.04"],
    )
    assert master[0][0] == "心血管内科专业"
    assert master[0][1] == cardio + 1 and "心内科" in master[0][2]


def test_staff_master_records_cross_reference_existing_source_rows(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    report = refresh_master(engine, governed.env.settings)
    n_staff = _rows(engine, "SELECT count(*) FROM dwd.staff")[0][0]
    # No certificate numbers in these sources: one master per institution + staff code.
    assert report.table("mdm.staff").rows == n_staff > 0
    dictionary = _rows(
        engine,
        "SELECT x.staff_id, x.hospital, x.source_system, x.source_table, x.source_key, "
        "x.staff_code, s.institution_id, s.staff_code FROM mdm.staff_xref x "
        "JOIN mdm.staff s USING (staff_id) WHERE x.kind = 'dictionary'",
    )
    assert len(dictionary) == n_staff
    by_table: dict[str, set[str]] = {}
    for _, hospital, system, table, key, code, inst, master_code in dictionary:
        assert (inst, master_code) == (hospital, code)
        by_table.setdefault(ods_table_name(hospital, system, table), set()).add(key)
    for ods, keys in by_table.items():  # every xref names a current source row in ODS
        have = {r[0] for r in _rows(engine, f"SELECT _local_key FROM {ods_ref(ods + '__current')}")}
        assert keys <= have, ods
    # Codes other tables use resolve to the dictionary's master record.
    refs = _rows(
        engine,
        "SELECT source_column, count(*), count(staff_id), sum(rows) FROM mdm.staff_xref "
        "WHERE kind = 'reference' GROUP BY 1",
    )
    by_column = {r[0]: r[1:] for r in refs}
    visits = _rows(engine, "SELECT count(doctor_staff_code) FROM dwd.visit")[0][0]
    assert by_column["visit.doctor_staff_code"][2] == visits > 0
    for column, (n, resolved, _) in by_column.items():
        assert resolved == n, column
    # Each staff member's department master exists.
    dangling = _rows(
        engine,
        "SELECT count(*) FROM mdm.staff WHERE department_id IS NOT NULL AND department_id "
        "NOT IN (SELECT department_id FROM mdm.department)",
    )
    assert dangling == [(0,)]
    assert _rows(engine, "SELECT count(department_id) FROM mdm.staff")[0][0] == n_staff


def test_a_certificate_number_joins_one_person_across_institutions(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    a, b = (h.id for h in governed.env.settings.hospitals[:2])
    picked = [
        _rows(
            engine,
            "SELECT staff_code FROM dwd.staff WHERE institution_code = ? ORDER BY 1 LIMIT 1",
            [h],
        )[0][0]
        for h in (a, b)
    ]
    for h, code in zip((a, b), picked, strict=True):
        engine.execute(
            "UPDATE dwd.staff SET certificate_no = '110350100000123' "
            "WHERE institution_code = ? AND staff_code = ?",
            [h, code],
        )
    refresh_master(engine, governed.env.settings)
    master = _rows(
        engine,
        "SELECT staff_id, match_key, institutions, source_rows FROM mdm.staff "
        "WHERE certificate_no = '110350100000123'",
    )
    assert master == [("cert:110350100000123", "certificate", sorted([a, b]), 2)]
    xref = _rows(
        engine,
        "SELECT hospital, staff_code FROM mdm.staff_xref "
        "WHERE kind = 'dictionary' AND staff_id = 'cert:110350100000123' ORDER BY 1",
    )
    assert xref == sorted(zip((a, b), picked, strict=True))
    n_staff = _rows(engine, "SELECT count(*) FROM dwd.staff")[0][0]
    assert _rows(engine, "SELECT count(*) FROM mdm.staff")[0][0] == n_staff - 1


def test_a_second_refresh_changes_nothing_and_a_source_change_only_its_rows(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    settings = governed.env.settings
    first = refresh_master(engine, settings)
    assert first.changed > 0
    before = _snapshot(engine)
    second = refresh_master(engine, settings)
    assert second.changed == 0
    assert _snapshot(engine) == before
    engine.execute(
        "UPDATE dwd.staff SET name = '改名' WHERE (institution_code, staff_code) IN "
        "(SELECT (institution_code, staff_code) FROM dwd.staff "
        "ORDER BY institution_code, staff_code LIMIT 1)"
    )
    third = refresh_master(engine, settings)
    assert third.table("mdm.staff").inserted == third.table("mdm.staff").deleted == 1
    assert third.changed == 2
    assert _rows(engine, "SELECT count(*) FROM mdm.refreshes") == [(3,)]


def test_the_synonyms_file_is_checked(tmp_path: Path) -> None:
    shipped = department_synonyms()
    assert shipped["心内科"] == "03.04"
    rules = {name: (code, rule) for name, code, rule in department_name_rules()}
    assert rules["心血管内科专业"] == ("03.04", "name")
    assert rules["心血管内科"] == ("03.04", "derived")
    assert "内科专业" in rules and rules["内科专业"][0] == "50.01"  # a standard name
    bad = tmp_path / "syn.csv"
    for body, message in [
        ("name,standard_code,note\n心内科,99.99,\n", "not in the standard department list"),
        ("name,standard_code,note\n心内科,03.04,\n心内科,03.04,\n", "listed twice"),
        ("name,standard_code,note\n内科,04,\n", "standard name of 03"),
    ]:
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(MasterDataError, match=message):
            department_synonyms(bad)
