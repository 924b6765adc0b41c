"""The shipped source mappings and code tables agree with the DWD model and the dialects.

Checked on the data, independently of the loader (``medfabric.standards.mappings``): code tables
are what the simulator's code enumeration gives and every standard code exists; every mapping
names DWD tables and columns of ``dwd_model.yaml`` and physical tables and columns of its
dialect, and fills every required and primary-key column of each table it maps.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from medfabric.simulator.dialects import DIALECTS
from medfabric.simulator.dialects.codemaps import HEADER, PLATFORM_DOMAIN, code_rows
from medfabric.simulator.schema import TABLES
from medfabric.standards import codes
from medfabric.standards.mappings import SOURCE_KEYS
from medfabric.standards.model import dwd_model

MAPPINGS = Path(codes.__file__).parent / "data" / "mappings"
DIALECT_NAMES = sorted(DIALECTS)
# DWD tables with no source table in any simulated dialect.
UNSOURCED = {"institution", "vital_sign"}


@functools.cache
def _domains() -> Mapping[str, frozenset[str]]:
    out = {d: frozenset(codes.value_domain(d)) for d in codes.value_domain_ids()}
    out["diagnoses"] = frozenset(codes.diagnoses())
    out["lab_items"] = frozenset(codes.lab_items())
    out["lab_panels"] = frozenset(codes.lab_panels())
    out["exam_items"] = frozenset(codes.exam_items())
    out["drugs"] = frozenset(codes.drugs())
    return out


@functools.cache
def _mapping(dialect: str) -> dict[str, Any]:
    raw = yaml.safe_load((MAPPINGS / f"{dialect}.yaml").read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def _code_table(dialect: str) -> list[list[str]]:
    text = (MAPPINGS / "codes" / f"{dialect}.csv").read_text(encoding="utf-8")
    return list(csv.reader(text.splitlines()))


def _source_tables(dialect: str) -> dict[str, tuple[str, dict[str, str]]]:
    """'SYSTEM.TABLE' → (logical table, physical column → schema kind)."""
    d = DIALECTS[dialect]
    return {
        f"{t.system}.{d.table_name(t.name)}": (
            t.name,
            {d.column_name(t.name, c.name): c.kind for c in t.columns},
        )
        for t in TABLES
    }


def _source_columns(spec: Mapping[str, Any]) -> Iterator[str]:
    """Every source column a DWD column mapping reads, as written."""
    for key in ("from", "id", "unit_of"):
        if key in spec:
            yield spec[key]
    if "ref" in spec:
        yield spec["ref"]["from"]
    yield from spec.get("concat", ())
    if "unit" in spec:
        yield spec["unit"]["from"]
        yield spec["unit"]["item"]


def _kind(ref: str, main: dict[str, str], joined: dict[str, dict[str, str]], where: str) -> str:
    """The schema kind of source column ``ref`` (``COL`` or ``alias.COL``)."""
    alias, dot, col = ref.rpartition(".")
    cols = joined[alias] if dot else main
    assert col in cols, (where, ref)
    return cols[col]


# --------------------------------------------------------------------------- code tables


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_code_table_is_generated(dialect: str) -> None:
    rows = _code_table(dialect)
    assert tuple(rows[0]) == HEADER
    assert [tuple(r) for r in rows[1:]] == code_rows(dialect), (
        "stale: python -m medfabric.simulator.dialects.codemaps "
        "--out src/medfabric/standards/data/mappings/codes"
    )


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_code_table_standard_codes_exist(dialect: str) -> None:
    known = _domains()
    seen: set[tuple[str, str]] = set()
    for domain, local, standard in _code_table(dialect)[1:]:
        assert domain in known, domain
        assert standard in known[domain], (domain, local, standard)
        assert (domain, local) not in seen, (domain, local)
        seen.add((domain, local))


def test_every_simulator_domain_is_named() -> None:
    assert set(PLATFORM_DOMAIN.values()) <= set(_domains())


# --------------------------------------------------------------------------- mappings


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_mapping_header(dialect: str) -> None:
    m = _mapping(dialect)
    assert m["dialect"] == dialect
    assert isinstance(m["version"], str) and m["version"]
    assert m["codes"] == f"codes/{dialect}.csv"
    assert set(m) <= {"dialect", "version", "codes", "formats", "tables"}


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_mapping_names_known_tables_and_columns(dialect: str) -> None:
    model = dwd_model()
    sources = _source_tables(dialect)
    domains = _domains()
    table_codes = {row[0] for row in _code_table(dialect)[1:]}
    for entry in _mapping(dialect)["tables"]:
        dwd = model.tables[entry["dwd"]]
        where = f"{dialect} {entry['dwd']} ← {entry['from']}"
        assert entry["from"] in sources, where
        main_cols = sources[entry["from"]][1]
        joined: dict[str, dict[str, str]] = {}
        for alias, join in entry.get("join", {}).items():
            assert join["from"] in sources, (where, alias)
            joined[alias] = sources[join["from"]][1]
            # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true
            on = join["on"] if "on" in join else join[True]
            for main_col, join_col in on.items():
                assert main_col in main_cols, (where, alias, main_col)
                assert join_col in joined[alias], (where, alias, join_col)
        for col in entry.get("where", {}):
            assert col in main_cols, (where, col)

        own = {c.name: c for c in dwd.columns if not c.lineage}
        for name, spec in entry["columns"].items():
            assert name in own, (where, name)
            assert sum(k in spec for k in SOURCE_KEYS) == 1, (where, name)
            kinds = [_kind(ref, main_cols, joined, where) for ref in _source_columns(spec)]
            if "ref" in spec:
                targets = spec["ref"].get("table", [])
                targets = targets if isinstance(targets, list) else [targets]
                assert all(t in sources for t in targets), (where, name)
                if "dwd" in spec["ref"]:
                    assert spec["ref"]["dwd"] in model.tables, (where, name)
            if "code" in spec:
                domain = spec["code"]
                assert domain in domains and domain in table_codes, (where, name, domain)
                element_domain = own[name].element.value_domain
                assert element_domain in (None, domain), (where, name, element_domain)
                # the source column holds codes of the simulator domain renamed to this one
                sim = kinds[0].removeprefix("code:")
                assert kinds[0].startswith("code:") and PLATFORM_DOMAIN[sim] == domain, (
                    where,
                    name,
                    kinds[0],
                )


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_mapping_fills_required_and_key_columns(dialect: str) -> None:
    model = dwd_model()
    for entry in _mapping(dialect)["tables"]:
        table = model.tables[entry["dwd"]]
        needed = {c.name for c in table.columns if c.required and not c.lineage}
        needed |= set(table.primary_key)
        missing = needed - set(entry["columns"])
        assert not missing, (dialect, entry["dwd"], entry["from"], sorted(missing))
        assert not any(name.startswith("_") for name in entry["columns"])


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_mapping_covers_every_sourced_table(dialect: str) -> None:
    mapped = {e["dwd"] for e in _mapping(dialect)["tables"]}
    assert mapped == set(dwd_model().tables) - UNSOURCED
