"""Cross-file integrity of the shipped code systems, and that the checks catch what they claim."""

from __future__ import annotations

import pytest

from medfabric.simulator.profiles import check_profiles, profiles
from medfabric.standards import codes, integrity


def test_shipped_code_systems_are_consistent() -> None:
    assert integrity.check_all() == []


def test_catalog_lists_every_code_system_with_a_version() -> None:
    cat = codes.catalog()
    assert {"diagnoses", "lab_items", "lab_units", "exam_items", "drugs", "regions"} <= set(cat)
    assert all(e.version and e.standard for e in cat.values())


def test_simulator_profiles_reference_existing_codes() -> None:
    table = profiles()
    assert set(table) == set(codes.PROFILE_KEYS)
    assert check_profiles(table) == []
    # a diabetic is seen in endocrinology, has glucose and HbA1c ordered, and gets metformin
    dm = table["diabetes_t2"]
    assert dm.department == "03.07"
    assert {"GLU", "HBA1C"} <= set(dm.panels)
    assert any(codes.drugs()[d].atc == "A10BA02" for d in dm.drugs)


def test_profile_check_reports_broken_references() -> None:
    import dataclasses

    broken = dict(profiles())
    broken["gout"] = dataclasses.replace(
        broken["gout"], panels={"NOPE": 0.5}, drugs=("ATC:Z99ZZ99",), department="99.99"
    )
    problems = check_profiles(broken)
    assert any("unknown panel NOPE" in p for p in problems)
    assert any("Z99ZZ99" in p for p in problems)
    assert any("unknown department 99.99" in p for p in problems)


@pytest.mark.parametrize(
    ("body", "digit"), [("2345", "7"), ("4548", "4"), ("2160", "0"), ("718", "7")]
)
def test_loinc_check_digit(body: str, digit: str) -> None:
    assert integrity.loinc_check_digit(body) == digit


def test_region_path_walks_up_to_the_province() -> None:
    path = codes.region_path("350102")
    assert [r.level for r in path] == ["province", "city", "district"]
    assert path[0].name_zh == "福建省" and path[2].name_zh == "鼓楼区"
    with pytest.raises(codes.CodeSystemError, match="unknown GB/T 2260 region code"):
        codes.region_path("999999")


def test_malformed_files_name_file_line_and_column(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "diagnoses.csv": "code,name_zh,name_en,profile,sex,chronic,weight\n"
        "I10,高血压,Essential (primary) hypertension,hypertension,A,1,many\n",
        "drugs.csv": "code,name_zh,name_en,atc,form,strength,unit,route,dose,frequency\n"
        "YP1,a,b,A10BA02,TAB,0.5g,g,PO,0.5,QD\nYP1,a,b,A10BA02,TAB,0.5g,g,PO,0.5,QD\n",
        "regions.csv": "code,name_zh,level,parent\n110000,北京市,province\n",
    }
    monkeypatch.setattr(codes, "_data_text", lambda rel: files[rel])
    with pytest.raises(codes.CodeSystemError, match=r"diagnoses.csv:2: column 'weight'"):
        codes.diagnoses.__wrapped__()
    with pytest.raises(codes.CodeSystemError, match=r"drugs.csv:3: duplicate code 'YP1'"):
        codes.drugs.__wrapped__()
    with pytest.raises(codes.CodeSystemError, match=r"regions.csv:2: wrong number of columns"):
        codes.regions.__wrapped__()
