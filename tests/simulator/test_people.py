"""Synthetic people: determinism, ID validity, mix, formats, and every vary_person kind."""

from __future__ import annotations

import csv
import re
import statistics
import time
import unicodedata
from collections import Counter
from dataclasses import fields, replace
from datetime import date, timedelta
from importlib import resources

import numpy as np
import pytest
import stdnum.cn.ric as ric

from medfabric.simulator import people as pm
from medfabric.simulator.people import (
    KIND_SHARES,
    VARIATION_KINDS,
    Person,
    applicable_variations,
    apply_variation,
    generate_people,
    vary_person,
)
from medfabric.standards import codes, gb11643

AS_OF = date(2026, 11, 1)
N = 20_000
PHONE = re.compile(r"^1(3\d|5[0-35-9]|7[35-8]|8\d|9[0-35-9])\d{8}$")
FOREIGN_NAME = re.compile(r"^[A-Z]+ [A-Z]+$")


@pytest.fixture(scope="module")
def crowd() -> list[Person]:
    return generate_people(np.random.default_rng(20261101), N, as_of=AS_OF)


def _age(p: Person, on: date = AS_OF) -> int:
    b = p.birth_date
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def _data(name: str) -> list[dict[str, str]]:
    text = resources.files("medfabric.simulator").joinpath("data").joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines()))


def _homophone_groups() -> list[str]:
    return [r["chars"] for r in _data("homophones.csv")]


def _shape_pairs() -> set[frozenset[str]]:
    return {frozenset((r["a"], r["b"])) for r in _data("shape_typos.csv")}


# --------------------------------------------------------------------------- generate_people


def test_deterministic_for_a_seed() -> None:
    a = generate_people(np.random.default_rng(5), 3000, as_of=AS_OF)
    b = generate_people(np.random.default_rng(5), 3000, as_of=AS_OF)
    c = generate_people(np.random.default_rng(6), 3000, as_of=AS_OF)
    assert a == b
    assert a != c
    assert sum(x.name != y.name for x, y in zip(a, c, strict=True)) > 2000


def test_bulk_built_people_equal_constructed_ones(crowd: list[Person]) -> None:
    for p in crowd[:200]:
        q = Person(**{f.name: getattr(p, f.name) for f in fields(Person)})
        assert q == p
        assert hash(q) == hash(p)
    with pytest.raises(AttributeError):
        crowd[0].name = "x"  # type: ignore[misc]


def test_person_ids_count_from_first_index() -> None:
    ps = generate_people(np.random.default_rng(1), 5, as_of=AS_OF, first_index=41)
    assert [p.person_id for p in ps] == [f"P000000{i}" for i in range(41, 46)]
    assert generate_people(np.random.default_rng(1), 0, as_of=AS_OF) == []
    with pytest.raises(ValueError):
        generate_people(np.random.default_rng(1), -1, as_of=AS_OF)
    with pytest.raises(ValueError):
        generate_people(np.random.default_rng(1), 1, as_of=AS_OF, home_city="350102")


def test_18_digit_ids_valid_and_consistent(crowd: list[Person]) -> None:
    regions = codes.regions()
    seen: set[str] = set()
    count = 0
    for p in crowd:
        if p.id_number is None or len(p.id_number) != 18:
            continue
        count += 1
        assert p.kind == "resident" and p.id_type == "01"
        assert ric.is_valid(p.id_number), p
        info = gb11643.parse(p.id_number)
        assert (info.birth_date, info.sex) == (p.birth_date, p.sex), p
        assert info.region in regions
        assert info.number18 not in seen
        seen.add(info.number18)
    assert count > 0.9 * N


