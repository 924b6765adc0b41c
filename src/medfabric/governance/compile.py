"""Compile one entry of a source mapping (docs/mapping.md) into the SQL that stages DWD rows.

:func:`stage_sql` returns one ``SELECT`` over a hospital's ODS current views: one row per main
source row whose key is in a given relation of changed keys, with

- the lineage columns of the DWD model (``_source_hospital`` … ``_mapping_version``);
- every own column of the DWD table, typed as the DDL types it (NULL where not mapped, or where
  a step made the value invalid);
- ``_reasons``: why values were nulled (``column: reason: value``), never silently;
- ``_missing``: required columns left NULL (the row then goes to quarantine);
- ``_unmapped``: the ``(domain, local code)`` pairs the code table does not map.

The SQL reads the code table from ``gov.code_map`` and unit factors from ``gov.unit_factor``
(:mod:`medfabric.governance.run` fills both). Invariants: every identifier is quoted and every
constant is a literal; the same inputs always give the same SQL; nothing here executes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medfabric.standards.mappings import ColumnMapping, Join, SourceMapping, TableMapping
from medfabric.standards.model import Column, dwd_model
from medfabric.warehouse.ddl import column_check, column_type, literal, quote
from medfabric.warehouse.ods import CURRENT_SUFFIX, ods_ref, ods_table_name

__all__ = ["CHINA_OFFSET_HOURS", "GOV_SCHEMA", "StageSql", "ods_columns_needed", "stage_sql"]

GOV_SCHEMA = "gov"
CHINA_OFFSET_HOURS = 8
"""Epoch instants are shown as China Standard Time wall clock (UTC+8, no daylight saving), the
time every other source writes."""

# Full-width ASCII (U+FF01–U+FF5E) and the ideographic space → their half-width forms: what
# NFKC does to the characters that occur in Chinese source data (DuckDB has no NFKC).
_FULL = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000"
_HALF = "".join(chr(c) for c in range(0x21, 0x7F)) + " "


@dataclass(frozen=True, slots=True)
class StageSql:
    """The staging query of one mapping entry for one hospital, and what it reads."""

    sql: str
    main_ods: str  # the main ODS table (unquoted name)
    joined_ods: tuple[str, ...]  # the joined ODS tables (unquoted names), in join order


def _col(ref: str) -> str:
    """A source column as written (``COL`` or ``alias.COL``) → SQL on the main table ``m``."""
    alias, dot, name = ref.rpartition(".")
    return f"{quote(alias) if dot else 'm'}.{quote(name)}"


def _text(ref: str) -> str:
    return f"CAST({_col(ref)} AS VARCHAR)"


def _transform(expr: str, step: str) -> str:
    if step == "trim":
        return f"trim({expr})"
    if step in ("upper", "lower"):
        return f"{step}({expr})"
    if step == "nfkc":
        return f"translate({expr}, {literal(_FULL)}, {literal(_HALF)})"
    if step == "digits":
        return f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    # squeeze: runs of white space → one space, then none between two Chinese characters (twice,
    # since a match consumes the character the next one needs: 林 秀 英).
    out = f"regexp_replace({expr}, '\\s+', ' ', 'g')"
    for _ in range(2):
        out = f"regexp_replace({out}, '(\\p{{Han}}) (\\p{{Han}})', '\\1\\2', 'g')"
    return out


@dataclass(frozen=True, slots=True)
class _Context:
    """What one entry's columns are compiled against, for one hospital."""

    mapping: SourceMapping
    entry: TableMapping
    hospital: str
    institution: str
    present: frozenset[str]  # the ODS tables that exist
    feeds: Mapping[str, Sequence[tuple[str, str]]]  # DWD table → (system, table) feeding it
    items: Mapping[str, str]  # lab item column → its join alias


