"""Quality checks as set-based SQL, generated from the DWD model and from the rules file.

A :class:`Check` says which rows of one DWD table it looks at and which of them fail, as SQL
over the table aliased ``t``: either a boolean expression ``expr`` (NULL = the row is not
checked, e.g. the column is empty) with optional ``joins``, or a whole ``sql`` query returning
``(hospital, row_id, failed)`` for checks that need windows. Joins are LEFT JOINs on a unique
key of the joined table (never multiplying rows) under aliases that either mean the same join
everywhere (``p`` person, ``r`` lab reference, ``b`` arrival batch, ``j_<fk>`` the row a
reference points to) or belong to one rule (``x_<rule id>``), so that the runner can evaluate
every expression check of a table in one query. The runner adds what governance
set aside before DWD: quarantined rows fail the completeness of the required column they miss,
nulled values fail their column's format or value domain, removed duplicates fail uniqueness.

Generated from the model (never written by hand, one source of truth with the DDL):

- ``<table>.<column>.required`` completeness of each required column;
- ``<table>.<column>.format`` type and format of each column (the WS 363 format: length, digits
  only for ``N`` string formats; values governance nulled as not parseable);
- ``<table>.<column>.value_domain`` the value domain or code system of each coded column;
- ``<table>.<column>.references`` each ``references`` column points at an existing row;
- ``<table>.primary_key.unique`` one row per primary key.

Helper tables the SQL reads (created by the runner for each run): ``dq_ctx(run_at)``,
``dq_codes(domain, code)``, ``dq_code_sex(system, code, sex)``,
``dq_lab_ref(item, lo_m, hi_m, lo_f, hi_f, floor)``, ``dq_lab_limits(rule_id, item, min_v, max_v)``,
``dq_lab_ratio(item, r)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from medfabric.governance.quality.rules import Rule, RuleSet, load_rules
from medfabric.standards import codes
from medfabric.standards.model import Column, DwdModel, Table, dwd_model
from medfabric.warehouse.ddl import literal, qualified, quote

_STRING = re.compile(r"^(A|AN|N)(\.\.)?([1-9]\d*)$")


@dataclass(frozen=True, slots=True)
class Check:
    """One data-quality check on one DWD table.

    ``kind`` is the family (``required``, ``format``, ``value_domain``, ``references``,
    ``unique``, or a rule kind); ``origin`` is ``model`` or ``rules``. ``threshold`` is the
    percent of checked rows allowed to fail.
    """

    id: str
    kind: str
    category: str
    subcategory: str
    table: str
    columns: tuple[str, ...]
    description: str
    threshold: float = 0.0
    severity: str = "error"
    origin: str = "model"
    expr: str | None = None
    joins: tuple[str, ...] = ()
    sql: str | None = None


def row_id(table: Table, alias: str = "t") -> str:
    """SQL for a row's id: the primary key of a single-key table, else the source address."""
    if len(table.primary_key) == 1:
        return f"{alias}.{quote(table.primary_key[0])}"
    return source_address(alias)


def source_address(alias: str = "t") -> str:
    """``hospital/SYSTEM/TABLE/local_key`` from a DWD row's lineage columns."""
    a = alias
    return (
        f"({a}._source_hospital || '/' || {a}._source_system || '/' || {a}._source_table "
        f"|| '/' || {a}._source_key)"
    )


def _own(table: Table) -> list[Column]:
    return [c for c in table.columns if not c.lineage]


def _format_failure(column: Column) -> str | None:
    """Boolean SQL: the (non-null) value breaks its element's string format."""
    e = column.element
    if e.data_type not in ("S1", "S2", "S3"):
        return None
    m = _STRING.match(e.format)
    if m is None:
        return None
    c = f"t.{quote(column.name)}"
    op = "<>" if m.group(2) is None else ">"
    parts = [f"length({c}) {op} {m.group(3)}"]
    if m.group(1) == "N":
        parts.append(f"NOT regexp_full_match({c}, '[0-9]+')")
    return " OR ".join(parts)


