"""云海 (yunhai): a newer web-era vendor.

snake tables with a system prefix (``his_patient``), camelCase columns, integer keys that only
grow (so an increasing id works as a watermark), timestamps as epoch milliseconds (Beijing
time), dates 'YYYY/MM/DD', haemoglobin and albumin in g/dL, English-word codes, UTF-8 text, and
soft deletes: ``isDeleted`` 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

from medfabric.simulator.dialects.base import Dialect, camel

_BEIJING_OFFSET_S = 8 * 3600

_SMALL: dict[str, dict[str, str]] = {
    "sex": {"0": "U", "1": "M", "2": "F", "9": "N"},
    "id_type": {
        "01": "IDCARD", "02": "HOUSEHOLD", "03": "PASSPORT", "04": "OFFICER", "05": "DRIVER",
        "06": "HKMO_PERMIT", "07": "TW_PERMIT", "99": "OTHER",
    },
    "visit_type": {
        "1": "OUTPATIENT", "2": "EMERGENCY", "3": "INPATIENT", "4": "CHECKUP", "5": "HOMEBED",
        "6": "OBSERVATION", "9": "OTHER",
    },
    "diag_type": {"1": "MAIN", "2": "OTHER"},
    "order_type": {"LAB": "lab", "EXAM": "exam", "DRUG": "drug"},
    "result_status": {"F": "final", "C": "corrected"},
    "report_status": {"F": "final", "C": "amended"},
    "flag": {"N": "NORMAL", "H": "HIGH", "L": "LOW", "HH": "CRIT_HIGH", "LL": "CRIT_LOW",
             "A": "ABNORMAL"},
    "frequency": {
        "QD": "1/d", "BID": "2/d", "TID": "3/d", "QID": "4/d", "QN": "1/n", "Q8H": "q8h",
        "Q12H": "q12h", "QW": "1/w", "PRN": "prn", "ST": "stat",
    },
    "specimen": {
        "BLD": "whole_blood", "SER": "serum", "PLS": "plasma", "UR": "urine", "STL": "stool",
        "CSF": "csf", "SPT": "sputum", "SWB": "swab",
    },
    "doc_type": {},
}  # fmt: skip


class Yunhai(Dialect):
    name = "yunhai"
    vendor_zh = "云海"
    table_names: ClassVar[Mapping[str, str]] = {
        "department": "his_dept", "staff": "his_staff", "patient": "his_patient",
        "outpatient_visit": "his_clinic_visit", "admission": "his_inpatient",
        "diagnosis": "his_diagnosis", "medical_order": "his_order",
        "prescription": "his_prescription", "charge": "his_fee", "lab_request": "lis_apply",
        "specimen": "lis_sample", "lab_result": "lis_report_item", "exam_request": "pacs_apply",
        "study": "pacs_study", "series": "pacs_series", "instance": "pacs_image",
        "exam_report": "pacs_report", "clinical_document": "emr_record",
    }  # fmt: skip
    updated_column = "updateTime"
    flag_column = "isDeleted"
    flag_live = "0"
    flag_deleted = "1"
    integer_keys = True
    datetime_sql_type = "INTEGER"
    unit_overrides: ClassVar[Mapping[str, str]] = {"HGB": "g/dL", "ALB": "g/dL", "TP": "g/dL"}

    def column_name(self, table: str, column: str) -> str:
        return camel(column)

    def format_keys(self, space: str, values: Sequence[int | None]) -> list[Any]:
        return list(values)

    def format_datetimes(self, values: Sequence[int | None]) -> list[Any]:
        return [None if v is None else (v - _BEIJING_OFFSET_S) * 1000 for v in values]

    def format_date(self, value: date | None) -> Any:
        return None if value is None else value.strftime("%Y/%m/%d")

    def local_code_for(self, domain: str, index: int, std: str) -> str:
        if domain in _SMALL and std in _SMALL[domain]:
            return _SMALL[domain][std]
        if domain in ("ethnicity", "marital", "disposition", "order_status", "doc_type"):
            return f"{domain[:3].upper()}{std}"
        if domain == "diag":
            return std.replace(".", "")
        base = {"dept": 1000, "lab_item": 10000, "lab_panel": 500, "exam": 3000, "drug": 600000}
        return str(base[domain] + index + 1)
