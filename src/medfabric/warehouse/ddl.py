"""DuckDB DDL of the DWD schema, generated from the standards model — never written by hand.

Pure functions returning SQL text; nothing here opens a connection.

Invariants:
- A column's SQL type and CHECK constraint come only from its data element's WS 363 type and
  format: S1/S2/S3 → VARCHAR with ``length(x) <= n`` (``A..n``, ``AN..n``, ``N..n``) or
  ``length(x) = n`` (``An``, ``ANn``, ``Nn``); N with decimals → DECIMAL(p,s); integer N →
  INTEGER up to 9 digits, BIGINT up to 18, DECIMAL(p,0) beyond; D → DATE, DT → TIMESTAMP,
  T → TIME, L → BOOLEAN, BY → BLOB.
- ``required`` → NOT NULL; the table's primary key → PRIMARY KEY. References are *not* emitted
  as FOREIGN KEY constraints: DuckDB forbids updating or deleting a referenced row, which the
  incremental, idempotent governance runs must do; referential conformance is a quality check.
  Each reference is stated in the column's comment instead.
- Comments (COMMENT ON TABLE / COLUMN) carry the Chinese and English names and the DE identifier.
- Output is deterministic (model file order), so a golden file can pin it byte for byte.
"""

from __future__ import annotations

import re

from medfabric.standards.elements import DataElement, resource_catalog
from medfabric.standards.model import Column, DwdModel, Table, dwd_model

SCHEMA = "dwd"

_STRING = re.compile(r"^(?:A|AN|N)(\.\.)?([1-9]\d*)$")
_NUMBER = re.compile(r"^N(?:\.\.)?([1-9]\d*)(?:,(\d+))?$")
_FIXED = {"D": "DATE", "DT": "TIMESTAMP", "T": "TIME", "L": "BOOLEAN", "BY": "BLOB"}
_MAX_DECIMAL = 38


class DdlError(ValueError):
    """A data element's type or format has no DuckDB mapping."""


def quote(identifier: str) -> str:
    """``identifier`` as a DuckDB quoted identifier (``order`` is a keyword)."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def qualified(table: Table) -> str:
    """The schema-qualified, quoted name of ``table``, e.g. ``dwd."order"``."""
    return f"{SCHEMA}.{quote(table.name)}"


def column_type(element: DataElement) -> str:
    """The DuckDB type of a column carrying ``element``.

    Raises:
        DdlError: the type or format is not a WS 363 one this mapping knows.

    Example: 检验结果数值 ``N..14,4`` → ``DECIMAL(14,4)``; 体温 ``N4,1`` → ``DECIMAL(4,1)``.
    """
    t, fmt = element.data_type, element.format
    if t in _FIXED:
        return _FIXED[t]
    if t in ("S1", "S2", "S3"):
        if _STRING.match(fmt) is None:
            raise DdlError(f"{element.identifier}: string format {fmt!r} not understood")
        return "VARCHAR"
    if t == "N":
        m = _NUMBER.match(fmt)
        if m is None:
            raise DdlError(f"{element.identifier}: numeric format {fmt!r} not understood")
        digits, decimals = int(m.group(1)), int(m.group(2) or 0)
        if digits > _MAX_DECIMAL:
            raise DdlError(f"{element.identifier}: {digits} digits exceed DECIMAL({_MAX_DECIMAL})")
        if decimals:
            return f"DECIMAL({digits},{decimals})"
        if digits <= 9:
            return "INTEGER"
        if digits <= 18:
            return "BIGINT"
        return f"DECIMAL({digits},0)"
    raise DdlError(f"{element.identifier}: unknown data type {t!r}")


def column_check(column: Column) -> str | None:
    """The CHECK expression bounding a string column's length by its format, or None."""
    if column.element.data_type not in ("S1", "S2", "S3"):
        return None
    m = _STRING.match(column.element.format)
    if m is None:
        return None
    op = "<=" if m.group(1) else "="
    return f"length({quote(column.name)}) {op} {m.group(2)}"


def _column_sql(column: Column) -> str:
    parts = [quote(column.name), column_type(column.element)]
    if column.required:
        parts.append("NOT NULL")
    check = column_check(column)
    if check is not None:
        parts.append(f"CHECK ({check})")
    return " ".join(parts)


def create_table_sql(table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one DWD table: columns in model order, then its key.

    Raises:
        DdlError: a column's element has a type or format without a DuckDB mapping.
    """
    lines = [_column_sql(c) for c in table.columns]
    lines.append(f"PRIMARY KEY ({', '.join(quote(k) for k in table.primary_key)})")
    body = ",\n".join(f"    {line}" for line in lines)
    return f"CREATE TABLE IF NOT EXISTS {qualified(table)} (\n{body}\n)"


def column_comment(column: Column) -> str:
    """The comment text of a column: names, identifier, and the reference it stands for."""
    e = column.element
    text = f"{e.name_zh} / {e.name_en} [{e.identifier}]"
    if column.references is not None:
        text += f" → {column.references[0]}.{column.references[1]}"
    return text


def comment_sql(table: Table) -> list[str]:
    """``COMMENT ON TABLE`` and one ``COMMENT ON COLUMN`` per column of ``table``."""
    cls = resource_catalog().get(table.catalog_class)
    table_text = f"{table.description} [{cls.code} {cls.name_zh}]"
    out = [f"COMMENT ON TABLE {qualified(table)} IS {literal(table_text)}"]
    for c in table.columns:
        target = f"{qualified(table)}.{quote(c.name)}"
        out.append(f"COMMENT ON COLUMN {target} IS {literal(column_comment(c))}")
    return out


def schema_sql(model: DwdModel | None = None) -> list[str]:
    """Every statement creating the DWD schema, in order; each runs on its own in DuckDB.

    Args:
        model: the model to render; the catalog's :func:`dwd_model` by default.
    """
    m = dwd_model() if model is None else model
    out = [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"]
    for table in m.tables.values():
        out.append(create_table_sql(table))
        out += comment_sql(table)
    return out


def schema_script(model: DwdModel | None = None) -> str:
    """:func:`schema_sql` as one script, one statement per paragraph (the golden-file form)."""
    return "".join(f"{stmt};\n\n" for stmt in schema_sql(model)).rstrip("\n") + "\n"
