"""The person record matching works on: every identifying field already normalized.

Invariants:
- A :class:`Person` is built only by :func:`prepare`, which never raises on bad data: a value
  that does not normalize is ``None`` (missing evidence), so a malformed ID number or date
  weakens a match and never crashes a run.
- ``sex`` is a GB/T 2261.1 code '1' or '2', or ``None`` ('0' unknown and '9' not stated carry
  no evidence).
- ``id_number`` is in :func:`~medfabric.empi.normalize.normalize_id` form for ``id_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from medfabric.empi.normalize import (
    RESIDENT_ID,
    address_region,
    id_facts,
    is_latin,
    name_variants,
    normalize_id,
    normalize_name,
    normalize_phone,
    pinyin_key,
)

__all__ = ["Person", "prepare"]


@dataclass(frozen=True, slots=True)
class Person:
    """One local patient's identifying fields, normalized for comparison."""

    key: str
    name: str | None
    names: frozenset[str]
    pinyin: str | None
    latin: bool
    sex: str | None
    birth_date: date | None
    id_type: str | None
    id_number: str | None
    phone: str | None
    province: str | None
    city: str | None
    district: str | None


def prepare(
    key: str,
    *,
    name: str | None = None,
    sex: str | None = None,
    birth_date: date | None = None,
    id_type: str | None = None,
    id_number: str | None = None,
    phone: str | None = None,
    address: str | None = None,
) -> Person:
    """Normalize one record's raw fields (already decoded to text and ``date``).

    Args:
        key: the record's identity in the caller's world (e.g. ``"H01/P000000123"``).
        sex: GB/T 2261.1 code; anything but '1'/'2' is treated as missing.
        id_type: WS 364 document type ('01' resident ID card, '03' passport, …); ``None``
            lets a number that parses as a resident ID count as one.
    """
    n = normalize_name(name)
    number = normalize_id(id_type, id_number)
    if id_type is None and id_facts(number) is not None:
        id_type = RESIDENT_ID
    province, city, district = address_region(address)
    return Person(
        key=key,
        name=n,
        names=name_variants(n),
        pinyin=pinyin_key(n),
        latin=n is not None and is_latin(n),
        sex=sex if sex in ("1", "2") else None,
        birth_date=birth_date,
        id_type=id_type if number is not None else None,
        id_number=number,
        phone=normalize_phone(phone),
        province=province,
        city=city,
        district=district,
    )
