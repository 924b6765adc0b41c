"""Source mappings: how a vendor dialect's ODS tables become rows of the DWD model.

One YAML file per dialect in ``data/mappings/`` and its code table (local code → standard code)
in ``data/mappings/codes/``; the language is specified in docs/mapping.md. This module reads and
checks them. Governance compiles a loaded :class:`SourceMapping` to SQL; nothing here touches
data.

Invariants (every one checked at load; a violation is a :class:`CatalogError` naming the file,
line and column):

- every DWD table and column named exists in the model, no lineage column is mapped, and every
  required column and the whole primary key of a mapped table are filled;
- a column has exactly one source (``from``, ``value``, ``hospital``, ``id``, ``ref``,
  ``concat``), every source column names the main table or a declared join alias, and the
  steps are known (transforms, ``parse`` with a format available, ``unit`` only with
  ``number``);
- every ``code:`` domain is a value domain or a code system and has entries in the code table,
  and every standard code in the code table exists in its domain;
- source tables are ``SYSTEM.TABLE``; for a dialect with an extraction profile, the table is one
  the gateway extracts.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medfabric.standards import _yaml as nodes
from medfabric.standards import codes
from medfabric.standards._yaml import CatalogError
from medfabric.standards.model import dwd_model
from medfabric.standards.sources import SYSTEMS, source_profiles

__all__ = [
    "CODE_SYSTEMS",
    "MAPPINGS_DIR",
    "SOURCE_KEYS",
    "TRANSFORMS",
    "ColumnMapping",
    "Join",
    "SourceMapping",
    "SourceRef",
    "TableMapping",
    "check_mappings",
    "load_mapping",
    "mappings",
]

MAPPINGS_DIR = Path(__file__).parent / "data" / "mappings"

TRANSFORMS = ("trim", "upper", "lower", "nfkc", "squeeze", "digits")
"""Text clean-up steps of ``transform:``, applied in the order written."""

CODE_SYSTEMS = ("diagnoses", "lab_items", "lab_panels", "exam_items", "drugs")
"""Code systems a ``code:`` step may map to (besides every value domain)."""

PARSE_KINDS = ("date", "datetime", "time")
EPOCHS = ("epoch_ms", "epoch_s")
SOURCE_KEYS = ("from", "value", "hospital", "id", "ref", "concat", "unit_of")

_TOP = {"dialect", "version", "codes", "formats", "tables"}
_TABLE = {"dwd", "from", "join", "where", "columns"}
_STEPS = (
    "sep", "split", "transform", "null_if", "parse", "format", "number", "range", "code", "unit",
)  # fmt: skip
RANGE_ENDS = ("low", "high")
_COLUMN = {*SOURCE_KEYS, *_STEPS}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A source table: ``system`` (HIS, LIS, PACS, EMR) and its physical ``table`` name."""

    system: str
    table: str

    def __str__(self) -> str:
        return f"{self.system}.{self.table}"