def model_checks(model: DwdModel | None = None) -> list[Check]:
    """The checks the DWD model implies, in model order (see the module docstring)."""
    m = dwd_model() if model is None else model
    out: list[Check] = []
    for table in m.tables.values():
        for col in _own(table):
            c = f"t.{quote(col.name)}"
            name = col.element.name_zh
            if col.required:
                out.append(Check(
                    f"{table.name}.{col.name}.required", "required", "completeness", "required",
                    table.name, (col.name,), f"必填项{name}（{col.name}）不为空",
                    expr=f"{c} IS NULL",
                ))  # fmt: skip
            fmt = _format_failure(col)
            out.append(Check(
                f"{table.name}.{col.name}.format", "format", "conformance", "type_format",
                table.name, (col.name,),
                f"{name}（{col.name}）符合类型 {col.element.data_type} 与格式 {col.element.format}",
                expr=f"CASE WHEN {c} IS NOT NULL THEN {fmt or 'false'} END",
            ))  # fmt: skip
            if col.value_domain is not None:
                domain = literal(col.value_domain)
                out.append(Check(
                    f"{table.name}.{col.name}.value_domain", "value_domain", "conformance",
                    "value_domain", table.name, (col.name,),
                    f"{name}（{col.name}）取值于值域 {col.value_domain}",
                    expr=(
                        f"CASE WHEN {c} IS NOT NULL THEN {c} NOT IN "
                        f"(SELECT code FROM dq_codes WHERE domain = {domain}) END"
                    ),
                ))  # fmt: skip
            if col.references is not None:
                target = m.tables[col.references[0]]
                key = quote(col.references[1])
                out.append(Check(
                    f"{table.name}.{col.name}.references", "references", "conformance",
                    "referential", table.name, (col.name,),
                    f"{col.name} 指向存在的 {target.name}.{col.references[1]}",
                    # A table with no rows at all (master data not loaded yet) cannot be
                    # checked against: the check is then not applicable.
                    expr=(
                        f"CASE WHEN {c} IS NOT NULL AND EXISTS (SELECT 1 FROM "
                        f"{qualified(target)}) THEN {c} NOT IN (SELECT {key} FROM "
                        f"{qualified(target)}) END"
                    ),
                ))  # fmt: skip
        out.append(Check(
            f"{table.name}.primary_key.unique", "unique", "uniqueness", "primary_key",
            table.name, table.primary_key, f"主键（{', '.join(table.primary_key)}）唯一",
            expr="false",
        ))  # fmt: skip
    return out


# --- rules -------------------------------------------------------------------------------------


def _interval(d: timedelta) -> str:
    return f"INTERVAL '{int(d.total_seconds())} seconds'"


class _Refs:
    """Column references of a rule, ``col`` or ``fk->col``, with the joins they need."""

    def __init__(self, model: DwdModel, table: Table) -> None:
        self.model = model
        self.table = table
        self.joins: list[str] = []
        self.aliases: dict[str, str] = {}

    def __call__(self, ref: str) -> str:
        fk, arrow, target = ref.partition("->")
        if not arrow:
            return f"t.{quote(ref)}"
        alias = self.aliases.get(fk)
        if alias is None:
            alias = f"j_{fk}"
            self.aliases[fk] = alias
            ref_table, ref_col = self.table.column(fk).references or ("", "")
            other = self.model.tables[ref_table]
            self.joins.append(
                f"LEFT JOIN {qualified(other)} {alias} ON {alias}.{quote(ref_col)} = t.{quote(fk)}"
            )
        return f"{alias}.{quote(target)}"


def _bound(raw: str, column: Column) -> str:
    if raw == "run":
        return "(SELECT run_at FROM dq_ctx)"
    if re.match(r"^\d{4}-\d\d-\d\d$", raw):
        return f"DATE {literal(raw)}"
    return raw if column.element.data_type == "N" else literal(raw)


_SEX = (
    "CASE WHEN p.sex_code = '2' THEN r.{lo}_f WHEN p.sex_code = '1' THEN r.{lo}_m "
    "ELSE {agg}(r.{lo}_m, r.{lo}_f) END"
)
_PERSON_JOIN = "LEFT JOIN dwd.person p ON p.person_id = t.person_id"
_LAB_REF_JOIN = "LEFT JOIN dq_lab_ref r ON r.item = t.item_code"
_ARRIVAL_JOIN = "LEFT JOIN ingest.batches b ON b.batch_id = t._batch_id"