def test_15_digit_ids_upgrade_to_valid_18(crowd: list[Person]) -> None:
    regions = codes.regions()
    legacy = [p for p in crowd if p.kind == "legacy15"]
    assert legacy
    for p in legacy:
        assert p.id_type == "01" and p.id_number is not None and len(p.id_number) == 15
        n18 = gb11643.upgrade_15_to_18(p.id_number)
        assert ric.is_valid(n18), p
        info = gb11643.parse(p.id_number)
        assert info.was_15 and (info.birth_date, info.sex) == (p.birth_date, p.sex)
        assert info.region in regions
        assert date(1930, 1, 1) <= p.birth_date <= date(1980, 12, 31)


def test_mix_proportions(crowd: list[Person]) -> None:
    kinds = Counter(p.kind for p in crowd)
    tolerance = {"resident": 0.012, "legacy15": 0.006, "newborn": 0.004}
    tolerance |= {"unidentified": 0.003, "foreigner": 0.005}
    for kind, share in KIND_SHARES.items():
        assert abs(kinds[kind] / N - share) <= tolerance[kind], (kind, kinds[kind])
    males = sum(p.sex == "1" for p in crowd) / N
    assert abs(males - 0.5) < 0.02
    median_age = statistics.median(_age(p) for p in crowd)
    assert 40 <= median_age <= 50
    assert sum(_age(p) >= 65 for p in crowd) / N > 0.15
    assert sum(_age(p) < 5 for p in crowd) / N > 0.05


def test_birth_and_residence_regions(crowd: list[Person]) -> None:
    regions = codes.regions()

    def group(code: str) -> int:
        r = regions[code]
        city = r.parent if r.level == "district" else code
        return 0 if city == "350100" else 1 if code.startswith("35") else 2

    ids = [gb11643.parse(p.id_number).region for p in crowd if p.id_type == "01" and p.id_number]
    shares = Counter(group(c) for c in ids)
    for g, expected in enumerate(pm.BIRTH_REGION_SHARES):
        assert abs(shares[g] / len(ids) - expected) < 0.03, (g, shares)
    home = sum(regions[p.region_code].parent == "350100" for p in crowd) / N
    assert 0.88 <= home <= 0.96
    for p in crowd:
        r = regions[p.region_code]
        assert r.level == "district"
        assert p.address.startswith(pm._address_prefix(p.region_code)), p
    assert any(p.address.startswith("福建省福州市鼓楼区五四路") for p in crowd)


def test_fujian_surnames_weighted_up(crowd: list[Person]) -> None:
    firsts = Counter(p.name[0] for p in crowd if p.kind in ("resident", "legacy15"))
    assert firsts["林"] > firsts["王"]
    assert firsts["陈"] > firsts["李"]
    assert firsts["郑"] > firsts["赵"]
    xiamen_far = generate_people(np.random.default_rng(3), 5000, as_of=AS_OF, home_city="110100")
    beijing = Counter(p.name[0] for p in xiamen_far if p.kind == "resident")
    assert beijing["王"] > beijing["林"]
    assert all(p.address.startswith("北京市") for p in xiamen_far if p.region_code[:2] == "11")


def test_phones(crowd: list[Person]) -> None:
    phones = [p.phone for p in crowd if p.phone is not None]
    assert len(phones) > 0.9 * N
    assert all(PHONE.match(ph) for ph in phones), [ph for ph in phones if not PHONE.match(ph)][:5]


def test_foreigners(crowd: list[Person]) -> None:
    nations = codes.value_domain("nationality")
    foreigners = [p for p in crowd if p.kind == "foreigner"]
    assert foreigners
    for p in foreigners:
        assert p.id_type == "03" and p.id_number and p.nationality != "CHN"
        assert p.nationality in nations
        assert p.ethnicity is None
        assert FOREIGN_NAME.match(p.name), p.name
        assert re.fullmatch(r"[A-Z0-9]{8,9}", p.id_number), p.id_number
    assert len({p.id_number for p in foreigners}) == len(foreigners)
    for p in crowd:
        if p.kind != "foreigner":
            assert p.nationality == "CHN" and p.id_type in ("01", None)


