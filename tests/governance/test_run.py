"""Governance runs over a small ODS: mapped, typed and cleaned DWD rows with lineage; invalid
values nulled with the reason; quarantine with every reason; duplicates removed; unmapped codes
queued; updates and deletes followed; a re-run changes nothing; counts reconcile."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.warehouse.test_ods import make_batch

from medfabric.governance.run import Governor, HospitalSource
from medfabric.standards.mappings import load_mapping
from medfabric.warehouse import DuckDBEngine, OdsStore

MAPPING = """\
dialect: ruixin
version: "t1"
codes: codes.csv
formats: {datetime: "%Y-%m-%d %H:%M:%S", date: "%Y-%m-%d"}
tables:
  - dwd: person
    from: HIS.PAT_MASTER_INDEX
    columns:
      person_id: {id: PATIENT_ID}
      name: {from: PAT_NAME, transform: [nfkc, trim, squeeze]}
      sex_code: {from: SEX_CODE, code: sex}
      birth_date: {from: DATE_OF_BIRTH, parse: date}
      id_doc_no: {from: ID_NO, transform: [trim, upper], null_if: [""]}
  - dwd: department
    from: HIS.DEPT_DICT
    columns:
      institution_code: {hospital: true}
      department_code: {from: DEPT_CODE, transform: [trim]}
      department_name: {from: DEPT_NAME}
  - dwd: lab_result
    from: LIS.LAB_RESULT
    columns:
      lab_result_id: {id: RESULT_ID}
      lab_report_id: {ref: {from: REQUEST_ID, table: LIS.LAB_TEST_MASTER}}
      person_id: {ref: {from: PATIENT_ID, table: HIS.PAT_MASTER_INDEX}}
      institution_code: {hospital: true}
      item_code: {from: ITEM, code: lab_items}
      item_name: {from: ITEM}
      value_numeric: {from: VALUE, number: true, unit: {from: UNIT, item: ITEM}}
      unit: {unit_of: ITEM}
      value_as_sent: {from: VALUE}
      unit_as_sent: {from: UNIT}