def _alias(rule: Rule) -> str:
    """A join alias owned by one rule (rules of one table share a query)."""
    return "x_" + re.sub(r"[^a-z0-9]", "_", rule.id)


def _normalized(expr: str) -> str:
    return f"upper(regexp_replace(CAST({expr} AS VARCHAR), '\\s', '', 'g'))"


def _key_expr(raw: str) -> str:
    inner = re.match(r"^id15\((\w+)\)$", raw)
    if inner is None:
        return _normalized(f"t.{quote(raw)}")
    x = _normalized(f"t.{quote(inner.group(1))}")
    return f"CASE WHEN length({x}) = 18 THEN substr({x}, 1, 6) || substr({x}, 9, 9) ELSE {x} END"


def _rule_check(rule: Rule, model: DwdModel, has_arrival: bool) -> Check:
    table = model.tables[rule.table]
    p = rule.params
    refs = _Refs(model, table)
    expr: str | None = None
    sql: str | None = None
    columns: tuple[str, ...] = ()
    if rule.kind == "range":
        target = table.column(str(p["column"]))
        columns = (target.name,)
        c = refs(target.name)
        parts = []
        if "min" in p:
            parts.append(f"{c} < {_bound(str(p['min']), target)}")
        if "max" in p:
            parts.append(f"{c} > {_bound(str(p['max']), target)}")
        expr = f"CASE WHEN {c} IS NOT NULL THEN {' OR '.join(parts)} END"
    elif rule.kind == "order":
        cols = tuple(str(x) for x in p["columns"])  # type: ignore[attr-defined]
        columns = cols
        exprs = [refs(x) for x in cols]
        tol = p["tolerance"]
        assert isinstance(tol, timedelta)
        slack = f" + {_interval(tol)}" if tol else ""
        pairs = [
            f"coalesce({a} > {b}{slack}, false)"
            for i, a in enumerate(exprs)
            for b in exprs[i + 1 :]
        ]
        present = " + ".join(f"({e} IS NOT NULL)::INT" for e in exprs)
        expr = f"CASE WHEN {present} >= 2 THEN {' OR '.join(pairs)} END"
    elif rule.kind == "not_future":
        col = str(p["column"])
        columns = (col,)
        c = refs(col)
        tol = p["tolerance"]
        assert isinstance(tol, timedelta)
        limits = ["(SELECT run_at FROM dq_ctx)", f"t._source_updated_at + {_interval(tol)}"]
        if has_arrival:
            refs.joins.append(_ARRIVAL_JOIN)
            limits.append("CAST(b.received_at AS TIMESTAMP)")
        expr = f"CASE WHEN {c} IS NOT NULL THEN {c} > least({', '.join(limits)}) END"
    elif rule.kind == "sex_specific":
        col = str(p["column"])
        columns = (col, "person_id")
        system = literal(str(p["code_system"]))
        alias = _alias(rule)
        refs.joins.append(
            f"LEFT JOIN dq_code_sex {alias} ON {alias}.system = {system} AND "
            f"{alias}.code = t.{quote(col)}"
        )
        refs.joins.append(_PERSON_JOIN)
        expr = (
            f"CASE WHEN {alias}.sex IS NOT NULL AND p.sex_code IN ('1', '2') THEN "
            f"{alias}.sex <> p.sex_code END"
        )
    elif rule.kind == "lab_limits":
        columns = ("value_numeric", "item_code")
        alias = _alias(rule)
        refs.joins.append(
            f"LEFT JOIN dq_lab_limits {alias} ON {alias}.rule_id = {literal(rule.id)} AND "
            f"{alias}.item = t.item_code"
        )
        v = "CAST(t.value_numeric AS DOUBLE)"
        expr = (
            f"CASE WHEN t.value_numeric IS NOT NULL AND {alias}.item IS NOT NULL THEN "
            f"coalesce({v} < {alias}.min_v, false) OR coalesce({v} > {alias}.max_v, false) END"
        )
    elif rule.kind in ("lab_flag", "lab_unit"):
        columns = ("value_numeric", "abnormal_flag", "item_code")
        tol = float(p["tolerance"])  # type: ignore[arg-type]
        lo = _SEX.format(lo="lo", agg="least")
        hi = _SEX.format(lo="hi", agg="greatest")
        refs.joins += [_LAB_REF_JOIN, _PERSON_JOIN]
        v = "CAST(t.value_numeric AS DOUBLE)"
        fl = "t.abnormal_flag"
        lo_t, hi_t = f"(({lo}) * {1 - tol})", f"(({hi}) * {1 + tol})"
        if rule.kind == "lab_flag":
            expr = (
                f"CASE WHEN t.value_numeric IS NOT NULL AND r.item IS NOT NULL AND "
                f"{fl} IN ('N', 'H', 'HH', 'L', 'LL') "
                f"THEN coalesce(({fl} = 'N' AND ({v} < {lo_t} OR {v} > {hi_t})) "
                f"OR ({fl} IN ('H', 'HH') AND {v} < {lo_t}) "
                f"OR ({fl} IN ('L', 'LL') AND {v} > {hi_t}), false) END"
            )
        else:
            frac = float(p["implied_low_fraction"])  # type: ignore[arg-type]
            # At the smallest reportable value (CRP 0.1 mg/L) a low result and a tenfold unit
            # error look the same; with skip_reporting_limit such values are not judged.
            floor = f" AND {v} > r.floor * 1.0001" if p["skip_reporting_limit"] else ""
            lo_eff = f"(coalesce({lo}, ({hi}) * {frac}) * {1 - tol})"

            def agrees(x: str) -> str:
                inside = f"({x} >= {lo_eff} AND ({x} <= {hi_t} OR ({hi}) IS NULL))"
                return (
                    f"coalesce(({fl} = 'N' AND {inside}) OR ({fl} IS NULL AND {inside}) "
                    f"OR ({fl} IN ('H', 'HH') AND {x} > ({hi}) * {1 - tol}) "
                    f"OR ({fl} IN ('L', 'LL') AND {x} < ({lo}) * {1 + tol}), false)"
                )

            expr = (
                f"CASE WHEN t.value_numeric IS NOT NULL AND r.item IS NOT NULL AND {v} > 0{floor} "
                f"THEN NOT {agrees(v)} AND "
                f"EXISTS (SELECT 1 FROM dq_lab_ratio q WHERE q.item = t.item_code AND "
                f"{agrees(f'({v} / q.r)')}) END"
            )
    elif rule.kind == "lab_delta":
        # A delta check: the same person's previous and next result of the item (in report
        # order); a value that one of them is off by a unit ratio (≥ 2, within the tolerance)
        # was probably reported in another unit. Both results of such a pair are flagged.
        columns = ("value_numeric", "item_code", "person_id")
        limit = float(p["tolerance"])  # type: ignore[arg-type]
        alias = _alias(rule)
        refs.joins.append(
            f"""LEFT JOIN (SELECT lab_result_id AS id,
        lag(v) OVER w AS prev_v, lead(v) OVER w AS next_v
    FROM (SELECT lab_result_id, person_id, item_code, _source_updated_at,
            CAST(value_numeric AS DOUBLE) AS v
        FROM dwd.lab_result WHERE value_numeric > 0 AND person_id IS NOT NULL)
    WINDOW w AS (PARTITION BY person_id, item_code
        ORDER BY _source_updated_at, lab_result_id)) {alias} ON {alias}.id = t.lab_result_id"""
        )
        v = "CAST(t.value_numeric AS DOUBLE)"

        def off_by(other: str) -> str:
            return f"coalesce(abs({other} / ({v} * q.r) - 1) <= {limit}, false)"

        expr = (
            f"CASE WHEN t.value_numeric > 0 AND ({alias}.prev_v IS NOT NULL OR "
            f"{alias}.next_v IS NOT NULL) THEN EXISTS (SELECT 1 FROM dq_lab_ratio q "
            f"WHERE q.item = t.item_code AND (q.r >= 2 OR q.r <= 0.5) AND "
            f"({off_by(f'{alias}.prev_v')} OR {off_by(f'{alias}.next_v')})) END"
        )
    elif rule.kind == "near_duplicate":
        keys: tuple[tuple[str, ...], ...] = p["keys"]  # type: ignore[assignment]
        pk = set(table.primary_key)
        hashes: list[str] = []
        names: list[str] = []
        for i, key_set in enumerate(keys):
            if key_set == ("*",):
                exprs = [f"t.{quote(c.name)}" for c in _own(table) if c.name not in pk]
                names += [c.name for c in _own(table) if c.name not in pk]
                filled = "true"
            else:
                exprs = [_key_expr(k) for k in key_set]
                names += list(key_set)
                filled = " AND ".join(f"coalesce(({e}) <> '', false)" for e in exprs)
            hashes.append(f"CASE WHEN {filled} THEN hash({', '.join(exprs)}) END AS k{i}")
        # Rows are grouped on a 64-bit hash of each key set (a false match needs a collision
        # within one hospital: ~n²/2⁶⁵, 3·10⁻⁸ for a million rows); only rows whose hash
        # repeats are ordered, so the window runs on the few candidates, not on every row.
        dups = " UNION ALL ".join(
            f"SELECT row_id FROM (SELECT row_id, row_number() OVER (PARTITION BY hospital, k{i} "
            f"ORDER BY kl, sk) AS rn FROM dq_base WHERE (hospital, k{i}) IN (SELECT "
            f"(hospital, k{i}) FROM dq_base WHERE k{i} IS NOT NULL GROUP BY ALL "
            f"HAVING count(*) > 1)) WHERE rn > 1"
            for i in range(len(keys))
        )
        columns = tuple(dict.fromkeys(names))
        sql = (
            f"WITH dq_base AS (SELECT t._source_hospital AS hospital, {row_id(table)} AS row_id, "
            f"length(t._source_key) AS kl, t._source_key AS sk, {', '.join(hashes)} "
            f"FROM {qualified(table)} t) SELECT hospital, row_id, row_id IN ({dups}) AS failed "
            f"FROM dq_base"
        )
    elif rule.kind == "timeliness":
        col = str(p["column"])
        columns = (col,)
        lag = p["max_lag"]
        assert isinstance(lag, timedelta)
        if has_arrival:
            refs.joins.append(_ARRIVAL_JOIN)
            expr = (
                f"CASE WHEN t.{quote(col)} IS NOT NULL THEN epoch(b.received_at) - "
                f"epoch(CAST(t.{quote(col)} AS TIMESTAMP)) > {lag.total_seconds()} END"
            )
        else:
            expr = "NULL::BOOLEAN"  # no arrival times in this warehouse: not applicable
    elif rule.kind == "sql":
        when = str(p["when"])
        predicate = f"NOT coalesce(({p['predicate']}), false)"
        expr = f"CASE WHEN {when} THEN {predicate} END" if when else predicate
    else:  # pragma: no cover - the loader refuses unknown kinds
        raise ValueError(f"unknown rule kind {rule.kind!r}")
    return Check(
        rule.id, rule.kind, rule.category, rule.subcategory, rule.table, columns,
        rule.description, rule.threshold, rule.severity, "rules", expr,
        tuple(dict.fromkeys(refs.joins)), sql,
    )  # fmt: skip


