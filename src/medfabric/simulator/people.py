"""Synthetic people of a region and the imperfect copies hospitals keep of them.

:func:`generate_people` makes the region's true identities; :func:`vary_person` makes the copy a
second hospital holds of one of them, with the registration mistakes EMPI has to see through.

Invariants:
- Deterministic: the output is a pure function of the generator's state and the arguments;
  the data files are read once and cached.
- ``person_id`` is ``"P"`` + at least 8 digits, counting up from ``first_index``.
- Every 18-digit ``id_number`` is a valid GB 11643 number that agrees with ``birth_date`` and
  ``sex``; every 15-digit one (kind ``legacy15``, births 1930-1980) upgrades to such a
  number. ID numbers are unique within one call (compared in their 18-digit form), and so are
  passport numbers.
- The first six ID digits are a ``regions.csv`` code (district, or city where history leaves no
  district) that python-stdnum's GB/T 2260 history records as in force in the birth year, so
  ``stdnum.cn.ric.is_valid`` accepts every generated number.
- ``region_code`` is the district of ``address``; ``address`` starts with that district's
  province, city and district names.
- ``marital_status`` is '10' below the legal marriage age (22 male, 20 female); unidentified
  adults are '90' (not stated).
- Foreigners have ``id_type`` '03', a passport number in their country's format, no ethnicity
  and a Latin-capital name "SURNAME GIVEN" with exactly one space.
- :func:`vary_person` keeps ``person_id`` and applies only kinds that
  :func:`applicable_variations` allows both for the true person and for the copy at that
  moment; a varied copy may break the invariants above on purpose (that is what it is for).

Data files (``simulator/data``): ``surnames.csv`` (national frequency in %, Fujian multiplier),
``given_chars.csv`` (tone-less pinyin, sex tendency M/F/A, weight, era old/new/blank),
``homophones.csv`` (one row per tone-less pinyin: the common characters typed with it),
``shape_typos.csv`` (look-alike pairs), ``foreign_names.csv`` (part, name, '|'-separated
nationalities, sex) and ``streets.csv`` (city, district, street; city '*' = any city).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import gc
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from importlib import resources

import numpy as np
from stdnum import numdb

from medfabric.standards import codes, gb11643

__all__ = [
    "BIRTH_REGION_SHARES",
    "KIND_SHARES",
    "RESIDENCE_SHARES",
    "VARIATION_KINDS",
    "Person",
    "applicable_variations",
    "apply_variation",
    "generate_people",
    "homophones_of",
    "shape_typos_of",
    "vary_person",
]

# Share of each kind of person among hospital patients.
KIND_SHARES: Mapping[str, float] = {
    "resident": 0.935,  # 18-digit resident ID card
    "legacy15": 0.03,  # old 15-digit number still on file (born 1930-1980)
    "newborn": 0.01,  # < 28 days old, no ID yet, registered under the mother's name
    "unidentified": 0.005,  # emergency patient brought in without papers
    "foreigner": 0.02,  # passport holder
}
_KINDS = tuple(KIND_SHARES)

# Where the first six ID digits come from: the home city, the rest of its province, elsewhere.
BIRTH_REGION_SHARES = (0.60, 0.25, 0.15)
# Where people live now: same three groups.
RESIDENCE_SHARES = (0.92, 0.05, 0.03)

# Hospital patients, by 5-year age band from 0-4 to 100-104: more small children and elderly
# than the population (median about 45).
AGE_BAND_WEIGHTS = (
    8.0, 4.0, 3.0, 3.5, 5.0, 7.0, 8.0, 7.0, 6.5, 6.5,
    7.0, 7.0, 7.0, 6.5, 5.5, 4.5, 3.2, 1.8, 0.7, 0.2, 0.04,
)  # fmt: skip

# GB/T 3304 codes; Fujian has China's largest 畲族 population.
ETHNICITY_SHARES: Mapping[str, float] = {
    "01": 0.970,  # 汉族
    "22": 0.012,  # 畲族
    "03": 0.004,  # 回族
    "08": 0.003,  # 壮族
    "06": 0.002,  # 苗族
    "15": 0.002,  # 土家族
    "11": 0.002,  # 满族
    "12": 0.001,  # 侗族
    "09": 0.001,  # 布依族
    "07": 0.001,  # 彝族
    "02": 0.001,  # 蒙古族
    "10": 0.001,  # 朝鲜族
}

# Share of each kind with a phone on file; newborns carry the mother's.
PHONE_SHARES: Mapping[str, float] = {
    "resident": 0.96,
    "legacy15": 0.90,
    "newborn": 1.0,
    "unidentified": 0.0,
    "foreigner": 0.85,
}

# Mobile prefixes (China Mobile, Unicom, Telecom, Broadnet) with rough relative use.
_PHONE_PREFIXES: Mapping[str, float] = {
    **{f"13{d}": 3.0 for d in range(10)},
    **{p: 2.0 for p in ("150", "151", "152", "153", "155", "156", "157", "158", "159")},
    **{f"18{d}": 2.0 for d in range(10)},
    **{p: 1.0 for p in ("173", "175", "176", "177", "178")},
    **{p: 1.0 for p in ("190", "191", "192", "193", "195", "196", "197", "198", "199")},
}

FOREIGN_NATIONALITY_SHARES: Mapping[str, float] = {
    "KOR": 0.18, "JPN": 0.14, "USA": 0.17, "GBR": 0.07, "CAN": 0.06, "AUS": 0.06,
    "DEU": 0.07, "FRA": 0.06, "RUS": 0.09, "ITA": 0.05, "ESP": 0.05,
}  # fmt: skip

SINGLE_GIVEN_CHAR = 0.2  # share of Chinese names with a one-character given name

VARIATION_KINDS: tuple[str, ...] = (
    "homophone",
    "typo",
    "missing_phone",
    "missing_id",
    "changed_phone",
    "changed_address",
    "transposed_birth_date",
    "id_as_15",
    "name_order_reversed",
    "whitespace",
)
# Relative chance of each kind when several apply.
_VARIATION_WEIGHTS: Mapping[str, float] = {
    "homophone": 3.0,
    "typo": 1.5,
    "missing_phone": 1.5,
    "missing_id": 1.0,
    "changed_phone": 1.5,
    "changed_address": 1.5,
    "transposed_birth_date": 0.8,
    "id_as_15": 0.6,
    "name_order_reversed": 3.0,
    "whitespace": 1.0,
}
_VARIATION_COUNT = ((1, 2, 3), (0.6, 0.3, 0.1))
# Pairs where applying both would hide the first (a changed phone then removed).
_EXCLUSIVE: Mapping[str, str] = {
    "missing_phone": "changed_phone",
    "changed_phone": "missing_phone",
    "missing_id": "id_as_15",
    "id_as_15": "missing_id",
}

# Given-name fashions: births before 1960 favour 'old' characters, after 2000 'new' ones.
_DAY_1960 = (date(1960, 1, 1) - date(1970, 1, 1)).days
_DAY_2000 = (date(2000, 1, 1) - date(1970, 1, 1)).days

_UNIDENTIFIED = "无名氏"
_NEWBORN_SUFFIXES = ("之子", "之女")
_CITIZEN = "CHN"


@dataclass(frozen=True, slots=True)
class Person:
    """A person as the region knows them (or as one hospital recorded them)."""

    person_id: str  # region-wide true identity: "P" + 8 digits
    name: str  # 林秀英; "SMITH JOHN" for foreigners; 无名氏0042; 林秀英之女 for newborns
    sex: str  # GB/T 2261.1: '1' male, '2' female
    birth_date: date
    id_type: str | None  # WS 364 id_doc_type: '01' resident ID card, '03' passport
    id_number: str | None  # GB 11643 18- or 15-digit number, or passport number
    nationality: str  # ISO 3166-1 alpha-3
    ethnicity: str | None  # GB/T 3304 code; None for foreigners and the unidentified
    marital_status: str  # GB/T 2261.2 code
    phone: str | None  # 11-digit mobile number
    address: str  # 福建省福州市鼓楼区五四路128号3栋502室
    region_code: str  # GB/T 2260 district of the address
    kind: str  # 'resident' | 'legacy15' | 'newborn' | 'unidentified' | 'foreigner'


# ---------------------------------------------------------------------------------------------
# Data files


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("medfabric.simulator").joinpath("data").joinpath(name).read_text("utf-8")
    return [{k: v.strip() for k, v in row.items()} for row in csv.DictReader(text.splitlines())]


@dataclass(frozen=True, slots=True)
class _NameTables:
    surnames: tuple[str, ...]
    surname_weight: np.ndarray  # national frequency, %
    surname_fujian: np.ndarray  # multiplier applied for a Fujian home city
    compound: frozenset[str]
    given: tuple[str, ...]
    # (sex '1'/'2', era 0 old / 1 middle / 2 new) → probabilities over ``given``
    given_p: Mapping[tuple[str, int], np.ndarray]


@functools.cache
def _names() -> _NameTables:
    rows = _data_rows("surnames.csv")
    surnames = tuple(r["surname"] for r in rows)
    weight = np.array([float(r["weight_pct"]) for r in rows])
    fujian = np.array([float(r["fujian_mult"]) for r in rows])
    grows = _data_rows("given_chars.csv")
    given = tuple(r["char"] for r in grows)
    base = np.array([float(r["weight"]) for r in grows])
    sexes = np.array([r["sex"] for r in grows])
    eras = np.array([r["era"] for r in grows])
    given_p: dict[tuple[str, int], np.ndarray] = {}
    for sex, own in (("1", "M"), ("2", "F")):
        # Neutral characters are used by both sexes but less than the sex's own ones.
        w = base * np.where(sexes == own, 1.0, np.where(sexes == "A", 0.6, 0.0))
        for era, (old, new) in enumerate(((3.0, 0.3), (1.0, 1.0), (0.3, 3.0))):
            we = w * np.where(eras == "old", old, np.where(eras == "new", new, 1.0))
            given_p[(sex, era)] = we / we.sum()
    return _NameTables(
        surnames=surnames,
        surname_weight=weight,
        surname_fujian=fujian,
        compound=frozenset(s for s in surnames if len(s) > 1),
        given=given,
        given_p=given_p,
    )


@functools.cache
def _homophones() -> Mapping[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for r in _data_rows("homophones.csv"):
        chars = r["chars"]
        for c in chars:
            others = groups.setdefault(c, [])
            others.extend(o for o in chars if o != c and o not in others)
    return {c: tuple(v) for c, v in groups.items() if v}


@functools.cache
def _shape_typos() -> Mapping[str, tuple[str, ...]]:
    pairs: dict[str, list[str]] = {}
    for r in _data_rows("shape_typos.csv"):
        a, b = r["a"], r["b"]
        for x, y in ((a, b), (b, a)):
            lst = pairs.setdefault(x, [])
            if y not in lst:
                lst.append(y)
    return {c: tuple(v) for c, v in pairs.items()}


def homophones_of(char: str) -> tuple[str, ...]:
    """Common characters typed with the same tone-less pinyin as ``char`` (from homophones.csv)."""
    return _homophones().get(char, ())


def shape_typos_of(char: str) -> tuple[str, ...]:
    """Characters that look like ``char`` (from shape_typos.csv)."""
    return _shape_typos().get(char, ())


@functools.cache
def _foreign_names() -> Mapping[tuple[str, str, str], tuple[str, ...]]:
    """(part, nationality, sex '1'/'2') → names."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for r in _data_rows("foreign_names.csv"):
        sexes = ("1", "2") if r["sex"] == "A" else (("1",) if r["sex"] == "M" else ("2",))
        for nat in r["nationality"].split("|"):
            for sex in sexes:
                out.setdefault((r["part"], nat, sex), []).append(r["name"])
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def _streets() -> tuple[Mapping[str, tuple[str, ...]], tuple[str, ...]]:
    """District code → its own street names, and the generic names used anywhere."""
    own: dict[str, list[str]] = {}
    generic: list[str] = []
    for r in _data_rows("streets.csv"):
        if r["city"] == "*":
            generic.append(r["name"])
        else:
            own.setdefault(r["district"], []).append(r["name"])
    return {k: tuple(v) for k, v in own.items()}, tuple(generic)


