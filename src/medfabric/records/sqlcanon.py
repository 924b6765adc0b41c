"""Canonical bytes and content hashes computed in DuckDB SQL (docs/canonical.md §15).

The builders here return SQL text only; they never run it (the engine does). For each row of a
batch table — the meta columns of :data:`META_COLUMNS` followed by typed payload columns — the
expression of :func:`record_sql` is the row's canonical bytes as a VARCHAR and that of
:func:`hash_sql` its content hash, byte for byte what :func:`~medfabric.records.canonical_bytes`
and :func:`~medfabric.records.content_hash` give for the same values in Python.

Invariants:

- The SQL targets DuckDB 1.4 and depends on no session setting: floats go through
  ``DOUBLE::VARCHAR`` (the same text as Python's ``repr``; FLOAT is widened to DOUBLE first),
  TIMESTAMPTZ through ``timezone('UTC', c)`` (the session ``TimeZone`` never matters), strings
  through ``to_json`` with a correct slow path for the nine control characters whose escapes
  DuckDB writes in uppercase hex.
- A value the format refuses (a NaN or infinite float, a date or datetime outside years
  0001-9999, a NULL or empty local key, an unknown op, a NULL ``_has_payload``) makes the query
  fail through DuckDB's ``error()``, naming the column and the row's ``_seq`` — never the value,
  which is patient data.
- Names (payload columns, hospital, table) are validated and quoted here; nothing passed in is
  spliced into SQL unquoted. The payload members are sorted by code point in Python, so the
  SQL writes them in canonical order.
- Imports the standard library and ``records.canonical`` only (no DuckDB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias, get_args

from medfabric.records.canonical import (
    FORMAT_VERSION,
    MAX_DIGITS,
    SYSTEMS,
    RecordError,
    _check_text,
)
from medfabric.records.canonical import _string as _json_string

__all__ = [
    "COLUMN_KINDS",
    "KEY_KINDS",
    "META_COLUMNS",
    "ColumnKind",
    "hash_sql",
    "kind_of_duckdb_type",
    "local_key_sql",
    "local_key_text",
    "record_sql",
]

ColumnKind: TypeAlias = Literal[
    "string",
    "integer",
    "float",
    "decimal",
    "boolean",
    "bytes",
    "date",
    "datetime",
    "datetime_tz",
]
COLUMN_KINDS: Final[tuple[ColumnKind, ...]] = get_args(ColumnKind)
"""Every payload column kind, in the order of docs/canonical.md §15."""

KEY_KINDS: Final[frozenset[ColumnKind]] = frozenset({"string", "integer"})
"""The kinds a local-key column may have."""

META_COLUMNS: Final = (
    "_seq",
    "_local_key",
    "_op",
    "_has_payload",
    "_source_updated_at",
    "_extracted_at",
    "_hash",
)
"""The batch table's meta columns, in order; payload columns follow them."""

# --- DuckDB type names -------------------------------------------------------------------------

_SIMPLE_TYPES: Final[dict[str, ColumnKind]] = {
    **dict.fromkeys(("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR", "NVARCHAR"), "string"),
    **dict.fromkeys(
        (
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
            "UHUGEINT",
            "INT",
            "INT1",
            "INT2",
            "INT4",
            "INT8",
            "INT16",
            "SHORT",
            "LONG",
            "SIGNED",
        ),
        "integer",
    ),
    **dict.fromkeys(("DOUBLE", "FLOAT8", "FLOAT", "FLOAT4", "REAL"), "float"),
    **dict.fromkeys(("BOOLEAN", "BOOL", "LOGICAL"), "boolean"),
    **dict.fromkeys(("BLOB", "BYTEA", "BINARY", "VARBINARY"), "bytes"),
    "DATE": "date",
    **dict.fromkeys(
        ("TIMESTAMP", "DATETIME", "TIMESTAMP_US", "TIMESTAMP_MS", "TIMESTAMP_S"), "datetime"
    ),
    **dict.fromkeys(("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"), "datetime_tz"),
}
_DECIMAL_TYPE: Final = re.compile(r"(?:DECIMAL|NUMERIC)(?:\(\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*)?\))?")
_VARCHAR_TYPE: Final = re.compile(r"(?:VARCHAR|CHAR|BPCHAR|NVARCHAR)\(\s*[0-9]+\s*\)")
_MAX_DECIMAL_PRECISION: Final = 38


