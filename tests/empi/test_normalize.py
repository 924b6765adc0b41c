"""Normalization of names, phones, ID numbers, birth dates and addresses."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfabric.empi.normalize import (
    address_region,
    birth_date_variants,
    id_facts,
    name_variants,
    normalize_id,
    normalize_name,
    normalize_phone,
    pinyin_key,
)
from medfabric.standards import gb11643

ID18 = gb11643.make_id18("350102", date(1962, 5, 17), 123, "1")
ID15 = gb11643.to_id15(ID18)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 林 秀英 ", "林秀英"),
        ("林\u3000秀英", "林秀英"),
        ("  smith   john ", "SMITH JOHN"),
        ("ＳＭＩＴＨ　ＪＯＨＮ", "SMITH JOHN"),
        ("约翰·史密斯", "约翰·史密斯"),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_name(raw: str | None, expected: str | None) -> None:
    assert normalize_name(raw) == expected


@given(st.text(max_size=12))
def test_normalize_name_is_idempotent(s: str) -> None:
    once = normalize_name(s)
    assert normalize_name(once) == once


def test_pinyin_key_is_toneless_and_surname_aware() -> None:
    assert pinyin_key("林秀英") == pinyin_key("林秀瑛") == "linxiuying"
    assert pinyin_key("张伟") == pinyin_key("章伟") == "zhangwei"
    assert pinyin_key("单雄信") == "shanxiongxin"  # 单 as a surname is shan, not dan
    assert pinyin_key("曾秀英") == "zengxiuying"
    assert pinyin_key("smith john") == "smithjohn"
    assert pinyin_key(None) is None


def test_name_variants_reverse_latin_names_only() -> None:
    assert name_variants("SMITH JOHN") == {"SMITH JOHN", "JOHN SMITH"}
    assert "SMITH JOHN" in name_variants("john smith")
    assert name_variants("林秀英") == {"林秀英"}
    assert name_variants("") == frozenset()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("138-2245-9188", "13822459188"),
        ("+86 138 2245 9188", "13822459188"),
        ("008613822459188", "13822459188"),
        ("１３８２２４５９１８８", "13822459188"),
        ("0591-87654321", "059187654321"),
        ("12", None),
        (None, None),
    ],
)
def test_normalize_phone(raw: str | None, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_normalize_id_upgrades_15_digits_and_rejects_invalid() -> None:
    assert normalize_id("01", ID15) == ID18
    assert normalize_id("01", ID18.lower()) == ID18
    assert normalize_id(None, ID15) == ID18
    bad = ID18[:17] + ("0" if ID18[17] != "0" else "1")
    assert normalize_id("01", bad) is None
    assert normalize_id("01", "not a number") is None
    assert normalize_id("03", " e1234-5678 ") == "E12345678"
    assert normalize_id("01", None) is None


def test_normalize_id_keeps_lower_x_check_digit_as_upper() -> None:
    x_id = next(
        n
        for seq in range(200)
        if (n := gb11643.make_id18("350102", date(1980, 1, 2), seq, "2")).endswith("X")
    )
    assert normalize_id("01", x_id.lower()) == x_id


def test_id_facts() -> None:
    assert id_facts(ID18) == (date(1962, 5, 17), "1", "350102")
    assert id_facts(ID15) == (date(1962, 5, 17), "1", "350102")
    assert id_facts("123") is None
    assert id_facts(None) is None


def test_birth_date_variants_transpose_day_and_month() -> None:
    assert birth_date_variants(date(1962, 5, 7)) == {date(1962, 5, 7), date(1962, 7, 5)}
    assert birth_date_variants(date(1962, 5, 17)) == {date(1962, 5, 17)}
    assert birth_date_variants(date(1962, 5, 5)) == {date(1962, 5, 5)}
    assert birth_date_variants(None) == frozenset()


def test_address_region_longest_prefix() -> None:
    assert address_region("福建省福州市晋安区秀峰路289号10栋1104室") == (
        "350000",
        "350100",
        "350111",
    )
    assert address_region("福州市 晋安区秀峰路") == ("350000", "350100", "350111")
    assert address_region("北京市东城区某街") == ("110000", "110100", "110101")
    assert address_region("福建省某地") == ("350000", None, None)
    assert address_region("no address") == (None, None, None)
    assert address_region(None) == (None, None, None)