def _source_text(c: ColumnMapping, ctx: _Context) -> str:
    """The column's value as text, before the typed steps."""
    if c.kind == "from":
        expr = _text(c.args[0])
    elif c.kind == "value":
        expr = literal(c.args[0])
    elif c.kind == "unit_of":
        expr = f"{quote(ctx.items[c.args[0]] + '_unit')}.unit"
    elif c.kind == "hospital":
        expr = literal(ctx.institution)
    elif c.kind == "id":
        prefix = f"{ctx.hospital}/{ctx.entry.source.system}/{ctx.entry.source.table}/"
        expr = f"({literal(prefix)} || {_text(c.args[0])})"
    elif c.kind == "ref":
        key = _text(c.args[0])
        if c.args[1].startswith("dwd:"):
            # Whichever tables feed that DWD table in this hospital (its systems may speak
            # other dialects than this mapping's).
            targets = [(sys, ".", table) for sys, table in ctx.feeds.get(c.args[1][4:], ())]
            if not targets:
                return "CAST(NULL AS VARCHAR)"
        else:
            targets = [t.partition(".") for t in c.args[1:]]
        addresses = [literal(f"{ctx.hospital}/{system}/{table}/") for system, _, table in targets]
        expr = f"({addresses[0]} || {key})"
        if len(targets) > 1:
            # One key space over several tables (a visit is outpatient or inpatient): the
            # first table holding the key, as its rows stand at this run.
            cases = [
                f"WHEN EXISTS (SELECT 1 FROM {ods_ref(name)} x WHERE x._local_key = {key}) "
                f"THEN {address} || {key}"
                for (system, _, table), address in zip(targets, addresses, strict=True)
                if (name := ods_table_name(ctx.hospital, system, table)) in ctx.present
            ]
            if cases:
                expr = f"(CASE {' '.join(cases)} ELSE {expr} END)"
    else:  # concat
        parts = ", ".join(_text(a) for a in c.args)
        expr = f"nullif(concat_ws({literal(c.sep)}, {parts}), '')"
    if c.split is not None:
        sep, part = c.split
        expr = f"nullif(split_part({expr}, {literal(sep)}, {part}), '')"
    for step in c.transforms:
        expr = _transform(expr, step)
    if c.null_if:
        values = ", ".join(literal(v) for v in c.null_if)
        expr = f"CASE WHEN {expr} IN ({values}) THEN NULL ELSE {expr} END"
    return expr


def _code_lookup(dialect: str, domain: str, expr: str) -> str:
    return (
        f"(SELECT c.standard_code FROM {GOV_SCHEMA}.code_map c WHERE c.dialect = "
        f"{literal(dialect)} AND c.domain = {literal(domain)} AND c.local_code = {expr})"
    )


def _lab_item(m: SourceMapping, column: str, items: Mapping[str, str]) -> str:
    """The standard lab item code in source ``column``: through the code table when it maps
    lab items (joined once per item column, ``items``: column → join alias), else as is."""
    local = _text(column)
    if "lab_items" not in m.code_table:
        return local
    return f"coalesce({quote(items[column])}.standard_code, {local})"


def _item_joins(m: SourceMapping, items: Mapping[str, str]) -> str:
    """LEFT JOINs giving, per lab item column, its standard item (``alias``) and that item's
    standard unit (``alias_unit``): joined once, not looked up per value."""
    out = []
    for column, alias in items.items():
        if "lab_items" in m.code_table:
            out.append(
                f"\n  LEFT JOIN (SELECT local_code, standard_code FROM {GOV_SCHEMA}.code_map "
                f"WHERE dialect = {literal(m.dialect)} AND domain = 'lab_items') AS "
                f"{quote(alias)} ON {quote(alias)}.local_code = {_text(column)}"
            )
        unit = quote(alias + "_unit")
        out.append(
            f"\n  LEFT JOIN {GOV_SCHEMA}.lab_item_unit AS {unit} ON {unit}.item = "
            f"{_lab_item(m, column, items)}"
        )
    return "".join(out)