def kind_of_duckdb_type(type_name: str) -> ColumnKind:
    """The payload kind of a DuckDB column type, as DuckDB names it (``DESCRIBE``, ``typeof``).

    Args:
        type_name: e.g. ``"BIGINT"``, ``"DECIMAL(18,3)"``, ``"TIMESTAMP WITH TIME ZONE"``;
            case and surrounding blanks do not matter.

    Returns:
        The :data:`ColumnKind`: VARCHAR → ``string``; the signed and unsigned integer types up
        to HUGEINT → ``integer``; DOUBLE and FLOAT → ``float``; DECIMAL(p,s) with p ≤ 38 →
        ``decimal``; BOOLEAN → ``boolean``; BLOB → ``bytes``; DATE → ``date``; TIMESTAMP
        (also _S, _MS) → ``datetime``; TIMESTAMPTZ → ``datetime_tz``.

    Raises:
        RecordError: the type has no canonical value kind (TIME, INTERVAL, UUID, TIMESTAMP_NS,
            LIST, STRUCT, MAP, JSON, ENUM, BIT, DECIMAL with precision above 38, …).
    """
    if not isinstance(type_name, str):
        raise RecordError(f"DuckDB type name must be str, not {type(type_name).__name__}")
    name = " ".join(type_name.upper().split())
    kind = _SIMPLE_TYPES.get(name)
    if kind is not None:
        return kind
    if _VARCHAR_TYPE.fullmatch(name):
        return "string"
    match = _DECIMAL_TYPE.fullmatch(name)
    if match is not None:
        precision = int(match[1] or 18)
        scale = int(match[2] or 0) if match[1] else 3
        if 1 <= precision <= _MAX_DECIMAL_PRECISION and scale <= precision:
            return "decimal"
    raise RecordError(
        f"DuckDB type {type_name!r} has no canonical value kind (supported: VARCHAR, integers, "
        "DOUBLE/FLOAT, DECIMAL(p≤38,s), BOOLEAN, BLOB, DATE, TIMESTAMP, TIMESTAMPTZ)"
    )


# --- quoting -----------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    # DuckDB's standard strings take backslashes literally; only the quote is doubled.
    return "'" + text.replace("'", "''") + "'"


def _check_name(name: object, what: str) -> str:
    text = _check_text(name, what)
    if "\x00" in text:
        raise RecordError(f"{what} {text!r} contains U+0000, which SQL text cannot carry")
    return text


def _fail(message: str) -> str:
    """``error()`` naming the row by ``_seq``; the message must not contain values."""
    text = sql_literal("canonical record: " + message + " (row _seq ")
    return f"error({text} || CAST(_seq AS VARCHAR) || ')')"


# --- values ------------------------------------------------------------------------------------

# Performance (1M rows × 16 columns must take about a second on 2 cores): one concat() per
# record rather than a chain of ||, which copies the growing prefix at every step; to_json for
# strings, with a slow path only for rows that need it; the UTC instant of a TIMESTAMPTZ read
# from its epoch (ICU's timezone() is five times slower and gives the same instant).

_SHORT_ESCAPES: Final = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}


def _manual_json_string(col: str) -> str:
    # "\" is replaced first, so the backslashes that later replacements add stay single.
    expr = f"replace(replace({col}, '\\', '\\\\'), '\"', '\\\"')"
    for code in range(0x20):
        escape = _SHORT_ESCAPES.get(code, f"\\u{code:04x}")
        expr = f"replace({expr}, chr({code}), {sql_literal(escape)})"
    return f"concat('\"', {expr}, '\"')"


def _string_sql(col: str) -> str:
    """A non-NULL VARCHAR ``col`` as a canonical JSON string."""
    # DuckDB's to_json escapes as the format does, except that it writes \u000B \u000E \u000F
    # \u001A-\u001F with uppercase hex. All those start with \u00; literal text such as a
    # backslash followed by u0041 matches too and takes the (correct, slower) manual path.
    return (
        f"CASE WHEN contains(to_json({col})::VARCHAR, '\\u00') "
        f"THEN {_manual_json_string(col)} ELSE to_json({col})::VARCHAR END"
    )


