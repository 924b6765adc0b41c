"""锐信 (ruixin): an Oracle-era HIS style.

UPPER_SNAKE tables and columns, string keys with a prefix per table, 'YYYY-MM-DD HH:MM:SS'
text timestamps, standard (SI) units, UTF-8 text, GB/T codes where a national code exists,
numbered local codes elsewhere, and soft deletes: ``VALID_FLAG`` '1' live, '0' deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

from medfabric.simulator.dialects.base import Dialect, iso_seconds

_PREFIX = {
    "department": "D", "staff": "S", "patient": "P", "visit": "V", "diagnosis": "DG",
    "medical_order": "O", "prescription": "RX", "charge": "C", "lab_request": "LR",
    "specimen": "SP", "lab_result": "R", "exam_request": "ER", "study": "ST", "series": "SE",
    "instance": "IM", "exam_report": "RP", "clinical_document": "DOC",
}  # fmt: skip

_RENAME = {
    ("patient", "name"): "PAT_NAME",
    ("patient", "sex"): "SEX_CODE",
    ("patient", "birth_date"): "DATE_OF_BIRTH",
    ("patient", "id_number"): "ID_NO",
    ("patient", "id_type"): "ID_TYPE_CODE",
    ("patient", "phone"): "PHONE_NUMBER",
    ("patient", "marital"): "MARITAL_STATUS_CODE",
    ("patient", "ethnicity"): "NATION_CODE",
    ("patient", "nationality"): "CITIZENSHIP",
    ("lab_result", "value"): "RESULT_VALUE",
    ("lab_result", "unit"): "UNITS",
    ("lab_result", "flag"): "ABNORMAL_INDICATOR",
    ("diagnosis", "diag_code"): "DIAGNOSIS_CODE",
    ("diagnosis", "diag_name"): "DIAGNOSIS_DESC",
}

_SMALL: dict[str, dict[str, str]] = {
    "visit_type": {"1": "1", "2": "2", "3": "3", "4": "4", "5": "5", "6": "6", "9": "9"},
    "diag_type": {"1": "1", "2": "2"},
    "order_type": {"LAB": "C", "EXAM": "D", "DRUG": "A"},
    "result_status": {"F": "F", "C": "C"},
    "report_status": {"F": "2", "C": "3"},
    "flag": {"N": "N", "H": "H", "L": "L", "HH": "HH", "LL": "LL", "A": "A"},
    "frequency": {
        "QD": "qd", "BID": "bid", "TID": "tid", "QID": "qid", "QN": "qn", "Q8H": "q8h",
        "Q12H": "q12h", "QW": "qw", "PRN": "prn", "ST": "st",
    },
}  # fmt: skip


class Ruixin(Dialect):
    name = "ruixin"
    vendor_zh = "锐信"
    table_names: ClassVar[Mapping[str, str]] = {
        "department": "DEPT_DICT", "staff": "STAFF_DICT", "patient": "PAT_MASTER_INDEX",
        "outpatient_visit": "CLINIC_MASTER", "admission": "PAT_VISIT",
        "diagnosis": "DIAGNOSIS", "medical_order": "ORDERS", "prescription": "PRESCRIPTION",
        "charge": "CHARGE_DETAIL", "lab_request": "LAB_TEST_MASTER",
        "specimen": "LAB_SPECIMEN", "lab_result": "LAB_RESULT", "exam_request": "EXAM_APPOINTS",
        "study": "EXAM_STUDY", "series": "EXAM_SERIES", "instance": "EXAM_IMAGE",
        "exam_report": "EXAM_REPORT", "clinical_document": "EMR_DOCUMENT",
    }  # fmt: skip
    updated_column = "LAST_UPDATE_TIME"
    flag_column = "VALID_FLAG"
    flag_live = "1"
    flag_deleted = "0"

    def column_name(self, table: str, column: str) -> str:
        return _RENAME.get((table, column), column.upper())

    def format_keys(self, space: str, values: Sequence[int | None]) -> list[Any]:
        p = _PREFIX[space]
        return [None if v is None else f"{p}{v:09d}" for v in values]

    def format_key(self, space: str, value: int) -> Any:
        return f"{_PREFIX[space]}{value:09d}"

    def parse_key(self, space: str, stored: Any) -> int:
        return int(str(stored)[len(_PREFIX[space]) :])

    def format_datetimes(self, values: Sequence[int | None]) -> list[Any]:
        return [None if s is None else f"{s[:10]} {s[11:]}" for s in iso_seconds(values)]

    def format_date(self, value: date | None) -> Any:
        return None if value is None else value.isoformat()

    def local_code_for(self, domain: str, index: int, std: str) -> str:
        if domain in _SMALL:
            return _SMALL[domain].get(std, std)
        if domain in ("sex", "id_type", "ethnicity", "marital", "disposition", "order_status"):
            return std
        if domain == "diag":
            return std  # ICD-10 with the dot, as published
        if domain == "dept":
            return std.replace(".", "")
        prefix = {
            "lab_item": "L", "lab_panel": "G", "exam": "E", "drug": "Y", "specimen": "B",
            "doc_type": "W",
        }[domain]  # fmt: skip
        return f"{prefix}{index + 1:04d}"
