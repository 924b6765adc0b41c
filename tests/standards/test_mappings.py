"""The mapping-language loader: a valid file loads into its parts; every rule broken is refused
with the file, line and column and the reason, before any data is touched."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from medfabric.standards._yaml import CatalogError
from medfabric.standards.mappings import SourceRef, load_mapping

CODES = "domain,local_code,standard_code\nsex,M,1\nsex,F,2\nsex,U,9\n"

GOOD = """\
dialect: ruixin
version: "t1"
codes: codes.csv
formats: {datetime: "%Y-%m-%d %H:%M:%S", date: "%Y-%m-%d"}
tables:
  - dwd: person
    from: HIS.PAT_MASTER_INDEX
    columns:
      person_id: {id: PATIENT_ID}
      id_doc_no: {from: ID_NO, transform: [trim, upper]}
      name: {from: PAT_NAME, transform: [trim, nfkc, squeeze], null_if: ["", "无"]}
      sex_code: {from: SEX_CODE, code: sex}
      birth_date: {from: DATE_OF_BIRTH, parse: date}
      registered_at: {from: CREATED_AT, parse: datetime}
      address_text: {concat: [ADDRESS, PHONE_NUMBER], sep: " "}
  - dwd: lab_report
    from: LIS.LAB_TEST_MASTER
    join:
      spec: {from: LIS.LAB_SPECIMEN, on: {SPECIMEN_ID: SPECIMEN_ID}}
    where: {STATUS: ["F", "C"]}
    columns:
      lab_report_id: {id: REQUEST_ID}
      person_id: {ref: {from: PATIENT_ID, table: HIS.PAT_MASTER_INDEX}}
      institution_code: {hospital: true}
      reported_at: {from: REPORT_TIME, parse: datetime, format: "%Y%m%d%H%M%S"}
      collected_at: {from: spec.COLLECT_TIME, parse: datetime}
      request_no: {from: REQUEST_NO, split: {sep: "-", part: 2}}
  - dwd: lab_result
    from: LIS.LAB_RESULT
    columns:
      lab_result_id: {id: RESULT_ID}
      lab_report_id: {ref: {from: REQUEST_ID, table: LIS.LAB_TEST_MASTER}}
      person_id: {ref: {from: PATIENT_ID, dwd: person}}
      institution_code: {hospital: true}
      item_name: {from: ITEM_NAME}
      value_numeric: {from: VALUE, number: lenient}
      reference_low: {from: REF_RANGE, range: low, unit: {from: UNIT, item: ITEM_CODE}}
