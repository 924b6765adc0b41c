"""The chronic-condition definitions of the registry theme, read from a YAML file and checked at
load (see docs/ads.md, "Conditions file").

Invariants: a loaded :class:`Conditions` has unique snake_case condition codes, ICD-10 categories
of three characters (ranges expanded), indicators that are numeric lab items of
``standards/data/lab_items.csv`` and at most one control threshold per indicator. Any other
content is refused with an :class:`AdsError` naming the file and the condition.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medfabric.governance.ads.errors import AdsError, fields
from medfabric.standards import codes

__all__ = ["Condition", "Conditions", "Indicator", "default_conditions_path", "load_conditions"]

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_CATEGORY = re.compile(r"^([A-Z])(\d{2})$")
_CONDITION_KEYS = {"code", "name_zh", "name_en", "icd10", "indicators"}
_INDICATOR_KEYS = {"item", "controlled_below", "controlled_at_least"}


@dataclass(frozen=True, slots=True)
class Indicator:
    """A lab item followed for a condition; its latest value is controlled when below
    ``controlled_below`` or at least ``controlled_at_least`` (neither: no control target)."""

    item: str
    controlled_below: float | None = None
    controlled_at_least: float | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """One chronic condition: ICD-10 categories (``E11``) and indicators, the key one first."""

    code: str
    name_zh: str
    name_en: str
    categories: tuple[str, ...]
    indicators: tuple[Indicator, ...]


@dataclass(frozen=True, slots=True)
class Conditions:
    """The conditions file as loaded, with a digest of its content (a changed file rebuilds the
    registry)."""

    version: str
    conditions: tuple[Condition, ...]
    digest: str


def default_conditions_path() -> Path:
    """The conditions file shipped with the package."""
    return Path(str(resources.files("medfabric.governance.ads") / "chronic_conditions.yaml"))


def _categories(spec: object, where: str) -> tuple[str, ...]:
    if not isinstance(spec, list) or not spec:
        raise AdsError(f"{where}: icd10 must be a non-empty list such as [E10-E14, E16]")
    out: list[str] = []
    for item in spec:
        text = str(item).strip()
        first, _, last = text.partition("-")
        a, b = _CATEGORY.match(first), _CATEGORY.match(last or first)
        if a is None or b is None:
            raise AdsError(
                f"{where}: icd10 entry {text!r} is not a three-character ICD-10 category "
                "(E11) or a range of them (E10-E14)"
            )
        if a.group(1) != b.group(1) or int(a.group(2)) > int(b.group(2)):
            raise AdsError(
                f"{where}: icd10 range {text!r} must stay within one letter and go upwards"
            )
        for n in range(int(a.group(2)), int(b.group(2)) + 1):
            category = f"{a.group(1)}{n:02d}"
            if category not in out:
                out.append(category)
    return tuple(out)


def _number(value: object, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdsError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _indicator(spec: object, where: str) -> Indicator:
    spec = fields(
        spec, _INDICATOR_KEYS, where, "an indicator must be a mapping such as {item: HBA1C}"
    )
    item = spec.get("item")
    known = codes.lab_items()
    if not isinstance(item, str) or item not in known:
        raise AdsError(f"{where}: indicator item {item!r} is not a lab item of lab_items.csv")
    if known[item].value_type != "N":
        raise AdsError(f"{where}: indicator item {item!r} is not numeric")
    below, at_least = spec.get("controlled_below"), spec.get("controlled_at_least")
    if below is not None and at_least is not None:
        raise AdsError(
            f"{where}: indicator {item}: give controlled_below or controlled_at_least, not both"
        )
    return Indicator(
        item,
        None if below is None else _number(below, "controlled_below", where),
        None if at_least is None else _number(at_least, "controlled_at_least", where),
    )


def _condition(spec: object, where: str) -> Condition:
    if not isinstance(spec, dict):
        raise AdsError(f"{where}: a condition must be a mapping")
    code = spec.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        raise AdsError(f"{where}: condition code {code!r} must be snake_case")
    where = f"{where} ({code})"
    fields(spec, _CONDITION_KEYS, where)
    for key in ("name_zh", "name_en"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise AdsError(f"{where}: {key} is required")
    indicators = spec.get("indicators") or []
    if not isinstance(indicators, list):
        raise AdsError(f"{where}: indicators must be a list")
    parsed = tuple(_indicator(i, where) for i in indicators)
    if len({i.item for i in parsed}) != len(parsed):
        raise AdsError(f"{where}: an indicator item is listed twice")
    return Condition(
        code, spec["name_zh"], spec["name_en"], _categories(spec.get("icd10"), where), parsed
    )


def load_conditions(path: Path | None = None) -> Conditions:
    """Read and check a conditions file (default: the shipped one).

    Raises:
        AdsError: the file is missing, not YAML, or breaks a rule; the message names the file
            and the condition.
    """
    path = path or default_conditions_path()
    try:
        raw = path.read_bytes()
        data: Any = yaml.safe_load(raw)
    except OSError as e:
        raise AdsError(f"cannot read conditions file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise AdsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict) or set(data) != {"version", "conditions"}:
        raise AdsError(f"{path}: expected exactly the keys 'version' and 'conditions'")
    if not isinstance(data["conditions"], list) or not data["conditions"]:
        raise AdsError(f"{path}: 'conditions' must be a non-empty list")
    parsed = tuple(
        _condition(c, f"{path.name}: condition {n}")
        for n, c in enumerate(data["conditions"], start=1)
    )
    seen: set[str] = set()
    for c in parsed:
        if c.code in seen:
            raise AdsError(f"{path.name}: condition code {c.code!r} is defined twice")
        seen.add(c.code)
    return Conditions(str(data["version"]), parsed, hashlib.sha256(raw).hexdigest()[:16])
