"""The custom quality rules of ``standards/data/quality_rules.yaml``: loading and validation.

A rule file adds what the DWD model cannot say by itself (plausibility, near-duplicates,
timeliness, custom SQL predicates); conformance, completeness of required columns and key
uniqueness are generated from the model (:mod:`medfabric.governance.quality.checks`).

Invariants:
- :func:`load_rules` refuses a file with any bad rule, and the message names the file, line and
  column and the reason: an unknown key or kind, a missing field, an unknown DWD table or
  column, a ``fk->column`` whose ``fk`` is not a reference, a bad duration or number, a
  duplicate id, a SQL predicate that does not bind against the DWD schema.
- Rules are frozen records; nothing here touches a warehouse (a predicate is bound against an
  empty in-memory DuckDB holding the generated DWD DDL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import duckdb
import yaml

from medfabric.standards import _yaml as nodes
from medfabric.standards import codes
from medfabric.standards._yaml import CatalogError
from medfabric.standards.model import DwdModel, Table, dwd_model
from medfabric.warehouse.ddl import schema_sql

RULES_FILE = "quality_rules.yaml"

CATEGORIES = ("conformance", "completeness", "plausibility", "uniqueness", "timeliness")
SEVERITIES = ("error", "warning")
KINDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {  # kind → default (category, subcategory)
        "range": ("plausibility", "atemporal"),
        "order": ("plausibility", "temporal"),
        "not_future": ("plausibility", "temporal"),
        "sex_specific": ("plausibility", "atemporal"),
        "lab_limits": ("plausibility", "atemporal"),
        "lab_flag": ("plausibility", "atemporal"),
        "lab_unit": ("plausibility", "atemporal"),
        "lab_delta": ("plausibility", "temporal"),
        "near_duplicate": ("uniqueness", "near_duplicate"),
        "timeliness": ("timeliness", "lag"),
        "sql": ("plausibility", "custom"),
    }
)
_COMMON = {"id", "kind", "table", "description", "threshold", "severity", "category",
           "subcategory"}  # fmt: skip
_FIELDS: Mapping[str, set[str]] = {
    "range": {"column", "min", "max"},
    "order": {"columns", "tolerance"},
    "not_future": {"column", "tolerance"},
    "sex_specific": {"column", "code_system"},
    "lab_limits": {"low_factor", "high_factor", "items"},
    "lab_flag": {"tolerance"},
    "lab_unit": {"tolerance", "implied_low_fraction", "skip_reporting_limit"},
    "lab_delta": {"tolerance"},
    "near_duplicate": {"keys"},
    "timeliness": {"column", "max_lag"},
    "sql": {"predicate", "when"},
}
_SEX_SYSTEMS = ("diagnoses", "lab_items")
_DURATION = re.compile(r"^(\d+)\s*(d|h|m)$")
_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_ID15 = re.compile(r"^id15\(([a-z_][a-z0-9_]*)\)$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


class RulesError(CatalogError):
    """The rules file is malformed; the message names file, line and column and the reason."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One custom rule. ``params`` holds the kind's own fields, already validated:

    - range: ``column``, ``min``/``max`` (a number, a ``YYYY-MM-DD`` date or ``run``);
    - order: ``columns`` (each ``col`` or ``fk->col``), ``tolerance`` (timedelta);
    - not_future: ``column``, ``tolerance``;
    - sex_specific: ``column``, ``code_system``;
    - lab_limits: ``low_factor``, ``high_factor``, ``items`` (item → {min, max});
    - lab_flag: ``tolerance``; lab_unit: ``tolerance``, ``implied_low_fraction``,
      ``skip_reporting_limit``;
    - near_duplicate: ``keys`` (tuple of key sets; ``("*",)`` = every own non-key column);
    - timeliness: ``column``, ``max_lag`` (timedelta);
    - sql: ``predicate`` (must hold), ``when`` (the row is checked only when it holds).
    """

    id: str
    kind: str
    table: str
    category: str
    subcategory: str
    description: str
    threshold: float
    severity: str
    params: Mapping[str, object] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A loaded rules file."""

    version: str
    rules: tuple[Rule, ...]
    path: str


