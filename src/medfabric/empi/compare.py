"""Comparison levels per field, in the shape of Splink's comparison levels.

Every comparison returns a small int: ``-1`` when either side is missing (Splink's null
level, no evidence either way), ``0`` for disagreement, and higher values for closer
agreement; the highest level is exact agreement. The probabilistic model learns one m/u
probability per level; the deterministic rules read the same levels.

| field | -1 | 0 | 1 | 2 | 3 | 4 |
|---|---|---|---|---|---|---|
| name | missing | else | one-char edit | pinyin Jaro-Winkler ≥ 0.9 | same pinyin | same |
| ID number | missing/invalid | different | same valid number | | | |
| birth date | missing | else | within one year | day/month transposed | exact | |
| sex | missing | different | same | | | |
| phone | missing | different | same | | | |
| address | no region | else | same city | same district | | |

Invariants:
- Symmetric: ``compare_x(a, b) == compare_x(b, a)`` for every field.
- Pure functions of two :class:`~medfabric.empi.record.Person` values (or their fields).
- "Same pinyin" is heteronym-aware: two Chinese names of equal length agree when, character
  by character, their sets of pypinyin readings intersect (so 林秀英/林秀瑛, 张伟/章伟).
"""

from __future__ import annotations

from datetime import date
from enum import IntEnum

from medfabric.empi.normalize import birth_date_variants, char_readings
from medfabric.empi.record import Person

__all__ = [
    "AddressLevel",
    "BirthLevel",
    "FieldLevel",
    "NameLevel",
    "compare_address",
    "compare_birth_date",
    "compare_id",
    "compare_name",
    "compare_phone",
    "compare_sex",
    "jaro_winkler",
    "one_edit_apart",
    "same_pinyin",
]


class NameLevel(IntEnum):
    MISSING = -1
    ELSE = 0
    ONE_EDIT = 1
    PINYIN_SIMILAR = 2
    SAME_PINYIN = 3
    EXACT = 4


class FieldLevel(IntEnum):
    """Levels of the all-or-nothing fields: ID number, sex, phone."""

    MISSING = -1
    DIFFERENT = 0
    SAME = 1


class BirthLevel(IntEnum):
    MISSING = -1
    ELSE = 0
    WITHIN_YEAR = 1
    TRANSPOSED = 2
    EXACT = 3


class AddressLevel(IntEnum):
    MISSING = -1
    ELSE = 0
    SAME_CITY = 1
    SAME_DISTRICT = 2


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity in [0, 1] (Winkler's common-prefix bonus over at most 4 chars).

    >>> round(jaro_winkler("MARTHA", "MARHTA"), 3)
    0.961
    """
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if la == 0 or lb == 0:
        return 0.0
    window = max(max(la, lb) // 2 - 1, 0)
    b_used = [False] * lb
    a_matched: list[str] = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(lb, i + window + 1)):
            if not b_used[j] and b[j] == ch:
                b_used[j] = True
                a_matched.append(ch)
                break
    m = len(a_matched)
    if m == 0:
        return 0.0
    b_matched = [b[j] for j in range(lb) if b_used[j]]
    transpositions = sum(x != y for x, y in zip(a_matched, b_matched, strict=True)) // 2
    jaro = (m / la + m / lb + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


def one_edit_apart(a: str, b: str) -> bool:
    """True when one substitution, insertion or deletion turns ``a`` into ``b`` (not equal)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def same_pinyin(a: Person, b: Person) -> bool:
    """True when two names read alike: equal pinyin keys, or (Chinese names of equal length)
    every pair of characters shares a pypinyin reading."""
    if a.pinyin is None or b.pinyin is None:
        return False
    if a.pinyin == b.pinyin:
        return True
    if a.latin or b.latin or a.name is None or b.name is None or len(a.name) != len(b.name):
        return False
    return all(
        x == y or char_readings(x) & char_readings(y) for x, y in zip(a.name, b.name, strict=True)
    )


def compare_name(a: Person, b: Person) -> NameLevel:
    """Name level (see the module table); reversed Latin names count as the same name."""
    if a.name is None or b.name is None:
        return NameLevel.MISSING
    if a.names & b.names:
        return NameLevel.EXACT
    if same_pinyin(a, b):
        return NameLevel.SAME_PINYIN
    if a.pinyin is not None and b.pinyin is not None and jaro_winkler(a.pinyin, b.pinyin) >= 0.9:
        return NameLevel.PINYIN_SIMILAR
    if one_edit_apart(a.name, b.name):
        return NameLevel.ONE_EDIT
    return NameLevel.ELSE


def _same_or_not(x: object | None, y: object | None) -> FieldLevel:
    if x is None or y is None:
        return FieldLevel.MISSING
    return FieldLevel.SAME if x == y else FieldLevel.DIFFERENT


def compare_id(a: Person, b: Person) -> FieldLevel:
    """Same valid document (type and number), one missing or invalid, or different."""
    if a.id_number is None or b.id_number is None:
        return FieldLevel.MISSING
    return _same_or_not((a.id_type, a.id_number), (b.id_type, b.id_number))


def compare_birth_date(a: date | None, b: date | None) -> BirthLevel:
    """Exact, day/month transposed, within one year (366 days), or else."""
    if a is None or b is None:
        return BirthLevel.MISSING
    if a == b:
        return BirthLevel.EXACT
    if b in birth_date_variants(a):
        return BirthLevel.TRANSPOSED
    if abs((a - b).days) <= 366:
        return BirthLevel.WITHIN_YEAR
    return BirthLevel.ELSE


def compare_sex(a: Person, b: Person) -> FieldLevel:
    """Same GB/T 2261.1 sex, one missing (or unknown), or different."""
    return _same_or_not(a.sex, b.sex)


def compare_phone(a: Person, b: Person) -> FieldLevel:
    """Same normalized phone, one missing, or different."""
    return _same_or_not(a.phone, b.phone)


def compare_address(a: Person, b: Person) -> AddressLevel:
    """Same district, same city, else; missing when either address has no known city."""
    if a.city is None or b.city is None:
        return AddressLevel.MISSING
    if a.district is not None and a.district == b.district:
        return AddressLevel.SAME_DISTRICT
    return AddressLevel.SAME_CITY if a.city == b.city else AddressLevel.ELSE
