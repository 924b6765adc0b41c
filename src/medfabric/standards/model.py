"""The DWD model (领域层): the standard tables, defined by data elements.

File: ``data/dwd_model.yaml``. Each table names its level-3 resource class, its primary key and
its columns; each column carries one data element of ``data_elements.csv``, which alone says the
column's type, format, value domain, privacy class and Chinese name. A ``lineage_columns`` block
is declared once and appended to every table, after the table's own columns.

Invariants:
- :func:`dwd_model` returns a frozen, cached model whose columns are resolved to their
  :class:`DataElement`. A structurally malformed file (bad YAML, unknown or duplicate key, wrong
  shape) or a column naming an unknown element raises :class:`CatalogError` with file, line and
  column.
- :func:`check_model` re-reads the file (no cache) and reports every problem rather than the
  first: unknown elements, tables missing or unknown or placed elsewhere than
  ``resource_catalog.yaml`` says, bad or duplicate column names, primary-key columns that are
  missing or optional, references to anything but a whole single-column primary key carrying the
  same element, and S3 columns whose element has no value domain.
- Nothing here knows a storage engine; DDL is generated from this model in ``warehouse.ddl``.
- This module imports nothing of medfabric outside ``standards``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import yaml

from medfabric.standards import _yaml as nodes
from medfabric.standards.elements import (
    DWD_TABLES,
    CatalogError,
    DataElement,
    data_elements,
    resource_catalog,
)

MODEL_FILE = "dwd_model.yaml"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LINEAGE_NAME = re.compile(r"^_[a-z][a-z0-9_]*$")
_TOP_KEYS = {"version", "lineage_columns", "tables"}
_TABLE_KEYS = {"description", "catalog_class", "primary_key", "business_key", "columns"}
_COLUMN_KEYS = {"name", "element", "required", "references"}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a DWD table and the data element it carries.

    ``references`` is ``(table, column)`` of the primary key this column points to, or None.
    """

    name: str
    element: DataElement
    required: bool
    references: tuple[str, str] | None = None
    lineage: bool = False

    @property
    def value_domain(self) -> str | None:
        """The value domain or code system of the column, inherited from its element."""
        return self.element.value_domain


@dataclass(frozen=True, slots=True)
class Table:
    """One DWD table: its own columns first, then the shared lineage columns."""

    name: str
    description: str
    catalog_class: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    # The columns that name one real-world fact within a hospital (a result is one item of one
    # report): two rows agreeing on them and on every other own column are near-duplicates.
    business_key: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Raises:
            CatalogError: no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise CatalogError(f"{MODEL_FILE}: table {self.name!r} has no column {name!r}")


@dataclass(frozen=True, slots=True)
class DwdModel:
    """The loaded model: tables in file order, each with its lineage columns appended."""

    version: str
    lineage_columns: tuple[Column, ...]
    tables: Mapping[str, Table]


# --- raw parse (element identifiers unresolved, locations kept) ----------------------------


@dataclass(frozen=True, slots=True)
class _RawColumn:
    where: str
    name: str
    element: str
    required: bool
    references: str | None


@dataclass(frozen=True, slots=True)
class _RawTable:
    where: str
    name: str
    description: str
    catalog_class: str
    primary_key: tuple[str, ...]
    columns: tuple[_RawColumn, ...]
    business_key: tuple[str, ...] = ()


def _model_text() -> str:
    path = resources.files("medfabric.standards").joinpath("data", MODEL_FILE)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"{MODEL_FILE}: standards data file missing") from exc


def _where(node: yaml.Node) -> str:
    return nodes.where(MODEL_FILE, node)


def _mapping(node: yaml.Node, allowed: set[str] | None) -> dict[str, yaml.Node]:
    """Keys to value nodes; ``allowed=None`` accepts any key (table names, checked later)."""
    return nodes.mapping(MODEL_FILE, node, allowed)


def _text(fields: dict[str, yaml.Node], key: str, owner: yaml.Node) -> str:
    return nodes.text(MODEL_FILE, fields, key, owner)