def test_citizens_ethnicity(crowd: list[Person]) -> None:
    domain = codes.value_domain("ethnicity")
    citizens = [p for p in crowd if p.kind in ("resident", "legacy15", "newborn")]
    assert all(p.ethnicity in domain for p in citizens)
    han = sum(p.ethnicity == "01" for p in citizens) / len(citizens)
    assert 0.95 < han < 0.99
    assert any(p.ethnicity == "22" for p in citizens)  # 畲族, Fujian's largest minority


def test_marital_status_consistent_with_age(crowd: list[Person]) -> None:
    domain = codes.value_domain("marital_status")
    for p in crowd:
        assert p.marital_status in domain
        age = _age(p)
        if age < 18:
            assert p.marital_status == "10", p
        if age < (22 if p.sex == "1" else 20):
            assert p.marital_status in ("10", "90"), p
    by = Counter(p.marital_status for p in crowd if _age(p) >= 40)
    assert by["20"] > by["10"] + by["30"] + by["40"]


def test_newborns_and_unidentified(crowd: list[Person]) -> None:
    newborns = [p for p in crowd if p.kind == "newborn"]
    unknown = [p for p in crowd if p.kind == "unidentified"]
    assert newborns and unknown
    for p in newborns:
        assert timedelta(0) <= AS_OF - p.birth_date < timedelta(days=28)
        assert p.name.endswith("之子" if p.sex == "1" else "之女")
        assert len(p.name) >= 4 and p.id_number is None and p.id_type is None
    for p in unknown:
        assert re.fullmatch(r"无名氏\d{4}", p.name)
        assert p.id_number is None and p.phone is None
        assert (p.birth_date.month, p.birth_date.day) == (1, 1)
        assert 16 <= AS_OF.year - p.birth_date.year <= 90


def test_old_as_of_still_valid() -> None:
    staff = generate_people(np.random.default_rng(9), 2000, as_of=date(2000, 1, 1))
    for p in staff:
        if p.id_number is not None and p.id_type == "01":
            assert ric.is_valid(gb11643.parse(p.id_number).number18)
        assert p.birth_date <= date(2000, 1, 1)


@pytest.mark.slow
def test_generation_speed() -> None:
    # Regression guard only (the budget is 400k in 6 s); generous for a loaded CI machine.
    start = time.perf_counter()
    generate_people(np.random.default_rng(0), 100_000, as_of=AS_OF)
    assert time.perf_counter() - start < 10.0


# --------------------------------------------------------------------------- data tables


def test_data_tables_sizes_and_consistency() -> None:
    surnames = _data("surnames.csv")
    assert len(surnames) >= 120
    given = _data("given_chars.csv")
    assert len(given) >= 300
    assert {r["sex"] for r in given} == {"M", "F", "A"}
    groups = _homophone_groups()
    pinyin_of = {r["pinyin"]: r["chars"] for r in _data("homophones.csv")}
    covered = [r["char"] for r in given if pm.homophones_of(r["char"])]
    assert len(covered) >= 200
    for r in given:
        if pm.homophones_of(r["char"]):
            # The given-name table and the homophone table agree on the pinyin.
            assert r["char"] in pinyin_of.get(r["pinyin"], ""), r
    assert all(len(g) >= 2 for g in groups)
    assert len(_shape_pairs()) >= 60
    foreign = _data("foreign_names.csv")
    assert len(foreign) >= 60
    assert {r["part"] for r in foreign} == {"surname", "given"}
    streets = _data("streets.csv")
    assert sum(r["city"] == "350100" for r in streets) >= 60
    assert any(r["city"] == "*" for r in streets)


# --------------------------------------------------------------------------- vary_person


def _one(crowd: list[Person], pred: object) -> Person:
    assert callable(pred)
    for p in crowd:
        if pred(p):
            return p
    raise AssertionError("no suitable person in the crowd")