def rule_checks(
    rules: RuleSet, model: DwdModel | None = None, *, has_arrival: bool = True
) -> list[Check]:
    """The checks of a rules file, in file order.

    Args:
        rules: the loaded rules.
        model: the DWD model (the catalog's by default).
        has_arrival: the warehouse has ``ingest.batches`` (arrival times); without it the
            timeliness checks are not applicable and ``not_future`` ignores arrival.
    """
    m = dwd_model() if model is None else model
    return [_rule_check(r, m, has_arrival) for r in rules.rules]


def generate_checks(
    rules: RuleSet | None = None, model: DwdModel | None = None, *, has_arrival: bool = True
) -> list[Check]:
    """Every check: those the model implies, then those of the rules file.

    Raises:
        ValueError: two checks share an id.

    >>> any(c.id == "person.name.required" for c in generate_checks())
    True
    """
    m = dwd_model() if model is None else model
    rs = load_rules(model=m) if rules is None else rules
    out = model_checks(m) + rule_checks(rs, m, has_arrival=has_arrival)
    seen: set[str] = set()
    for c in out:
        if c.id in seen:
            raise ValueError(f"duplicate check id {c.id!r}")
        seen.add(c.id)
    return out


# --- helper rows ---------------------------------------------------------------------------------


def code_rows(model: DwdModel | None = None) -> Iterator[tuple[str, str]]:
    """(domain, code) for every value domain or code system a model column uses."""
    m = dwd_model() if model is None else model
    domains = sorted({c.value_domain for t in m.tables.values() for c in t.columns
                      if c.value_domain is not None})  # fmt: skip
    systems: Mapping[str, Mapping[str, object]] = {
        "diagnoses": codes.diagnoses(), "lab_items": codes.lab_items(),
        "exam_items": codes.exam_items(), "drugs": codes.drugs(),
        "regions": codes.regions(), "lab_panels": codes.lab_panels(),
    }  # fmt: skip
    for d in domains:
        table = systems.get(d)
        for code in table if table is not None else codes.value_domain(d):
            yield d, code


