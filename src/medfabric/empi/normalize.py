"""Normalization of the identifying fields of a person record, before any comparison.

Each function takes one raw value as a hospital stored it and returns a canonical form, or
``None`` when the value carries no usable evidence (empty, malformed). Matching compares only
these forms, so two hospitals that typed the same fact differently still agree.

Invariants:
- Pure functions of their arguments (the pinyin and region tables are read once and cached);
  nothing here raises on bad data: a malformed value is ``None`` ("missing evidence").
- Idempotent: ``f(f(x)) == f(x)`` for every normalizer whose output type equals its input type
  (:func:`normalize_name`, :func:`normalize_phone`, :func:`normalize_id`).
- Chinese names lose all whitespace; Latin names are upper-case with single spaces. A name is
  "Latin" when it holds no CJK character.
- A resident ID number (type '01') is always returned in its 18-digit GB 11643 form with an
  upper-case 'X'; an invalid one is ``None``. Other document numbers are upper-case
  alphanumerics.
- The variant-character knowledge (which characters sound alike) comes only from pypinyin,
  never from how the test data was generated.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import date

from pypinyin import Style, lazy_pinyin, pinyin

from medfabric.standards import codes, gb11643

__all__ = [
    "RESIDENT_ID",
    "address_region",
    "birth_date_variants",
    "char_readings",
    "id_facts",
    "is_latin",
    "name_variants",
    "normalize_id",
    "normalize_name",
    "normalize_phone",
    "pinyin_key",
]

RESIDENT_ID = "01"  # WS 364 id_doc_type: 居民身份证

# Characters whose reading as a surname differs from pypinyin's default reading.
_SURNAME_READINGS: Mapping[str, str] = {
    "单": "shan", "曾": "zeng", "区": "ou", "仇": "qiu", "朴": "piao", "解": "xie", "查": "zha",
    "盖": "ge", "乐": "yue", "翟": "zhai", "缪": "miao", "覃": "qin", "任": "ren", "华": "hua",
    "秘": "bi", "召": "shao", "繁": "po", "种": "chong", "折": "she", "黑": "he", "尉": "yu",
    "隗": "wei", "长": "chang", "重": "chong", "宓": "fu", "员": "yun", "祭": "zhai", "句": "gou",
    "万": "wan", "莘": "shen", "沈": "shen", "石": "shi", "藏": "zang", "朝": "chao",
}  # fmt: skip

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPACES = re.compile(r"\s+")
_NON_DIGIT = re.compile(r"\D")
_NON_ALNUM = re.compile(r"[^0-9A-Z]")


def _to_half_width(s: str) -> str:
    # NFKC folds full-width ASCII (Ａ１) and the ideographic space to their half-width forms.
    return unicodedata.normalize("NFKC", s)


def is_latin(name: str) -> bool:
    """True when ``name`` holds no CJK character (a foreigner's name in Latin letters)."""
    return _CJK.search(name) is None


def normalize_name(s: str | None) -> str | None:
    """Canonical form of a person's name, or ``None`` when nothing is left.

    Full-width characters become half-width, the text is NFC-normalized; a Chinese name loses
    every space ("林 秀英" → "林秀英"), a Latin name is upper-cased with single spaces
    ("  smith   john " → "SMITH JOHN"). A middle dot between Latin-transcribed parts
    ("约翰·史密斯") is kept.
    """
    if s is None:
        return None
    t = unicodedata.normalize("NFC", _to_half_width(s)).strip()
    t = _SPACES.sub("" if not is_latin(t) else " ", t)
    if is_latin(t):
        t = t.upper()
    return t or None


@functools.cache
def char_readings(ch: str) -> frozenset[str]:
    """All tone-less pinyin readings pypinyin knows for one character (itself if none)."""
    readings = pinyin(ch, style=Style.NORMAL, heteronym=True, errors="default")
    return frozenset(r for group in readings for r in group) or frozenset([ch])


def pinyin_key(name: str | None) -> str | None:
    """Tone-less pinyin of a name, syllables joined by nothing ("林秀瑛" → "linxiuying").

    The first character is read as a surname where that differs from the common reading
    ("单" → "shan", "曾" → "zeng"). Latin names are returned normalized, without spaces, so
    that the key is comparable across scripts only when the scripts agree.
    """
    n = normalize_name(name)
    if n is None:
        return None
    if is_latin(n):
        return n.replace(" ", "").lower()
    syllables = lazy_pinyin(n, style=Style.NORMAL, errors="default")
    if n[0] in _SURNAME_READINGS and syllables and syllables[0] != n[0]:
        syllables[0] = _SURNAME_READINGS[n[0]]
    return "".join(syllables).lower()


def name_variants(name: str | None) -> frozenset[str]:
    """The normalized name and its plausible re-orderings.

    A Latin name "SMITH JOHN" also yields "JOHN SMITH" (surname first or last); a Chinese name
    yields only itself. Empty input yields the empty set.
    """
    n = normalize_name(name)
    if n is None:
        return frozenset()
    if not is_latin(n) or " " not in n:
        return frozenset([n])
    parts = n.split(" ")
    return frozenset([n, " ".join(parts[1:] + parts[:1]), " ".join(parts[-1:] + parts[:-1])])


def normalize_phone(s: str | None) -> str | None:
    """Digits of a phone number without the country prefix (+86, 0086), or ``None``.

    Full-width digits are accepted. Fewer than 7 remaining digits is no phone.
    """
    if s is None:
        return None
    digits = _NON_DIGIT.sub("", _to_half_width(s))
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 11:
            digits = digits[len(prefix) :]
            break
    return digits if len(digits) >= 7 else None


def normalize_id(id_type: str | None, number: str | None) -> str | None:
    """Canonical document number, or ``None`` when it is missing or not valid.

    For a resident ID card (``id_type`` '01', or no type given with a number that parses as
    one) the 18-digit GB 11643 form: 15-digit numbers are upgraded, 'x' becomes 'X', an
    invalid number (length, region, date, check digit) is ``None``. Other documents (passport,
    permits) keep their upper-case letters and digits.
    """
    if number is None:
        return None
    s = _to_half_width(number).strip().upper()
    if id_type in (RESIDENT_ID, None):
        try:
            return gb11643.parse(s).number18
        except gb11643.InvalidIdNumber:
            if id_type == RESIDENT_ID:
                return None
    s = _NON_ALNUM.sub("", s)
    return s or None


def id_facts(number: str | None) -> tuple[date, str, str] | None:
    """``(birth_date, sex, region)`` encoded in a valid resident ID number, else ``None``.

    ``sex`` is the GB/T 2261.1 code ('1' male, '2' female); ``region`` the 6-digit issuing
    region code.
    """
    if number is None:
        return None
    try:
        info = gb11643.parse(_to_half_width(number))
    except gb11643.InvalidIdNumber:
        return None
    return info.birth_date, info.sex, info.region


def birth_date_variants(d: date | None) -> frozenset[date]:
    """``d`` and, when it is a real date, ``d`` with day and month transposed."""
    if d is None:
        return frozenset()
    out = {d}
    if d.day <= 12 and d.day != d.month:
        out.add(d.replace(month=d.day, day=d.month))
    return frozenset(out)


@functools.cache
def _region_children() -> Mapping[str | None, tuple[tuple[str, str], ...]]:
    children: dict[str | None, list[tuple[str, str]]] = {}
    for r in codes.regions().values():
        children.setdefault(r.parent, []).append((r.name_zh, r.code))
    # Longest name first, so that "福州市" never shadows a longer sibling sharing its prefix.
    return {k: tuple(sorted(v, key=lambda x: -len(x[0]))) for k, v in children.items()}


def _match(text: str, candidates: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    for name, code in candidates:
        if text.startswith(name):
            return name, code
    return None


def address_region(address: str | None) -> tuple[str | None, str | None, str | None]:
    """GB/T 2260 codes ``(province, city, district)`` that an address starts with.

    Matches, level by level, the longest child name that prefixes the rest of the text
    ("福建省福州市晋安区秀峰路…" → ("350000", "350100", "350111")). An address may omit the
    province (it then starts with a city name) or, in a municipality, the city ("北京市东城区…").
    Levels it cannot match are ``None``; whitespace and full-width forms are ignored.
    """
    if address is None:
        return None, None, None
    text = _SPACES.sub("", _to_half_width(address))
    children = _region_children()
    table = codes.regions()
    province: str | None = None
    city: str | None = None
    m = _match(text, children.get(None, ()))
    if m is not None:
        province, text = m[1], text[len(m[0]) :]
        cities = children.get(province, ())
    else:
        cities = tuple(c for _, p in children.get(None, ()) for c in children.get(p, ()))
    m = _match(text, cities)
    if m is not None:
        city, text = m[1], text[len(m[0]) :]
        districts = children.get(city, ())
    elif province is not None:
        districts = tuple(d for _, c in cities for d in children.get(c, ()))
    else:
        return None, None, None
    m = _match(text, districts)
    district = m[1] if m is not None else None
    if district is not None and city is None:
        city = table[district].parent
    if city is not None and province is None:
        province = table[city].parent
    return province, city, district