def default_rules_path() -> Path:
    """The shipped rules file, ``standards/data/quality_rules.yaml``."""
    return Path(str(resources.files("medfabric.standards").joinpath("data", RULES_FILE)))


def load_rules(path: Path | None = None, *, model: DwdModel | None = None) -> RuleSet:
    """Read and validate a rules file (the shipped one by default).

    Args:
        path: the YAML file.
        model: the DWD model the rules are checked against (the catalog's by default).

    Raises:
        RulesError: the file is missing or malformed, or a rule is invalid; the message is
            ``file:line:col: reason``.
    """
    path = default_rules_path() if path is None else path
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RulesError(f"{name}: cannot read: {e}") from e
    return parse_rules(text, name, model=model)


def parse_rules(text: str, name: str = RULES_FILE, *, model: DwdModel | None = None) -> RuleSet:
    """:func:`load_rules` on text; ``name`` is the file name used in messages."""
    m = dwd_model() if model is None else model
    try:
        root = nodes.compose(text, name)
    except CatalogError as e:
        raise RulesError(str(e)) from e
    try:
        top = nodes.mapping(name, root, {"version", "rules"})
        version = nodes.text(name, top, "version", root)
        seq = top.get("rules")
        if not isinstance(seq, yaml.SequenceNode):
            raise RulesError(f"{nodes.where(name, seq or root)}: 'rules' must be a list")
        out: list[Rule] = []
        seen: dict[str, str] = {}
        for node in seq.value:
            rule = _Parser(name, m).rule(node)
            if rule.id in seen:
                raise RulesError(
                    f"{nodes.where(name, node)}: duplicate rule id {rule.id!r} "
                    f"(first at {seen[rule.id]})"
                )
            seen[rule.id] = nodes.where(name, node)
            out.append(rule)
    except RulesError:
        raise
    except CatalogError as e:
        raise RulesError(str(e)) from e
    _bind_predicates(out, m)
    return RuleSet(version, tuple(out), name)


def parse_duration(raw: str) -> timedelta | None:
    """``7d``, ``48h``, ``30m`` → timedelta; None when not of that shape."""
    match = _DURATION.match(raw.strip())
    if match is None:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


