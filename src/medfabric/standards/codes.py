"""Loaders for the standard code systems shipped as data files in ``standards/data``.

Invariants:
- Every code system is a versioned data file listed in ``data/catalog.yaml``; nothing here is
  hard-coded in Python except the list of clinical profile keys, which the simulator and the
  diagnosis file must agree on.
- Loaders return read-only mappings keyed by code, built once and cached; a malformed file
  raises :class:`CodeSystemError` naming the file, the line and the column.
- This module imports nothing of medfabric outside ``standards``.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

PROFILE_KEYS: tuple[str, ...] = (
    "diabetes_t2", "diabetes_t1", "hypertension", "hyperlipidemia", "coronary", "mi",
    "heart_failure", "arrhythmia", "stroke", "copd", "asthma", "pneumonia", "urti",
    "tuberculosis", "gastritis", "gastroenteritis", "hepatitis", "liver_disease", "biliary",
    "pancreatitis", "abdominal_surgery", "ckd", "uti", "urolithiasis", "bph", "thyroid",
    "anemia", "gout", "arthritis", "osteoporosis", "fracture", "spine", "mental",
    "neurodegenerative", "epilepsy", "headache", "cancer_lung", "cancer_gi", "cancer_liver",
    "cancer_breast", "cancer_other", "pregnancy", "gynecology", "skin", "eye_ent",
    "infection_other", "allergy", "checkup",
)  # fmt: skip


class CodeSystemError(Exception):
    """A code-system data file is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str
    name_zh: str
    name_en: str
    profile: str
    sex: str  # 'A' any, 'M' male only, 'F' female only
    chronic: bool
    weight: int


@dataclass(frozen=True, slots=True)
class LabPanel:
    code: str
    name_zh: str
    name_en: str
    specimen: str
    loinc: str


@dataclass(frozen=True, slots=True)
class LabItem:
    code: str
    name_zh: str
    name_en: str
    loinc: str
    panel: str
    specimen: str
    unit: str
    value_type: str  # 'N' numeric, 'O' ordinal
    decimals: int
    ref_low_m: float | None
    ref_high_m: float | None
    ref_low_f: float | None
    ref_high_f: float | None
    ref_text: str

    def reference_range(self, sex: str) -> tuple[float | None, float | None]:
        """Adult reference range for GB/T 2261.1 sex code '1' (male) or '2' (female)."""
        if sex == "2":
            return self.ref_low_f, self.ref_high_f
        return self.ref_low_m, self.ref_high_m


@dataclass(frozen=True, slots=True)
class ExamItem:
    code: str
    name_zh: str
    name_en: str
    modality: str
    body_part: str
    category: str
    contrast: bool


@dataclass(frozen=True, slots=True)
class Drug:
    code: str
    name_zh: str
    name_en: str
    atc: str
    form: str
    strength: str
    unit: str
    route: str
    dose: float
    frequency: str


@dataclass(frozen=True, slots=True)
class ValueDomainEntry:
    code: str
    name_zh: str
    name_en: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name_zh: str
    level: str  # 'province' | 'city' | 'district'
    parent: str | None


@dataclass(frozen=True, slots=True)
class CodeSystemInfo:
    """One entry of ``data/catalog.yaml``: what a data file is, which version, from what."""

    id: str
    file: str
    version: str
    standard: str
    description: str


_T = TypeVar("_T")
_DATA = "data"


def _data_text(relpath: str) -> str:
    path = resources.files("medfabric.standards").joinpath(_DATA, *relpath.split("/"))
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CodeSystemError(f"standards data file missing: {relpath}") from exc


