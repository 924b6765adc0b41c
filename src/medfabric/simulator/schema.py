"""The canonical (vendor-neutral) shape of every source table the simulator writes.

A hospital's rows are generated once in this shape; each vendor dialect then renames tables and
columns and re-encodes values (dates, codes, units, text encoding) on the way to SQLite.

Column kinds:
- ``key``: the table's local key (an integer sequence per hospital and table);
- ``ref:<table>``: a local key of another table (``ref:visit`` points at either visit table);
- ``code:<domain>``: a standard code that each dialect maps to its own local code list;
- ``text``: free Chinese text (GBK-encoded by the dialect that does so);
- ``str``, ``int``, ``float``, ``date``, ``dt`` (date-time), ``value`` (a lab value: a float,
  or an ordinal string such as 阴性).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str

    @property
    def code_domain(self) -> str | None:
        return self.kind[5:] if self.kind.startswith("code:") else None

    @property
    def ref_table(self) -> str | None:
        return self.kind[4:] if self.kind.startswith("ref:") else None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    system: str
    columns: tuple[Column, ...]

    @property
    def key(self) -> str:
        return self.columns[0].name

    def index(self, column: str) -> int:
        for i, c in enumerate(self.columns):
            if c.name == column:
                return i
        raise KeyError(f"{self.name} has no column {column!r}")


def _t(name: str, system: str, spec: str) -> Table:
    cols = []
    for part in spec.split():
        col, kind = part.split("=")
        cols.append(Column(col, kind))
    if cols[0].kind != "key":
        raise ValueError(f"{name}: first column must be the key")
    return Table(name, system, tuple(cols))


TABLES: tuple[Table, ...] = (
    _t("department", "HIS", "dept_id=key dept_code=code:dept dept_name=text"),
    _t(
        "staff",
        "HIS",
        "staff_id=key name=text sex=code:sex title=text dept_id=ref:department role=str",
    ),
    _t(
        "patient",
        "HIS",
        "patient_id=key name=text sex=code:sex birth_date=date id_type=code:id_type "
        "id_number=str nationality=str ethnicity=code:ethnicity marital=code:marital "
        "phone=str address=text created_at=dt",
    ),
    _t(
        "outpatient_visit",
        "HIS",
        "visit_id=key patient_id=ref:patient visit_type=code:visit_type dept_id=ref:department "
        "doctor_id=ref:staff visit_time=dt chief_complaint=text",
    ),
    _t(
        "admission",
        "HIS",
        "visit_id=key patient_id=ref:patient dept_id=ref:department doctor_id=ref:staff "
        "admit_time=dt discharge_time=dt disposition=code:disposition bed_no=str",
    ),
    _t(
        "diagnosis",
        "HIS",
        "diag_id=key visit_id=ref:visit patient_id=ref:patient visit_type=code:visit_type "
        "diag_code=code:diag diag_name=text diag_type=code:diag_type diag_time=dt "
        "doctor_id=ref:staff",
    ),
    _t(
        "medical_order",
        "HIS",
        "order_id=key visit_id=ref:visit patient_id=ref:patient order_type=code:order_type "
        "item_code=str item_name=text order_time=dt doctor_id=ref:staff status=code:order_status",
    ),
    _t(
        "prescription",
        "HIS",
        "rx_id=key visit_id=ref:visit patient_id=ref:patient order_id=ref:medical_order "
        "drug_code=code:drug drug_name=text dose=float dose_unit=str frequency=code:frequency "
        "days=int quantity=float rx_time=dt doctor_id=ref:staff",
    ),
    _t(
        "charge",
        "HIS",
        "charge_id=key visit_id=ref:visit patient_id=ref:patient item_type=str item_code=str "
        "item_name=text quantity=float unit_price=float amount=float charge_time=dt",
    ),
    _t(
        "lab_request",
        "LIS",
        "request_id=key order_id=ref:medical_order patient_id=ref:patient visit_id=ref:visit "
        "panel_code=code:lab_panel panel_name=text request_time=dt dept_name=text "
        "doctor_name=text",
    ),
    _t(
        "specimen",
        "LIS",
        "specimen_id=key request_id=ref:lab_request specimen_type=code:specimen "
        "collected_at=dt received_at=dt",
    ),
    _t(
        "lab_result",
        "LIS",
        "result_id=key request_id=ref:lab_request specimen_id=ref:specimen "
        "patient_id=ref:patient item_code=code:lab_item item_name=text value=value unit=str "
        "ref_range=str flag=code:flag reported_at=dt status=code:result_status",
    ),
    _t(
        "exam_request",
        "PACS",
        "exam_req_id=key order_id=ref:medical_order patient_id=ref:patient visit_id=ref:visit "
        "exam_code=code:exam exam_name=text request_time=dt doctor_name=text clinical_info=text",
    ),
    _t(
        "study",
        "PACS",
        "study_key=key study_uid=str accession=str exam_req_id=ref:exam_request "
        "patient_id=ref:patient patient_name=text modality=str body_part=str study_time=dt "
        "description=text",
    ),
    _t(
        "series",
        "PACS",
        "series_key=key study_key=ref:study series_uid=str series_no=int modality=str "
        "description=text",
    ),
    _t(
        "instance",
        "PACS",
        "instance_key=key series_key=ref:series sop_uid=str instance_no=int file_path=str "
        "file_size=int",
    ),
    _t(
        "exam_report",
        "PACS",
        "report_id=key exam_req_id=ref:exam_request accession=str findings=text "
        "impression=text abnormal=int reporter=text reported_at=dt status=code:report_status",
    ),
    _t(
        "clinical_document",
        "EMR",
        "doc_id=key patient_id=ref:patient visit_id=ref:visit doc_type=code:doc_type "
        "title=text content=text author=text created_at=dt",
    ),
)

TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
SYSTEM_TABLES: dict[str, tuple[Table, ...]] = {
    s: tuple(t for t in TABLES if t.system == s) for s in ("HIS", "LIS", "PACS", "EMR")
}
# Both visit tables draw keys from one sequence, so a ``ref:visit`` is unambiguous.
KEY_SPACE: dict[str, str] = {"outpatient_visit": "visit", "admission": "visit"}


def ref_system(ref: str) -> str:
    """The system that owns the keys a ``ref:<table>`` column points at."""
    return "HIS" if ref == "visit" else TABLE_BY_NAME[ref].system


def key_space(table: str) -> str:
    """The key sequence a table's keys come from (the visit tables share one)."""
    return KEY_SPACE.get(table, table)