def _flag(fields: dict[str, yaml.Node], key: str, owner: yaml.Node) -> bool:
    node = fields.get(key)
    if node is None:
        raise CatalogError(f"{_where(owner)}: missing key {key!r}")
    if not isinstance(node, yaml.ScalarNode) or node.value not in ("true", "false"):
        raise CatalogError(f"{_where(node)}: {key!r} must be true or false")
    return bool(node.value == "true")


def _sequence(node: yaml.Node | None, key: str, owner: yaml.Node) -> list[yaml.Node]:
    if node is None:
        raise CatalogError(f"{_where(owner)}: missing key {key!r}")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise CatalogError(f"{_where(node)}: {key!r} must be a non-empty list")
    return list(node.value)


def _names(node: yaml.Node | None, key: str, owner: yaml.Node) -> list[str]:
    out: list[str] = []
    for k in _sequence(node, key, owner):
        if not isinstance(k, yaml.ScalarNode) or not str(k.value).strip():
            raise CatalogError(f"{_where(k)}: a {key} column must be a string")
        out.append(str(k.value).strip())
    return out


def _column(node: yaml.Node) -> _RawColumn:
    fields = _mapping(node, _COLUMN_KEYS)
    refs = _text(fields, "references", node) if "references" in fields else None
    return _RawColumn(
        where=_where(node),
        name=_text(fields, "name", node),
        element=_text(fields, "element", node),
        required=_flag(fields, "required", node),
        references=refs,
    )


def _parse_model(text: str) -> tuple[str, tuple[_RawColumn, ...], tuple[_RawTable, ...]]:
    root = nodes.compose(text, MODEL_FILE)
    top = _mapping(root, _TOP_KEYS)
    version = _text(top, "version", root)
    lineage = tuple(_column(n) for n in _sequence(top.get("lineage_columns"), "lineage", root))
    tables_node = top.get("tables")
    if tables_node is None:
        raise CatalogError(f"{_where(root)}: missing key 'tables'")
    tables: list[_RawTable] = []
    for name, node in _mapping(tables_node, None).items():
        fields = _mapping(node, _TABLE_KEYS)
        pk = _names(fields.get("primary_key"), "primary_key", node)
        bk = []
        if "business_key" in fields:
            bk = _names(fields["business_key"], "business_key", node)
        tables.append(
            _RawTable(
                where=_where(node),
                name=name,
                description=_text(fields, "description", node),
                catalog_class=_text(fields, "catalog_class", node),
                primary_key=tuple(pk),
                business_key=tuple(bk),
                columns=tuple(
                    _column(c) for c in _sequence(fields.get("columns"), "columns", node)
                ),
            )
        )
    return version, lineage, tuple(tables)


# --- loader --------------------------------------------------------------------------------


def _split_ref(ref: str) -> tuple[str, str] | None:
    table, dot, column = ref.partition(".")
    return (table, column) if dot and table and column else None


def _resolve(raw: _RawColumn, elements: Mapping[str, DataElement], lineage: bool) -> Column:
    element = elements.get(raw.element)
    if element is None:
        raise CatalogError(f"{raw.where}: unknown data element {raw.element!r}")
    ref = None
    if raw.references is not None:
        ref = _split_ref(raw.references)
        if ref is None:
            raise CatalogError(f"{raw.where}: references must be table.column")
    return Column(raw.name, element, raw.required, ref, lineage)


@functools.cache
def dwd_model() -> DwdModel:
    """The DWD model of ``data/dwd_model.yaml``, columns resolved to their data elements.

    Each table's ``columns`` holds its own columns followed by the lineage columns.

    Raises:
        CatalogError: the file is malformed or a column names an unknown data element.

    >>> dwd_model().tables["lab_result"].column("lab_report_id").references
    ('lab_report', 'lab_report_id')
    """
    version, raw_lineage, raw_tables = _parse_model(_model_text())
    elements = data_elements()
    lineage = tuple(_resolve(c, elements, lineage=True) for c in raw_lineage)
    tables: dict[str, Table] = {}
    for t in raw_tables:
        own = tuple(_resolve(c, elements, lineage=False) for c in t.columns)
        tables[t.name] = Table(
            t.name, t.description, t.catalog_class, t.primary_key, own + lineage, t.business_key
        )
    return DwdModel(version, lineage, MappingProxyType(tables))