_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)"
_UNSIGNED = r"([0-9]+(?:\.[0-9]+)?)"
_DASH = "[-~～—–]"
# Per end, the shapes of range text that give it, tried in order (group 1 is the number).
_RANGE_SHAPES = {
    "low": (
        rf"^\s*{_NUMBER}\s*{_DASH}\s*-?[0-9]+(?:\.[0-9]+)?\s*$",  # 3.9-6.1
        rf"^\s*[>≥]=?\s*{_NUMBER}\s*$",  # >60, ≥60
        rf"^\s*{_NUMBER}\s*{_DASH}\s*$",  # 38.7- (no upper end)
    ),
    "high": (
        rf"^\s*-?[0-9]+(?:\.[0-9]+)?\s*{_DASH}\s*{_NUMBER}\s*$",
        rf"^\s*[<≤]=?\s*{_NUMBER}\s*$",  # <5.2, ≤5.2
        rf"^\s*{_DASH}\s*{_UNSIGNED}\s*$",  # -150.6 (no lower end)
    ),
}


def _range_end(end: str, t: str) -> str:
    """The ``low`` or ``high`` end of a reference-range text as a number, or NULL when the text
    has no such end ("阴性"): "3.9-6.1" and "3.9~6.1" give both; "<5.2" and "-150.6" a high end
    only; ">60" and "38.7-" a low end only."""
    tries = ", ".join(
        f"nullif(regexp_extract({t}, {literal(shape)}, 1), '')" for shape in _RANGE_SHAPES[end]
    )
    return f"TRY_CAST(coalesce({tries}) AS DOUBLE)"


def _parsed(c: ColumnMapping, t: str) -> str:
    fmt = c.format or ""
    if fmt in ("epoch_ms", "epoch_s"):
        scale = 1000 if fmt == "epoch_ms" else 1_000_000
        ts = (
            f"(make_timestamp(TRY_CAST({t} AS BIGINT) * {scale})"
            f" + INTERVAL {CHINA_OFFSET_HOURS} HOUR)"
        )
    else:
        ts = f"try_strptime({t}, {literal(fmt)})"
    if c.parse == "date":
        return f"CAST({ts} AS DATE)"
    if c.parse == "time":
        return f"CAST({ts} AS TIME)"
    return ts


@dataclass(frozen=True, slots=True)
class _Compiled:
    text: str  # layer 1: the text value (named t_i)
    value: str  # layer 2: over t_i (and u_i, k_i): the stepped value
    error: str  # layer 3: over t_i, v_i: the reason or NULL
    unmapped: str | None  # layer 3: STRUCT or NULL
    extra: tuple[tuple[str, str], ...] = ()  # more layer-1 columns (unit, item)


def _compile_column(i: int, c: ColumnMapping, ctx: _Context) -> _Compiled:
    t = f"t{i}"
    text = _source_text(c, ctx)
    value, error, unmapped = t, "NULL", None
    extra: tuple[tuple[str, str], ...] = ()
    name = c.column
    if c.parse is not None:
        value = _parsed(c, t)
        error = (
            f"CASE WHEN {t} IS NOT NULL AND v{i} IS NULL THEN "
            f"{literal(f'{name}: not a {c.parse} in {c.format}: ')} || {t} END"
        )
    elif c.number:
        number = _range_end(c.range, t) if c.range else f"TRY_CAST({t} AS DOUBLE)"
        value = number
        error = (
            "CAST(NULL AS VARCHAR)"
            if c.lenient
            else f"CASE WHEN {t} IS NOT NULL AND TRY_CAST({t} AS DOUBLE) IS NULL THEN "
            f"{literal(f'{name}: not a number: ')} || {t} END"
        )
        if c.unit is not None:
            unit_col, item_col = c.unit
            item = _lab_item(ctx.mapping, item_col, ctx.items)
            extra = ((f"u{i}", f"trim({_text(unit_col)})"), (f"k{i}", item))
            factor = (
                f"(SELECT f.factor FROM {GOV_SCHEMA}.unit_factor f "
                f"WHERE f.item = k{i} AND f.unit = u{i})"
            )
            value = f"CASE WHEN u{i} IS NULL OR u{i} = '' THEN {value} ELSE {value} * {factor} END"
            error = (
                f"coalesce({error}, CASE WHEN v{i} IS NULL AND u{i} <> '' AND "
                f"{number} IS NOT NULL "
                f"THEN {literal(f'{name}: unknown unit for the item: ')} || u{i} || ' (' || "
                f"coalesce(k{i}, '?') || ')' END)"
            )
    elif c.code is not None:
        value = _code_lookup(ctx.mapping.dialect, c.code, t)
        error = (
            f"CASE WHEN {t} IS NOT NULL AND v{i} IS NULL THEN "
            f"{literal(f'{name}: unmapped {c.code} code: ')} || {t} END"
        )
        unmapped = (
            f"CASE WHEN {t} IS NOT NULL AND v{i} IS NULL THEN "
            f"{{'domain': {literal(c.code)}, 'code': {t}}} END"
        )
    return _Compiled(text, value, error, unmapped, extra)