def _datetime_sql(ts: str, suffix: str, where: str) -> str:
    """The tagged value of a naive TIMESTAMP expression ``ts`` (non-NULL), years 0001-9999."""
    # The tag is written by strftime itself (no concat); %f always gives six digits, so a
    # whole second takes the format without it. microsecond() counts from the minute.
    head, tail = '{"$datetime":"%Y-%m-%dT%H:%M:%S', suffix + '"}'
    return (
        f"CASE WHEN {ts} NOT BETWEEN TIMESTAMP '0001-01-01 00:00:00' "
        f"AND TIMESTAMP '9999-12-31 23:59:59.999999' "
        f"THEN {_fail(where + ': datetime outside years 0001-9999')} "
        f"WHEN microsecond({ts}) % 1000000 = 0 THEN strftime({ts}, {sql_literal(head + tail)}) "
        f"ELSE strftime({ts}, {sql_literal(head + '.%f' + tail)}) END"
    )


def _value_sql(kind: ColumnKind, col: str, where: str) -> str:
    """A VARCHAR expression: the canonical JSON value of column ``col`` of ``kind``."""
    if kind == "string":
        body = _string_sql(col)
    elif kind == "integer":
        body = f"CAST({col} AS VARCHAR)"
    elif kind == "float":
        # FLOAT is widened first: DOUBLE::VARCHAR is Python's repr of the same double.
        body = (
            f"CASE WHEN isfinite({col}) "
            f"THEN concat('{{\"$float\":\"', CAST(CAST({col} AS DOUBLE) AS VARCHAR), '\"}}') "
            f"ELSE {_fail(where + ': float is NaN or infinite')} END"
        )
    elif kind == "decimal":
        # DuckDB writes the column's fixed scale ("1.50", "0.00"); §4.4 wants "1.5", "0". A
        # whole value is printed as an integer; any other has a non-zero fractional digit, so
        # stripping trailing zeros cannot reach the ".". DECIMALs are scaled integers: no -0.
        body = (
            f'concat(\'{{"$decimal":"\', CASE WHEN {col} = trunc({col}) '
            f"THEN CAST(CAST({col} AS HUGEINT) AS VARCHAR) "
            f"ELSE rtrim(CAST({col} AS VARCHAR), '0') END, '\"}}')"
        )
    elif kind == "boolean":
        body = f"CASE WHEN {col} THEN 'true' ELSE 'false' END"
    elif kind == "bytes":
        body = f"concat('{{\"$bytes\":\"', base64({col}), '\"}}')"
    elif kind == "date":
        body = (
            f"CASE WHEN {col} BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' "
            f"THEN concat('{{\"$date\":\"', CAST({col} AS VARCHAR), '\"}}') "
            f"ELSE {_fail(where + ': date outside years 0001-9999')} END"
        )
    elif kind == "datetime":
        body = _datetime_sql(f"CAST({col} AS TIMESTAMP)", "", where)
    elif kind == "datetime_tz":
        # epoch_us of a TIMESTAMPTZ is its instant; the session TimeZone plays no part.
        body = _datetime_sql(f"make_timestamp(epoch_us({col}))", "Z", where)
    else:
        raise RecordError(f"{where}: unknown column kind {kind!r}; expected one of {COLUMN_KINDS}")
    return f"CASE WHEN {col} IS NULL THEN 'null' ELSE {body} END"


# --- records -----------------------------------------------------------------------------------


def _check_columns(
    columns: Sequence[tuple[str, ColumnKind]], what: str, kinds: Sequence[ColumnKind]
) -> list[tuple[str, ColumnKind]]:
    if isinstance(columns, str | bytes) or not isinstance(columns, Sequence):
        raise RecordError(f"{what} must be a sequence of (name, kind) pairs")
    checked: list[tuple[str, ColumnKind]] = []
    seen: set[str] = set()
    for entry in columns:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise RecordError(f"{what}: entry {entry!r} is not a (name, kind) pair")
        name, kind = entry
        name = _check_name(name, f"{what}: column name")
        # DuckDB resolves identifiers, quoted ones included, without regard to ASCII case.
        folded = name.lower()
        if folded in META_COLUMNS:
            raise RecordError(f"{what}: column {name!r} has the name of a meta column")
        if folded in seen:
            raise RecordError(f"{what}: column {name!r} appears twice (ignoring case)")
        if kind not in kinds:
            raise RecordError(
                f"{what}: column {name!r} has kind {kind!r}; expected one of {tuple(kinds)}"
            )
        seen.add(folded)
        checked.append((name, kind))
    return checked


