"""Clinical profiles: what a condition does to a patient's record.

A profile (``data/profiles.yaml``) says which department sees the condition, how often a visit
for it is an admission or an emergency, which lab panels and exams are ordered (with
probabilities), how lab values shift (mean and spread in the standard unit), which ordinal
results turn positive, and which drugs are prescribed (named by ATC code, resolved to the first
regional drug code of that ATC). Diagnoses name their profile in the code system, so "a diabetic
has glucose and HbA1c results and metformin" follows from data.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from medfabric.standards import codes

# The C loader (libyaml) when present: the phrase file is large and parsed once per process.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ProfileError(Exception):
    """profiles.yaml is inconsistent with the code systems."""


@dataclass(frozen=True, slots=True)
class Profile:
    key: str
    department: str  # standard department code
    age: tuple[int, int]
    inpatient: float
    emergency: float
    stay: tuple[int, int]
    panels: Mapping[str, float]
    effects: Mapping[str, tuple[float, float]]
    positives: Mapping[str, float]
    exams: Mapping[str, float]
    exam_abnormal: float
    drugs: tuple[str, ...]


def _pair(raw: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ProfileError(f"{what}: expected [a, b], got {raw!r}")
    return raw[0], raw[1]


@functools.cache
def profiles() -> Mapping[str, Profile]:
    """Every clinical profile, validated against the code systems."""
    text = (resources.files("medfabric.simulator") / "data" / "profiles.yaml").read_text("utf-8")
    raw: dict[str, Any] = yaml.load(text, Loader=_YAML_LOADER)
    by_atc: dict[str, str] = {}
    for drug in codes.drugs().values():
        by_atc.setdefault(drug.atc, drug.code)
    out: dict[str, Profile] = {}
    for key, p in raw.items():
        age = _pair(p.get("age", [0, 100]), f"{key}.age")
        stay = _pair(p.get("stay", [3, 10]), f"{key}.stay")
        prof = Profile(
            key=key,
            department=str(p["department"]),
            age=(int(age[0]), int(age[1])),
            inpatient=float(p.get("inpatient", 0.05)),
            emergency=float(p.get("emergency", 0.03)),
            stay=(int(stay[0]), int(stay[1])),
            panels=MappingProxyType({str(k): float(v) for k, v in p.get("panels", {}).items()}),
            effects=MappingProxyType(
                {str(k): (float(v[0]), float(v[1])) for k, v in (p.get("effects") or {}).items()}
            ),
            positives=MappingProxyType(
                {str(k): float(v) for k, v in (p.get("positives") or {}).items()}
            ),
            exams=MappingProxyType({str(k): float(v) for k, v in (p.get("exams") or {}).items()}),
            exam_abnormal=float(p.get("exam_abnormal", 0.5)),
            drugs=tuple(by_atc.get(str(a), f"ATC:{a}") for a in p.get("drugs", [])),
        )
        out[key] = prof
    problems = check_profiles(out)
    if problems:
        raise ProfileError("profiles.yaml: " + "; ".join(problems))
    return MappingProxyType(out)


def check_profiles(table: Mapping[str, Profile]) -> list[str]:
    """Every reference a profile makes, checked against the code systems."""
    problems: list[str] = []
    depts = codes.value_domain("department")
    panels, items = codes.lab_panels(), codes.lab_items()
    exams, drugs = codes.exam_items(), codes.drugs()
    missing = set(codes.PROFILE_KEYS) - set(table)
    if missing:
        problems.append(f"profiles missing: {sorted(missing)}")
    for p in table.values():
        if p.key not in codes.PROFILE_KEYS:
            problems.append(f"{p.key}: not a profile key of the code system")
        if p.department not in depts:
            problems.append(f"{p.key}: unknown department {p.department}")
        problems += [f"{p.key}: unknown panel {c}" for c in p.panels if c not in panels]
        problems += [f"{p.key}: unknown lab item {c}" for c in p.effects if c not in items]
        problems += [
            f"{p.key}: positives must be ordinal items: {c}"
            for c in p.positives
            if c not in items or items[c].value_type != "O"
        ]
        problems += [f"{p.key}: unknown exam {c}" for c in p.exams if c not in exams]
        problems += [f"{p.key}: no drug with {c}" for c in p.drugs if c not in drugs]
        for name, prob in [*p.panels.items(), *p.exams.items(), *p.positives.items()]:
            if not 0.0 <= prob <= 1.0:
                problems.append(f"{p.key}: probability of {name} out of [0, 1]")
        if not (0 <= p.age[0] < p.age[1] <= 120):
            problems.append(f"{p.key}: bad age range {p.age}")
    return problems