# ---------------------------------------------------------------------------------------------
# Geography


def _valid_years(code: str) -> tuple[tuple[int, int], ...]:
    """Year ranges in which stdnum's GB/T 2260 history has ``code`` in force."""
    props: dict[str, str] = {}
    for _, p in numdb.get("cn/loc").info(code):
        props.update(p)
    county = props.get("county", "")
    out: list[tuple[int, int]] = []
    for piece in county.split(",") if county else []:
        if not piece.startswith("["):
            return ((0, 9999),)
        start, end = piece[1:].split("]")[0].split("-")
        out.append((int(start) if start else 0, int(end) if end else 9999))
    return tuple(out)


# Relative weight of a city-level code among birth-region candidates: GB 11643 numbers carry a
# district code, and a city code is only the fallback of years with few districts in force.
_CITY_CODE_WEIGHT = 0.25


@dataclass(slots=True)
class _Geo:
    home_city: str
    home_districts: np.ndarray  # district codes of the home city, as str
    home_weights: np.ndarray
    # Birth-code candidates per group (0 home city, 1 rest of province, 2 elsewhere):
    # (code, years in force, weight).
    birth_candidates: tuple[tuple[tuple[str, tuple[tuple[int, int], ...], float], ...], ...]
    # Residence candidates per group (districts only).
    residence: tuple[np.ndarray, ...]
    pool_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]

    def birth_pool(self, group: int, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes (int) of ``group`` in force in ``year`` and their cumulative probabilities.

        Falls back to the other groups when ``group`` has no code in force that year.
        """
        key = (group, year)
        pool = self.pool_cache.get(key)
        if pool is None:
            for g in (group, *(x for x in (0, 1, 2) if x != group)):
                found = [
                    (int(c), w)
                    for c, spans, w in self.birth_candidates[g]
                    if any(a <= year <= b for a, b in spans)
                ]
                if found:
                    break
            else:
                raise ValueError(f"no region code in force in {year} for {self.home_city}")
            w = np.array([x[1] for x in found])
            cum = np.cumsum(w / w.sum())
            cum[-1] = 1.0
            pool = (np.array([x[0] for x in found], dtype=np.int64), cum)
            self.pool_cache[key] = pool
        return pool


@functools.cache
def _geo(home_city: str) -> _Geo:
    table = codes.regions()
    city = table.get(home_city)
    if city is None or city.level != "city":
        raise ValueError(f"home_city must be a city-level GB/T 2260 code, got {home_city!r}")
    if city.parent is None:
        raise ValueError(f"{home_city} has no parent province in regions.csv")
    districts = sorted(
        c for c, r in table.items() if r.level == "district" and r.parent == home_city
    )
    if not districts:
        raise ValueError(f"no districts of {home_city} in regions.csv")

    def group_of(code: str) -> int:
        r = table[code]
        parent = r.parent if r.level == "district" else code
        if parent == home_city:
            return 0
        return 1 if code[:2] == home_city[:2] else 2

    birth: list[list[tuple[str, tuple[tuple[int, int], ...], float]]] = [[], [], []]
    residence: list[list[str]] = [[], [], []]
    for code in sorted(table):
        r = table[code]
        if r.level == "province":
            continue
        g = group_of(code)
        spans = _valid_years(code)
        if spans:
            birth[g].append((code, spans, 1.0 if r.level == "district" else _CITY_CODE_WEIGHT))
        if r.level == "district":
            residence[g].append(code)
    for g in (1, 2):
        if not residence[g]:
            residence[g] = list(districts)
    names = [table[c].name_zh for c in districts]
    # Urban districts hold more of the population than counties.
    w = np.array([3.0 if n.endswith("区") else 2.0 if n.endswith("市") else 1.0 for n in names])
    return _Geo(
        home_city=home_city,
        home_districts=np.array(districts, dtype=object),
        home_weights=w / w.sum(),
        birth_candidates=tuple(tuple(b) for b in birth),
        residence=tuple(np.array(r, dtype=object) for r in residence),
        pool_cache={},
    )


@functools.cache
def _address_prefix(district: str) -> str:
    """Province, city and district names of ``district``, as an address starts."""
    parts: list[str] = []
    for r in codes.region_path(district):
        # Municipalities list placeholder cities (市辖区, 县) that no address spells out.
        if r.name_zh not in ("市辖区", "县", "省直辖县级行政区划") and r.name_zh not in parts:
            parts.append(r.name_zh)
    return "".join(parts)


# Share of a district's addresses on its own known streets (when streets.csv lists some).
_OWN_STREET_SHARE = 0.85


def _street(district: str, u: float) -> str:
    return str(_streets_for(district, np.array([u]))[0])


def _streets_for(district: str, u: np.ndarray) -> np.ndarray:
    """Street names for uniforms ``u`` in [0, 1): the district's own streets or common ones."""
    own, generic = _streets()
    names = own.get(district)
    gen = np.array(generic, dtype=object)
    if not names:
        return gen[np.minimum((u * len(gen)).astype(np.int64), len(gen) - 1)]
    mine = np.array(names, dtype=object)
    in_own = u < _OWN_STREET_SHARE
    i_own = np.minimum((u / _OWN_STREET_SHARE * len(mine)).astype(np.int64), len(mine) - 1)
    v = (u - _OWN_STREET_SHARE) / (1.0 - _OWN_STREET_SHARE)
    i_gen = np.clip((v * len(gen)).astype(np.int64), 0, len(gen) - 1)
    return np.where(in_own, mine[i_own], gen[i_gen])


def _group_indices(inverse: np.ndarray, count: int) -> list[np.ndarray]:
    """Row indices of each group 0..count-1 of ``inverse`` (as from ``np.unique``)."""
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(count + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(count)]


def _address(district: str, u: float, number: int, building: int, room: int) -> str:
    base = f"{_address_prefix(district)}{_street(district, u)}{number}号"
    if building == 0:
        return base
    return f"{base}{building}栋{room}室"


# ---------------------------------------------------------------------------------------------
# Vectorised draws


def _age_year_weights(lo: int, hi: int) -> np.ndarray:
    w = np.repeat(np.asarray(AGE_BAND_WEIGHTS, dtype=float) / 5.0, 5)
    w[:lo] = 0.0
    w[hi + 1 :] = 0.0
    out: np.ndarray = w / w.sum()
    return out


def _age_days(rng: np.random.Generator, m: int, lo: int, hi: int) -> np.ndarray:
    years = rng.choice(len(AGE_BAND_WEIGHTS) * 5, size=m, p=_age_year_weights(lo, hi))
    return ((years + rng.random(m)) * 365.2425).astype(np.int64)


def _phones(rng: np.random.Generator, m: int) -> list[str]:
    prefixes = list(_PHONE_PREFIXES)
    p = np.array(list(_PHONE_PREFIXES.values()))
    idx = rng.choice(len(prefixes), size=m, p=p / p.sum())
    tails = rng.integers(0, 100_000_000, size=m)
    return [f"{prefixes[i]}{t:08d}" for i, t in zip(idx.tolist(), tails.tolist(), strict=True)]


def _marital(rng: np.random.Generator, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    u = rng.random(len(age))
    never = np.select(
        [age < 25, age < 30, age < 35, age < 40, age < 50], [0.75, 0.40, 0.15, 0.08, 0.05], 0.03
    )
    widowed = np.select([age < 50, age < 60, age < 70, age < 80], [0.005, 0.03, 0.08, 0.18], 0.35)
    widowed = widowed * np.where(male, 0.7, 1.5)
    divorced = np.select([age < 30, age < 60], [0.01, 0.05], 0.03)
    out = np.where(
        u < never,
        "10",
        np.where(u < never + widowed, "30", np.where(u < never + widowed + divorced, "40", "20")),
    )
    below_legal_age = age < np.where(male, 22, 20)
    return np.where(below_legal_age, "10", out)


def _passport(nat: str, a: int, b: int) -> str:
    """A passport number in the format ``nat`` issues, from two random integers."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    l1, l2, l3 = letters[b % 26], letters[(b // 26) % 26], letters[(b // 676) % 26]
    if nat in ("USA", "GBR", "RUS"):
        return f"{a % 1_000_000_000:09d}"
    if nat == "JPN":
        return f"T{l1}{a % 10_000_000:07d}"
    if nat == "KOR":
        return f"M{a % 100_000_000:08d}"
    if nat == "DEU":
        alnum = "CFGHJKLMNPRTVWXYZ0123456789"
        tail = "".join(alnum[(a // 27**i) % 27] for i in range(8))
        return f"C{tail}"
    if nat == "FRA":
        return f"{a % 100:02d}{l1}{l2}{(a // 100) % 100_000:05d}"
    if nat == "CAN":
        return f"{l1}{l2}{a % 1_000_000:06d}"
    if nat == "AUS":
        return f"P{l1}{a % 10_000_000:07d}"
    if nat == "ITA":
        return f"Y{l1}{a % 10_000_000:07d}"
    if nat == "ESP":
        return f"P{l1}{l2}{a % 1_000_000:06d}"
    return f"{l1}{l2}{l3}{a % 1_000_000:06d}"


def _id_check_chars(num17: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11-2 check characters of 17-digit integers, vectorised."""
    total = np.zeros(len(num17), dtype=np.int64)
    rest = num17.copy()
    for i in range(17):
        total += (rest % 10) * pow(2, i + 1, 11)
        rest //= 10
    return np.array(list("10X98765432"), dtype=object)[total % 11]


# ---------------------------------------------------------------------------------------------
# generate_people


def generate_people(
    rng: np.random.Generator,
    n: int,
    *,
    as_of: date,
    home_city: str = "350100",
    first_index: int = 1,
) -> list[Person]:
    """Draw ``n`` people of the region served by ``home_city`` as they stand on ``as_of``.

    The mix of kinds follows :data:`KIND_SHARES`, ID birth regions
    :data:`BIRTH_REGION_SHARES`, residences :data:`RESIDENCE_SHARES` and ages
    :data:`AGE_BAND_WEIGHTS`. Deterministic for a given generator state.

    Raises:
        ValueError: ``n`` negative, or ``home_city`` not a city with districts in regions.csv.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    geo = _geo(home_city)
    if n == 0:
        return []
    # Hundreds of thousands of acyclic objects would trigger repeated full collections that
    # find nothing and roughly double the run time; collection resumes on return.
    with _gc_paused():
        return _generate(rng, n, geo, as_of=as_of, home_city=home_city, first_index=first_index)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _generate(
    rng: np.random.Generator, n: int, geo: _Geo, *, as_of: date, home_city: str, first_index: int
) -> list[Person]:
    nt = _names()
    k_res, k_leg, k_new, k_unk, k_for = range(len(_KINDS))
    as_of_day = int(np.datetime64(as_of, "D").astype(np.int64))

    kind = rng.choice(len(_KINDS), size=n, p=np.array(list(KIND_SHARES.values())))
    if as_of < date(1931, 1, 1):
        kind[kind == k_leg] = k_res
    male = rng.random(n) < 0.5

    # Birth dates as days since 1970-01-01, drawn per kind.
    birth = as_of_day - _age_days(rng, n, 0, 104)
    idx = np.flatnonzero(kind == k_new)
    birth[idx] = as_of_day - rng.integers(0, 28, size=len(idx))
    idx = np.flatnonzero(kind == k_leg)
    if len(idx):
        lo_d = int(np.datetime64("1930-01-01", "D").astype(np.int64))
        hi_d = min(int(np.datetime64("1980-12-31", "D").astype(np.int64)), as_of_day)
        lo_age, hi_age = max(0, as_of.year - 1981), min(104, as_of.year - 1930)
        birth[idx] = np.clip(as_of_day - _age_days(rng, len(idx), lo_age, hi_age), lo_d, hi_d)
    idx = np.flatnonzero(kind == k_unk)
    # Staff estimate an age; the record carries 1 January of the estimated birth year.
    unk_year = as_of.year - rng.choice(105, size=len(idx), p=_age_year_weights(16, 90))
    birth[idx] = (unk_year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    idx = np.flatnonzero(kind == k_for)
    birth[idx] = as_of_day - _age_days(rng, len(idx), 18, 85)
    bd = birth.astype("datetime64[D]")
    bm = bd.astype("datetime64[M]")
    year = bd.astype("datetime64[Y]").astype(np.int64) + 1970
    month = bm.astype(np.int64) % 12 + 1
    day = (bd - bm).astype(np.int64) + 1
    not_yet = (month > as_of.month) | ((month == as_of.month) & (day > as_of.day))
    age_years = as_of.year - year - not_yet
    birth_dates: list[date] = bd.tolist()

    # ID numbers (residents and legacy15) as 17-digit integers, then check characters.
    id_idx = np.flatnonzero((kind == k_res) | (kind == k_leg))
    group = rng.choice(3, size=len(id_idx), p=np.array(BIRTH_REGION_SHARES))
    u_region = rng.random(len(id_idx))
    seq = rng.integers(0, 1000, size=len(id_idx))
    region = np.empty(len(id_idx), dtype=np.int64)
    keys = group * 10_000 + year[id_idx]
    uniq, inverse = np.unique(keys, return_inverse=True)
    for key, sel in zip(uniq.tolist(), _group_indices(inverse, len(uniq)), strict=True):
        pool, cum = geo.birth_pool(key // 10_000, key % 10_000)
        region[sel] = pool[np.searchsorted(cum, u_region[sel], side="right")]
    seq = np.where((seq % 2 == 1) != male[id_idx], seq ^ 1, seq)
    ymd = year[id_idx] * 10_000 + month[id_idx] * 100 + day[id_idx]
    num17 = _dedupe_ids(region * 10**11 + ymd * 1000 + seq)
    # Region codes start with 1-8, so the 17-digit integers need no zero padding.
    id18 = (num17.astype(str).astype(object) + _id_check_chars(num17)).tolist()

    # Names.
    surname_w = nt.surname_weight * (nt.surname_fujian if home_city[:2] == "35" else 1.0)
    surname_p = surname_w / surname_w.sum()
    surname = rng.choice(len(nt.surnames), size=n, p=surname_p)
    single = rng.random(n) < SINGLE_GIVEN_CHAR
    era = np.where(birth < _DAY_1960, 0, np.where(birth < _DAY_2000, 1, 2))
    given1 = np.zeros(n, dtype=np.int64)
    given2 = np.zeros(n, dtype=np.int64)
    for sex_code, is_male in (("1", True), ("2", False)):
        for e in (0, 1, 2):
            sel = np.flatnonzero((male == is_male) & (era == e))
            p = nt.given_p[(sex_code, e)]
            given1[sel] = rng.choice(len(nt.given), size=len(sel), p=p)
            given2[sel] = rng.choice(len(nt.given), size=len(sel), p=p)
    surnames = np.array(nt.surnames, dtype=object)
    given = np.array(nt.given, dtype=object)
    names = surnames[surname] + given[given1] + np.where(single, "", given[given2])
    # Mothers of newborns were born in the 1980s-2000s: middle-era female names.
    new_idx = np.flatnonzero(kind == k_new)
    mother = (
        surnames[rng.choice(len(nt.surnames), size=len(new_idx), p=surname_p)]
        + given[rng.choice(len(nt.given), size=len(new_idx), p=nt.given_p[("2", 1)])]
        + given[rng.choice(len(nt.given), size=len(new_idx), p=nt.given_p[("2", 1)])]
    )
    names[new_idx] = mother + np.where(male[new_idx], "之子", "之女")
    unk_idx = np.flatnonzero(kind == k_unk)
    unk_no = rng.integers(0, 10_000, size=len(unk_idx))
    names[unk_idx] = [f"{_UNIDENTIFIED}{x:04d}" for x in unk_no.tolist()]

    for_idx = np.flatnonzero(kind == k_for)
    nats = list(FOREIGN_NATIONALITY_SHARES)
    nat_p = np.array(list(FOREIGN_NATIONALITY_SHARES.values()))
    nat = rng.choice(len(nats), size=len(for_idx), p=nat_p / nat_p.sum()).tolist()
    u_for = rng.random((len(for_idx), 2)).tolist()
    pass_a = rng.integers(0, 2**62, size=len(for_idx)).tolist()
    pass_b = rng.integers(0, 26**3, size=len(for_idx)).tolist()

    eth_codes = np.array(list(ETHNICITY_SHARES), dtype=object)
    eth_p = np.array(list(ETHNICITY_SHARES.values()))
    ethnicity = eth_codes[rng.choice(len(eth_codes), size=n, p=eth_p / eth_p.sum())]
    marital = _marital(rng, age_years, male).astype(object)
    marital[new_idx] = "10"
    # Nobody knows an unidentified adult's marital status; a minor's is never in doubt.
    unk_minor = age_years[unk_idx] < np.where(male[unk_idx], 22, 20)
    marital[unk_idx] = np.where(unk_minor, "10", "90")

    phone_share = np.array([PHONE_SHARES[k] for k in _KINDS])[kind]
    has_phone = rng.random(n) < phone_share
    phones = np.array(_phones(rng, n), dtype=object)
    phones[~has_phone] = None

    # Residence.
    res_group = rng.choice(3, size=n, p=np.array(RESIDENCE_SHARES))
    district = geo.home_districts[rng.choice(len(geo.home_districts), size=n, p=geo.home_weights)]
    u_res = rng.random(n)
    for g in (1, 2):
        sel = np.flatnonzero(res_group == g)
        district[sel] = geo.residence[g][(u_res[sel] * len(geo.residence[g])).astype(np.int64)]
    u_street = rng.random(n)
    house = rng.integers(1, 400, size=n)
    building = np.where(rng.random(n) < 0.8, rng.integers(1, 31, size=n), 0)
    room = rng.integers(1, 34, size=n) * 100 + rng.integers(1, 7, size=n)
    streets = np.empty(n, dtype=object)
    d_uniq, d_inv = np.unique(district.astype(str), return_inverse=True)
    for d, sel in zip(d_uniq.tolist(), _group_indices(d_inv, len(d_uniq)), strict=True):
        streets[sel] = _streets_for(d, u_street[sel])
    prefixes = np.array([_address_prefix(d) for d in d_uniq.tolist()], dtype=object)[d_inv]
    house_s = np.array([f"{i}号" for i in range(400)], dtype=object)[house]
    building_s = np.array([""] + [f"{i}栋" for i in range(1, 31)], dtype=object)[building]
    room_s = np.array([f"{i}室" for i in range(3407)], dtype=object)[room]
    flat = np.where(building > 0, building_s + room_s, "")
    address = prefixes + streets + house_s + flat
    # Unidentified patients: where they were found, not where they live.
    address[unk_idx] = prefixes[unk_idx] + streets[unk_idx] + "附近"

    id_type = np.full(n, None, dtype=object)
    id_number = np.full(n, None, dtype=object)
    id_type[id_idx] = "01"
    id_number[id_idx] = id18
    leg_idx = np.flatnonzero(kind[id_idx] == k_leg)
    id_number[id_idx[leg_idx]] = [id18[j][:6] + id18[j][8:17] for j in leg_idx.tolist()]
    nationality = np.full(n, _CITIZEN, dtype=object)
    ethnicity[unk_idx] = None
    sex = np.where(male, "1", "2").astype(object)

    foreign = _foreign_names()
    passports: set[str] = set()
    for j, i in enumerate(for_idx.tolist()):
        nat_code = nats[nat[j]]
        sur = foreign[("surname", nat_code, sex[i])]
        giv = foreign[("given", nat_code, sex[i])]
        names[i] = f"{sur[int(u_for[j][0] * len(sur))]} {giv[int(u_for[j][1] * len(giv))]}"
        a = pass_a[j]
        passport = _passport(nat_code, a, pass_b[j])
        while passport in passports:
            a += 1
            passport = _passport(nat_code, a, pass_b[j])
        passports.add(passport)
        id_type[i], id_number[i], nationality[i], ethnicity[i] = "03", passport, nat_code, None

    return _bulk_people(
        {
            "person_id": [f"P{i:08d}" for i in range(first_index, first_index + n)],
            "name": names.tolist(),
            "sex": sex.tolist(),
            "birth_date": birth_dates,
            "id_type": id_type.tolist(),
            "id_number": id_number.tolist(),
            "nationality": nationality.tolist(),
            "ethnicity": ethnicity.tolist(),
            "marital_status": marital.tolist(),
            "phone": phones.tolist(),
            "address": address.tolist(),
            "region_code": district.tolist(),
            "kind": np.array(_KINDS, dtype=object)[kind].tolist(),
        }
    )


def _bulk_people(columns: Mapping[str, Sequence[object]]) -> list[Person]:
    """Build Persons from one list per field, equal to ``Person(**row)`` for every row.

    The generated frozen ``__init__`` costs about 6 µs per object (one ``object.__setattr__``
    per field); filling each slot column-wise through its slot descriptor is about ten times
    faster and is what keeps 400k people within the generation budget.
    """
    names = [f.name for f in fields(Person)]
    if sorted(columns) != sorted(names):
        raise ValueError(f"columns must be exactly {names}")
    n = len(columns["person_id"])
    people: list[Person] = list(map(object.__new__, itertools.repeat(Person, n)))
    for name in names:
        column = columns[name]
        if len(column) != n:
            raise ValueError(f"column {name!r} has {len(column)} rows, expected {n}")
        setter = vars(Person)[name].__set__
        collections.deque(map(setter, people, column), maxlen=0)
    return people


def _dedupe_ids(num17: np.ndarray) -> np.ndarray:
    """Make 17-digit prefixes unique by stepping the order code by 2 (keeps the sex parity)."""
    _, first, counts = np.unique(num17, return_index=True, return_counts=True)
    if (counts == 1).all():
        return num17
    out = num17.copy()
    used = set(num17.tolist())
    keep = np.zeros(len(num17), dtype=bool)
    keep[first] = True
    for j in np.flatnonzero(~keep).tolist():
        v = int(out[j])
        base, s = v - v % 1000, v % 1000
        for _ in range(500):
            s = (s + 2) % 1000
            if base + s not in used:
                break
        else:
            raise ValueError("order codes exhausted for one region and birth date")
        out[j] = base + s
        used.add(base + s)
    return out


# ---------------------------------------------------------------------------------------------
# vary_person


def _surname_len(name: str) -> int:
    return 2 if name[:2] in _names().compound else 1


def _chinese_name_span(person: Person) -> tuple[int, int, int] | None:
    """(start of the name, start of the given name, end) or None when not a Chinese name."""
    if person.kind in ("foreigner", "unidentified"):
        return None
    name = person.name
    end = len(name)
    if person.kind == "newborn" and name.endswith(_NEWBORN_SUFFIXES):
        end -= 2
    return 0, _surname_len(name), end


def _homophone_positions(person: Person) -> list[int]:
    span = _chinese_name_span(person)
    if span is None:
        return []
    _, given_start, end = span
    return [i for i in range(given_start, end) if homophones_of(person.name[i])]


def _typo_positions(person: Person) -> list[int]:
    span = _chinese_name_span(person)
    if span is None:
        return []
    start, _, end = span
    return [i for i in range(start, end) if shape_typos_of(person.name[i])]


def _id18_birth_year(person: Person) -> int | None:
    if person.id_type != "01" or person.id_number is None or len(person.id_number) != 18:
        return None
    return _birth_year_of(person.id_number)


@functools.lru_cache(maxsize=65_536)
def _birth_year_of(id18: str) -> int | None:
    try:
        return gb11643.parse(id18).birth_date.year
    except gb11643.InvalidIdNumber:
        return None


@functools.cache
def _city_districts(region_code: str) -> tuple[str, ...]:
    """All districts of the city ``region_code`` belongs to (empty when unknown)."""
    table = codes.regions()
    r = table.get(region_code)
    if r is None or r.parent is None:
        return ()
    return tuple(
        sorted(c for c, x in table.items() if x.level == "district" and x.parent == r.parent)
    )


def _transposed(d: date) -> date | None:
    if d.day > 12 or d.day == d.month:
        return None
    return date(d.year, d.day, d.month)


def applicable_variations(person: Person, *, as_of: date) -> tuple[str, ...]:
    """The kinds of :data:`VARIATION_KINDS` that can be applied to ``person`` as it stands."""
    out: list[str] = []
    if _homophone_positions(person):
        out.append("homophone")
    if _typo_positions(person):
        out.append("typo")
    if person.phone is not None:
        out.append("missing_phone")
    if person.id_number is not None:
        out.append("missing_id")
    if person.phone is not None:
        out.append("changed_phone")
    if person.kind != "unidentified" and len(_city_districts(person.region_code)) >= 2:
        out.append("changed_address")
    swapped = _transposed(person.birth_date)
    if swapped is not None and swapped <= as_of:
        out.append("transposed_birth_date")
    year = _id18_birth_year(person)
    if year is not None and 1900 <= year <= 1999:
        out.append("id_as_15")
    if person.kind == "foreigner" and person.name.count(" ") == 1:
        out.append("name_order_reversed")
    if len(person.name.replace(" ", "")) >= 2:
        out.append("whitespace")
    return tuple(out)


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(0, len(items)))]


def apply_variation(rng: np.random.Generator, person: Person, kind: str, *, as_of: date) -> Person:
    """Apply one variation ``kind`` to ``person``.

    Raises:
        ValueError: ``kind`` is unknown or not applicable to ``person`` (see
            :func:`applicable_variations`).
    """
    if kind not in applicable_variations(person, as_of=as_of):
        raise ValueError(f"variation {kind!r} does not apply to {person.person_id}")
    return _apply(rng, person, kind)


def _apply(rng: np.random.Generator, person: Person, kind: str) -> Person:
    """:func:`apply_variation` for a kind already known to apply."""
    name = person.name
    if kind in ("homophone", "typo"):
        positions = _homophone_positions(person) if kind == "homophone" else _typo_positions(person)
        pos = positions[int(rng.integers(0, len(positions)))]
        table = homophones_of if kind == "homophone" else shape_typos_of
        return replace(person, name=name[:pos] + _pick(rng, table(name[pos])) + name[pos + 1 :])
    if kind == "missing_phone":
        return replace(person, phone=None)
    if kind == "missing_id":
        return replace(person, id_type=None, id_number=None)
    if kind == "changed_phone":
        while True:
            phone = _phones(rng, 1)[0]
            if phone != person.phone:
                return replace(person, phone=phone)
    if kind == "changed_address":
        others = [c for c in _city_districts(person.region_code) if c != person.region_code]
        district = _pick(rng, others)
        u = float(rng.random())
        for _ in range(20):
            # A move means a new street: skip names that already appear in the old address.
            if _street(district, u) not in person.address:
                break
            u = float(rng.random())
        building = int(rng.integers(1, 31)) if rng.random() < 0.8 else 0
        room = int(rng.integers(1, 34)) * 100 + int(rng.integers(1, 7))
        address = _address(district, u, int(rng.integers(1, 400)), building, room)
        return replace(person, address=address, region_code=district)
    if kind == "transposed_birth_date":
        swapped = _transposed(person.birth_date)
        assert swapped is not None
        return replace(person, birth_date=swapped)
    if kind == "id_as_15":
        assert person.id_number is not None
        return replace(person, id_number=gb11643.to_id15(person.id_number))
    if kind == "name_order_reversed":
        surname, given = name.split(" ")
        return replace(person, name=f"{given} {surname}")
    # whitespace
    digits = person.phone
    if digits is not None and digits.isascii() and rng.random() < 0.4:
        # Full-width digits (U+FF10..U+FF19), as typed with a Chinese IME left in full-width mode.
        return replace(person, phone="".join(chr(ord(c) + 0xFEE0) for c in digits))
    if " " in name and rng.random() < 0.5:
        return replace(person, name=name.replace(" ", "  ", 1))
    pos = int(rng.integers(1, len(name)))
    return replace(person, name=name[:pos] + " " + name[pos:])


def _weighted_index(rng: np.random.Generator, weights: Sequence[float]) -> int:
    # Generator.choice(p=...) costs ~20 µs a call; one uniform and a scan is enough here.
    u = float(rng.random()) * sum(weights)
    for i, w in enumerate(weights):
        u -= w
        if u < 0:
            return i
    return len(weights) - 1


def vary_person(
    rng: np.random.Generator, person: Person, *, as_of: date
) -> tuple[Person, tuple[str, ...]]:
    """The copy of ``person`` a second hospital holds: 1-3 variations of :data:`VARIATION_KINDS`.

    Kinds are drawn without repetition among those applicable both to ``person`` and to the copy
    as varied so far, never both of missing/changed phone or of missing_id/id_as_15.
    'whitespace', when drawn, is applied last so that name edits never have to step around an
    inserted space.
    Returns the varied person (same ``person_id``) and the kinds in application order.
    """
    count = _VARIATION_COUNT[0][_weighted_index(rng, _VARIATION_COUNT[1])]
    # A kind must fit the true person too: a typo must not land on a homophone just introduced.
    fits_person = set(applicable_variations(person, as_of=as_of))
    chosen: list[str] = []
    whitespace = False
    current = person
    while len(chosen) + whitespace < count:
        excluded = {*chosen, *(_EXCLUSIVE[k] for k in chosen if k in _EXCLUSIVE)}
        if whitespace:
            excluded.add("whitespace")
        options = [
            k
            for k in applicable_variations(current, as_of=as_of)
            if k in fits_person and k not in excluded
        ]
        if not options:
            break
        kind = options[_weighted_index(rng, [_VARIATION_WEIGHTS[k] for k in options])]
        if kind == "whitespace":
            whitespace = True
            continue
        current = _apply(rng, current, kind)
        chosen.append(kind)
    if whitespace:
        current = _apply(rng, current, "whitespace")
        chosen.append("whitespace")
    return current, tuple(chosen)