"""


def _write(tmp_path: Path, text: str, codes: str = CODES) -> Path:
    (tmp_path / "codes.csv").write_text(codes, encoding="utf-8")
    path = tmp_path / "ruixin.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _refused(tmp_path: Path, text: str, codes: str = CODES) -> str:
    with pytest.raises(CatalogError) as info:
        load_mapping(_write(tmp_path, text, codes))
    return str(info.value)


def test_a_valid_mapping_loads_into_its_parts(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, GOOD))
    assert (m.dialect, m.version) == ("ruixin", "t1")
    assert m.code_table == {"sex": {"M": "1", "F": "2", "U": "9"}}
    [person] = m.for_table("person")
    assert person.source == SourceRef("HIS", "PAT_MASTER_INDEX")
    name = person.columns["name"]
    assert name.kind == "from" and name.transforms == ("trim", "nfkc", "squeeze")
    assert name.null_if == ("", "无")
    assert person.columns["birth_date"].format == "%Y-%m-%d"
    assert person.columns["address_text"].args == ("ADDRESS", "PHONE_NUMBER")
    assert person.columns["address_text"].sep == " "
    [report] = m.for_table("lab_report")
    assert report.joins[0].alias == "spec" and report.joins[0].on == (
        ("SPECIMEN_ID", "SPECIMEN_ID"),
    )
    assert report.where == (("STATUS", ("F", "C")),)
    assert report.columns["person_id"].args == ("PATIENT_ID", "HIS.PAT_MASTER_INDEX")
    assert report.columns["reported_at"].format == "%Y%m%d%H%M%S"
    assert report.columns["collected_at"].source_columns == ("spec.COLLECT_TIME",)
    assert report.columns["request_no"].split == ("-", 2)
    assert m.for_table("visit") == ()
    [result] = m.for_table("lab_result")
    assert result.columns["person_id"].args == ("PATIENT_ID", "dwd:person")
    assert result.columns["value_numeric"].number and result.columns["value_numeric"].lenient
    low = result.columns["reference_low"]
    assert (low.range, low.number, low.lenient, low.unit) == (
        "low",
        True,
        True,
        ("UNIT", "ITEM_CODE"),
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("dwd: person", "dwd: persons"), r"ruixin.yaml:6:10: unknown DWD table 'persons'"),
        (("sex_code: {from", "sex_kode: {from"), "DWD table 'person' has no column 'sex_kode'"),
        (("      person_id: {id: PATIENT_ID}\n", ""), "required columns not filled: person_id"),
        (("{from: PAT_NAME,", "{from: PAT_NAME, value: x,"), "needs exactly one of"),
        (("[trim, nfkc", "[trim, shout"), "ruixin.yaml:11:48: unknown transform 'shout'"),
        (("code: sex}", "code: sexes}"), "unknown value domain or code system 'sexes'"),
        (("code: sex}", "code: ethnicity}"), "the code table has no entries for 'ethnicity'"),
        (("parse: date}", "parse: day}"), "parse must be one of date, datetime, time"),
        (("from: HIS.PAT_MASTER_INDEX", "from: HIS.NO_SUCH"), "not a table of the dialect's"),
        (("from: HIS.PAT_MASTER_INDEX", "from: PAT_MASTER_INDEX"), "must be SYSTEM.TABLE"),
        (("spec.COLLECT_TIME", "spek.COLLECT_TIME"), "'spek' is not a join alias"),
        (('split: {sep: "-", part: 2}', 'split: {sep: "-", part: 0}'), "whole number from 1"),
        (("{id: REQUEST_ID}", "{id: REQUEST_ID, _x: 1}"), "unknown key '_x'"),
        (
            ("      person_id: {id", "      _batch_id: {value: b}\n      person_id: {id"),
            "'_batch_id' is a lineage column",
        ),
        (('sep: " "}', 'sep: " ", number: true, unit: {from: A}}'), "unit needs from and item"),
        (("parse: date}", "parse: date, unit: {from: A, item: B}}"), "add number: true"),
        (('version: "t1"\n', ""), "missing key 'version'"),
        (("range: low,", "range: middle,"), "range must be low or high"),
        (("range: low,", "range: low, number: true,"), "range reads a number already"),
    ],
)
def test_each_broken_rule_is_named_with_its_place(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in GOOD
    assert expected in _refused(tmp_path, GOOD.replace(old, new, 1))


def test_the_code_table_is_checked_against_the_standard(tmp_path: Path) -> None:
    assert "codes.csv:3: '7' is not a code of 'sex'" in _refused(
        tmp_path, GOOD, CODES.replace("sex,F,2", "sex,F,7")
    )
    assert "codes.csv:2: unknown domain 'sexx'" in _refused(
        tmp_path, GOOD, CODES.replace("sex,M,1", "sexx,M,1")
    )
    assert "local code 'M' of 'sex' repeats" in _refused(tmp_path, GOOD, CODES + "sex,M,2\n")
    assert "header must be" in _refused(tmp_path, GOOD, "a,b,c\n")


def test_files_that_are_not_mappings_are_refused(tmp_path: Path) -> None:
    assert "not valid YAML" in _refused(tmp_path, "dialect: [")
    assert "empty file" in _refused(tmp_path, "")
    assert "expected a mapping" in _refused(tmp_path, "- 1\n")
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(CatalogError, match="cannot read"):
        load_mapping(missing)