"""
CODES = "domain,local_code,standard_code\nsex,M,1\nsex,F,2\nlab_items,GLU,GLU\nlab_items,TG,TG\n"

PERSON = (("PATIENT_ID", "VARCHAR"), ("PAT_NAME", "VARCHAR"), ("SEX_CODE", "VARCHAR"),
          ("DATE_OF_BIRTH", "VARCHAR"), ("ID_NO", "VARCHAR"))  # fmt: skip
DEPT = (("DEPT_CODE", "VARCHAR"), ("DEPT_NAME", "VARCHAR"))
RESULT = (("RESULT_ID", "VARCHAR"), ("REQUEST_ID", "VARCHAR"), ("PATIENT_ID", "VARCHAR"),
          ("ITEM", "VARCHAR"), ("VALUE", "VARCHAR"), ("UNIT", "VARCHAR"),
          ("REPORTED", "VARCHAR"))  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[DuckDBEngine, OdsStore, list[HospitalSource]]]:
    (tmp_path / "codes.csv").write_text(CODES, encoding="utf-8")
    path = tmp_path / "ruixin.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    mapping = load_mapping(path)
    engine = DuckDBEngine(":memory:")
    store = OdsStore(engine)
    sources = [HospitalSource("H01", "H01", s, mapping) for s in ("HIS", "LIS")]
    yield engine, store, sources
    engine.close()


def _person(name: str, sex: str, birth: str, id_no: str) -> dict[str, Any]:
    return {"PAT_NAME": name, "SEX_CODE": sex, "DATE_OF_BIRTH": birth, "ID_NO": id_no}


KEYS = {"PAT_MASTER_INDEX": "PATIENT_ID", "LAB_RESULT": "RESULT_ID", "DEPT_DICT": None}


def _land(store: OdsStore, batch: str, table: str, system: str, columns: Any, rows: Any,
          seq: int = 1) -> None:  # fmt: skip
    """Land ``rows`` (key, op, payload); the key column is part of the payload, as sent."""
    key = KEYS[table]
    rows = [(k, op, {key: k, **p} if key and p else p) for k, op, p in rows]
    store.land(
        make_batch(batch, rows, columns=columns, system=system, source_table=table, seq=seq,
                   received_at=datetime(2024, 3, 1, 8, seq, tzinfo=UTC))
    )  # fmt: skip


def _rows(engine: DuckDBEngine, sql: str) -> list[tuple[Any, ...]]:
    return engine.fetchall(sql)


def test_a_run_maps_cleans_quarantines_and_reconciles(
    setup: tuple[DuckDBEngine, OdsStore, list[HospitalSource]],
) -> None:
    engine, store, sources = setup
    _land(store, "p1", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("1", "upsert", _person("林 秀 英", "F", "1980-02-30", " 35010219800230002x ")),
        ("2", "upsert", _person("ＺＨＡＮＧ  Wei", "M", "1975-06-01", "")),
        ("3", "upsert", _person("王五", "X", "1990-01-01", "A1")),
    ])  # fmt: skip
    _land(store, "d1", "DEPT_DICT", "HIS", DEPT, [
        ("10", "upsert", {"DEPT_CODE": "0301", "DEPT_NAME": "心内科"}),
        ("11", "upsert", {"DEPT_CODE": "0301 ", "DEPT_NAME": "心血管内科"}),
    ])  # fmt: skip
    _land(store, "r1", "LAB_RESULT", "LIS", RESULT, [
        ("100", "upsert", {"REQUEST_ID": "9", "PATIENT_ID": "1", "ITEM": "GLU", "VALUE": "90",
                           "UNIT": "mg/dL", "REPORTED": "2024-03-01 09:30:00"}),
        ("101", "upsert", {"REQUEST_ID": "9", "PATIENT_ID": "1", "ITEM": "GLU", "VALUE": "5.1",
                           "UNIT": "furlongs", "REPORTED": "2024-03-01 09:30:00"}),
        ("102", "upsert", {"REQUEST_ID": "9", "PATIENT_ID": "1", "ITEM": "XYZ", "VALUE": "1",
                           "UNIT": None, "REPORTED": "soon"}),
    ])  # fmt: skip
    report = Governor(engine).run(sources)
    assert report.errors == []
    people = {
        r[0]: r[1:]
        for r in _rows(engine, "SELECT person_id, name, sex_code, birth_date, id_doc_no, "
                       "_source_table, _source_key, _batch_id, _mapping_version FROM dwd.person")
    }  # fmt: skip
    one = people["H01/HIS/PAT_MASTER_INDEX/1"]
    assert one[:4] == ("林秀英", "2", None, "35010219800230002X")  # 2-30: not a date, nulled
    assert one[4:7] == ("PAT_MASTER_INDEX", "1", "p1") and one[7].startswith("t1+")
    assert people["H01/HIS/PAT_MASTER_INDEX/2"][:4][0:2] == ("ZHANG Wei", "1")
    assert people["H01/HIS/PAT_MASTER_INDEX/2"][3] is None  # "" → null_if
    # Person 3: sex X is unmapped and sex_code is required → quarantined with its reasons.
    assert "H01/HIS/PAT_MASTER_INDEX/3" not in people
    [(reasons,)] = _rows(engine, "SELECT reasons FROM gov.quarantine WHERE source_key = '3'")
    assert reasons == ["missing required sex_code", "sex_code: unmapped sex code: X"]
    issues = _rows(engine, "SELECT source_key, reason FROM gov.value_issues ORDER BY 1")
    assert ("1", "birth_date: not a date in %Y-%m-%d: 1980-02-30") in issues
    # Two department rows, one key after trimming: the later-keyed one is kept, one duplicate.
    assert _rows(engine, "SELECT department_code, department_name FROM dwd.department") == [
        ("0301", "心血管内科")
    ]
    assert _rows(engine, "SELECT source_key, kept_source_key FROM gov.duplicates") == [("10", "11")]
    # Lab values: mg/dL → mmol/L; an unknown unit and an unmapped item are reasons, not losses.
    results = {
        r[0]: r[1:]
        for r in _rows(engine, "SELECT _source_key, value_numeric, item_code FROM dwd.lab_result")
    }
    assert float(results["100"][0]) == pytest.approx(90 * 0.0555062, abs=1e-4)
    assert results["101"] == (None, "GLU")
    units = dict(_rows(engine, "SELECT _source_key, unit FROM dwd.lab_result"))
    assert units == {"100": "mmol/L", "101": "mmol/L", "102": None}
    assert results["102"] == (1, None)  # XYZ unmapped: nulled (not required), queued
    assert ("101", "value_numeric: unknown unit for the item: furlongs (GLU)") in issues
    assert Governor(engine).unmapped() == [
        ("H01", "ruixin", "lab_items", "XYZ", 1),
        ("H01", "ruixin", "sex", "X", 1),
    ]
    assert all(r["balanced"] for r in Governor(engine).reconcile(sources))
    # Re-running changes nothing.
    before = _rows(engine, "SELECT * FROM dwd.person ORDER BY person_id")
    again = Governor(engine).run(sources)
    assert again.total("inserted") == 0 and all(e.skipped == "nothing new" for e in again.entries)
    assert _rows(engine, "SELECT * FROM dwd.person ORDER BY person_id") == before


def test_updates_and_deletes_in_the_source_follow_into_dwd(
    setup: tuple[DuckDBEngine, OdsStore, list[HospitalSource]],
) -> None:
    engine, store, sources = setup
    _land(store, "p1", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("1", "upsert", _person("甲", "F", "1980-01-01", "")),
        ("2", "upsert", _person("乙", "M", "1981-01-01", "")),
        ("3", "upsert", _person("丙", "X", "1982-01-01", "")),
    ])  # fmt: skip
    Governor(engine).run(sources)
    _land(store, "p2", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("1", "upsert", _person("甲改", "F", "1980-01-01", "")),
        ("2", "delete", {}),
        ("3", "upsert", _person("丙", "M", "1982-01-01", "")),  # fixed: leaves quarantine
    ], seq=2)  # fmt: skip
    report = Governor(engine).run(sources)
    person = next(e for e in report.entries if e.dwd_table == "person")
    assert (person.batches, person.staged, person.inserted) == (1, 2, 2)
    assert _rows(engine, "SELECT _source_key, name, _batch_id FROM dwd.person ORDER BY 1") == [
        ("1", "甲改", "p2"),
        ("3", "丙", "p2"),
    ]
    assert _rows(engine, "SELECT count(*) FROM gov.quarantine") == [(0,)]
    assert Governor(engine).unmapped() == []
    assert all(r["balanced"] for r in Governor(engine).reconcile(sources))


def test_a_changed_code_table_re_derives_the_rows(
    setup: tuple[DuckDBEngine, OdsStore, list[HospitalSource]], tmp_path: Path
) -> None:
    engine, store, sources = setup
    _land(store, "p1", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("3", "upsert", _person("丙", "X", "1982-01-01", "")),
    ])  # fmt: skip
    Governor(engine).run(sources)
    assert _rows(engine, "SELECT count(*) FROM dwd.person") == [(0,)]
    # The unmapped queue is resolved by adding the code and running again: no new batch needed.
    (tmp_path / "codes.csv").write_text(CODES + "sex,X,9\n", encoding="utf-8")
    mapping = load_mapping(tmp_path / "ruixin.yaml")
    fixed = [HospitalSource("H01", "H01", s.system, mapping) for s in sources]
    Governor(engine).run(fixed)
    assert _rows(engine, "SELECT _source_key, sex_code FROM dwd.person") == [("3", "9")]
    assert Governor(engine).unmapped() == []


def test_two_entries_splitting_one_source_table_keep_each_others_rows(tmp_path: Path) -> None:
    # Like diagnoses split by visit type: two entries, one source table, one DWD table, told
    # apart by `where`. Processing one must not remove the rows the other produced, and a row
    # that moves from one side to the other is re-derived once.
    split = MAPPING.split("  - dwd: department")[0].replace(
        "    from: HIS.PAT_MASTER_INDEX\n",
        "    from: HIS.PAT_MASTER_INDEX\n    where: {SEX_CODE: [M]}\n",
    )
    second = split.split("tables:\n")[1].replace("[M]", "[F]")
    (tmp_path / "codes.csv").write_text(CODES, encoding="utf-8")
    path = tmp_path / "ruixin.yaml"
    path.write_text(split + second, encoding="utf-8")
    sources = [HospitalSource("H01", "H01", "HIS", load_mapping(path))]
    engine = DuckDBEngine(":memory:")
    store = OdsStore(engine)
    _land(store, "p1", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("1", "upsert", _person("甲", "M", "1980-01-01", "")),
        ("2", "upsert", _person("乙", "F", "1981-01-01", "")),
        ("3", "upsert", _person("丙", "M", "1982-01-01", "")),
    ])  # fmt: skip
    Governor(engine).run(sources)
    assert _rows(engine, "SELECT _source_key, sex_code FROM dwd.person ORDER BY 1") == [
        ("1", "1"), ("2", "2"), ("3", "1"),
    ]  # fmt: skip
    assert [r["balanced"] for r in Governor(engine).reconcile(sources)] == [True, True]
    _land(store, "p2", "PAT_MASTER_INDEX", "HIS", PERSON, [
        ("3", "upsert", _person("丙", "F", "1982-01-01", "")),
    ], seq=2)  # fmt: skip
    Governor(engine).run(sources)
    assert _rows(engine, "SELECT _source_key, sex_code FROM dwd.person ORDER BY 1") == [
        ("1", "1"), ("2", "2"), ("3", "2"),
    ]  # fmt: skip
    assert [(r["ods_in"], r["dwd"]) for r in Governor(engine).reconcile(sources)] == [
        (1, 1), (2, 2),
    ]  # fmt: skip
    engine.close()


def test_a_mapping_naming_a_column_the_ods_lacks_is_an_error_naming_both(
    setup: tuple[DuckDBEngine, OdsStore, list[HospitalSource]],
) -> None:
    engine, store, sources = setup
    _land(store, "d1", "DEPT_DICT", "HIS", (("DEPT_CODE", "VARCHAR"),), [
        ("10", "upsert", {"DEPT_CODE": "0301"}),
    ])  # fmt: skip
    report = Governor(engine).run(sources)
    assert report.errors == [
        "ruixin.yaml: department<-HIS.DEPT_DICT, hospital H01: ODS table H01__HIS__DEPT_DICT "
        "has no column DEPT_NAME"
    ]
    assert _rows(engine, "SELECT count(*) FROM gov.processed") == [(0,)]


def test_the_mapping_text_is_what_the_docs_show() -> None:
    # docs/mapping.md's example must stay loadable in spirit: the same keys are used here.
    assert "transform: [nfkc, trim, squeeze]" in textwrap.dedent(MAPPING)


def test_near_duplicates_are_removed_and_recorded_conflicts_are_kept(
    setup: tuple[DuckDBEngine, OdsStore, list[HospitalSource]],
) -> None:
    engine, store, sources = setup
    result = {"REQUEST_ID": "9", "PATIENT_ID": "1", "ITEM": "GLU", "VALUE": "5.1",
              "UNIT": "mmol/L", "REPORTED": "2024-03-01 09:30:00"}  # fmt: skip
    _land(store, "r1", "LAB_RESULT", "LIS", RESULT, [
        ("200", "upsert", result),
        ("201", "upsert", result),  # the same result sent under a second key: a near-duplicate
        ("202", "upsert", {**result, "VALUE": "5.4"}),  # same item, another value: kept
        ("203", "upsert", {**result, "REQUEST_ID": "8"}),  # another report: kept
    ])  # fmt: skip
    report = Governor(engine).run(sources)
    lab = next(e for e in report.entries if e.dwd_table == "lab_result")
    assert (lab.staged, lab.inserted, lab.duplicates) == (4, 3, 1)
    assert _rows(engine, "SELECT _source_key FROM dwd.lab_result ORDER BY 1") == [
        ("200",), ("202",), ("203",)
    ]  # fmt: skip
    assert _rows(engine, "SELECT source_key, kept_source_key, kind FROM gov.duplicates") == [
        ("201", "200", "near")
    ]
    # A later batch repeats a result already in DWD: the new row is the duplicate.
    _land(store, "r2", "LAB_RESULT", "LIS", RESULT, [("204", "upsert", result)], seq=2)
    Governor(engine).run(sources)
    assert _rows(
        engine, "SELECT source_key, kept_source_key, kind FROM gov.duplicates ORDER BY 1"
    ) == [("201", "200", "near"), ("204", "200", "near")]
    assert all(r["balanced"] for r in Governor(engine).reconcile(sources))
    # Re-running changes nothing.
    assert Governor(engine).run(sources).total("duplicates") == 0


CUSTOM = """\
dialect: acme-lis
version: "a1"
codes: codes.csv
formats: {datetime: "%Y-%m-%d %H:%M:%S"}
tables:
  - dwd: person
    from: LIS.PAT
    columns:
      person_id: {id: PID}
      name: {from: NAME}
      sex_code: {from: SEX, code: sex}
  - dwd: lab_result
    from: LIS.RES
    columns:
      lab_result_id: {id: RID}
      lab_report_id: {ref: {from: REQ, table: LIS.REQ}}
      person_id: {ref: {from: PID, table: LIS.PAT}}
      institution_code: {hospital: true}
      item_code: {from: ITEM, code: lab_items}
      item_name: {from: ITEM}
      value_numeric: {from: VAL, number: true, unit: {from: UNIT, item: ITEM}}
      unit_as_sent: {from: UNIT}
      reference_range: {from: RANGE}
      reference_low: {from: RANGE, range: low, unit: {from: UNIT, item: ITEM}}
      reference_high: {from: RANGE, range: high, unit: {from: UNIT, item: ITEM}}