@dataclass(frozen=True, slots=True)
class Join:
    """A source table joined to the main one (a left join): ``on`` pairs main and joined
    columns. Of several joined rows for one main row, the one with the largest ``latest``
    column (else the most recently updated one) is taken, so a join never multiplies rows."""

    alias: str
    table: SourceRef
    on: tuple[tuple[str, str], ...]
    latest: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """How one DWD column is filled (docs/mapping.md, "A column").

    ``kind`` is one of :data:`SOURCE_KEYS`; ``args`` its operands: the source column(s) for
    ``from``, ``id`` and ``concat``, the constant for ``value``, the source column and the
    referenced tables (``SYSTEM.TABLE``, one or several sharing one key space) or
    ``dwd:<table>`` for ``ref``, the lab item column for ``unit_of``, nothing for
    ``hospital``. Source columns are ``COLUMN`` (main
    table) or ``alias.COLUMN``.
    """

    column: str
    kind: str
    args: tuple[str, ...]
    sep: str = ""
    split: tuple[str, int] | None = None
    transforms: tuple[str, ...] = ()
    null_if: tuple[str, ...] = ()
    parse: str | None = None
    format: str | None = None  # the strftime format (or epoch) for ``parse``
    number: bool = False
    lenient: bool = False  # ``number: lenient``: text that is not a number is simply no number
    range: str | None = None  # ``low`` or ``high``: that end of a range text ("3.9-6.1", "<5.2")
    code: str | None = None
    unit: tuple[str, str] | None = None  # (unit column, lab item column)
    location: str = field(default="", compare=False)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every source column the value depends on, as written."""
        read = {"from": self.args, "id": self.args, "concat": self.args, "ref": self.args[:1]}
        read["unit_of"] = self.args
        cols = read.get(self.kind, ())
        return cols + (self.unit or ())


@dataclass(frozen=True, slots=True)
class TableMapping:
    """One entry of ``tables``: a DWD table fed by one main source table (and its joins)."""

    dwd: str
    source: SourceRef
    joins: tuple[Join, ...]
    where: tuple[tuple[str, tuple[str, ...]], ...]
    columns: Mapping[str, ColumnMapping]
    location: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """A loaded, checked mapping file with its code table."""

    dialect: str
    version: str
    path: Path
    formats: Mapping[str, str]
    code_table: Mapping[str, Mapping[str, str]]  # domain → local code → standard code
    tables: tuple[TableMapping, ...]

    def for_table(self, dwd: str) -> tuple[TableMapping, ...]:
        """The entries that feed DWD table ``dwd`` (none if this dialect has no source)."""
        return tuple(t for t in self.tables if t.dwd == dwd)


# --- loading ----------------------------------------------------------------------------------


def _domains() -> dict[str, frozenset[str]]:
    """Every ``code:`` domain and its standard codes."""
    out = {d: frozenset(codes.value_domain(d)) for d in codes.value_domain_ids()}
    out |= {
        "diagnoses": frozenset(codes.diagnoses()),
        "lab_items": frozenset(codes.lab_items()),
        "lab_panels": frozenset(codes.lab_panels()),
        "exam_items": frozenset(codes.exam_items()),
        "drugs": frozenset(codes.drugs()),
    }
    return out


@functools.cache
def _known_domains() -> Mapping[str, frozenset[str]]:
    return _domains()


class _Reader:
    """Node helpers bound to one file name (so every error names it)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def at(self, node: yaml.Node) -> str:
        return nodes.where(self.file, node)

    def fail(self, node: yaml.Node, why: str) -> CatalogError:
        return CatalogError(f"{self.at(node)}: {why}")

    def mapping(self, node: yaml.Node, allowed: set[str] | None) -> dict[str, yaml.Node]:
        return nodes.mapping(self.file, node, allowed)

    def text(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            raise self.fail(node, f"{what} must be a non-empty string")
        return str(node.value).strip()

    def texts(self, node: yaml.Node, what: str, *, empty_ok: bool = False) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or (not node.value and not empty_ok):
            raise self.fail(node, f"{what} must be a non-empty list")
        out = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise self.fail(item, f"{what}: each item must be a string")
            out.append(str(item.value))
        return tuple(out)

    def flag(self, node: yaml.Node, what: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.value not in ("true", "false"):
            raise self.fail(node, f"{what} must be true or false")
        return bool(node.value == "true")

    def table_ref(self, node: yaml.Node, what: str) -> SourceRef:
        raw = self.text(node, what)
        system, dot, table = raw.partition(".")
        if not dot or system not in SYSTEMS or not table:
            raise self.fail(node, f"{what} must be SYSTEM.TABLE with SYSTEM one of {SYSTEMS}")
        return SourceRef(system, table)


def _formats(r: _Reader, node: yaml.Node | None) -> dict[str, str]:
    if node is None:
        return {}
    out: dict[str, str] = {}
    for key, value in r.mapping(node, set(PARSE_KINDS)).items():
        fmt = r.text(value, f"formats.{key}")
        if fmt not in EPOCHS and "%" not in fmt:
            raise r.fail(value, f"formats.{key}: {fmt!r} is neither a strftime format nor epoch")
        out[key] = fmt
    return out


def _code_table(path: Path, shown: str) -> dict[str, dict[str, str]]:
    """Read and check ``domain,local_code,standard_code`` rows."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CatalogError(f"{shown}: cannot read the code table: {e.strerror or e}") from e
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != ["domain", "local_code", "standard_code"]:
        raise CatalogError(f"{shown}:1: header must be domain,local_code,standard_code")
    known = _known_domains()
    table: dict[str, dict[str, str]] = {}
    for line, row in enumerate(reader, start=2):
        if len(row) != 3:
            raise CatalogError(f"{shown}:{line}: expected 3 fields, got {len(row)}")
        domain, local, standard = row
        if domain not in known:
            raise CatalogError(f"{shown}:{line}: unknown domain {domain!r}")
        if standard not in known[domain]:
            raise CatalogError(f"{shown}:{line}: {standard!r} is not a code of {domain!r}")
        codes_of = table.setdefault(domain, {})
        if local in codes_of:
            raise CatalogError(f"{shown}:{line}: local code {local!r} of {domain!r} repeats")
        codes_of[local] = standard
    return table


def _column_ref(r: _Reader, node: yaml.Node, aliases: set[str], what: str) -> str:
    raw = r.text(node, what)
    alias, dot, name = raw.rpartition(".")
    if dot and alias not in aliases:
        raise r.fail(node, f"{what}: {alias!r} is not a join alias of this table")
    if not name:
        raise r.fail(node, f"{what}: empty column name")
    return raw


def _column(
    r: _Reader,
    name: str,
    node: yaml.Node,
    aliases: set[str],
    formats: Mapping[str, str],
    code_table: Mapping[str, Mapping[str, str]],
) -> ColumnMapping:
    f = r.mapping(node, _COLUMN)
    sources = [k for k in SOURCE_KEYS if k in f]
    if len(sources) != 1:
        raise r.fail(node, f"column {name!r} needs exactly one of {', '.join(SOURCE_KEYS)}")
    kind = sources[0]
    value = f[kind]
    args: tuple[str, ...]
    if kind in ("from", "id", "unit_of"):
        args = (_column_ref(r, value, aliases, kind),)
    elif kind == "value":
        if not isinstance(value, yaml.ScalarNode):
            raise r.fail(value, "value must be a constant")
        args = (str(value.value),)
    elif kind == "hospital":
        if not r.flag(value, "hospital"):
            raise r.fail(value, "hospital: only true is meaningful")
        args = ()
    elif kind == "ref":
        ref = r.mapping(value, {"from", "table", "dwd"})
        if "from" not in ref or len(set(ref) & {"table", "dwd"}) != 1:
            raise r.fail(value, "ref needs from, and table or dwd")
        col = _column_ref(r, ref["from"], aliases, "ref.from")
        if "dwd" in ref:
            target = r.text(ref["dwd"], "ref.dwd")
            if target not in dwd_model().tables:
                raise r.fail(ref["dwd"], f"unknown DWD table {target!r}")
            args = (col, f"dwd:{target}")
        else:
            if isinstance(ref["table"], yaml.SequenceNode) and ref["table"].value:
                targets = [r.table_ref(t, "ref.table") for t in ref["table"].value]
            else:
                targets = [r.table_ref(ref["table"], "ref.table")]
            args = (col, *(str(t) for t in targets))
    else:  # concat
        if not isinstance(value, yaml.SequenceNode) or len(value.value) < 2:
            raise r.fail(value, "concat must list at least two columns")
        args = tuple(_column_ref(r, p, aliases, "concat") for p in value.value)
    sep = ""
    if "sep" in f:
        if kind != "concat" or not isinstance(f["sep"], yaml.ScalarNode):
            raise r.fail(f["sep"], "sep is the separator of concat")
        sep = str(f["sep"].value)
    split = None
    if "split" in f:
        s = r.mapping(f["split"], {"sep", "part"})
        if set(s) != {"sep", "part"} or not isinstance(s["sep"], yaml.ScalarNode):
            raise r.fail(f["split"], "split needs sep and part")
        part = s["part"].value if isinstance(s["part"], yaml.ScalarNode) else ""
        if not str(part).isdigit() or int(part) < 1:
            raise r.fail(s["part"], "split.part must be a whole number from 1")
        split = (str(s["sep"].value), int(part))
    transforms: tuple[str, ...] = ()
    if "transform" in f:
        transforms = r.texts(f["transform"], "transform")
        for t, t_node in zip(transforms, f["transform"].value, strict=True):
            if t not in TRANSFORMS:
                raise r.fail(t_node, f"unknown transform {t!r} (known: {', '.join(TRANSFORMS)})")
    null_if = r.texts(f["null_if"], "null_if") if "null_if" in f else ()
    parse = fmt = None
    if "parse" in f:
        parse = r.text(f["parse"], "parse")
        if parse not in PARSE_KINDS:
            raise r.fail(f["parse"], f"parse must be one of {', '.join(PARSE_KINDS)}")
        fmt = r.text(f["format"], "format") if "format" in f else formats.get(parse)
        if fmt is None:
            raise r.fail(f["parse"], f"no format for {parse!r}: add formats.{parse} or format")
        if fmt not in EPOCHS and "%" not in fmt:
            raise r.fail(f.get("format", f["parse"]), f"{fmt!r} is not a strftime format")
    elif "format" in f:
        raise r.fail(f["format"], "format applies to parse only")
    number = lenient = False
    if "number" in f:
        node_n = f["number"]
        lenient = isinstance(node_n, yaml.ScalarNode) and node_n.value == "lenient"
        number = lenient or r.flag(node_n, "number (true, false or lenient)")
    end = None
    if "range" in f:
        end = r.text(f["range"], "range")
        if end not in RANGE_ENDS:
            raise r.fail(f["range"], "range must be low or high")
        if "number" in f:
            raise r.fail(f["number"], "range reads a number already: leave number out")
        number = lenient = True  # a range text without that end gives no number, no issue
    if parse and number:
        raise r.fail(node, "a column is parsed as a date/time or as a number, not both")
    code = None
    if "code" in f:
        code = r.text(f["code"], "code")
        if code not in _known_domains():
            raise r.fail(f["code"], f"unknown value domain or code system {code!r}")
        if code not in code_table:
            raise r.fail(f["code"], f"the code table has no entries for {code!r}")
    unit = None
    if "unit" in f:
        u = r.mapping(f["unit"], {"from", "item"})
        if set(u) != {"from", "item"}:
            raise r.fail(f["unit"], "unit needs from and item")
        if not number:
            raise r.fail(f["unit"], "unit converts numbers: add number: true (or range)")
        unit = (
            _column_ref(r, u["from"], aliases, "unit.from"),
            _column_ref(r, u["item"], aliases, "unit.item"),
        )
    return ColumnMapping(
        name, kind, args, sep, split, transforms, null_if, parse, fmt, number, lenient, end,
        code, unit, r.at(node),
    )  # fmt: skip


def _table(
    r: _Reader,
    node: yaml.Node,
    formats: Mapping[str, str],
    code_table: Mapping[str, Mapping[str, str]],
    extracted: set[str] | None,
) -> TableMapping:
    f = r.mapping(node, _TABLE)
    for key in ("dwd", "from", "columns"):
        if key not in f:
            raise r.fail(node, f"missing key {key!r}")
    model = dwd_model()
    dwd = r.text(f["dwd"], "dwd")
    if dwd not in model.tables:
        raise r.fail(f["dwd"], f"unknown DWD table {dwd!r}")
    source = r.table_ref(f["from"], "from")
    tables = [(source, f["from"])]
    joins: list[Join] = []
    if "join" in f:
        if not isinstance(f["join"], yaml.MappingNode) or not f["join"].value:
            raise r.fail(f["join"], "join must map aliases to {from, on}")
        for alias_node, spec_node in f["join"].value:
            alias = r.text(alias_node, "join alias")
            if not _NAME.fullmatch(alias) or alias in {j.alias for j in joins}:
                raise r.fail(alias_node, f"join alias {alias!r} must be a new plain name")
            spec = r.mapping(spec_node, {"from", "on", "latest"})
            if not {"from", "on"} <= set(spec):
                raise r.fail(spec_node, "a join needs from and on")
            latest = r.text(spec["latest"], "join.latest") if "latest" in spec else None
            joined = r.table_ref(spec["from"], "join.from")
            pairs = r.mapping(spec["on"], None)
            if not pairs:
                raise r.fail(spec["on"], "join.on must map main columns to joined columns")
            on = tuple((k, r.text(v, f"join.on.{k}")) for k, v in pairs.items())
            joins.append(Join(alias, joined, on, latest))
            tables.append((joined, spec["from"]))
    if extracted is not None:
        for ref, ref_node in tables:
            if str(ref) not in extracted:
                raise r.fail(ref_node, f"{ref} is not a table of the dialect's extraction profile")
    aliases = {j.alias for j in joins}
    where: list[tuple[str, tuple[str, ...]]] = []
    if "where" in f:
        for col, values in r.mapping(f["where"], None).items():
            where.append((col, r.texts(values, f"where.{col}")))
    columns: dict[str, ColumnMapping] = {}
    table = model.tables[dwd]
    own = {c.name: c for c in table.columns if not c.lineage}
    lineage = {c.name for c in table.columns if c.lineage}
    r.mapping(f["columns"], None)  # a mapping without repeated keys
    for key_node, value in f["columns"].value:
        key = str(key_node.value)
        if key in lineage:
            raise r.fail(key_node, f"{key!r} is a lineage column: governance fills it")
        if key not in own:
            raise r.fail(key_node, f"DWD table {dwd!r} has no column {key!r}")
        columns[key] = _column(r, key, value, aliases, formats, code_table)
    needed = [c.name for c in own.values() if c.required or c.name in table.primary_key]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise r.fail(node, f"{dwd}: required columns not filled: {', '.join(missing)}")
    return TableMapping(dwd, source, tuple(joins), tuple(where), columns, r.at(node))


def load_mapping(path: Path) -> SourceMapping:
    """Read and check one mapping file and its code table.

    Raises:
        CatalogError: The file or its code table breaks a rule (the message names the file,
            line and column, and the rule).
    """
    shown = path.name if path.parent == MAPPINGS_DIR else str(path)
    r = _Reader(shown)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CatalogError(f"{shown}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise CatalogError(f"{shown}: not valid YAML: {e}") from None
    if root is None:
        raise CatalogError(f"{shown}: empty file")
    top = r.mapping(root, _TOP)
    for key in ("dialect", "version", "tables"):
        if key not in top:
            raise r.fail(root, f"missing key {key!r}")
    dialect = r.text(top["dialect"], "dialect")
    version = r.text(top["version"], "version")
    formats = _formats(r, top.get("formats"))
    code_table: dict[str, dict[str, str]] = {}
    if "codes" in top:
        rel = r.text(top["codes"], "codes")
        code_table = _code_table(path.parent / rel, rel)
    profile = source_profiles().get(dialect)
    extracted = None
    if profile is not None:
        extracted = {f"{s}.{t}" for s, tables in profile.systems.items() for t in tables}
    if not isinstance(top["tables"], yaml.SequenceNode) or not top["tables"].value:
        raise r.fail(top["tables"], "tables must be a non-empty list")
    tables = tuple(_table(r, node, formats, code_table, extracted) for node in top["tables"].value)
    return SourceMapping(dialect, version, path, formats, code_table, tables)


def mappings() -> dict[str, SourceMapping]:
    """Every shipped mapping, by dialect.

    Raises:
        CatalogError: A file is invalid, or its dialect differs from its file name.
    """
    out: dict[str, SourceMapping] = {}
    for path in sorted(MAPPINGS_DIR.glob("*.yaml")):
        loaded = load_mapping(path)
        if loaded.dialect != path.stem:
            raise CatalogError(f"{path.name}: dialect {loaded.dialect!r} differs from the name")
        out[loaded.dialect] = loaded
    return out


def check_mappings() -> list[str]:
    """Every problem of the shipped mappings (empty when all load), one line each."""
    problems = []
    for path in sorted(MAPPINGS_DIR.glob("*.yaml")):
        try:
            loaded = load_mapping(path)
        except CatalogError as e:
            problems.append(str(e))
            continue
        if loaded.dialect != path.stem:
            problems.append(f"{path.name}: dialect {loaded.dialect!r} differs from the name")
    return problems
