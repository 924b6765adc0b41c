"""GB 11643 ID numbers: published example, stdnum cross-check, 15/18 round trips, messages."""

from __future__ import annotations

import re
from datetime import date

import pytest
import stdnum.cn.ric as ric
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import numdb

from medfabric.standards import gb11643
from medfabric.standards.gb11643 import InvalidIdNumber


def _timeless_regions() -> list[str]:
    """Region codes stdnum's GB/T 2260 history accepts for every birth year."""
    codes = []
    db = numdb.get("cn/loc")
    for code in ("110105", "110106", "310115", "350100", "350121", "360426", "440106", "510107"):
        county = dict(p for _, props in db.info(code) for p in props.items()).get("county", "")
        if county and not county.startswith("["):
            codes.append(code)
    assert len(codes) >= 4
    return codes


REGIONS = _timeless_regions()

ids18 = st.builds(
    gb11643.make_id18,
    st.sampled_from(REGIONS),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(0, 999),
    st.sampled_from(["1", "2"]),
)


def test_published_example() -> None:
    info = gb11643.parse("11010519491231002X")
    assert info.birth_date == date(1949, 12, 31)
    assert info.sex == "2"
    assert info.region == "110105"
    assert not info.was_15
    assert gb11643.is_valid("11010519491231002X")
    assert gb11643.is_valid("11010519491231002x")
    assert gb11643.check_digit("11010519491231002") == "X"


def test_make_id18_forces_parity_and_rejects_bad_input() -> None:
    assert gb11643.parse(gb11643.make_id18("350102", date(1990, 5, 6), 0, "1")).sex == "1"
    assert gb11643.make_id18("350102", date(1990, 5, 6), 0, "1")[14:17] == "001"
    assert gb11643.make_id18("350102", date(1990, 5, 6), 999, "2")[14:17] == "998"
    for args in [
        ("35010", date(1990, 1, 1), 1, "1"),
        ("35010a", date(1990, 1, 1), 1, "1"),
        ("990102", date(1990, 1, 1), 1, "1"),
        ("350102", date(1700, 1, 1), 1, "1"),
        ("350102", date(1990, 1, 1), 1000, "1"),
        ("350102", date(1990, 1, 1), -1, "1"),
        ("350102", date(1990, 1, 1), 1, "M"),
    ]:
        with pytest.raises(ValueError):
            gb11643.make_id18(*args)


@settings(max_examples=300, deadline=None)
@given(ids18)
def test_generated_numbers_pass_stdnum(number: str) -> None:
    assert gb11643.is_valid(number)
    assert ric.is_valid(number)


@settings(max_examples=300, deadline=None)
@given(ids18, st.integers(0, 17), st.integers(1, 9))
def test_single_character_corruption_fails_both(number: str, pos: int, shift: int) -> None:
    alphabet = "0123456789X" if pos == 17 else "0123456789"
    old = alphabet.index(number[pos])
    bad = number[:pos] + alphabet[(old + shift) % len(alphabet)] + number[pos + 1 :]
    assert bad != number
    assert not gb11643.is_valid(bad)
    assert not ric.is_valid(bad)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)),
    st.integers(0, 999),
    st.sampled_from(["1", "2"]),
)
def test_round_trip_18_15_18(region: str, birth: date, seq: int, sex: str) -> None:
    n18 = gb11643.make_id18(region, birth, seq, sex)
    n15 = gb11643.to_id15(n18)
    assert len(n15) == 15 and n15.isdigit()
    assert gb11643.upgrade_15_to_18(n15) == n18
    info = gb11643.parse(n15)
    assert info.was_15
    assert info.number18 == n18
    assert (info.birth_date, info.sex, info.region) == (birth, sex, region)


def test_to_id15_outside_1900s_raises() -> None:
    with pytest.raises(ValueError):
        gb11643.to_id15(gb11643.make_id18("350102", date(2001, 3, 4), 12, "2"))


@pytest.mark.parametrize(
    ("number", "what"),
    [
        ("11010519491231002", "length"),
        ("1101051949123100211", "length"),
        ("11010519491231A02X", "characters"),
        ("11010519491231002Y", "characters"),
        ("11010549123100A", "characters"),
        ("00010519491231002X", "region"),
        ("110105194902300025", "date"),
        ("110105491331002", "date"),
        ("110105194912310021", "check digit"),
    ],
)
def test_parse_messages(number: str, what: str) -> None:
    with pytest.raises(InvalidIdNumber, match=f"^{what}") as exc:
        gb11643.parse(number)
    assert isinstance(exc.value, ValueError)
    assert not gb11643.is_valid(number)


def test_wrong_check_digit_message() -> None:
    with pytest.raises(InvalidIdNumber, match="check digit"):
        gb11643.parse("110105194912310020")


def _stdnum_doctest_numbers() -> list[str]:
    doc = ric.__doc__ or ""
    return re.findall(r">>> (?:validate|compact|is_valid)\('([^']*)'\)", doc)


def test_stdnum_doctest_numbers_agree() -> None:
    numbers = _stdnum_doctest_numbers()
    assert numbers, "stdnum.cn.ric docstring shows no example numbers"
    for number in numbers:
        assert gb11643.is_valid(ric.compact(number)) == ric.is_valid(number), number
