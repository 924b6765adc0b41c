"""Cross-file integrity checks of the code systems: every referenced code exists.

Each check returns human-readable problems (empty when consistent); :func:`check_all` runs them
all. Loading itself already rejects duplicate codes and malformed numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from medfabric.standards import codes

_ATC = re.compile(r"^[A-Z]\d\d[A-Z][A-Z]\d\d$")
_LOINC = re.compile(r"^\d{1,7}-\d$")
MODALITIES = {"CT", "MR", "DX", "US", "ES", "ECG", "BMD"}


def loinc_check_digit(body: str) -> str:
    """LOINC's mod-10 check digit of the part before the hyphen."""
    digits = [int(c) for c in body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return str((10 - total % 10) % 10)


def check_diagnoses() -> list[str]:
    out = []
    for d in codes.diagnoses().values():
        if d.profile not in codes.PROFILE_KEYS:
            out.append(f"diagnoses {d.code}: unknown profile {d.profile!r}")
        if d.sex not in ("A", "M", "F"):
            out.append(f"diagnoses {d.code}: sex must be A/M/F, got {d.sex!r}")
        if not 1 <= d.weight <= 100:
            out.append(f"diagnoses {d.code}: weight {d.weight} outside 1..100")
    return out


def check_labs() -> list[str]:
    out = []
    specimens = codes.value_domain("specimen_type")
    panels = codes.lab_panels()
    factors = codes.lab_unit_factors()
    for p in panels.values():
        if p.specimen not in specimens:
            out.append(f"lab_panels {p.code}: unknown specimen {p.specimen!r}")
    for item in codes.lab_items().values():
        where = f"lab_items {item.code}"
        if item.panel not in panels:
            out.append(f"{where}: unknown panel {item.panel!r}")
        if item.specimen not in specimens:
            out.append(f"{where}: unknown specimen {item.specimen!r}")
        if item.loinc:
            body, _, check = item.loinc.partition("-")
            if not _LOINC.match(item.loinc) or loinc_check_digit(body) != check:
                out.append(f"{where}: LOINC {item.loinc} fails its check digit")
        if item.value_type not in ("N", "O"):
            out.append(f"{where}: value_type must be N or O")
        if item.value_type == "N":
            if factors.get(item.code, {}).get(item.unit) != 1.0:
                out.append(f"{where}: standard unit {item.unit!r} needs factor 1 in lab_units")
            ranges = [item.reference_range(sex) for sex in ("1", "2")]
            if all(lo is None and hi is None for lo, hi in ranges):
                # A sex-specific item (PSA) may have a range for one sex only.
                out.append(f"{where}: numeric item with no reference range")
            for lo, hi in ranges:
                if lo is not None and hi is not None and lo >= hi:
                    out.append(f"{where}: reference range low {lo} ≥ high {hi}")
    items = codes.lab_items()
    for code, units in factors.items():
        if code not in items:
            out.append(f"lab_units: unknown item {code!r}")
        out += [f"lab_units {code} {u}: factor must be > 0" for u, f in units.items() if f <= 0]
    return out


def check_exams() -> list[str]:
    return [
        f"exam_items {e.code}: unknown modality {e.modality!r}"
        for e in codes.exam_items().values()
        if e.modality not in MODALITIES
    ]


def check_drugs() -> list[str]:
    out = []
    forms, routes = codes.value_domain("dosage_form"), codes.value_domain("route")
    freqs = codes.value_domain("frequency")
    for d in codes.drugs().values():
        where = f"drugs {d.code}"
        if not _ATC.match(d.atc):
            out.append(f"{where}: ATC {d.atc!r} malformed")
        if d.form not in forms:
            out.append(f"{where}: unknown dosage form {d.form!r}")
        if d.route not in routes:
            out.append(f"{where}: unknown route {d.route!r}")
        if d.frequency not in freqs:
            out.append(f"{where}: unknown frequency {d.frequency!r}")
        if d.dose <= 0:
            out.append(f"{where}: dose must be > 0")
    return out


def check_regions() -> list[str]:
    out = []
    table = codes.regions()
    parent_level = {"province": None, "city": "province", "district": "city"}
    for r in table.values():
        if not re.fullmatch(r"\d{6}", r.code):
            out.append(f"regions {r.code}: not 6 digits")
        if r.level not in parent_level:
            out.append(f"regions {r.code}: unknown level {r.level!r}")
            continue
        want = parent_level[r.level]
        if want is None:
            if r.parent is not None:
                out.append(f"regions {r.code}: a province has no parent")
            continue
        parent = table.get(r.parent or "")
        if parent is None or parent.level != want:
            out.append(f"regions {r.code}: parent {r.parent!r} is not a {want}")
        elif not r.code.startswith(parent.code[: 2 if want == "province" else 4]):
            out.append(f"regions {r.code}: code does not extend its parent {parent.code}")
    return out


def check_value_domains() -> list[str]:
    out = []
    for domain in codes.value_domain_ids():
        entries = codes.value_domain(domain)
        if not entries:
            out.append(f"value domain {domain}: empty")
        out += [
            f"value domain {domain} {e.code}: no Chinese name"
            for e in entries.values()
            if not e.name_zh
        ]
    depts = codes.value_domain("department")
    for e in depts.values():
        parent = e.extra.get("parent") or ""
        if parent and parent not in depts:
            out.append(f"department {e.code}: unknown parent {parent!r}")
    return out


CHECKS: tuple[Callable[[], list[str]], ...] = (
    check_diagnoses,
    check_labs,
    check_exams,
    check_drugs,
    check_regions,
    check_value_domains,
)


def check_all() -> list[str]:
    """Every integrity problem of every shipped code system (empty when all are consistent)."""
    problems: list[str] = []
    for check in CHECKS:
        try:
            problems += check()
        except codes.CodeSystemError as exc:
            problems.append(str(exc))
    return problems