def code_sex_rows() -> Iterator[tuple[str, str, str]]:
    """(code system, code, sex '1'|'2') for codes that belong to one sex: diagnoses marked M/F,
    and numeric lab items with a reference range for one sex only (PSA)."""
    for code, dx in codes.diagnoses().items():
        if dx.sex in ("M", "F"):
            yield "diagnoses", code, "1" if dx.sex == "M" else "2"
    for code, item in codes.lab_items().items():
        if item.value_type != "N":
            continue
        male = item.ref_low_m is not None or item.ref_high_m is not None
        female = item.ref_low_f is not None or item.ref_high_f is not None
        if male != female:
            yield "lab_items", code, "1" if male else "2"


_Ref = tuple[str, float | None, float | None, float | None, float | None, float]


def lab_ref_rows() -> Iterator[_Ref]:
    """(item, lo_m, hi_m, lo_f, hi_f, floor) of every numeric lab item (lab_items.csv);
    ``floor`` is the smallest reportable value, 10^-decimals."""
    for code, i in codes.lab_items().items():
        if i.value_type == "N":
            yield code, i.ref_low_m, i.ref_high_m, i.ref_low_f, i.ref_high_f, 10.0**-i.decimals


def lab_limit_rows(rules: RuleSet) -> Iterator[tuple[str, str, float | None, float | None]]:
    """(rule id, item, min, max) per ``lab_limits`` rule and numeric item: explicit limits of
    the rule, else low × low_factor and high × high_factor of the widest reference range."""
    for rule in rules.rules:
        if rule.kind != "lab_limits":
            continue
        low_f = float(rule.params["low_factor"])  # type: ignore[arg-type]
        high_f = rule.params["high_factor"]
        items: Mapping[str, Mapping[str, float]] = rule.params["items"]  # type: ignore[assignment]
        for code, lo_m, hi_m, lo_f, hi_f, _ in lab_ref_rows():
            lows = [x for x in (lo_m, lo_f) if x is not None]
            highs = [x for x in (hi_m, hi_f) if x is not None]
            min_v: float | None = min(lows) * low_f if lows else 0.0 * low_f
            max_v: float | None = None
            if high_f is not None and (highs or lows):
                max_v = max(highs or lows) * float(high_f)  # type: ignore[arg-type]
            explicit = items.get(code, {})
            min_v = explicit.get("min", min_v)
            max_v = explicit.get("max", max_v)
            yield rule.id, code, min_v, max_v


def lab_ratio_rows(distinct: float = 0.1) -> Iterator[tuple[str, float]]:
    """(item, r): the ratios of two units of an item (lab_units.csv) that differ from 1 by more
    than ``distinct`` — the factors a value mislabelled with another unit is off by."""
    for item, units in codes.lab_unit_factors().items():
        ratios = {a / b for a in units.values() for b in units.values() if b}
        for r in sorted(ratios):
            if abs(r - 1) > distinct:
                yield item, r