def _diff_positions(a: str, b: str) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_homophone(crowd: list[Person]) -> None:
    rng = np.random.default_rng(1)
    groups = _homophone_groups()
    tested = 0
    for p in crowd[:3000]:
        if "homophone" not in applicable_variations(p, as_of=AS_OF):
            assert p.kind in ("foreigner", "unidentified") or not any(
                pm.homophones_of(c) for c in p.name[1:]
            )
            continue
        q = apply_variation(rng, p, "homophone", as_of=AS_OF)
        (i,) = _diff_positions(p.name, q.name)
        assert i >= 1  # never the surname
        old, new = p.name[i], q.name[i]
        assert any(old in g and new in g for g in groups), (old, new)
        assert replace(q, name=p.name) == p
        tested += 1
    assert tested > 2000


def test_typo(crowd: list[Person]) -> None:
    rng = np.random.default_rng(2)
    pairs = _shape_pairs()
    p = _one(crowd, lambda x: x.kind == "resident" and any(pm.shape_typos_of(c) for c in x.name))
    q = apply_variation(rng, p, "typo", as_of=AS_OF)
    (i,) = _diff_positions(p.name, q.name)
    assert frozenset((p.name[i], q.name[i])) in pairs
    assert replace(q, name=p.name) == p


def test_missing_and_changed_phone(crowd: list[Person]) -> None:
    rng = np.random.default_rng(3)
    p = _one(crowd, lambda x: x.phone is not None)
    assert apply_variation(rng, p, "missing_phone", as_of=AS_OF) == replace(p, phone=None)
    q = apply_variation(rng, p, "changed_phone", as_of=AS_OF)
    assert q.phone != p.phone and q.phone is not None and PHONE.match(q.phone)
    assert replace(q, phone=p.phone) == p
    nophone = _one(crowd, lambda x: x.phone is None)
    kinds = applicable_variations(nophone, as_of=AS_OF)
    assert "missing_phone" not in kinds and "changed_phone" not in kinds
    with pytest.raises(ValueError):
        apply_variation(rng, nophone, "changed_phone", as_of=AS_OF)


def test_missing_id(crowd: list[Person]) -> None:
    rng = np.random.default_rng(4)
    p = _one(crowd, lambda x: x.id_number is not None)
    q = apply_variation(rng, p, "missing_id", as_of=AS_OF)
    assert q == replace(p, id_type=None, id_number=None)
    assert "missing_id" not in applicable_variations(q, as_of=AS_OF)
    assert "id_as_15" not in applicable_variations(q, as_of=AS_OF)


def test_changed_address(crowd: list[Person]) -> None:
    rng = np.random.default_rng(5)
    regions = codes.regions()
    movers = [x for x in crowd if x.region_code.startswith("3501") and x.kind != "unidentified"]
    for p in movers[:200]:
        q = apply_variation(rng, p, "changed_address", as_of=AS_OF)
        assert q.region_code != p.region_code
        assert regions[q.region_code].parent == regions[p.region_code].parent
        assert q.address.startswith(pm._address_prefix(q.region_code))
        street = re.match(r".+?[区县市](.+?(?:路|街|道))\d", q.address)
        assert street and street.group(1) not in p.address, (p.address, q.address)
        assert replace(q, address=p.address, region_code=p.region_code) == p


def test_transposed_birth_date(crowd: list[Person]) -> None:
    rng = np.random.default_rng(6)
    for p in crowd[:2000]:
        d = p.birth_date
        ok = d.day <= 12 and d.day != d.month and date(d.year, d.day, d.month) <= AS_OF
        assert ("transposed_birth_date" in applicable_variations(p, as_of=AS_OF)) == ok
        if ok:
            q = apply_variation(rng, p, "transposed_birth_date", as_of=AS_OF)
            assert (q.birth_date.month, q.birth_date.day) == (d.day, d.month)
            assert q.birth_date.year == d.year
            assert replace(q, birth_date=d) == p


