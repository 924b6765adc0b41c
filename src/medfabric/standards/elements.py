"""The data-element dictionary (WS 363 style) and the three-level resource catalog.

Files: ``data/data_elements.csv`` (one data element per row) and ``data/resource_catalog.yaml``
(entity / activity / knowledge → level 2 → level 3, level-3 entries naming their DWD tables).

Invariants:
- Loaders return frozen records, built once and cached. A structurally malformed file (bad
  header, wrong column count, empty required field, bad YAML, unknown key) raises
  :class:`CatalogError` naming the file, line and column. A loader also refuses what would make
  its lookups ambiguous: a duplicate identifier, a duplicate class code, a DWD table placed twice.
- :func:`check_catalog` re-reads the files (no cache) and reports every integrity problem rather
  than stopping at the first: identifier shape, data types, format against type, value-domain
  references, privacy classes, class hierarchy and the placement of the DWD tables.
- Identifiers ``DE99.*`` are medfabric-local (``source = local``); every other identifier is an
  official WS 363 identifier (``source = WS 363``) and is never invented.
- This module imports nothing of medfabric outside ``standards``.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import yaml

from medfabric.standards import _yaml as nodes
from medfabric.standards import codes
from medfabric.standards._yaml import CatalogError as CatalogError  # re-exported

ELEMENTS_FILE = "data_elements.csv"
CATALOG_FILE = "resource_catalog.yaml"

HEADER: tuple[str, ...] = (
    "identifier", "name_zh", "name_en", "definition_zh", "data_type", "format",
    "value_domain", "privacy", "unit", "source",
)  # fmt: skip
_REQUIRED = ("identifier", "name_zh", "name_en", "definition_zh", "data_type", "format",
             "privacy", "source")  # fmt: skip

DWD_TABLES: tuple[str, ...] = (
    "person", "institution", "department", "staff", "visit", "diagnosis", "order",
    "medication", "lab_report", "lab_result", "exam_report", "imaging_study",
    "clinical_document", "charge", "vital_sign",
)  # fmt: skip

# WS 363 data types: S1 string, S2 enumerated string (≤ 3 values, listed in the definition),
# S3 code (values from a value domain), N numeric, D date, DT date-time, T time, L logical,
# BY binary.
DATA_TYPES: tuple[str, ...] = ("S1", "S2", "S3", "N", "D", "DT", "T", "L", "BY")
PRIVACY_CLASSES: tuple[str, ...] = ("direct", "quasi", "sensitive", "none")
SOURCES: tuple[str, ...] = ("WS 363", "local")
LOCAL_PREFIX = "DE99."

_IDENTIFIER = re.compile(r"^DE\d\d\.\d\d\.\d{3}\.\d\d$")
_STRING_FORMAT = re.compile(r"^(A|AN|N)(\.\.)?[1-9]\d*$")
_NUMBER_FORMAT = re.compile(r"^N(\.\.)?([1-9]\d*)(,(\d+))?$")
_FIXED_FORMAT = {"D": "D8", "DT": "DT15", "T": "T6", "L": "L", "BY": "BY"}
_CLASS_CODE = {1: re.compile(r"^[A-Z]$"), 2: re.compile(r"^[A-Z]\d\d$"),
               3: re.compile(r"^[A-Z]\d{4}$")}  # fmt: skip
_CLASS_KEYS = {"code", "name_zh", "name_en", "definition_zh", "children", "dwd_tables"}


@dataclass(frozen=True, slots=True)
class DataElement:
    """One data element: what a value means, how it is written and how private it is."""

    identifier: str
    name_zh: str
    name_en: str
    definition_zh: str
    data_type: str
    format: str
    value_domain: str | None
    privacy: str
    unit: str | None
    source: str

    @property
    def is_local(self) -> bool:
        """True for medfabric-local elements (``DE99.*``), False for WS 363 ones."""
        return self.identifier.startswith(LOCAL_PREFIX)


@dataclass(frozen=True, slots=True)
class ResourceClass:
    """One node of the resource catalog; ``dwd_tables`` is non-empty only on level 3."""

    code: str
    level: int
    name_zh: str
    name_en: str
    definition_zh: str
    parent: str | None
    children: tuple[str, ...]
    dwd_tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResourceCatalog:
    """The loaded classification, in file order, with lookups by code and by DWD table."""

    version: str
    classes: Mapping[str, ResourceClass]
    table_index: Mapping[str, str]

    def get(self, code: str) -> ResourceClass:
        """The class with this code.

        Raises:
            CatalogError: no such code.
        """
        try:
            return self.classes[code]
        except KeyError:
            raise CatalogError(f"{CATALOG_FILE}: unknown class code {code!r}") from None

    def for_table(self, table: str) -> ResourceClass:
        """The level-3 class a DWD table is placed in.

        Raises:
            CatalogError: the table is not placed in the catalog.
        """
        try:
            return self.classes[self.table_index[table]]
        except KeyError:
            raise CatalogError(f"{CATALOG_FILE}: DWD table {table!r} is not placed") from None

    def path(self, code: str) -> tuple[ResourceClass, ...]:
        """Level 1 → … → ``code``, e.g. ``A`` → ``A04`` → ``A0402``."""
        chain = [self.get(code)]
        while chain[-1].parent is not None:
            chain.append(self.get(chain[-1].parent))
        return tuple(reversed(chain))

    def roots(self) -> tuple[ResourceClass, ...]:
        """The level-1 classes in file order."""
        return tuple(c for c in self.classes.values() if c.level == 1)


def _read(name: str) -> str:
    path = resources.files("medfabric.standards").joinpath("data", name)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"{name}: standards data file missing") from exc


# --- data elements ------------------------------------------------------------------------


def _parse_elements(text: str) -> tuple[tuple[int, DataElement], ...]:
    f = ELEMENTS_FILE
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CatalogError(f"{f}:1: empty file") from None
    except csv.Error as exc:
        raise CatalogError(f"{f}:1: {exc}") from exc
    if tuple(h.strip() for h in header) != HEADER:
        raise CatalogError(f"{f}:1: header must be {','.join(HEADER)}, got {','.join(header)}")
    out: list[tuple[int, DataElement]] = []
    rows: Iterator[list[str]] = reader
    while True:
        try:
            raw = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CatalogError(f"{f}:{reader.line_num}: {exc}") from exc
        line = reader.line_num
        if not raw or all(not v.strip() for v in raw):
            continue
        if len(raw) != len(HEADER):
            raise CatalogError(f"{f}:{line}: expected {len(HEADER)} columns, got {len(raw)}")
        row = dict(zip(HEADER, (v.strip() for v in raw), strict=True))
        for col in _REQUIRED:
            if not row[col]:
                raise CatalogError(f"{f}:{line}: column {HEADER.index(col) + 1} ({col}): empty")
        out.append(
            (
                line,
                DataElement(
                    identifier=row["identifier"],
                    name_zh=row["name_zh"],
                    name_en=row["name_en"],
                    definition_zh=row["definition_zh"],
                    data_type=row["data_type"],
                    format=row["format"],
                    value_domain=row["value_domain"] or None,
                    privacy=row["privacy"],
                    unit=row["unit"] or None,
                    source=row["source"],
                ),
            )
        )
    return tuple(out)


@functools.cache
def data_elements() -> Mapping[str, DataElement]:
    """Every data element of ``data/data_elements.csv``, keyed by identifier, in file order.

    Raises:
        CatalogError: the file is malformed or repeats an identifier.

    >>> data_elements()["DE02.01.039.00"].privacy
    'direct'
    """
    out: dict[str, DataElement] = {}
    for line, e in _parse_elements(_read(ELEMENTS_FILE)):
        if e.identifier in out:
            raise CatalogError(f"{ELEMENTS_FILE}:{line}: duplicate identifier {e.identifier}")
        out[e.identifier] = e
    return MappingProxyType(out)


# --- resource catalog ---------------------------------------------------------------------


def _where(node: yaml.Node) -> str:
    return nodes.where(CATALOG_FILE, node)


def _mapping(node: yaml.Node, allowed: set[str]) -> dict[str, yaml.Node]:
    return nodes.mapping(CATALOG_FILE, node, allowed)


def _scalar(fields: dict[str, yaml.Node], key: str, owner: yaml.Node) -> str:
    return nodes.text(CATALOG_FILE, fields, key, owner)


def _sequence(node: yaml.Node | None, key: str) -> list[yaml.Node]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise CatalogError(f"{_where(node)}: {key!r} must be a list")
    return list(node.value)


def _parse_catalog(text: str) -> tuple[str, tuple[tuple[str, ResourceClass], ...]]:
    """Version and (location, class) pairs in file order; parents always precede children."""
    root = nodes.compose(text, CATALOG_FILE)
    top = _mapping(root, {"version", "classes"})
    version = _scalar(top, "version", root)
    out: list[tuple[str, ResourceClass]] = []

    def walk(node: yaml.Node, level: int, parent: str | None) -> str:
        fields = _mapping(node, _CLASS_KEYS)
        code = _scalar(fields, "code", node)
        kids = _sequence(fields.get("children"), "children")
        tables: list[str] = []
        for t in _sequence(fields.get("dwd_tables"), "dwd_tables"):
            if not isinstance(t, yaml.ScalarNode) or not str(t.value).strip():
                raise CatalogError(f"{_where(t)}: a DWD table name must be a string")
            tables.append(str(t.value).strip())
        index = len(out)
        out.append((_where(node), ResourceClass(code, level, "", "", "", None, (), ())))
        child_codes = tuple(walk(k, level + 1, code) for k in kids)
        out[index] = (
            _where(node),
            ResourceClass(
                code=code,
                level=level,
                name_zh=_scalar(fields, "name_zh", node),
                name_en=_scalar(fields, "name_en", node),
                definition_zh=_scalar(fields, "definition_zh", node),
                parent=parent,
                children=child_codes,
                dwd_tables=tuple(tables),
            ),
        )
        return code

    for node in _sequence(top.get("classes"), "classes"):
        walk(node, 1, None)
    if not out:
        raise CatalogError(f"{_where(root)}: 'classes' is missing or empty")
    return version, tuple(out)


@functools.cache
def resource_catalog() -> ResourceCatalog:
    """The three-level resource classification of ``data/resource_catalog.yaml``.

    Raises:
        CatalogError: the file is malformed, repeats a class code or places a table twice.

    >>> resource_catalog().for_table("lab_result").code
    'A0402'
    """
    version, parsed = _parse_catalog(_read(CATALOG_FILE))
    classes: dict[str, ResourceClass] = {}
    tables: dict[str, str] = {}
    for where, c in parsed:
        if c.code in classes:
            raise CatalogError(f"{where}: duplicate class code {c.code!r}")
        classes[c.code] = c
        for t in c.dwd_tables:
            if t in tables:
                raise CatalogError(f"{where}: DWD table {t!r} already placed in {tables[t]}")
            tables[t] = c.code
    return ResourceCatalog(version, MappingProxyType(classes), MappingProxyType(tables))


# --- integrity ------------------------------------------------------------------------------


def _format_problem(e: DataElement) -> str | None:
    t, fmt = e.data_type, e.format
    if t in _FIXED_FORMAT:
        return None if fmt == _FIXED_FORMAT[t] else f"format of {t} must be {_FIXED_FORMAT[t]}"
    if t == "N":
        m = _NUMBER_FORMAT.match(fmt)
        if m is None:
            return "format of N must be Nn, N..n, Nn,d or N..n,d"
        if m.group(4) is not None and int(m.group(4)) >= int(m.group(2)):
            return "decimals must be fewer than the total digits"
        return None
    if _STRING_FORMAT.match(fmt) is None:
        return f"format of {t} must be An, A..n, ANn, AN..n, Nn or N..n"
    return None


def _element_problems(rows: tuple[tuple[int, DataElement], ...]) -> list[str]:
    domains = set(codes.value_domain_ids())
    systems = set(codes.catalog()) - {"value_domains"}
    out: list[str] = []
    seen: dict[str, int] = {}
    for line, e in rows:
        at = f"{ELEMENTS_FILE}:{line} {e.identifier}"
        if not _IDENTIFIER.match(e.identifier):
            out.append(f"{at}: identifier must match DEcc.cc.ccc.cc")
        if e.identifier in seen:
            out.append(f"{at}: duplicate identifier (first on line {seen[e.identifier]})")
        seen.setdefault(e.identifier, line)
        if e.source not in SOURCES:
            out.append(f"{at}: source must be one of {', '.join(SOURCES)}, got {e.source!r}")
        elif e.is_local != (e.source == "local"):
            out.append(f"{at}: source {e.source!r} contradicts the DE99 local range")
        if e.data_type not in DATA_TYPES:
            out.append(f"{at}: unknown data type {e.data_type!r}")
        elif (problem := _format_problem(e)) is not None:
            out.append(f"{at}: {problem}, got {e.format!r}")
        if e.value_domain is None:
            if e.data_type == "S3":
                out.append(f"{at}: S3 element needs a value domain")
        elif e.value_domain not in domains and e.value_domain not in systems:
            out.append(f"{at}: unknown value domain or code system {e.value_domain!r}")
        elif e.data_type not in ("S2", "S3"):
            out.append(f"{at}: only S2/S3 elements take a value domain")
        if e.unit is not None and e.data_type != "N":
            out.append(f"{at}: only numeric elements take a unit")
        if e.privacy not in PRIVACY_CLASSES:
            out.append(f"{at}: privacy must be one of {', '.join(PRIVACY_CLASSES)}")
    return out


def _catalog_problems(parsed: tuple[tuple[str, ResourceClass], ...]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    placed: dict[str, list[str]] = {}
    for where, c in parsed:
        at = f"{where} {c.code}"
        if c.code in seen:
            out.append(f"{at}: duplicate class code")
        seen.add(c.code)
        pattern = _CLASS_CODE.get(c.level)
        if pattern is None:
            out.append(f"{at}: level {c.level}: the catalog has three levels")
        elif not pattern.match(c.code):
            out.append(f"{at}: not a level-{c.level} code")
        if c.parent is not None and not (c.code.startswith(c.parent) and len(c.code) > 1):
            out.append(f"{at}: code must extend its parent's code {c.parent!r}")
        if c.dwd_tables and c.level != 3:
            out.append(f"{at}: only level-3 classes hold DWD tables")
        for t in c.dwd_tables:
            if t not in DWD_TABLES:
                out.append(f"{at}: unknown DWD table {t!r}")
            placed.setdefault(t, []).append(c.code)
    for t in DWD_TABLES:
        where_placed = placed.get(t, [])
        if not where_placed:
            out.append(f"{CATALOG_FILE}: DWD table {t!r} is not placed")
        elif len(where_placed) > 1:
            out.append(f"{CATALOG_FILE}: DWD table {t!r} placed more than once: {where_placed}")
    return out


def check_catalog() -> list[str]:
    """Every integrity problem of the element dictionary and the resource catalog.

    Reads the files afresh (not the cached loaders), so it reports duplicates the loaders
    would refuse. An empty list means consistent.
    """
    out: list[str] = []
    try:
        out += _element_problems(_parse_elements(_read(ELEMENTS_FILE)))
    except CatalogError as exc:
        out.append(str(exc))
    try:
        out += _catalog_problems(_parse_catalog(_read(CATALOG_FILE))[1])
    except CatalogError as exc:
        out.append(str(exc))
    return out