def _typed(column: Column, v: str) -> tuple[str, str]:
    """The value cast to the column's DDL type, and the reason it is nulled (or NULL)."""
    sql_type = column_type(column.element)
    name = column.name
    cast = f"TRY_CAST({v} AS {sql_type})"
    reason = (
        f"CASE WHEN {v} IS NOT NULL AND {cast} IS NULL THEN "
        f"{literal(f'{name}: not a valid {sql_type}: ')} || CAST({v} AS VARCHAR) END"
    )
    check = column_check(column)
    if check is None:
        return cast, reason
    fits = check.replace(quote(name), f"CAST({v} AS VARCHAR)")
    bound = check.split()[-1]
    value = f"CASE WHEN {fits} THEN {cast} END"
    reason = (
        f"coalesce({reason}, CASE WHEN {v} IS NOT NULL AND NOT ({fits}) THEN "
        f"{literal(f'{name}: length must be {check.split()[-2]} {bound}: ')} || "
        f"CAST({v} AS VARCHAR) END)"
    )
    return value, reason


def _one_per_key(j: Join, ods_table: str) -> str:
    """The joined table's current rows, one per join key: the largest ``latest`` value (else
    the most recently updated row), so that a join never multiplies the main rows."""
    keys = ", ".join(f"CAST({quote(b)} AS VARCHAR)" for _, b in j.on)
    order = [] if j.latest is None else [f"{quote(j.latest)} DESC NULLS LAST"]
    order += ["_source_updated_at DESC NULLS LAST", "_local_key DESC"]
    return (
        f"(SELECT * EXCLUDE (_mf_rn) FROM (SELECT *, row_number() OVER (PARTITION BY {keys} "
        f"ORDER BY {', '.join(order)}) AS _mf_rn FROM {ods_ref(ods_table + CURRENT_SUFFIX)}) "
        "WHERE _mf_rn = 1)"
    )


def ods_columns_needed(tm: TableMapping) -> dict[str, set[str]]:
    """Source columns the entry reads, by alias (``m`` for the main table)."""
    out: dict[str, set[str]] = {"m": set()}
    for j in tm.joins:
        out[j.alias] = set()
    for c in tm.columns.values():
        for ref in c.source_columns:
            alias, dot, name = ref.rpartition(".")
            out[alias if dot else "m"].add(name)
    for j in tm.joins:
        for main_col, joined_col in j.on:
            out["m"].add(main_col)
            out[j.alias].add(joined_col)
        if j.latest is not None:
            out[j.alias].add(j.latest)
    out["m"].update(col for col, _ in tm.where)
    return out


