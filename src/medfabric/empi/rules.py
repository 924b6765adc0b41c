"""Deterministic matching rules and blocking keys: what links before any model is consulted.

A pair links deterministically when it shares a valid document number, the names are
compatible, and for a resident ID card the facts the number encodes (sex, birth date) do not
contradict either record. Everything else is left to the probabilistic model.

Invariants:
- :func:`deterministic_link` is symmetric and never links two records lacking a valid,
  identical document (type and number, resident IDs compared in 18-digit form, so a 15-digit
  and an 18-digit number of the same person agree).
- A record's birth date agrees with its ID when equal to the ID's date or to its day/month
  transposition (a known registration slip); a missing sex or birth date contradicts nothing.
- :func:`blocking_keys` of two records intersect whenever :func:`deterministic_link` holds
  for them (both carry the ``id:`` key), so blocking never hides a deterministic link.
"""

from __future__ import annotations

from medfabric.empi.compare import NameLevel, compare_name, one_edit_apart
from medfabric.empi.normalize import RESIDENT_ID, birth_date_variants, char_readings, id_facts
from medfabric.empi.record import Person

__all__ = ["blocking_keys", "contradicts_id", "deterministic_link", "names_compatible"]


def names_compatible(a: Person, b: Person) -> bool:
    """Same normalized name (reversed Latin order included), same pinyin, or one character
    apart; for Chinese names of equal length, "one character apart" is read on sounds: at
    most one position whose characters share no reading (a homophone and a look-alike slip
    in the same name, 陈锦诗/陈绵仕)."""
    if compare_name(a, b) in (NameLevel.EXACT, NameLevel.SAME_PINYIN):
        return True
    if a.name is None or b.name is None:
        return False
    if not a.latin and not b.latin and len(a.name) == len(b.name) >= 2:
        unlike = sum(
            x != y and not char_readings(x) & char_readings(y)
            for x, y in zip(a.name, b.name, strict=True)
        )
        return unlike <= 1
    return one_edit_apart(a.name, b.name)


def contradicts_id(p: Person) -> bool:
    """True when ``p``'s sex or birth date disagrees with what its resident ID encodes."""
    if p.id_type != RESIDENT_ID:
        return False
    facts = id_facts(p.id_number)
    if facts is None:
        return False
    birth, sex, _ = facts
    if p.sex is not None and p.sex != sex:
        return True
    return p.birth_date is not None and p.birth_date not in birth_date_variants(birth)


def deterministic_link(a: Person, b: Person) -> bool:
    """Link ``a`` and ``b`` on a shared valid document number and a compatible name.

    Returns False when either record contradicts the sex or birth date its resident ID
    encodes: the number may have been borrowed or mistyped into a valid one.
    """
    if a.id_number is None or a.id_number != b.id_number or a.id_type != b.id_type:
        return False
    return names_compatible(a, b) and not contradicts_id(a) and not contradicts_id(b)


def blocking_keys(p: Person) -> set[str]:
    """Keys under which ``p`` is compared with others: two records become a candidate pair
    when their key sets intersect.

    ``id:<type>:<number>``, ``py:<pinyin>:<birth year>`` (also under the transposed date's
    year, which is the same year) and ``ph:<phone>``.
    """
    keys: set[str] = set()
    if p.id_number is not None:
        keys.add(f"id:{p.id_type}:{p.id_number}")
    if p.pinyin is not None and p.birth_date is not None:
        keys.add(f"py:{p.pinyin}:{p.birth_date.year}")
    if p.phone is not None:
        keys.add(f"ph:{p.phone}")
    return keys