class _Parser:
    def __init__(self, file: str, model: DwdModel) -> None:
        self.file = file
        self.model = model

    def fail(self, node: yaml.Node, reason: str) -> RulesError:
        return RulesError(f"{nodes.where(self.file, node)}: {reason}")

    def scalar(self, node: yaml.Node, key: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            raise self.fail(node, f"{key!r} must be a non-empty value")
        return str(node.value).strip()

    def number(self, node: yaml.Node, key: str, *, low: float | None = None) -> float:
        raw = self.scalar(node, key)
        try:
            value = float(raw)
        except ValueError:
            raise self.fail(node, f"{key!r} must be a number, got {raw!r}") from None
        if low is not None and value < low:
            raise self.fail(node, f"{key!r} must be at least {low:g}, got {raw}")
        return value

    def duration(self, node: yaml.Node, key: str) -> timedelta:
        raw = self.scalar(node, key)
        value = parse_duration(raw)
        if value is None:
            raise self.fail(node, f"{key!r} must be a duration such as 7d, 48h or 30m, got {raw!r}")
        return value

    def table(self, node: yaml.Node) -> Table:
        name = self.scalar(node, "table")
        table = self.model.tables.get(name)
        if table is None:
            raise self.fail(node, f"unknown DWD table {name!r}")
        return table

    def column(self, table: Table, node: yaml.Node, key: str = "column") -> str:
        name = self.scalar(node, key)
        if name not in {c.name for c in table.columns}:
            raise self.fail(node, f"unknown column {name!r} of DWD table {table.name!r}")
        return name

    def column_ref(self, table: Table, node: yaml.Node) -> str:
        """``col`` or ``fk->col`` (a column of the row the reference ``fk`` points to)."""
        raw = self.scalar(node, "columns")
        fk, arrow, target = raw.partition("->")
        if not arrow:
            return self.column(table, node, "columns")
        fk, target = fk.strip(), target.strip()
        own = {c.name: c for c in table.columns}
        if fk not in own:
            raise self.fail(node, f"unknown column {fk!r} of DWD table {table.name!r}")
        ref = own[fk].references
        if ref is None:
            raise self.fail(node, f"{table.name}.{fk} is not a reference: cannot follow ->")
        other = self.model.tables[ref[0]]
        if target not in {c.name for c in other.columns}:
            raise self.fail(node, f"unknown column {target!r} of DWD table {other.name!r}")
        return f"{fk}->{target}"

    def rule(self, node: yaml.Node) -> Rule:
        fields = nodes.mapping(self.file, node, None)
        kind_node = fields.get("kind")
        if kind_node is None:
            raise self.fail(node, "missing key 'kind'")
        kind = self.scalar(kind_node, "kind")
        if kind not in KINDS:
            raise self.fail(kind_node, f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        for key, value in fields.items():
            if key not in _COMMON | _FIELDS[kind]:
                raise self.fail(value, f"unknown key {key!r} for a {kind} rule")
        for key in ("id", "table"):
            if key not in fields:
                raise self.fail(node, f"missing key {key!r}")
        rule_id = self.scalar(fields["id"], "id")
        if not _ID.match(rule_id):
            raise self.fail(fields["id"], f"rule id must look like table.name, got {rule_id!r}")
        table = self.table(fields["table"])
        category, subcategory = KINDS[kind]
        if "category" in fields:
            category = self.scalar(fields["category"], "category")
            if category not in CATEGORIES:
                raise self.fail(
                    fields["category"], f"unknown category {category!r}; one of {CATEGORIES}"
                )
        if "subcategory" in fields:
            subcategory = self.scalar(fields["subcategory"], "subcategory")
        threshold = 0.0
        if "threshold" in fields:
            threshold = self.number(fields["threshold"], "threshold", low=0)
            if threshold > 100:
                raise self.fail(fields["threshold"], "'threshold' is a percent, at most 100")
        severity = "error"
        if "severity" in fields:
            severity = self.scalar(fields["severity"], "severity")
            if severity not in SEVERITIES:
                raise self.fail(fields["severity"], f"severity must be one of {SEVERITIES}")
        description = (
            self.scalar(fields["description"], "description")
            if ("description" in fields)
            else rule_id
        )
        params = self.params(kind, table, fields, node)
        return Rule(
            rule_id, kind, table.name, category, subcategory, description, threshold, severity,
            MappingProxyType(params), nodes.where(self.file, node),
        )  # fmt: skip

    def need(self, fields: dict[str, yaml.Node], key: str, node: yaml.Node) -> yaml.Node:
        if key not in fields:
            raise self.fail(node, f"missing key {key!r}")
        return fields[key]

    def params(
        self, kind: str, table: Table, fields: dict[str, yaml.Node], node: yaml.Node
    ) -> dict[str, object]:
        out: dict[str, object] = {}
        if kind in ("range", "not_future", "sex_specific", "timeliness"):
            out["column"] = self.column(table, self.need(fields, "column", node))
        if kind == "range":
            if "min" not in fields and "max" not in fields:
                raise self.fail(node, "a range rule needs min, max or both")
            for key in ("min", "max"):
                if key in fields:
                    raw = self.scalar(fields[key], key)
                    if raw != "run" and not _DATE.match(raw):
                        self.number(fields[key], key)
                    out[key] = raw
        elif kind == "order":
            seq = self.need(fields, "columns", node)
            if not isinstance(seq, yaml.SequenceNode) or len(seq.value) < 2:
                raise self.fail(seq, "'columns' must list at least two columns, earliest first")
            out["columns"] = tuple(self.column_ref(table, c) for c in seq.value)
        if kind in ("order", "not_future"):
            tol = fields.get("tolerance")
            out["tolerance"] = timedelta(0) if tol is None else self.duration(tol, "tolerance")
        if kind == "sex_specific":
            system = self.scalar(self.need(fields, "code_system", node), "code_system")
            if system not in _SEX_SYSTEMS:
                raise self.fail(fields["code_system"], f"code_system must be one of {_SEX_SYSTEMS}")
            out["code_system"] = system
            if "person_id" not in {c.name for c in table.columns}:
                raise self.fail(node, f"{table.name} has no person_id to read the sex from")
        if (
            kind in ("lab_limits", "lab_flag", "lab_unit", "lab_delta")
            and table.name != "lab_result"
        ):
            raise self.fail(fields["table"], f"a {kind} rule applies to lab_result only")
        if kind == "lab_limits":
            out["low_factor"] = self.number(fields.get("low_factor") or _zero(node), "low_factor")
            high = fields.get("high_factor")
            out["high_factor"] = None if high is None else self.number(high, "high_factor", low=1)
            items: dict[str, dict[str, float]] = {}
            if "items" in fields:
                known = codes.lab_items()
                for code, spec in nodes.mapping(self.file, fields["items"], None).items():
                    if code not in known:
                        raise self.fail(spec, f"unknown lab item {code!r} (lab_items.csv)")
                    limits = nodes.mapping(self.file, spec, {"min", "max"})
                    items[code] = {k: self.number(v, k) for k, v in limits.items()}
            out["items"] = MappingProxyType(items)
        if kind in ("lab_flag", "lab_unit", "lab_delta"):
            tol = fields.get("tolerance")
            out["tolerance"] = 0.0 if tol is None else self.number(tol, "tolerance", low=0)
        if kind == "lab_unit":
            frac = fields.get("implied_low_fraction")
            out["implied_low_fraction"] = (
                0.0 if frac is None else self.number(frac, "implied_low_fraction", low=0)
            )
            skip = fields.get("skip_reporting_limit")
            out["skip_reporting_limit"] = False
            if skip is not None:
                raw = self.scalar(skip, "skip_reporting_limit")
                if raw not in ("true", "false"):
                    raise self.fail(skip, "'skip_reporting_limit' must be true or false")
                out["skip_reporting_limit"] = raw == "true"
        if kind == "near_duplicate":
            seq = self.need(fields, "keys", node)
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                raise self.fail(seq, "'keys' must be a non-empty list of column lists")
            keys: list[tuple[str, ...]] = []
            for key_set in seq.value:
                if not isinstance(key_set, yaml.SequenceNode) or not key_set.value:
                    raise self.fail(key_set, "each key set must be a non-empty list of columns")
                cols: list[str] = []
                for c in key_set.value:
                    raw = self.scalar(c, "keys")
                    inner = _ID15.match(raw)
                    if raw == "*":
                        if len(key_set.value) != 1:
                            raise self.fail(c, "'*' stands alone in its key set")
                    elif inner is not None:
                        if inner.group(1) not in {x.name for x in table.columns}:
                            raise self.fail(
                                c, f"unknown column {inner.group(1)!r} of DWD table {table.name!r}"
                            )
                    else:
                        self.column(table, c, "keys")
                    cols.append(raw)
                keys.append(tuple(cols))
            out["keys"] = tuple(keys)
        if kind == "timeliness":
            out["max_lag"] = self.duration(self.need(fields, "max_lag", node), "max_lag")
        if kind == "sql":
            out["predicate"] = self.scalar(self.need(fields, "predicate", node), "predicate")
            out["when"] = self.scalar(fields["when"], "when") if "when" in fields else ""
        return out


def _zero(node: yaml.Node) -> yaml.Node:
    return yaml.ScalarNode("tag:yaml.org,2002:str", "0", node.start_mark, node.end_mark)


def _bind_predicates(rules: list[Rule], model: DwdModel) -> None:
    """Bind every SQL predicate against an empty DWD schema, so that an unknown column or a
    syntax error is refused when the file is loaded, not in the middle of a run."""
    custom = [r for r in rules if r.kind == "sql"]
    if not custom:
        return
    con = duckdb.connect(":memory:")
    try:
        for stmt in schema_sql(model):
            if not stmt.startswith("COMMENT"):
                con.execute(stmt)
        for r in custom:
            for key in ("predicate", "when"):
                text = str(r.params[key])
                if not text:
                    continue
                sql = f'SELECT ({text}) FROM dwd."{r.table}" t LIMIT 0'
                try:
                    con.execute(sql)
                except duckdb.Error as e:
                    first = str(e).splitlines()[0]
                    raise RulesError(f"{r.where}: rule {r.id}: {key} does not bind: {first}") from e
    finally:
        con.close()