def record_sql(
    *,
    hospital_id: str,
    system: str,
    table: str,
    columns: Sequence[tuple[str, ColumnKind]],
    updated_kind: ColumnKind = "datetime",
) -> str:
    """A DuckDB expression (VARCHAR): each batch row's canonical bytes (docs/canonical.md).

    The expression reads the meta columns ``_seq``, ``_local_key``, ``_op``, ``_has_payload``
    and ``_source_updated_at`` and the payload ``columns`` by name, unqualified. A row with
    ``_has_payload`` false (a hard delete, ``_op = 'delete'``) has the payload ``{}``; every
    other row has one member per column, NULL written as ``null``.

    Args:
        hospital_id: the producing hospital (non-empty).
        system: one of ``HIS``, ``LIS``, ``PACS``, ``EMR``.
        table: the source table as the source names it (non-empty).
        columns: the payload columns as (name, kind), in any order; names unique, non-empty,
            not a meta column name.
        updated_kind: the kind of ``_source_updated_at``: ``datetime`` for a naive TIMESTAMP
            (the source's wall clock) or ``datetime_tz`` for a TIMESTAMPTZ (change times with
            a known offset, such as epoch columns; written in UTC with ``Z``).

    Returns:
        SQL text such that ``SELECT <it> FROM batch`` gives, per row, the UTF-8 text of
        ``canonical_bytes`` of the corresponding :class:`~medfabric.records.CanonicalRecord`.
        Evaluating it fails with a DuckDB error naming the column and ``_seq`` when a row holds
        a value the format refuses.

    Raises:
        RecordError: an argument is invalid (unknown system or kind, empty or duplicate name).

    Example:
        >>> sql = record_sql(hospital_id="H01", system="LIS", table="JY_JG",
        ...                  columns=[("RESULT", "decimal")])
        >>> sql.startswith("concat('{")
        True
    """
    _check_text(hospital_id, "hospital_id")
    if type(system) is not str or system not in SYSTEMS:
        raise RecordError(
            f"unknown system {system!r}; expected one of {', '.join(sorted(SYSTEMS))}"
        )
    _check_text(table, "table")
    checked = _check_columns(columns, "payload columns", COLUMN_KINDS)
    checked.sort(key=lambda entry: entry[0])  # code-point order, as the format sorts keys

    pieces: list[str] = []
    for i, (name, kind) in enumerate(checked):
        key = ("{" if i == 0 else ",") + _json_string(name) + ":"
        pieces += [
            sql_literal(key),
            _value_sql(kind, quote_ident(name), f"payload column {name!r}"),
        ]
    payload = f"concat({', '.join(pieces)}, '}}')" if pieces else "'{}'"

    local_key = (
        "CASE WHEN _local_key IS NULL OR _local_key = '' "
        f"THEN {_fail('_local_key is NULL or empty')} ELSE {_string_sql('_local_key')} END"
    )
    op = (
        """CASE _op WHEN 'upsert' THEN '"upsert"' WHEN 'delete' THEN '"delete"' """
        f"ELSE {_fail('_op is not upsert or delete')} END"
    )
    has_payload = (
        f"CASE WHEN _has_payload THEN {payload} "
        "WHEN NOT _has_payload AND _op = 'delete' THEN '{}' "
        f"ELSE {_fail('_has_payload is NULL, or false for an upsert')} END"
    )
    if updated_kind not in ("datetime", "datetime_tz"):
        raise RecordError(f"updated_kind must be datetime or datetime_tz, not {updated_kind!r}")
    updated = _value_sql(updated_kind, "_source_updated_at", "_source_updated_at")
    head = '{"hospital_id":' + _json_string(hospital_id) + ',"local_key":'
    tail = (
        ',"system":'
        + _json_string(system)
        + ',"table":'
        + _json_string(table)
        + f',"v":{FORMAT_VERSION}}}'
    )
    parts = [
        sql_literal(head),
        local_key,
        """',"op":'""",
        op,
        """',"payload":'""",
        has_payload,
        """',"source_updated_at":'""",
        updated,
        sql_literal(tail),
    ]
    return "concat(" + ", ".join(parts) + ")"


