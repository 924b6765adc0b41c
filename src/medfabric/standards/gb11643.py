"""GB 11643-1999 citizen identity numbers (公民身份号码).

An 18-character number is ``RRRRRR YYYYMMDD SSS C``: the GB/T 2260 region code where the
number was first issued, the birth date, a 3-digit order code whose parity is the sex
(odd male, even female) and an ISO 7064 MOD 11-2 check character ('0'-'9' or 'X'). The legacy
15-digit form (issued until 1999) is ``RRRRRR YYMMDD SSS`` with an implied century of 19 and
no check character.

Invariants:
- :func:`parse` accepts exactly the numbers :func:`is_valid` accepts; every accepted number,
  15- or 18-digit, is reported in its 18-digit form, whose check character is correct.
- Checks run in a fixed order (length, characters, region, date, check digit) and the first
  failure names itself in the :class:`InvalidIdNumber` message.
- The region is checked only for a known GB/T 2260 province prefix (plus 81/82/83 used by
  Hong Kong, Macao and Taiwan residence permits); which districts existed in which year is
  data this module does not carry.
- The birth date is a real calendar date from 1800 on; it is not compared with today, so the
  result of validation never depends on the clock.
- Pure functions of their arguments; imports only the standard library.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import date

__all__ = [
    "IdInfo",
    "InvalidIdNumber",
    "check_digit",
    "is_valid",
    "make_id18",
    "parse",
    "to_id15",
    "upgrade_15_to_18",
]

# Weight of position i (0-based, left to right) is 2**(17 - i) mod 11 per ISO 7064 MOD 11-2.
_WEIGHTS: tuple[int, ...] = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS = "10X98765432"

# GB/T 2260 province-level prefixes; 81/82/83 appear on residence permits for Hong Kong, Macao
# and Taiwan residents, which reuse the GB 11643 layout.
_PROVINCE_PREFIXES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
        "83",
    ]
)
_MIN_YEAR = 1800


class InvalidIdNumber(ValueError):
    """A string is not a valid GB 11643 citizen identity number; the message says why."""


@dataclass(frozen=True, slots=True)
class IdInfo:
    """What a valid ID number says about its holder."""

    number18: str
    region: str
    birth_date: date
    sex: str  # GB/T 2261.1: '1' male, '2' female
    was_15: bool


def _is_digits(s: str) -> bool:
    # str.isdigit alone would accept full-width and other Unicode digits.
    return s.isascii() and s.isdigit()


def check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character ('0'-'9' or 'X') for the first 17 digits.

    Raises:
        ValueError: ``first17`` is not exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not _is_digits(first17):
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(map(operator.mul, map(int, first17), _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def make_id18(region: str, birth: date, seq: int, sex: str) -> str:
    """Build a valid 18-digit number.

    ``seq`` (0..999) is the order code; when its parity disagrees with ``sex`` ('1' male → odd,
    '2' female → even) its lowest bit is flipped, which keeps it within 0..999.

    Raises:
        ValueError: region not 6 digits with a known province prefix, birth year before 1800
            or after 9999, seq outside 0..999, or sex not '1'/'2'.
    """
    if len(region) != 6 or not _is_digits(region) or region[:2] not in _PROVINCE_PREFIXES:
        raise ValueError(f"region must be a 6-digit GB/T 2260 code, got {region!r}")
    if birth.year < _MIN_YEAR:
        raise ValueError(f"birth year must be {_MIN_YEAR} or later, got {birth.year}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 999:
        raise ValueError(f"seq must be an integer 0..999, got {seq!r}")
    if sex not in ("1", "2"):
        raise ValueError(f"sex must be '1' (male) or '2' (female), got {sex!r}")
    want_odd = sex == "1"
    if (seq % 2 == 1) != want_odd:
        seq ^= 1
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


def to_id15(id18: str) -> str:
    """The legacy 15-digit form of a valid 18-digit number (births 1900-1999 only).

    Raises:
        InvalidIdNumber: ``id18`` is not a valid 18-digit number.
        ValueError: the birth year is outside 1900-1999, so no 15-digit form exists.
    """
    info = parse(id18)
    if info.was_15:
        raise InvalidIdNumber(f"length: expected an 18-digit number, got {len(id18.strip())}")
    if not 1900 <= info.birth_date.year <= 1999:
        raise ValueError(f"no 15-digit form for a birth in {info.birth_date.year}")
    n = info.number18
    return n[:6] + n[8:17]


def upgrade_15_to_18(id15: str) -> str:
    """The 18-digit form of a valid 15-digit number: century '19' inserted, check digit added.

    Raises:
        InvalidIdNumber: ``id15`` is not a valid 15-digit number.
    """
    s = id15.strip()
    if len(s) != 15:
        raise InvalidIdNumber(f"length: expected 15 digits, got {len(s)}")
    return parse(s).number18


def _parse_date(yyyymmdd: str) -> date:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])
    if year < _MIN_YEAR:
        raise InvalidIdNumber(f"date: birth year {year} is before {_MIN_YEAR}")
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise InvalidIdNumber(f"date: {yyyymmdd} is not a calendar date ({exc})") from exc


def parse(number: str) -> IdInfo:
    """Validate a 15- or 18-digit number and return what it encodes.

    Surrounding whitespace is ignored and a lower-case 'x' check character is accepted.

    Raises:
        InvalidIdNumber: the message starts with what is wrong: 'length', 'characters',
            'region', 'date' or 'check digit'.
    """
    s = number.strip().upper()
    if len(s) not in (15, 18):
        raise InvalidIdNumber(f"length: expected 15 or 18 characters, got {len(s)}")
    was_15 = len(s) == 15
    if was_15:
        if not _is_digits(s):
            raise InvalidIdNumber("characters: a 15-digit number must be all digits")
    elif not _is_digits(s[:17]) or s[17] not in _CHECK_CHARS:
        raise InvalidIdNumber("characters: expected 17 digits followed by a digit or 'X'")
    region = s[:6]
    if region[:2] not in _PROVINCE_PREFIXES:
        raise InvalidIdNumber(f"region: {region} has no GB/T 2260 province prefix")
    birth = _parse_date("19" + s[6:12] if was_15 else s[6:14])
    first17 = f"{region}{birth:%Y%m%d}{s[12:15]}" if was_15 else s[:17]
    expected = check_digit(first17)
    if not was_15 and s[17] != expected:
        raise InvalidIdNumber(f"check digit: expected {expected!r}, got {s[17]!r}")
    sex = "1" if int(first17[16]) % 2 == 1 else "2"
    return IdInfo(
        number18=first17 + expected, region=region, birth_date=birth, sex=sex, was_15=was_15
    )


def is_valid(number: str) -> bool:
    """True when :func:`parse` accepts ``number``."""
    try:
        parse(number)
    except InvalidIdNumber:
        return False
    return True