# --- integrity -----------------------------------------------------------------------------


def _column_problems(
    at: str, c: _RawColumn, elements: Mapping[str, DataElement], lineage: bool
) -> list[str]:
    out: list[str] = []
    pattern = _LINEAGE_NAME if lineage else _NAME
    if not pattern.match(c.name):
        kind = "lineage column names are _snake_case" if lineage else "names are snake_case"
        out.append(f"{at}: bad column name {c.name!r}: {kind}")
    element = elements.get(c.element)
    if element is None:
        out.append(f"{at}: unknown data element {c.element!r}")
    elif element.data_type == "S3" and element.value_domain is None:
        out.append(f"{at}: S3 element {c.element} has no value domain")
    if lineage and c.references is not None:
        out.append(f"{at}: lineage columns do not reference tables")
    return out


def _reference_problems(tables: Mapping[str, _RawTable]) -> list[str]:
    out: list[str] = []
    for t in tables.values():
        for c in t.columns:
            if c.references is None:
                continue
            at = f"{c.where} {t.name}.{c.name}"
            ref = _split_ref(c.references)
            if ref is None:
                out.append(f"{at}: references must be table.column, got {c.references!r}")
                continue
            target = tables.get(ref[0])
            if target is None:
                out.append(f"{at}: references unknown table {ref[0]!r}")
            elif target.primary_key != (ref[1],):
                out.append(f"{at}: {c.references} is not the single-column primary key of {ref[0]}")
            else:
                tcol = next((x for x in target.columns if x.name == ref[1]), None)
                if tcol is not None and tcol.element != c.element:
                    out.append(
                        f"{at}: carries {c.element} but {c.references} carries {tcol.element}"
                    )
    return out


def check_model() -> list[str]:
    """Every integrity problem of the DWD model against the element dictionary and catalog.

    Reads ``dwd_model.yaml`` afresh (not the cached loader). An empty list means consistent.
    """
    try:
        _, lineage, raw_tables = _parse_model(_model_text())
        elements = data_elements()
        placement = resource_catalog().table_index
    except CatalogError as exc:
        return [str(exc)]
    out: list[str] = []
    lineage_names: set[str] = set()
    for c in lineage:
        out += _column_problems(f"{c.where} lineage {c.name}", c, elements, lineage=True)
        if c.name in lineage_names:
            out.append(f"{c.where}: duplicate lineage column {c.name!r}")
        lineage_names.add(c.name)
    tables = {t.name: t for t in raw_tables}
    for name in DWD_TABLES:
        if name not in tables:
            out.append(f"{MODEL_FILE}: DWD table {name!r} is not defined")
    for t in raw_tables:
        at = f"{t.where} {t.name}"
        if t.name not in DWD_TABLES:
            out.append(f"{at}: unknown DWD table (not in elements.DWD_TABLES)")
        placed = placement.get(t.name)
        if placed != t.catalog_class:
            out.append(f"{at}: catalog_class {t.catalog_class} but resource_catalog says {placed}")
        seen: set[str] = set()
        for c in t.columns:
            cat = f"{c.where} {t.name}.{c.name}"
            out += _column_problems(cat, c, elements, lineage=False)
            if c.name in seen or c.name in lineage_names:
                out.append(f"{cat}: duplicate column name")
            seen.add(c.name)
        by_name = {c.name: c for c in t.columns}
        if len(set(t.primary_key)) != len(t.primary_key):
            out.append(f"{at}: primary key repeats a column")
        for k in t.primary_key:
            if k not in by_name:
                out.append(f"{at}: primary-key column {k!r} is not a column")
            elif not by_name[k].required:
                out.append(f"{at}: primary-key column {k!r} must be required")
        if len(set(t.business_key)) != len(t.business_key):
            out.append(f"{at}: business key repeats a column")
        for k in t.business_key:
            if k not in by_name:
                out.append(f"{at}: business-key column {k!r} is not a column")
            elif k in t.primary_key:
                out.append(f"{at}: business-key column {k!r} is the primary key's")
    out += _reference_problems(tables)
    return out
