"""康宁 (kangning): a domestic HIS whose schema speaks pinyin initials.

Tables and columns are pinyin abbreviations (``MS_BRDA.BRXM`` = 门诊病人档案.病人姓名), keys are
integers, timestamps are compact 'YYYYMMDDHHMMSS' text and dates 'YYYYMMDD', several lab items
are reported in conventional units (glucose and lipids in mg/dL, creatinine in mg/dL), every
Chinese text column holds GBK bytes (a BLOB), codes are Chinese words or local numbers, and a
deleted row is gone (hard delete) — only a key comparison finds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

from medfabric.simulator.dialects.base import Dialect, iso_seconds

_COLUMNS = {
    "dept_id": "KSID", "dept_code": "KSDM", "dept_name": "KSMC", "staff_id": "YGID",
    "name": "XM", "sex": "XB", "title": "ZC", "role": "LB", "patient_id": "BRID",
    "birth_date": "CSRQ", "id_type": "ZJLX", "id_number": "ZJHM", "nationality": "GJ",
    "ethnicity": "MZ", "marital": "HYZK", "phone": "LXDH", "address": "JTDZ",
    "created_at": "JDSJ", "visit_id": "JZID", "visit_type": "JZLX", "doctor_id": "YSID",
    "visit_time": "GHSJ", "chief_complaint": "ZS", "admit_time": "RYSJ",
    "discharge_time": "CYSJ", "disposition": "LYFS", "bed_no": "CWH", "diag_id": "ZDID",
    "diag_code": "ZDDM", "diag_name": "ZDMC", "diag_type": "ZDLB", "diag_time": "ZDSJ",
    "order_id": "YZID", "order_type": "YZLX", "item_code": "XMDM", "item_name": "XMMC",
    "order_time": "KZSJ", "status": "ZT", "rx_id": "CFID", "drug_code": "YPDM",
    "drug_name": "YPMC", "dose": "JL", "dose_unit": "JLDW", "frequency": "PC", "days": "TS",
    "quantity": "SL", "rx_time": "KFSJ", "charge_id": "FYID", "item_type": "FYLB",
    "unit_price": "DJ", "amount": "JE", "charge_time": "SFSJ", "request_id": "SQDH",
    "panel_code": "ZHDM", "panel_name": "ZHMC", "request_time": "SQSJ", "doctor_name": "SQYS",
    "specimen_id": "BBTM", "specimen_type": "BBLX", "collected_at": "CJSJ",
    "received_at": "JSSJ", "result_id": "JGID", "value": "JG", "unit": "DW",
    "ref_range": "CKFW", "flag": "YCBZ", "reported_at": "BGSJ", "exam_req_id": "JCSQID",
    "exam_code": "JCDM", "exam_name": "JCMC", "clinical_info": "LCZD", "study_key": "JCID",
    "study_uid": "JCUID", "accession": "JCH", "patient_name": "BRXM", "modality": "SBLX",
    "body_part": "JCBW", "study_time": "JCSJ", "description": "MS", "series_key": "XLID",
    "series_uid": "XLUID", "series_no": "XLH", "instance_key": "TXID", "sop_uid": "TXUID",
    "instance_no": "TXH", "file_path": "WJLJ", "file_size": "WJDX", "report_id": "BGID",
    "findings": "JCSJN", "impression": "ZDYJ", "abnormal": "YXBZ", "reporter": "BGYS",
    "doc_id": "WSID", "doc_type": "WSLX", "content": "NR", "author": "ZZ",
}  # fmt: skip

_SMALL: dict[str, dict[str, str]] = {
    "sex": {"0": "未知", "1": "男", "2": "女", "9": "未说明"},
    "visit_type": {
        "1": "门诊", "2": "急诊", "3": "住院", "4": "体检", "5": "家床", "6": "留观", "9": "其他",
    },
    "diag_type": {"1": "主", "2": "次"},
    "order_type": {"LAB": "检验", "EXAM": "检查", "DRUG": "药品"},
    "result_status": {"F": "已审核", "C": "已更正"},
    "report_status": {"F": "已发布", "C": "已修订"},
    "flag": {"N": "", "H": "↑", "L": "↓", "HH": "↑↑", "LL": "↓↓", "A": "*"},
}  # fmt: skip


class Kangning(Dialect):
    name = "kangning"
    vendor_zh = "康宁"
    table_names: ClassVar[Mapping[str, str]] = {
        "department": "GY_KSDM", "staff": "GY_YGDM", "patient": "MS_BRDA",
        "outpatient_visit": "MS_GHMX", "admission": "ZY_BRRY", "diagnosis": "YS_ZDJL",
        "medical_order": "YS_YZ", "prescription": "MS_CF", "charge": "FY_MX",
        "lab_request": "JY_SQD", "specimen": "JY_BB", "lab_result": "JY_JG",
        "exam_request": "JC_SQD", "study": "JC_JCXX", "series": "JC_XL", "instance": "JC_TX",
        "exam_report": "JC_BG", "clinical_document": "BL_WS",
    }  # fmt: skip
    text_encoding = "gbk"
    delete_mode = "hard"
    updated_column = "XGSJ"
    integer_keys = True
    unit_overrides: ClassVar[Mapping[str, str]] = {
        "GLU": "mg/dL", "TC": "mg/dL", "TG": "mg/dL", "HDL-C": "mg/dL", "LDL-C": "mg/dL",
        "CREA": "mg/dL",
    }  # fmt: skip

    def column_name(self, table: str, column: str) -> str:
        if table == "clinical_document" and column == "title":
            return "BT"
        return _COLUMNS[column]

    def format_keys(self, space: str, values: Sequence[int | None]) -> list[Any]:
        return list(values)

    def format_datetimes(self, values: Sequence[int | None]) -> list[Any]:
        return [
            None if s is None else s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]
            for s in iso_seconds(values)
        ]

    def format_date(self, value: date | None) -> Any:
        return None if value is None else value.strftime("%Y%m%d")

    def local_code_for(self, domain: str, index: int, std: str) -> str:
        if domain in _SMALL:
            return _SMALL[domain].get(std, std)
        if domain in ("id_type", "ethnicity", "marital", "disposition", "order_status"):
            return f"{int(std) if std.isdigit() else std}"  # leading zeros dropped
        if domain == "diag":
            # 国家临床版 style: six characters after the category, e.g. E11.900 / I10.x00
            head, _, tail = std.partition(".")
            return f"{head}.{(tail or 'x').ljust(3, '0')}"
        if domain == "dept":
            return f"{index + 101}"
        if domain == "lab_item":
            return std  # vendor mnemonic, which happens to match the regional one
        prefix = {
            "lab_panel": "ZH", "exam": "JC", "drug": "YP", "specimen": "", "frequency": "PC",
            "doc_type": "",
        }[domain]  # fmt: skip
        return f"{prefix}{index + 1:03d}"
