"""Deterministic rules and blocking: unit cases, then an evaluation on a simulated region."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tests.simulator.regionkit import Region, make_region

from medfabric.empi.record import Person, prepare
from medfabric.empi.rules import blocking_keys, contradicts_id, deterministic_link
from medfabric.standards import gb11643

BIRTH = date(1962, 5, 7)
ID18 = gb11643.make_id18("350102", BIRTH, 123, "2")
ADDRESS = "福建省福州市鼓楼区五四路1号"


def rec(key: str = "k", **kw: Any) -> Person:
    base: dict[str, Any] = {
        "name": "林秀英",
        "sex": "2",
        "birth_date": BIRTH,
        "id_type": "01",
        "id_number": ID18,
        "phone": "13822459188",
        "address": ADDRESS,
    }
    return prepare(key, **{**base, **kw})


def test_links_same_id_and_compatible_names() -> None:
    assert deterministic_link(rec(), rec(name="林秀瑛"))  # homophone
    assert deterministic_link(rec(), rec(name="林 秀英", phone=None))  # stray space
    assert deterministic_link(rec(), rec(name="林禾英"))  # look-alike, one character
    assert deterministic_link(rec(), rec(id_number=gb11643.to_id15(ID18)))  # 15 vs 18
    assert deterministic_link(rec(), rec(birth_date=date(1962, 7, 5)))  # transposed
    assert deterministic_link(rec(name="陈锦诗"), rec(name="陈绵仕"))  # look-alike + homophone


def test_links_reversed_foreign_names_on_passport() -> None:
    a = rec(name="SMITH JOHN", id_type="03", id_number="E12345678", sex="1", birth_date=None)
    b = rec(name="John Smith", id_type="03", id_number="e12345678", sex="1", birth_date=None)
    assert deterministic_link(a, b)


def test_refuses_without_same_valid_id_or_with_incompatible_name() -> None:
    other = gb11643.make_id18("350102", BIRTH, 125, "2")
    assert not deterministic_link(rec(), rec(id_number=other))
    assert not deterministic_link(rec(), rec(id_number=None))
    assert not deterministic_link(rec(id_number="123"), rec(id_number="123"))
    assert not deterministic_link(rec(), rec(name="陈志强"))
    assert not deterministic_link(rec(), rec(name="林秀英之女"))
    assert not deterministic_link(rec(), rec(name="林志强"))  # two characters unlike


def test_refuses_when_a_record_contradicts_its_id() -> None:
    assert contradicts_id(rec(sex="1"))
    assert contradicts_id(rec(birth_date=date(1963, 5, 7)))
    assert not contradicts_id(rec(sex=None, birth_date=None))
    assert not deterministic_link(rec(), rec(sex="1"))
    assert not deterministic_link(rec(), rec(birth_date=date(1990, 1, 1)))


def test_link_is_symmetric() -> None:
    pairs = [(rec(), rec(name="林秀瑛")), (rec(), rec(sex="1")), (rec(), rec(name="陈志强"))]
    for a, b in pairs:
        assert deterministic_link(a, b) == deterministic_link(b, a)


def test_blocking_keys_cover_deterministic_links() -> None:
    a, b = rec(), rec(name="林秀瑛", phone=None, id_number=gb11643.to_id15(ID18))
    assert deterministic_link(a, b)
    assert blocking_keys(a) & blocking_keys(b)
    assert blocking_keys(a) == {f"id:01:{ID18}", "py:linxiuying:1962", "ph:13822459188"}
    assert blocking_keys(prepare("empty")) == set()


# --- evaluation on a simulated region ---------------------------------------------------


def _text(value: Any, encoding: str) -> str | None:
    if value is None:
        return None
    return value.decode(encoding) if isinstance(value, bytes) else str(value)


def read_patients(region: Region) -> list[Person]:
    """Every hospital's patients, decoded through its HIS dialect into a :class:`Person`."""
    out: list[Person] = []
    for h in region.hospitals:
        d = region.dialect(h, "HIS")
        sample = str(d.format_date(date(2001, 12, 31)))
        date_fmt = sample.replace("2001", "%Y").replace("12", "%m").replace("31", "%d")
        sex = {v: k for k, v in d.local_codes("sex").items()}
        id_type = {v: k for k, v in d.local_codes("id_type").items()}
        for r in region.rows(h, "patient"):
            birth_text = _text(r["birth_date"], d.text_encoding)
            try:
                birth = datetime.strptime(birth_text, date_fmt).date() if birth_text else None
            except ValueError:
                birth = None
            out.append(
                prepare(
                    f"{h}/{r['patient_id']}",
                    name=_text(r["name"], d.text_encoding),
                    sex=sex.get(_text(r["sex"], d.text_encoding) or ""),
                    birth_date=birth,
                    id_type=id_type.get(_text(r["id_type"], d.text_encoding) or ""),
                    id_number=_text(r["id_number"], d.text_encoding),
                    phone=_text(r["phone"], d.text_encoding),
                    address=_text(r["address"], d.text_encoding),
                )
            )
    return out


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def test_deterministic_rule_precision_on_simulated_region(tmp_path: Path) -> None:
    region = make_region(tmp_path / "region", hospitals=3, patients=400)
    people = read_patients(region)
    person_of = {
        f"{t['hospital']}/{t['local_patient_id']}": t["person_id"]
        for t in region.truth("patients.csv")
    }
    assert {p.key for p in people} <= set(person_of), "truth must cover every local patient"

    def hospital(p: Person) -> str:
        return p.key.split("/", 1)[0]

    truth_pairs: set[tuple[str, str]] = set()
    by_person: dict[str, list[Person]] = defaultdict(list)
    for p in people:
        by_person[person_of[p.key]].append(p)
    for group in by_person.values():
        for a, b in itertools.combinations(group, 2):
            if hospital(a) != hospital(b):
                truth_pairs.add(_pair(a.key, b.key))

    blocks: dict[str, list[Person]] = defaultdict(list)
    for p in people:
        for k in blocking_keys(p):
            blocks[k].append(p)
    candidates: dict[tuple[str, str], tuple[Person, Person]] = {}
    for members in blocks.values():
        for a, b in itertools.combinations(members, 2):
            if hospital(a) != hospital(b):
                candidates[_pair(a.key, b.key)] = (a, b)
    same_id = {k for k, (a, b) in candidates.items() if a.id_number and a.id_number == b.id_number}
    linked = {k for k, (a, b) in candidates.items() if deterministic_link(a, b)}

    tp = len(linked & truth_pairs)
    fp = len(linked - truth_pairs)
    fn = len(truth_pairs - linked)
    covered = len(truth_pairs & set(candidates))
    precision = tp / (tp + fp) if linked else 1.0
    recall = tp / len(truth_pairs)
    print(
        f"\nEMPI deterministic rule, 3 hospitals x 400 patients ({len(people)} records):"
        f"\n  true cross-hospital pairs {len(truth_pairs)}, candidate pairs {len(candidates)}"
        f" (covering {covered} true pairs), same-ID pairs {len(same_id)}"
        f"\n  links {len(linked)}: true {tp}, false {fp}; missed {fn}"
        f" (of which same valid ID {len(truth_pairs & same_id - linked)})"
        f"\n  precision {precision:.4f}, recall {recall:.4f}"
    )
    assert precision >= 0.99
    assert covered / len(truth_pairs) >= 0.95  # blocking keeps the true pairs in view
    assert recall >= 0.80