def test_id_as_15(crowd: list[Person]) -> None:
    rng = np.random.default_rng(7)
    p = _one(crowd, lambda x: x.kind == "resident" and 1900 <= x.birth_date.year <= 1999)
    q = apply_variation(rng, p, "id_as_15", as_of=AS_OF)
    assert q.id_number is not None and len(q.id_number) == 15
    assert gb11643.upgrade_15_to_18(q.id_number) == p.id_number
    young = _one(crowd, lambda x: x.kind == "resident" and x.birth_date.year >= 2000)
    assert "id_as_15" not in applicable_variations(young, as_of=AS_OF)
    legacy = _one(crowd, lambda x: x.kind == "legacy15")
    assert "id_as_15" not in applicable_variations(legacy, as_of=AS_OF)


def test_name_order_reversed(crowd: list[Person]) -> None:
    rng = np.random.default_rng(8)
    unknown = _one(crowd, lambda x: x.kind == "unidentified")
    assert "changed_address" not in applicable_variations(unknown, as_of=AS_OF)
    p = _one(crowd, lambda x: x.kind == "foreigner")
    q = apply_variation(rng, p, "name_order_reversed", as_of=AS_OF)
    surname, given = p.name.split(" ")
    assert q.name == f"{given} {surname}"
    kinds = applicable_variations(p, as_of=AS_OF)
    assert "homophone" not in kinds and "typo" not in kinds
    citizen = _one(crowd, lambda x: x.kind == "resident")
    assert "name_order_reversed" not in applicable_variations(citizen, as_of=AS_OF)


def test_whitespace(crowd: list[Person]) -> None:
    rng = np.random.default_rng(9)
    seen_phone = seen_name = False
    for p in crowd[:300]:
        q = apply_variation(rng, p, "whitespace", as_of=AS_OF)
        if q.name != p.name:
            assert q.phone == p.phone
            assert q.name.replace(" ", "") == p.name.replace(" ", "")
            assert q.name.count(" ") == p.name.count(" ") + 1
            seen_name = True
        else:
            assert q.phone is not None and p.phone is not None
            assert q.phone != p.phone and unicodedata.normalize("NFKC", q.phone) == p.phone
            seen_phone = True
    assert seen_name and seen_phone


def test_vary_person_never_returns_inapplicable_kinds(crowd: list[Person]) -> None:
    rng = np.random.default_rng(10)
    counts: Counter[str] = Counter()
    for p in crowd[:6000]:
        q, kinds = vary_person(rng, p, as_of=AS_OF)
        assert q.person_id == p.person_id
        assert 1 <= len(kinds) <= 3 and len(set(kinds)) == len(kinds)
        assert set(kinds) <= set(VARIATION_KINDS)
        allowed = applicable_variations(p, as_of=AS_OF)
        assert set(kinds) <= set(allowed), (p, kinds, allowed)
        if "whitespace" in kinds:
            assert kinds[-1] == "whitespace"
        if p.kind == "foreigner":
            assert "homophone" not in kinds and "typo" not in kinds
        else:
            assert "name_order_reversed" not in kinds
        if p.id_number is None:
            assert "missing_id" not in kinds and "id_as_15" not in kinds
        if p.phone is None:
            assert "missing_phone" not in kinds and "changed_phone" not in kinds
        if "missing_phone" in kinds:
            assert q.phone is None and "changed_phone" not in kinds
        if "missing_id" in kinds:
            assert q.id_number is None and "id_as_15" not in kinds
        counts.update(kinds)
    assert set(counts) == set(VARIATION_KINDS), counts


def test_vary_person_deterministic(crowd: list[Person]) -> None:
    a = [vary_person(np.random.default_rng(11), p, as_of=AS_OF) for p in crowd[:300]]
    b = [vary_person(np.random.default_rng(11), p, as_of=AS_OF) for p in crowd[:300]]
    assert a == b


def test_apply_variation_rejects_unknown_kind(crowd: list[Person]) -> None:
    with pytest.raises(ValueError):
        apply_variation(np.random.default_rng(0), crowd[0], "nickname", as_of=AS_OF)