"""


def _custom_settings(tmp_path: Path, mapping: str) -> Any:
    from medfabric.settings import parse_settings

    (tmp_path / "codes.csv").write_text(CODES, encoding="utf-8")
    (tmp_path / "acme.yaml").write_text(mapping, encoding="utf-8")
    lis = {
        "url": "sqlite:///lis.db",
        "tables": {t: {"key": [k]} for t, k in (("RES", "RID"), ("REQ", "REQ"), ("PAT", "PID"))},
        "mapping": str(tmp_path / "acme.yaml"),
    }
    return parse_settings({"hospitals": [{"id": "H01", "name": "甲", "systems": {"LIS": lis}}]})


def test_a_system_of_an_unknown_dialect_is_governed_by_its_own_mapping_file(
    tmp_path: Path,
) -> None:
    from medfabric.governance.run import sources_from_settings

    settings = _custom_settings(tmp_path, CUSTOM)
    sources, notes = sources_from_settings(settings)
    assert [(s.hospital, s.system, s.mapping.dialect) for s in sources] == [
        ("H01", "LIS", "acme-lis")
    ]
    assert notes == []
    engine = DuckDBEngine(":memory:")
    try:
        columns = tuple(
            (c, "VARCHAR") for c in ("RID", "REQ", "PID", "ITEM", "VAL", "UNIT", "RANGE")
        )
        row = {"REQ": "7", "PID": "1", "ITEM": "GLU", "VAL": "99", "UNIT": "mg/dL",
               "RANGE": "70-110"}  # fmt: skip
        store = OdsStore(engine)
        store.land(
            make_batch("a1", [("1", "upsert", {"RID": "1", **row}),
                              ("2", "upsert", {"RID": "2", **row, "ITEM": "TG", "RANGE": "-150"})],
                       columns=columns, system="LIS", source_table="RES")
        )  # fmt: skip
        store.land(
            make_batch("a2", [("1", "upsert", {"PID": "1", "NAME": "甲", "SEX": "F"})],
                       columns=(("PID", "VARCHAR"), ("NAME", "VARCHAR"), ("SEX", "VARCHAR")),
                       system="LIS", source_table="PAT")
        )  # fmt: skip
        report = Governor(engine).run(sources)
        reasons = engine.fetchall("SELECT reasons FROM gov.quarantine")
        assert report.errors == [] and report.total("inserted") == 3, reasons
        [(rid, value, low, high), (_, _, no_low, tg_high)] = engine.fetchall(
            "SELECT lab_result_id, value_numeric, reference_low, reference_high "
            "FROM dwd.lab_result ORDER BY 1"
        )
        # "-150" mg/dL: no lower end, a high end of 150 mg/dL = 1.69 mmol/L; nothing to report.
        assert no_low is None and float(tg_high) == pytest.approx(150 * 0.01129, abs=1e-2)
        assert engine.fetchall("SELECT * FROM gov.value_issues") == []
        assert rid == "H01/LIS/RES/1"
        assert float(value) == pytest.approx(99 * 0.0555062, abs=1e-3)  # mg/dL → mmol/L
        assert (float(low), float(high)) == pytest.approx((3.885, 6.106), abs=1e-3)
    finally:
        engine.close()


def test_a_mapping_file_reading_a_table_the_gateway_does_not_extract_is_refused(
    tmp_path: Path,
) -> None:
    from medfabric.governance.run import sources_from_settings
    from medfabric.standards._yaml import CatalogError

    settings = _custom_settings(tmp_path, CUSTOM.replace("from: LIS.RES", "from: LIS.RESULTS"))
    with pytest.raises(CatalogError, match=r"acme.yaml.*H01 LIS does not extract table RESULTS"):
        sources_from_settings(settings)
