"""Comparison levels and the Jaro-Winkler similarity."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfabric.empi.compare import (
    AddressLevel,
    BirthLevel,
    FieldLevel,
    NameLevel,
    compare_address,
    compare_birth_date,
    compare_id,
    compare_name,
    compare_phone,
    compare_sex,
    jaro_winkler,
    one_edit_apart,
)
from medfabric.empi.record import Person, prepare
from medfabric.standards import gb11643

ID18 = gb11643.make_id18("350102", date(1962, 5, 17), 123, "1")


def p(**kw: object) -> Person:
    return prepare("k", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Published values (Winkler 1990; the usual textbook examples).
        ("MARTHA", "MARHTA", 0.961),
        ("DWAYNE", "DUANE", 0.840),
        ("DIXON", "DICKSONX", 0.813),
        ("JELLYFISH", "SMELLYFISH", 0.896),
        ("ABC", "ABC", 1.0),
        ("ABC", "XYZ", 0.0),
        ("", "ABC", 0.0),
    ],
)
def test_jaro_winkler_known_values(a: str, b: str, expected: float) -> None:
    assert jaro_winkler(a, b) == pytest.approx(expected, abs=5e-4)


@given(st.text(max_size=10), st.text(max_size=10))
def test_jaro_winkler_is_symmetric_and_bounded(a: str, b: str) -> None:
    s = jaro_winkler(a, b)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(jaro_winkler(b, a))


def test_one_edit_apart() -> None:
    assert one_edit_apart("张伟", "章伟")
    assert one_edit_apart("林秀英", "林英")
    assert not one_edit_apart("林秀英", "林秀英")
    assert not one_edit_apart("林秀英", "陈小英")


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("林秀英", " 林 秀英", NameLevel.EXACT),
        ("SMITH JOHN", "John Smith", NameLevel.EXACT),
        ("林秀英", "林秀瑛", NameLevel.SAME_PINYIN),
        ("张伟", "章伟", NameLevel.SAME_PINYIN),
        ("陈建华", "陈建化", NameLevel.SAME_PINYIN),
        ("林秀英", "林秀云", NameLevel.PINYIN_SIMILAR),
        ("王伟", "汪玮", NameLevel.SAME_PINYIN),
        ("张伟", "李伟", NameLevel.ONE_EDIT),
        ("林秀英", "陈志强", NameLevel.ELSE),
        ("林秀英", None, NameLevel.MISSING),
    ],
)
def test_compare_name(a: str, b: str | None, level: NameLevel) -> None:
    assert compare_name(p(name=a), p(name=b)) == level
    assert compare_name(p(name=b), p(name=a)) == level


def test_compare_id_upgrades_and_ignores_invalid() -> None:
    assert compare_id(p(id_type="01", id_number=ID18), p(id_type="01", id_number=ID18)) == 1
    assert (
        compare_id(p(id_type="01", id_number=gb11643.to_id15(ID18)), p(id_number=ID18))
        == FieldLevel.SAME
    )
    other = gb11643.make_id18("350102", date(1962, 5, 17), 125, "1")
    assert compare_id(p(id_type="01", id_number=ID18), p(id_type="01", id_number=other)) == 0
    assert compare_id(p(id_type="01", id_number=ID18), p(id_type="01", id_number="123")) == -1
    assert compare_id(p(id_type="03", id_number="E1"), p(id_type="01", id_number=ID18)) == 0


def test_compare_birth_date() -> None:
    d = date(1962, 5, 7)
    assert compare_birth_date(d, d) == BirthLevel.EXACT
    assert compare_birth_date(d, date(1962, 7, 5)) == BirthLevel.TRANSPOSED
    assert compare_birth_date(d, date(1963, 1, 1)) == BirthLevel.WITHIN_YEAR
    assert compare_birth_date(d, date(1970, 1, 1)) == BirthLevel.ELSE
    assert compare_birth_date(d, None) == BirthLevel.MISSING


def test_compare_sex_phone() -> None:
    assert compare_sex(p(sex="1"), p(sex="1")) == FieldLevel.SAME
    assert compare_sex(p(sex="1"), p(sex="2")) == FieldLevel.DIFFERENT
    assert compare_sex(p(sex="1"), p(sex="9")) == FieldLevel.MISSING
    assert compare_phone(p(phone="+86 13822459188"), p(phone="138-2245-9188")) == 1
    assert compare_phone(p(phone="13822459188"), p(phone="13822459189")) == 0
    assert compare_phone(p(phone="13822459188"), p()) == -1


def test_compare_address() -> None:
    jinan = p(address="福建省福州市晋安区秀峰路289号")
    assert compare_address(jinan, p(address="福州市晋安区化工路1号")) == AddressLevel.SAME_DISTRICT
    assert compare_address(jinan, p(address="福建省福州市鼓楼区某路")) == AddressLevel.SAME_CITY
    assert compare_address(jinan, p(address="北京市东城区某街")) == AddressLevel.ELSE
    assert compare_address(jinan, p(address="不详")) == AddressLevel.MISSING
