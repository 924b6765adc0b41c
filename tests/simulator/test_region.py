"""The generated region: determinism, dialects, ground truth, DICOM, text encodings."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean, median

import pydicom
import pytest
from stdnum.cn import ric
from tests.simulator.regionkit import Region, make_region

from medfabric.simulator.dialects import DIALECTS
from medfabric.standards import codes, gb11643


def _db_digest(path: Path) -> str:
    conn = sqlite3.connect(path)
    h = hashlib.sha256()
    for line in conn.iterdump():
        h.update(line.encode())
    conn.close()
    return h.hexdigest()


def _region_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "region.toml":
            rel = str(p.relative_to(root))
            out[rel] = (
                _db_digest(p) if p.suffix == ".db" else hashlib.sha256(p.read_bytes()).hexdigest()
            )
    return out


def test_same_seed_same_region_whatever_the_workers(region: Region, tmp_path: Path) -> None:
    again = make_region(tmp_path / "again", workers=2)
    a, b = _region_digest(region.root), _region_digest(again.root)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_other_seed_other_region(region: Region, tmp_path: Path) -> None:
    other = make_region(tmp_path / "other", seed=12)
    assert _db_digest(region.root / "H01" / "his.db") != _db_digest(other.root / "H01" / "his.db")


def test_every_hospital_has_four_real_sqlite_systems(region: Region) -> None:
    for hid in region.hospitals:
        for system in ("HIS", "LIS", "PACS", "EMR"):
            with region.db(hid, system) as conn:
                tables = {
                    r[0] for r in conn.execute("select name from sqlite_master where type='table'")
                }
            d = region.dialect(hid, system)
            assert tables == {d.table_name(t) for t in d.table_names if _system_of(t) == system}
    assert len(region.rows("H01", "patient")) >= 300
    assert len(region.rows("H01", "lab_result")) > 1000


def _system_of(table: str) -> str:
    from medfabric.simulator.schema import TABLE_BY_NAME

    return TABLE_BY_NAME[table].system


def test_dialects_really_differ(region: Region) -> None:
    names = [set(d.table_names.values()) for d in DIALECTS.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    by_dialect = {region.dialect(h, "HIS").name: h for h in region.hospitals}
    assert set(by_dialect) == {"ruixin", "kangning", "yunhai"}
    formats = {
        "ruixin": r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$",
        "kangning": r"^\d{14}$",
        "yunhai": r"^\d{12,13}$",
    }
    sexes = {"ruixin": {"1", "2"}, "kangning": {"男", "女"}, "yunhai": {"M", "F"}}
    for name, hid in by_dialect.items():
        visits = region.rows(hid, "outpatient_visit")
        assert all(re.match(formats[name], str(v["visit_time"])) for v in visits[:200])
        seen = {p["sex"] for p in region.rows(hid, "patient") if p["sex"] is not None}
        assert seen == sexes[name]


def test_glucose_units_differ_and_agree_after_conversion(region: Region) -> None:
    by_unit: dict[str, list[float]] = defaultdict(list)
    for hid in region.hospitals:
        for r in region.rows(hid, "lab_result"):
            code = r["item_code"]
            d = region.dialect(hid, "LIS")
            std = {v: k for k, v in d.local_codes("lab_item").items()}.get(code)
            if std == "GLU" and r["value"] not in (None, ""):
                by_unit[r["unit"]].append(float(r["value"]))
    assert {"mmol/L", "mg/dL"} <= set(by_unit)
    factor = codes.lab_unit_factors()["GLU"]["mg/dL"]
    # medians: a few injected wrong-unit values sit among them
    mmol, mgdl = median(by_unit["mmol/L"]), median(by_unit["mg/dL"]) * factor
    assert 4.0 < mmol < 12 and abs(mmol - mgdl) / mmol < 0.25


def test_gbk_dialect_stores_text_as_gbk_bytes(region: Region) -> None:
    hid = next(h for h in region.hospitals if region.dialect(h, "HIS").name == "kangning")
    names = [p["name"] for p in region.rows(hid, "patient") if p["name"] is not None]
    assert all(isinstance(n, bytes) for n in names)
    decoded = [n.decode("gbk") for n in names]
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", n)) for n in decoded) > 0.9 * len(decoded)
    with pytest.raises(UnicodeDecodeError):
        b"".join(names[:50]).decode("utf-8")


def test_deletion_conventions(region: Region) -> None:
    for hid in region.hospitals:
        d = region.dialect(hid, "HIS")
        if d.delete_mode == "hard":
            assert d.flag_column is None
        else:
            flags = {r["_flag"] for r in region.rows(hid, "prescription")}
            assert flags == {d.flag_live}


def test_id_numbers_are_valid_and_consistent(region: Region) -> None:
    n18 = n15 = 0
    for hid in region.hospitals:
        for p in region.rows(hid, "patient"):
            number = p["id_number"]
            if number is None or len(number) not in (15, 18) or not number[:6].isdigit():
                continue
            info = gb11643.parse(number)
            if len(number) == 18:
                n18 += 1
                assert ric.is_valid(number)
            else:
                n15 += 1
                assert ric.is_valid(gb11643.upgrade_15_to_18(number))
            assert info.region in codes.regions()
    assert n18 > 500 and n15 > 0


def test_truth_covers_every_registration_and_shared_person(region: Region) -> None:
    patients = region.truth("patients.csv")
    persons = {p["person_id"]: p for p in region.truth("persons.csv")}
    for hid in region.hospitals:
        d = region.dialect(hid, "HIS")
        in_db = {str(d.format_keys("patient", [d.parse_key("patient", r["patient_id"])])[0])
                 for r in region.rows(hid, "patient")}  # fmt: skip
        in_truth = {r["local_patient_id"] for r in patients if r["hospital"] == hid}
        assert in_db == in_truth
    held = defaultdict(set)
    for r in patients:
        held[r["person_id"]].add(r["hospital"])
    shared = [p for p in persons.values() if len(p["hospitals"].split()) > 1]
    assert len(shared) > 0.15 * len(persons)
    for p in shared:
        assert set(p["hospitals"].split()) <= held[p["person_id"]]
    varied = Counter(k for r in patients for k in r["variations"].split())
    assert {"homophone", "missing_phone", "changed_address"} <= set(varied)


def test_every_injected_defect_is_present(region: Region) -> None:
    defects = region.truth("defects.csv")
    kinds = Counter(d["defect"] for d in defects)
    assert {"duplicate", "missing_required", "invalid_code", "discharge_before_admission"} <= set(
        kinds
    )
    clock = region.manifest["clock"]
    cache: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    for d in defects:
        key = (d["hospital"], d["table"])
        if key not in cache:
            cache[key] = region.rows_by_key(*key)
        row = cache[key][d["local_key"]]
        dialect = region.dialect(d["hospital"], _system_of(d["table"]))
        kind, col = d["defect"], d["column"]
        if kind == "missing_required":
            assert row[col] is None
        elif kind == "invalid_code":
            assert row[col] not in dialect.local_codes("diag").values()
        elif kind == "out_of_range" and col == "value":
            assert row[col] == d["detail"]
        elif kind == "future_date":
            stored = next(row[c] for c in ("visit_time", "admit_time") if c in row)
            assert dialect.format_datetimes([clock])[0] < stored
        elif kind == "discharge_before_admission":
            assert row["discharge_time"] < row["admit_time"]
        elif kind == "duplicate" and d["table"] == "lab_result":
            orig = cache[key][d["detail"]]
            assert orig["value"] == row["value"] and orig["item_code"] == row["item_code"]
        elif kind == "duplicate" and d["table"] == "patient":
            assert d["detail"] in cache[key]


def test_diagnoses_drive_labs_and_drugs(region: Region) -> None:
    """A diabetic has glucose results above normal and is prescribed antidiabetics."""
    hid = next(h for h in region.hospitals if region.dialect(h, "HIS").name == "ruixin")
    lis = region.dialect(hid, "LIS")
    his = region.dialect(hid, "HIS")
    diag_std = {v: k for k, v in his.local_codes("diag").items()}
    diabetic_visits = {
        str(r["visit_id"]) for r in region.rows(hid, "diagnosis")
        if r["diag_type"] == his.local_codes("diag_type")["1"]
        and codes.diagnoses().get(diag_std.get(r["diag_code"], ""), None) is not None
        and codes.diagnoses()[diag_std[r["diag_code"]]].profile == "diabetes_t2"
    }  # fmt: skip
    assert diabetic_visits
    requests = {r["request_id"]: str(r["visit_id"]) for r in region.rows(hid, "lab_request")}
    glu_local = lis.local_codes("lab_item")["GLU"]
    dia, other = [], []
    for r in region.rows(hid, "lab_result"):
        if r["item_code"] == glu_local and r["value"] not in (None, ""):
            v = float(r["value"]) * codes.lab_unit_factors()["GLU"][r["unit"]]
            (dia if requests[r["request_id"]] in diabetic_visits else other).append(v)
    assert mean(dia) > 8.0 and mean(other) < 7.0
    antidiabetic = {c for c, d in codes.drugs().items() if d.atc.startswith("A10")}
    drug_std = {v: k for k, v in his.local_codes("drug").items()}
    rx = [
        drug_std[r["drug_code"]]
        for r in region.rows(hid, "prescription")
        if str(r["visit_id"]) in diabetic_visits
    ]
    assert sum(c in antidiabetic for c in rx) > 0.4 * len(diabetic_visits)


def test_repeated_tests_exist_on_both_sides(region: Region) -> None:
    repeats = region.truth("repeat_tests.csv")
    assert len(repeats) > 10
    for r in repeats[:40]:
        assert 0 < float(r["days_apart"]) < 8
        for side in ("first", "second"):
            hid, visit = r[f"{side}_hospital"], r[f"{side}_visit"]
            d = region.dialect(hid, "HIS")
            domain = "lab_panel" if r["item_kind"] == "lab_panel" else "exam"
            local = d.local_codes(domain)[r["item_code"]]
            orders = [o for o in region.rows(hid, "medical_order") if str(o["visit_id"]) == visit]
            assert local in {o["item_code"] for o in orders}


def test_dicom_files_read_back_with_chinese_names(region: Region) -> None:
    checked = 0
    for hid in region.hospitals:
        pacs = region.dialect(hid, "PACS")
        studies = {str(s["study_key"]): s for s in region.rows(hid, "study")}
        series = {str(s["series_key"]): s for s in region.rows(hid, "series")}
        for inst in region.rows(hid, "instance")[:25]:
            ds = pydicom.dcmread(region.root / inst["file_path"])
            st = studies[str(series[str(inst["series_key"])]["study_key"])]
            name = st["patient_name"]
            name = name.decode(pacs.text_encoding) if isinstance(name, bytes) else name
            assert ds.SpecificCharacterSet == "GB18030"
            assert str(ds.PatientName) == name
            assert ds.Modality == st["modality"]
            assert ds.StudyInstanceUID == st["study_uid"]
            assert ds.SOPInstanceUID == inst["sop_uid"]
            checked += 1
    assert checked > 20


def test_note_facts_point_at_what_the_note_says(region: Region) -> None:
    facts = region.truth("note_facts/H01.csv")
    emr = region.dialect("H01", "EMR")
    docs = {str(r["doc_id"]): r["content"] for r in region.rows("H01", "clinical_document")}
    dx = codes.diagnoses()
    n = 0
    for f in facts[:3000]:
        text = docs[f["doc_key"]]
        text = text.decode(emr.text_encoding) if isinstance(text, bytes) else text
        surface = text[int(f["start"]) : int(f["end"])]
        if f["kind"] == "diagnosis":
            assert dx[f["code"]].name_zh in surface
            n += 1
        elif f["kind"] == "lab":
            assert f["value"] in surface
    assert n > 50


def test_code_maps_cover_every_local_code_in_the_data(region: Region) -> None:
    maps: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in region.truth("code_maps.csv"):
        maps[(r["dialect"], r["domain"])].add(r["local_code"])
    invalid = {
        (d["hospital"], d["local_key"])
        for d in region.truth("defects.csv")
        if d["defect"] == "invalid_code"
    }
    for hid in region.hospitals:
        d = region.dialect(hid, "HIS").name
        for r in region.rows(hid, "diagnosis"):
            if (hid, str(r["diag_id"])) not in invalid:
                assert r["diag_code"] in maps[(d, "diag")]
        ld = region.dialect(hid, "LIS").name
        assert {r["item_code"] for r in region.rows(hid, "lab_result")} <= maps[(ld, "lab_item")]


def test_generated_region_toml_is_valid_settings(region: Region) -> None:
    from medfabric.settings import load_settings

    settings = load_settings(region.root / "region.toml")
    assert [h.id for h in settings.hospitals] == region.hospitals
    for h in settings.hospitals:
        assert set(h.systems) == {"HIS", "LIS", "PACS", "EMR"}
        for system, cfg in h.systems.items():
            assert cfg.dialect == region.dialect(h.id, system).name
            path = Path(cfg.url.removeprefix("sqlite:///"))
            assert path.is_file() and path.parent.name == h.id


def test_source_dialects_document_is_current() -> None:
    from medfabric.simulator.dialects.describe import markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "source-dialects.md"
    assert doc.read_text("utf-8") == markdown(), (
        "regenerate: python -m medfabric.simulator.dialects.describe > docs/source-dialects.md"
    )