def stage_sql(
    tm: TableMapping,
    mapping: SourceMapping,
    hospital: str,
    *,
    institution: str,
    changed: str,
    mapping_version: str,
    present: frozenset[str] = frozenset(),
    feeds: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> StageSql:
    """The staging ``SELECT`` of entry ``tm`` for ``hospital`` (see the module docstring).

    Args:
        tm: The mapping entry.
        mapping: Its mapping (dialect, code table).
        hospital: The hospital id (ODS table prefix, storage addresses).
        institution: The hospital's institution code (``hospital: true`` columns).
        changed: A SQL relation with one column ``_local_key``: the main keys to stage.
        mapping_version: Recorded in ``_mapping_version``.
        present: The ODS tables that exist (a ``ref`` over several tables looks a key up in
            those of them that do).
        feeds: DWD table → the (system, table) sources that feed it in this hospital, for
            ``ref: {dwd: …}``; a DWD table fed by none gives NULL.
    """
    table = dwd_model().tables[tm.dwd]
    main = ods_table_name(hospital, tm.source.system, tm.source.table)
    joined = tuple(ods_table_name(hospital, j.table.system, j.table.table) for j in tm.joins)
    item_columns = sorted(
        {c.unit[1] for c in tm.columns.values() if c.unit is not None}
        | {c.args[0] for c in tm.columns.values() if c.kind == "unit_of"}
    )
    items = {col: f"_item{j}" for j, col in enumerate(item_columns)}
    ctx = _Context(mapping, tm, hospital, institution, present, feeds or {}, items)
    compiled = {name: _compile_column(i, c, ctx) for i, (name, c) in enumerate(tm.columns.items())}
    index = {name: i for i, name in enumerate(tm.columns)}
    lineage = [
        f"{literal(hospital)} AS _source_hospital",
        f"{literal(tm.source.system)} AS _source_system",
        f"{literal(tm.source.table)} AS _source_table",
        "m._local_key AS _source_key",
        "CAST(m._source_updated_at AS TIMESTAMP) AS _source_updated_at",
        "m._batch_id AS _batch_id",
        "m._hash AS _ods_content_hash",
        f"{literal(mapping_version)} AS _mapping_version",
    ]
    layer1 = list(lineage)
    for name, comp in compiled.items():
        i = index[name]
        layer1.append(f"{comp.text} AS t{i}")
        layer1 += [f"{expr} AS {alias}" for alias, expr in comp.extra]
    joins = "".join(
        f"\n  LEFT JOIN {_one_per_key(j, name)} AS {quote(j.alias)} ON "
        + " AND ".join(f"{_text(a)} = {_text(f'{j.alias}.{b}')}" for a, b in j.on)
        for j, name in zip(tm.joins, joined, strict=True)
    ) + _item_joins(mapping, items)
    where = [f"m._local_key IN (SELECT _local_key FROM {changed})"]
    for col, values in tm.where:
        where.append(f"{_text(col)} IN ({', '.join(literal(v) for v in values)})")
    src = (
        f"SELECT {', '.join(layer1)}\n  FROM {ods_ref(main + CURRENT_SUFFIX)} AS m{joins}\n"
        f"  WHERE {' AND '.join(where)}"
    )
    layer2 = ["*"] + [f"{comp.value} AS v{index[name]}" for name, comp in compiled.items()]
    final = [
        "_source_hospital", "_source_system", "_source_table", "_source_key",
        "_source_updated_at", "_batch_id", "_ods_content_hash", "_mapping_version",
    ]  # fmt: skip
    reasons, missing, unmapped = [], [], []
    for column in table.columns:
        if column.lineage:
            continue
        if column.name in compiled:
            i = index[column.name]
            comp = compiled[column.name]
            value, type_reason = _typed(column, f"v{i}")
            reasons += [comp.error, type_reason]
            if comp.unmapped is not None:
                unmapped.append(comp.unmapped)
        else:
            value = f"CAST(NULL AS {column_type(column.element)})"
        final.append(f"{value} AS {quote(column.name)}")
        if column.required or column.name in table.primary_key:
            missing.append(f"CASE WHEN {value} IS NULL THEN {literal(column.name)} END")

    def listed(items: list[str], kind: str) -> str:
        if not items:
            return f"CAST([] AS {kind}[])"
        return f"list_filter([{', '.join(items)}], x -> x IS NOT NULL)"

    final.append(f"{listed(reasons, 'VARCHAR')} AS _reasons")
    final.append(f"{listed(missing, 'VARCHAR')} AS _missing")
    final.append(
        f"{listed(unmapped, 'STRUCT(domain VARCHAR, code VARCHAR)')} AS _unmapped"
        if unmapped
        else "CAST([] AS STRUCT(domain VARCHAR, code VARCHAR)[]) AS _unmapped"
    )
    sql = (
        f"WITH src AS (\n  {src}\n), val AS (\n  SELECT {', '.join(layer2)} FROM src\n)\n"
        f"SELECT {', '.join(final)}\nFROM val"
    )
    return StageSql(sql, main, joined)