def _rows(relpath: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(_data_text(relpath).splitlines())
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise CodeSystemError(f"{relpath}:{reader.line_num}: wrong number of columns")
        yield reader.line_num, {k: v.strip() for k, v in row.items()}


def _opt_float(relpath: str, line: int, col: str, raw: str) -> float | None:
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise CodeSystemError(f"{relpath}:{line}: column {col!r}: not a number: {raw!r}") from exc


def _req_float(relpath: str, line: int, col: str, raw: str) -> float:
    value = _opt_float(relpath, line, col, raw)
    if value is None:
        raise CodeSystemError(f"{relpath}:{line}: column {col!r}: required")
    return value


def _int(relpath: str, line: int, col: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise CodeSystemError(f"{relpath}:{line}: column {col!r}: not an integer: {raw!r}") from exc


def _keyed(
    relpath: str, build: Callable[[int, dict[str, str]], _T], key: Callable[[_T], str]
) -> Mapping[str, _T]:
    out: dict[str, _T] = {}
    for line, row in _rows(relpath):
        try:
            item = build(line, row)
        except KeyError as exc:
            raise CodeSystemError(f"{relpath}: missing column {exc.args[0]!r}") from exc
        k = key(item)
        if not k:
            raise CodeSystemError(f"{relpath}:{line}: empty code")
        if k in out:
            raise CodeSystemError(f"{relpath}:{line}: duplicate code {k!r}")
        out[k] = item
    return MappingProxyType(out)


@functools.cache
def catalog() -> Mapping[str, CodeSystemInfo]:
    """The versioned list of code-system files (``data/catalog.yaml``)."""
    raw: Any = yaml.safe_load(_data_text("catalog.yaml"))
    out: dict[str, CodeSystemInfo] = {}
    for entry in raw["code_systems"]:
        try:
            info = CodeSystemInfo(**{k: str(v) for k, v in entry.items()})
        except TypeError as exc:
            raise CodeSystemError(f"catalog.yaml: bad entry {entry!r}: {exc}") from exc
        out[info.id] = info
    return MappingProxyType(out)


@functools.cache
def diagnoses() -> Mapping[str, Diagnosis]:
    """ICD-10 diagnoses used in the region, keyed by code (``E11.9``)."""
    f = "diagnoses.csv"

    def build(line: int, r: dict[str, str]) -> Diagnosis:
        return Diagnosis(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            profile=r["profile"],
            sex=r["sex"],
            chronic=r["chronic"] == "1",
            weight=_int(f, line, "weight", r["weight"]),
        )

    return _keyed(f, build, lambda d: d.code)


@functools.cache
def lab_panels() -> Mapping[str, LabPanel]:
    """LIS request panels (CBC, LFT, ...), keyed by code."""

    def build(line: int, r: dict[str, str]) -> LabPanel:
        return LabPanel(r["code"], r["name_zh"], r["name_en"], r["specimen"], r["loinc"])

    return _keyed("lab_panels.csv", build, lambda p: p.code)


@functools.cache
def lab_items() -> Mapping[str, LabItem]:
    """Regional lab item code list with LOINC codes, units and adult reference ranges."""
    f = "lab_items.csv"

    def build(line: int, r: dict[str, str]) -> LabItem:
        return LabItem(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            loinc=r["loinc"],
            panel=r["panel"],
            specimen=r["specimen"],
            unit=r["unit"],
            value_type=r["value_type"],
            decimals=_int(f, line, "decimals", r["decimals"]),
            ref_low_m=_opt_float(f, line, "ref_low_m", r["ref_low_m"]),
            ref_high_m=_opt_float(f, line, "ref_high_m", r["ref_high_m"]),
            ref_low_f=_opt_float(f, line, "ref_low_f", r["ref_low_f"]),
            ref_high_f=_opt_float(f, line, "ref_high_f", r["ref_high_f"]),
            ref_text=r["ref_text"],
        )

    return _keyed(f, build, lambda i: i.code)


@functools.cache
def lab_unit_factors() -> Mapping[str, Mapping[str, float]]:
    """Item code → unit → factor, where value_in_unit × factor = value in the standard unit."""
    f = "lab_units.csv"
    out: dict[str, dict[str, float]] = {}
    for line, r in _rows(f):
        units = out.setdefault(r["item_code"], {})
        if r["unit"] in units:
            raise CodeSystemError(f"{f}:{line}: duplicate unit {r['unit']!r} for {r['item_code']}")
        units[r["unit"]] = _req_float(f, line, "factor", r["factor"])
    return MappingProxyType({k: MappingProxyType(v) for k, v in out.items()})


@functools.cache
def exam_items() -> Mapping[str, ExamItem]:
    """Imaging, endoscopy and ECG exam items with DICOM modality and body part."""

    def build(line: int, r: dict[str, str]) -> ExamItem:
        return ExamItem(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            modality=r["modality"],
            body_part=r["body_part"],
            category=r["category"],
            contrast=r["contrast"] == "1",
        )

    return _keyed("exam_items.csv", build, lambda e: e.code)


@functools.cache
def drugs() -> Mapping[str, Drug]:
    """Regional drug list with ATC codes, forms and strengths, keyed by regional drug code."""
    f = "drugs.csv"

    def build(line: int, r: dict[str, str]) -> Drug:
        return Drug(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            atc=r["atc"],
            form=r["form"],
            strength=r["strength"],
            unit=r["unit"],
            route=r["route"],
            dose=_req_float(f, line, "dose", r["dose"]),
            frequency=r["frequency"],
        )

    return _keyed(f, build, lambda d: d.code)


@functools.cache
def _domains_index() -> tuple[dict[str, Any], ...]:
    raw: Any = yaml.safe_load(_data_text("value_domains/domains.yaml"))
    if not isinstance(raw, list):
        raise CodeSystemError("value_domains/domains.yaml: expected a list of domains")
    return tuple(raw)


def value_domain_ids() -> list[str]:
    """Identifiers of every value domain listed in ``value_domains/domains.yaml``."""
    return [str(d["id"]) for d in _domains_index()]


def value_domain_info(domain_id: str) -> Mapping[str, str]:
    """The index entry (names, standard, version) of one value domain."""
    for d in _domains_index():
        if d["id"] == domain_id:
            return MappingProxyType({k: str(v) for k, v in d.items()})
    raise CodeSystemError(f"unknown value domain {domain_id!r}")


@functools.cache
def value_domain(domain_id: str) -> Mapping[str, ValueDomainEntry]:
    """Entries of one WS 364-style value domain, keyed by code.

    Raises:
        CodeSystemError: the domain is not listed in ``domains.yaml`` or its file is malformed.
    """
    value_domain_info(domain_id)
    base = {"code", "name_zh", "name_en"}

    def build(line: int, r: dict[str, str]) -> ValueDomainEntry:
        extra = MappingProxyType({k: v for k, v in r.items() if k not in base})
        return ValueDomainEntry(r["code"], r["name_zh"], r["name_en"], extra)

    return _keyed(f"value_domains/{domain_id}.csv", build, lambda e: e.code)


@functools.cache
def regions() -> Mapping[str, Region]:
    """GB/T 2260 administrative divisions (province, city, district), keyed by 6-digit code."""

    def build(line: int, r: dict[str, str]) -> Region:
        return Region(r["code"], r["name_zh"], r["level"], r["parent"] or None)

    return _keyed("regions.csv", build, lambda g: g.code)


def region_path(code: str) -> tuple[Region, ...]:
    """Province → city → district chain ending at ``code``.

    Raises:
        CodeSystemError: the code or one of its ancestors is unknown.
    """
    table = regions()
    chain: list[Region] = []
    cur: str | None = code
    while cur is not None:
        if cur not in table:
            raise CodeSystemError(f"unknown GB/T 2260 region code {cur!r}")
        chain.append(table[cur])
        cur = table[cur].parent
    return tuple(reversed(chain))
