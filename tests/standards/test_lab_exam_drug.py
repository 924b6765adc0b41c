"""Integrity of the lab, exam and drug code lists in ``standards/data``.

Covers ``lab_panels.csv``, ``lab_items.csv``, ``lab_units.csv``, ``exam_items.csv`` and
``drugs.csv``: shape of the files, cross-references between them and to the value domains,
LOINC check digits, reference ranges, unit conversion factors, DICOM terms and ATC codes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from importlib import resources

import pytest

from medfabric.standards import codes

CJK = re.compile(r"[\u4e00-\u9fff]")
LOINC_SHAPE = re.compile(r"^[1-9][0-9]{0,5}-[0-9]$")
ATC_SHAPE = re.compile(r"^[A-Z]\d\d[A-Z][A-Z]\d\d$")
DRUG_CODE = re.compile(r"^YP\d{5}$")
MNEMONIC = re.compile(r"^[A-Z0-9][A-Z0-9%#\-]*$")
EXAM_CODE = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)+$")

HEADERS = {
    "lab_panels.csv": ["code", "name_zh", "name_en", "specimen", "loinc"],
    "lab_items.csv": [
        "code", "name_zh", "name_en", "loinc", "panel", "specimen", "unit", "value_type",
        "decimals", "ref_low_m", "ref_high_m", "ref_low_f", "ref_high_f", "ref_text",
    ],
    "lab_units.csv": ["item_code", "unit", "factor"],
    "exam_items.csv": [
        "code", "name_zh", "name_en", "modality", "body_part", "category", "contrast",
    ],
    "drugs.csv": [
        "code", "name_zh", "name_en", "atc", "form", "strength", "unit", "route", "dose",
        "frequency",
    ],
}  # fmt: skip

SPECIMENS = {"BLD", "SER", "PLS", "UR", "STL"}
FORMS = {"TAB", "CAP", "SR", "INJ", "POW", "SOL", "GRA", "INH", "OIN", "EYE", "SUP", "PAT"}
ROUTES = {"PO", "IV", "IM", "SC", "INH", "TOP", "OPH", "PR"}
FREQUENCIES = {"QD", "BID", "TID", "QID", "QN", "Q8H", "Q12H", "QW", "PRN", "ST"}
DOSE_UNITS = {"g", "mg", "µg", "IU", "mL", "片", "粒", "吸", "滴", "贴"}
MODALITY_CATEGORY = {
    "CT": "CT",
    "MR": "MR",
    "DX": "XR",
    "US": "US",
    "ES": "ENDO",
    "ECG": "ECG",
    "BMD": "OTHER",
}
# Body Part Examined (0018,0015) defined terms from DICOM PS3.16 Annex L that this list may use.
DICOM_BODY_PARTS = {
    "ABDOMEN", "ABDOMENPELVIS", "ANKLE", "BLADDER", "BRAIN", "BREAST", "BRONCHUS", "CAROTID",
    "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "COLON", "CSPINE", "ELBOW", "ESOPHAGUS", "FOOT",
    "HAND", "HEAD", "HEADNECK", "HEART", "HIP", "KIDNEY", "KNEE", "LEG", "LIVER", "LSPINE",
    "LUNG", "NECK", "PELVIS", "PROSTATE", "SHOULDER", "SKULL", "STOMACH", "TSPINE", "UTERUS",
    "WRIST",
}  # fmt: skip
# Items legitimately reported without a unit (ratios, pH, specific gravity).
UNITLESS = {"INR", "AGR", "U-SG", "U-PH"}
# Which routes each dosage form may be given by.
FORM_ROUTES = {
    "TAB": {"PO"},
    "CAP": {"PO"},
    "SR": {"PO"},
    "SOL": {"PO"},
    "GRA": {"PO"},
    "INJ": {"IV", "IM", "SC"},
    "POW": {"IV", "IM", "SC"},
    "INH": {"INH"},
    "OIN": {"TOP"},
    "PAT": {"TOP"},
    "EYE": {"OPH"},
    "SUP": {"PR"},
}
# Well-known LOINC codes, asserted independently of the data file.
KNOWN_LOINC = {
    "WBC": "6690-2",
    "RBC": "789-8",
    "HGB": "718-7",
    "PLT": "777-3",
    "GLU": "2345-7",
    "HBA1C": "4548-4",
    "CREA": "2160-0",
    "ALT": "1742-6",
    "AST": "1920-8",
    "TC": "2093-3",
    "TG": "2571-8",
    "HDL-C": "2085-9",
    "K": "2823-3",
    "NA": "2951-2",
    "CRP": "1988-5",
    "TSH": "3016-3",
    "CTNI": "10839-9",
    "NTPROBNP": "33762-6",
    "PT": "5902-2",
    "APTT": "3173-2",
    "INR": "6301-6",
}
# Well-known WHO ATC codes, keyed by the English name used in drugs.csv.
KNOWN_ATC = {
    "Metformin": "A10BA02",
    "Acarbose": "A10BF01",
    "Amlodipine": "C08CA01",
    "Atorvastatin": "C10AA05",
    "Rosuvastatin": "C10AA07",
    "Aspirin": "B01AC06",
    "Clopidogrel": "B01AC04",
    "Amoxicillin": "J01CA04",
    "Ceftriaxone": "J01DD04",
    "Levofloxacin": "J01MA12",
    "Azithromycin": "J01FA10",
    "Omeprazole": "A02BC01",
    "Entecavir": "J05AF10",
    "Oseltamivir": "J05AH02",
    "Levothyroxine sodium": "H03AA01",
    "Thiamazole": "H03BB02",
}


def loinc_check_digit(body: str) -> int:
    """LOINC Mod 10 check digit of the digits before the hyphen.

    Counting from the right, the digits in odd positions form a number that is doubled; the
    digits in even positions are written in front of it; the digits of the result are summed,
    and the check digit brings that sum up to the next multiple of ten.
    """
    rev = body[::-1]
    odd = rev[0::2][::-1]
    even = rev[1::2][::-1]
    total = sum(int(c) for c in even + str(int(odd) * 2))
    return (10 - total % 10) % 10


def loinc_is_valid(code: str) -> bool:
    if not LOINC_SHAPE.match(code):
        return False
    body, check = code.split("-")
    return loinc_check_digit(body) == int(check)


def _raw(name: str) -> list[dict[str, str]]:
    path = resources.files("medfabric.standards").joinpath("data", name)
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    assert reader.fieldnames == HEADERS[name], name
    return list(reader)


@pytest.fixture(scope="module")
def panels() -> dict[str, codes.LabPanel]:
    return dict(codes.lab_panels())


@pytest.fixture(scope="module")
def items() -> dict[str, codes.LabItem]:
    return dict(codes.lab_items())


@pytest.fixture(scope="module")
def factors() -> dict[str, dict[str, float]]:
    return {k: dict(v) for k, v in codes.lab_unit_factors().items()}


@pytest.fixture(scope="module")
def exams() -> dict[str, codes.ExamItem]:
    return dict(codes.exam_items())


@pytest.fixture(scope="module")
def drugs() -> dict[str, codes.Drug]:
    return dict(codes.drugs())


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_file_parses_cleanly(name: str) -> None:
    rows = _raw(name)
    assert rows
    for row in rows:
        assert None not in row, row
        assert all(v is not None and v == v.strip() for v in row.values()), row
        text = ",".join(row.values())
        assert "\u03bc" not in text, f"Greek mu instead of micro sign in {row}"


@pytest.mark.parametrize("name", sorted(set(HEADERS) - {"lab_units.csv"}))
def test_codes_unique_and_named(name: str) -> None:
    rows = _raw(name)
    dupes = [c for c, n in Counter(r["code"] for r in rows).items() if n > 1]
    assert dupes == []
    assert [r["code"] for r in rows if not CJK.search(r["name_zh"])] == []
    assert [r["code"] for r in rows if not r["name_en"]] == []


def test_catalog_lists_the_files() -> None:
    files = {info.file for info in codes.catalog().values()}
    assert set(HEADERS) <= files


# ---------------------------------------------------------------- LOINC


def test_loinc_check_digit_algorithm() -> None:
    assert loinc_check_digit("12345") == 5  # worked example of the LOINC manual
    for good in ("2345-7", "718-7", "6690-2", "4548-4", "33762-6", "58410-2"):
        assert loinc_is_valid(good), good
    for bad in ("2345-8", "718-1", "3245-7", "6690-3", "2345", "02345-7"):
        assert not loinc_is_valid(bad), bad


def test_every_loinc_passes_check_digit(
    panels: dict[str, codes.LabPanel], items: dict[str, codes.LabItem]
) -> None:
    coded = {f"panel {p.code}": p.loinc for p in panels.values() if p.loinc}
    coded |= {f"item {i.code}": i.loinc for i in items.values() if i.loinc}
    bad = {k: v for k, v in coded.items() if not loinc_is_valid(v)}
    assert bad == {}


def test_items_mostly_coded_and_loinc_unique(items: dict[str, codes.LabItem]) -> None:
    uncoded = [i.code for i in items.values() if not i.loinc]
    assert len(uncoded) <= 5, uncoded
    used = Counter(i.loinc for i in items.values() if i.loinc)
    assert [c for c, n in used.items() if n > 1] == []


def test_known_loinc_codes(items: dict[str, codes.LabItem]) -> None:
    assert {k: items[k].loinc for k in KNOWN_LOINC} == KNOWN_LOINC
    assert items["LDL-C"].loinc in {"2089-1", "13457-7"}


# ---------------------------------------------------------------- lab panels and items


def test_lab_counts(items: dict[str, codes.LabItem]) -> None:
    assert len(items) >= 70
    assert sum(1 for i in items.values() if i.value_type == "N") >= 60
    assert {i.value_type for i in items.values()} == {"N", "O"}


def test_required_panels_exist_and_are_used(
    panels: dict[str, codes.LabPanel], items: dict[str, codes.LabItem]
) -> None:
    required = {"CBC", "GLU", "HBA1C", "LIPID", "RFT", "LFT", "COAG", "CARDIAC", "UA", "INFECT"}
    assert required <= set(panels)
    used = Counter(i.panel for i in items.values())
    assert [p for p in panels if used[p] == 0] == []
    assert used["CBC"] >= 15
    assert panels["CBC"].loinc == "58410-2"
    assert panels["LIPID"].loinc == "57698-3"


def test_panel_and_specimen_references(
    panels: dict[str, codes.LabPanel], items: dict[str, codes.LabItem]
) -> None:
    domain = set(codes.value_domain("specimen_type"))
    assert domain >= SPECIMENS
    assert {p.code: p.specimen for p in panels.values() if p.specimen not in SPECIMENS} == {}
    assert {i.code: i.panel for i in items.values() if i.panel not in panels} == {}
    assert {i.code: i.specimen for i in items.values() if i.specimen not in SPECIMENS} == {}
    assert all(MNEMONIC.match(c) for c in list(panels) + list(items))


def test_specimens_fit_the_test(items: dict[str, codes.LabItem]) -> None:
    assert {i.specimen for i in items.values() if i.panel == "CBC"} == {"BLD"}
    assert {i.specimen for i in items.values() if i.panel == "COAG"} == {"PLS"}
    assert {i.specimen for i in items.values() if i.code.startswith("U-")} == {"UR"}
    assert items["HBA1C"].specimen == "BLD"


def test_ordinal_items(items: dict[str, codes.LabItem]) -> None:
    ordinal = [i for i in items.values() if i.value_type == "O"]
    assert len(ordinal) >= 10
    for i in ordinal:
        assert i.unit == "", i.code
        bounds = (i.ref_low_m, i.ref_high_m, i.ref_low_f, i.ref_high_f)
        assert bounds == (None, None, None, None), i.code
        assert i.ref_text, i.code
    names = {i.code for i in ordinal}
    assert {"U-PRO", "U-GLU", "U-BLD", "U-LEU", "U-KET", "HBSAG"} <= names


def test_numeric_items_units_decimals_ranges(items: dict[str, codes.LabItem]) -> None:
    for i in items.values():
        if i.value_type != "N":
            continue
        assert (i.unit == "") == (i.code in UNITLESS), i.code
        assert 0 <= i.decimals <= 3, i.code
        for sex in ("1", "2"):
            low, high = i.reference_range(sex)
            for bound in (low, high):
                assert bound is None or bound >= 0, i.code
            if low is not None and high is not None:
                assert low < high, (i.code, sex, low, high)
        male = i.reference_range("1")
        assert male != (None, None) or i.ref_text, i.code


def test_sex_specific_reference_ranges(items: dict[str, codes.LabItem]) -> None:
    assert items["HGB"].reference_range("1") == (130, 175)
    assert items["HGB"].reference_range("2") == (115, 150)
    assert items["CREA"].reference_range("1") == (57, 111)
    assert items["CREA"].reference_range("2") == (41, 81)
    assert items["ALT"].reference_range("1") == (9, 50)
    assert items["ALT"].reference_range("2") == (7, 40)
    assert items["UA"].reference_range("1") == (208, 428)
    assert items["WBC"].reference_range("1") == (3.5, 9.5)
    assert items["PLT"].reference_range("2") == (125, 350)
    assert items["GLU"].reference_range("2") == (3.9, 6.1)
    assert items["CTNI"].reference_range("1") == (None, 0.04)


def test_standard_units(items: dict[str, codes.LabItem]) -> None:
    expected = {
        "WBC": "10^9/L",
        "RBC": "10^12/L",
        "HGB": "g/L",
        "GLU": "mmol/L",
        "HBA1C": "%",
        "CREA": "µmol/L",
        "UREA": "mmol/L",
        "UA": "µmol/L",
        "ALT": "U/L",
        "TC": "mmol/L",
        "K": "mmol/L",
        "PT": "s",
        "TSH": "mIU/L",
        "CRP": "mg/L",
    }
    assert {k: items[k].unit for k in expected} == expected


# ---------------------------------------------------------------- units


def test_every_numeric_item_has_its_standard_unit(
    items: dict[str, codes.LabItem], factors: dict[str, dict[str, float]]
) -> None:
    for i in items.values():
        if i.value_type == "N":
            assert factors.get(i.code, {}).get(i.unit) == 1.0, i.code
    assert set(factors) <= {i.code for i in items.values() if i.value_type == "N"}
    assert all(f > 0 for units in factors.values() for f in units.values())


def test_conversion_factor_spot_checks(factors: dict[str, dict[str, float]]) -> None:
    assert factors["GLU"]["mg/dL"] == pytest.approx(1 / 18.016, rel=1e-5)
    assert factors["GLU"]["mg/dL"] == pytest.approx(0.0555, rel=1e-3)
    assert factors["CREA"]["mg/dL"] == 88.4
    assert factors["UREA"]["mg/dL"] == pytest.approx(0.357)
    assert factors["UA"]["mg/dL"] == pytest.approx(59.48)
    for lipid in ("TC", "HDL-C", "LDL-C"):
        assert factors[lipid]["mg/dL"] == pytest.approx(0.02586)
    assert factors["TG"]["mg/dL"] == pytest.approx(0.01129)
    assert factors["HGB"]["g/dL"] == 10
    assert factors["TBIL"]["mg/dL"] == pytest.approx(17.1)
    assert factors["CA"]["mg/dL"] == pytest.approx(0.2495)
    assert factors["ALB"]["g/dL"] == 10


@pytest.mark.parametrize(
    ("item", "molar_mass"),
    [
        ("GLU", 180.16),
        ("TC", 386.65),
        ("TG", 885.7),
        ("CA", 40.078),
        ("MG", 24.305),
        ("P", 30.974),
    ],
)
def test_mg_per_dl_factors_match_molar_mass(
    factors: dict[str, dict[str, float]], item: str, molar_mass: float
) -> None:
    # 1 mg/dL = 10 mg/L = 10 / M mmol/L
    assert factors[item]["mg/dL"] == pytest.approx(10 / molar_mass, rel=5e-3)


def test_micromolar_factors_match_molar_mass(factors: dict[str, dict[str, float]]) -> None:
    # 1 mg/dL = 10 000 / M µmol/L
    assert factors["CREA"]["mg/dL"] == pytest.approx(10_000 / 113.12, rel=5e-3)
    assert factors["UA"]["mg/dL"] == pytest.approx(10_000 / 168.11, rel=5e-3)
    assert factors["TBIL"]["mg/dL"] == pytest.approx(10_000 / 584.66, rel=5e-3)


def test_conversion_round_trip_of_reference_limits(
    items: dict[str, codes.LabItem], factors: dict[str, dict[str, float]]
) -> None:
    # Familiar conventional-unit limits land on the SI limits the file states.
    assert 110 * factors["GLU"]["mg/dL"] == pytest.approx(items["GLU"].ref_high_m, abs=0.05)
    assert 17.5 * factors["HGB"]["g/dL"] == pytest.approx(items["HGB"].ref_high_m)
    assert 200 * factors["TC"]["mg/dL"] == pytest.approx(items["TC"].ref_high_m, abs=0.05)
    assert 150 * factors["TG"]["mg/dL"] == pytest.approx(items["TG"].ref_high_m, abs=0.05)


# ---------------------------------------------------------------- exams


def test_exam_counts_and_coverage(exams: dict[str, codes.ExamItem]) -> None:
    assert len(exams) >= 50
    by_cat = Counter(e.category for e in exams.values())
    assert set(by_cat) == set(MODALITY_CATEGORY.values())
    for cat in ("CT", "MR", "XR", "US"):
        assert by_cat[cat] >= 8, cat
    for code in ("CT-HEAD", "CT-CHEST-E", "MR-LSPINE", "DR-CHEST", "US-ABD", "ES-GASTRO"):
        assert code in exams
    assert "ECG-12" in exams


def test_exam_modality_body_part_category(exams: dict[str, codes.ExamItem]) -> None:
    for e in exams.values():
        assert EXAM_CODE.match(e.code), e.code
        assert e.modality in MODALITY_CATEGORY, e.code
        assert e.category == MODALITY_CATEGORY[e.modality], e.code
        assert e.body_part in DICOM_BODY_PARTS, e.code
    assert exams["US-THY"].body_part == "NECK"
    assert exams["US-ECHO"].body_part == "HEART"
    assert exams["ES-COLON"].body_part == "COLON"


def test_exam_contrast_flags(exams: dict[str, codes.ExamItem]) -> None:
    for e in exams.values():
        if e.contrast:
            assert e.modality in {"CT", "MR"}, e.code
        if e.code.endswith("-E") or "-CTA-" in e.code:
            assert e.contrast, e.code
    assert not exams["CT-HEAD"].contrast
    assert exams["CT-CHEST-E"].contrast
    assert sum(e.contrast for e in exams.values()) >= 8


# ---------------------------------------------------------------- drugs


def test_drug_counts(drugs: dict[str, codes.Drug]) -> None:
    assert len(drugs) >= 160
    assert len({d.atc for d in drugs.values()}) >= 100
    assert [c for c in drugs if not DRUG_CODE.match(c)] == []


def test_drug_fields_within_domains(drugs: dict[str, codes.Drug]) -> None:
    assert set(codes.value_domain("dosage_form")) == FORMS
    assert set(codes.value_domain("route")) == ROUTES
    assert set(codes.value_domain("frequency")) == FREQUENCIES
    for d in drugs.values():
        assert ATC_SHAPE.match(d.atc), d.code
        assert d.form in FORMS, d.code
        assert d.route in ROUTES, d.code
        assert d.frequency in FREQUENCIES, d.code
        assert d.unit in DOSE_UNITS, d.code
        assert d.strength, d.code
        assert math.isfinite(d.dose) and d.dose > 0, d.code


def test_drug_form_route_and_atc_group_agree(drugs: dict[str, codes.Drug]) -> None:
    for d in drugs.values():
        assert d.route in FORM_ROUTES[d.form], (d.code, d.form, d.route)
        if d.route == "OPH":
            assert d.atc.startswith("S01"), d.code
        if d.route == "INH":
            assert d.atc.startswith("R03"), d.code
        if d.route == "TOP":
            assert d.atc[0] == "D" or d.atc[:3] in {"M02", "N01"}, d.code
        if d.atc.startswith("A10A"):  # insulins are injected
            assert (d.form, d.route) == ("INJ", "SC"), d.code


def test_drug_atc_form_strength_unique(drugs: dict[str, codes.Drug]) -> None:
    keys = Counter((d.atc, d.form, d.strength) for d in drugs.values())
    assert [k for k, n in keys.items() if n > 1] == []


def test_known_atc_codes(drugs: dict[str, codes.Drug]) -> None:
    by_name: dict[str, set[str]] = {}
    for d in drugs.values():
        by_name.setdefault(d.name_en, set()).add(d.atc)
    assert {n: by_name.get(n) for n in KNOWN_ATC} == {n: {a} for n, a in KNOWN_ATC.items()}
    metformin_forms = {d.form for d in drugs.values() if d.atc == "A10BA02"}
    assert {"TAB", "SR"} <= metformin_forms