def hash_sql(
    *,
    hospital_id: str,
    system: str,
    table: str,
    columns: Sequence[tuple[str, ColumnKind]],
    updated_kind: ColumnKind = "datetime",
) -> str:
    """A DuckDB expression (VARCHAR): each row's content hash, 64 lowercase hex digits.

    ``sha256`` of :func:`record_sql` with the same arguments (hashing the VARCHAR's UTF-8
    bytes); the same contract and errors.
    """
    record = record_sql(
        hospital_id=hospital_id,
        system=system,
        table=table,
        columns=columns,
        updated_kind=updated_kind,
    )
    return f"sha256({record})"


# --- local keys --------------------------------------------------------------------------------


def local_key_sql(key_columns: Sequence[tuple[str, ColumnKind]]) -> str:
    """A DuckDB expression (VARCHAR): a row's ``_local_key`` from its key columns.

    One column: its text (an integer as decimal digits, a string as is). Several columns: a
    JSON array of the parts' texts, each a canonical JSON string (``["H01","42"]``). The twin
    of :func:`local_key_text`.

    Args:
        key_columns: (name, kind) in key order, kinds ``string`` or ``integer``.

    Returns:
        SQL text; evaluating it fails with a DuckDB error naming the column and ``_seq``
        when a key part is NULL, or a single string key is empty.

    Raises:
        RecordError: no key column, a duplicate or empty name, a kind other than string or
            integer.
    """
    checked = _check_columns(key_columns, "key columns", ("string", "integer"))
    if not checked:
        raise RecordError("key columns: at least one column is needed")
    if len(checked) == 1:
        name, kind = checked[0]
        col = quote_ident(name)
        if kind == "integer":
            return (
                f"CASE WHEN {col} IS NULL THEN {_fail(f'key column {name!r} is NULL')} "
                f"ELSE CAST({col} AS VARCHAR) END"
            )
        return (
            f"CASE WHEN {col} IS NULL OR {col} = '' "
            f"THEN {_fail(f'key column {name!r} is NULL or empty')} ELSE {col} END"
        )
    parts: list[str] = []
    for name, kind in checked:
        col = quote_ident(name)
        text = (
            f"concat('\"', CAST({col} AS VARCHAR), '\"')" if kind == "integer" else _string_sql(col)
        )
        parts.append(
            f"CASE WHEN {col} IS NULL THEN {_fail(f'key column {name!r} is NULL')} ELSE {text} END"
        )
    return "concat('[', " + ", ',', ".join(parts) + ", ']')"


def local_key_text(values: Sequence[str | int]) -> str:
    """The ``local_key`` text of a row whose key columns hold ``values`` (in key order).

    One part: its text (``42`` → ``"42"``, ``"P1"`` → ``"P1"``). Several parts: a JSON array
    of their texts, each a canonical JSON string, no whitespace: ``("H01", 42)`` →
    ``'["H01","42"]'``. The Python twin of :func:`local_key_sql`.

    Args:
        values: the key parts, each exactly ``int`` or ``str`` (not ``bool``).

    Returns:
        The non-empty key text.

    Raises:
        RecordError: no part, a part of another type, an integer beyond the digit limit, a
            lone surrogate, or a single empty string.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise RecordError("local key needs a non-empty sequence of key parts")
    texts: list[str] = []
    for i, value in enumerate(values):
        if type(value) is int:
            if not -(10**MAX_DIGITS) < value < 10**MAX_DIGITS:
                raise RecordError(f"local key part {i}: int has more than {MAX_DIGITS} digits")
            texts.append(str(value))
        elif type(value) is str:
            texts.append(_check_text(value, f"local key part {i}", allow_empty=True))
        else:
            raise RecordError(f"local key part {i} must be int or str, not {type(value).__name__}")
    if len(texts) == 1:
        if not texts[0]:
            raise RecordError("local key part 0 must not be empty")
        return texts[0]
    return "[" + ",".join(_json_string(text) for text in texts) + "]"
