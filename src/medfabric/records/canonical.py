"""The canonical record and its canonical serialization, format version 1 (docs/canonical.md).

A :class:`CanonicalRecord` is one extracted source row. Its canonical bytes are the one byte
string that a hospital's gateway, the region and any verifier compute for it; their SHA-256 is
the record's content hash, which the gateway notarizes. ``tests/data/canonical_golden.json``
pins the bytes; changing them for any record is a new format version, never an edit.

Invariants:
- A record that exists is valid: construction encodes it (that is the validation), so
  :func:`canonical_bytes` and :func:`content_hash` never fail. Errors are :class:`RecordError`
  and name the field or payload column, never a payload value (values are patient data).
- The bytes are a pure function of ``hospital_id, system, table, local_key, op,
  source_updated_at, payload`` and the format version. ``extracted_at`` is not hashed, so
  re-extracting an unchanged row gives the same hash; the order of the payload mapping does
  not matter.
- One record, one encoding: :func:`parse_canonical` accepts exactly the byte strings
  :func:`canonical_bytes` produces — it decodes, re-encodes and compares bytes.
- Types are preserved: ``1``, ``True``, ``1.0``, ``Decimal("1")``, ``"1"`` and ``b"1"`` encode
  differently. Only the exact types of :data:`Value` are accepted, not subclasses
  (``numpy.float64``, ``IntEnum``, ``str`` subclasses), because a subclass may format itself
  differently from its base.
- Nothing depends on process settings: decimals are normalized without a decimal context,
  floats use ``repr`` (locale-free), integers and decimals are bounded by :data:`MAX_DIGITS`
  (below every ``int`` string-conversion limit Python's default allows).
- Records compare equal exactly when their canonical bytes and ``extracted_at`` are equal:
  ``Decimal("1.50")`` and ``Decimal("1.5")`` make equal records, ``1`` and ``True`` do not.
- Text is hashed as Unicode written in UTF-8; source bytes in GBK or GB18030 are decoded
  strictly by :func:`decode_source_text` before a record is built. Imports only the standard
  library.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeAlias

__all__ = [
    "FORMAT_VERSION",
    "MAX_DIGITS",
    "OPS",
    "SOURCE_ENCODINGS",
    "SYSTEMS",
    "CanonicalRecord",
    "RecordError",
    "Value",
    "canonical_bytes",
    "content_hash",
    "decode_source_text",
    "from_dict",
    "parse_canonical",
    "to_dict",
]

FORMAT_VERSION: Final = 1
SYSTEMS: Final = frozenset({"HIS", "LIS", "PACS", "EMR"})
OPS: Final = frozenset({"upsert", "delete"})
# Integers and plain-form decimals have at most this many digits. Far above any database
# numeric type in use, and below Python's default int<->str limit (4300), so every process
# can encode every valid record; it also bounds the work an untrusted input can cause.
MAX_DIGITS: Final = 1000
# codecs' canonical names; aliases such as "cp936" or "UTF8" resolve to these.
SOURCE_ENCODINGS: Final = ("gbk", "gb18030", "utf-8")

Value: TypeAlias = bool | int | float | Decimal | str | bytes | date | datetime | None


class RecordError(ValueError):
    """A record, a payload value or a byte string that the canonical format does not accept."""


# --- encoding -------------------------------------------------------------------------------

# The only escapes: JSON's short forms where they exist, \u00xx (lowercase) for the other
# C0 controls. Everything else, including U+007F, U+2028 and all non-ASCII, is written as is.
_ESCAPES: Final[dict[int, str]] = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}
_INT_BOUND: Final = 10**MAX_DIGITS


def _string(s: str) -> str:
    return '"' + s.translate(_ESCAPES) + '"'


def _check_text(value: object, what: str, *, allow_empty: bool = False) -> str:
    if type(value) is not str:
        raise RecordError(f"{what} must be str, not {_type_name(value)}")
    if not value and not allow_empty:
        raise RecordError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        # A lone surrogate (e.g. from errors="surrogateescape") has no UTF-8 form.
        raise RecordError(
            f"{what} holds a lone surrogate U+{ord(value[e.start]):04X} at index {e.start}, "
            "which has no UTF-8 form"
        ) from None
    return value


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _enc_int(v: int) -> str:
    if not -_INT_BOUND < v < _INT_BOUND:
        raise RecordError(f"int has more than {MAX_DIGITS} digits")
    return str(v)


def _enc_float(v: float) -> str:
    if not math.isfinite(v):
        raise RecordError(f"float {v!r} is not allowed (only finite floats)")
    return '{"$float":"' + repr(v) + '"}'


def _decimal_plain(v: Decimal) -> str:
    """``v`` in plain notation: no exponent, no trailing fractional zeros, no "-0"."""
    if not v.is_finite():
        raise RecordError(f"Decimal {v} is not allowed (only finite decimals)")
    sign, digit_tuple, exp = v.as_tuple()
    assert isinstance(exp, int)  # finite decimals have an integer exponent
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    significant = digits.rstrip("0")
    exp += len(digits) - len(significant)
    point = len(significant) + exp  # digits before the decimal point
    width = point if exp >= 0 else len(significant) + max(0, -point) + (point <= 0)
    if width > MAX_DIGITS:
        raise RecordError(f"Decimal has more than {MAX_DIGITS} digits in plain notation")
    if exp >= 0:
        body = significant + "0" * exp
    elif point > 0:
        body = significant[:point] + "." + significant[point:]
    else:
        body = "0." + "0" * -point + significant
    return "-" + body if sign else body


def _enc_decimal(v: Decimal) -> str:
    return '{"$decimal":"' + _decimal_plain(v) + '"}'


def _enc_bytes(v: bytes) -> str:
    return '{"$bytes":"' + base64.b64encode(v).decode("ascii") + '"}'


def _date_text(v: date) -> str:
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}"


def _enc_date(v: date) -> str:
    return '{"$date":"' + _date_text(v) + '"}'


def _datetime_text(v: datetime) -> str:
    offset = v.utcoffset()
    if offset is not None:
        try:
            v = v.replace(tzinfo=None) - offset
        except OverflowError:
            raise RecordError("aware datetime falls outside years 1-9999 in UTC") from None
    text = f"{_date_text(v)}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        text += f".{v.microsecond:06d}"
    return text + "Z" if offset is not None else text


def _enc_datetime(v: datetime) -> str:
    return '{"$datetime":"' + _datetime_text(v) + '"}'


def _enc_none(v: None) -> str:
    return "null"


def _enc_bool(v: bool) -> str:
    return "true" if v else "false"


def _enc_str(v: str) -> str:
    return _string(_check_text(v, "str value", allow_empty=True))


# Keyed by exact type: bool is an int and datetime a date, and subclasses are refused.
_ENCODERS: Final[dict[type, Callable[[Any], str]]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    Decimal: _enc_decimal,
    str: _enc_str,
    bytes: _enc_bytes,
    date: _enc_date,
    datetime: _enc_datetime,
}


def _encode_value(value: object) -> str:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise RecordError(
            f"unsupported value type {_type_name(value)} (expected None, bool, int, float, "
            "Decimal, str, bytes, date or datetime, exactly — not a subclass)"
        )
    return encoder(value)


def _encode(record: CanonicalRecord, where: str) -> bytes:
    entries: list[tuple[str, str]] = []
    for name, value in record.payload.items():
        column = _check_text(name, f"{where}: payload column name {name!r}")
        try:
            entries.append((column, _string(column) + ":" + _encode_value(value)))
        except RecordError as e:
            raise RecordError(f"{where}: payload column {column!r}: {e}") from None
    # Python orders str by code point, which is the order the format specifies.
    entries.sort(key=lambda entry: entry[0])
    source_updated_at = record.source_updated_at
    try:
        updated = "null" if source_updated_at is None else _enc_datetime(source_updated_at)
    except RecordError as e:
        raise RecordError(f"{where}: source_updated_at: {e}") from None
    top = sorted(
        [
            ("hospital_id", _string(record.hospital_id)),
            ("local_key", _string(record.local_key)),
            ("op", _string(record.op)),
            ("payload", "{" + ",".join(text for _, text in entries) + "}"),
            ("source_updated_at", updated),
            ("system", _string(record.system)),
            ("table", _string(record.table)),
            ("v", str(FORMAT_VERSION)),
        ]
    )
    return ("{" + ",".join(f'"{key}":{text}' for key, text in top) + "}").encode("utf-8")


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CanonicalRecord:
    """One extracted source row, validated; see docs/canonical.md.

    Args:
        hospital_id: the producing hospital, non-empty.
        system: one of :data:`SYSTEMS` ("HIS", "LIS", "PACS", "EMR").
        table: the source table as the source names it, non-empty.
        local_key: the row's key in that table, as text, non-empty.
        op: "upsert" or "delete".
        source_updated_at: the row's change time in the source, if it has one (hashed).
        extracted_at: when the gateway read the row (not hashed).
        payload: column name → value of an exact :data:`Value` type; copied and frozen.

    Raises:
        RecordError: naming the field or payload column that is not acceptable: an unknown
            system or op, an empty or non-str id, a non-str or empty column name, an
            unsupported value type, a NaN or infinite float or Decimal, a number beyond
            :data:`MAX_DIGITS`, a lone surrogate in any text, an aware datetime outside years
            1-9999 in UTC, or timestamps that are not ``datetime``.

    Records are equal when their canonical bytes and ``extracted_at`` are equal.
    """

    hospital_id: str
    system: str
    table: str
    local_key: str
    op: str
    source_updated_at: datetime | None
    extracted_at: datetime
    payload: Mapping[str, Value]
    _canonical: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_text(self.hospital_id, "hospital_id")
        if type(self.system) is not str or self.system not in SYSTEMS:
            raise RecordError(
                f"unknown system {self.system!r}; expected one of {', '.join(sorted(SYSTEMS))}"
            )
        _check_text(self.table, "table")
        _check_text(self.local_key, "local_key")
        where = f"{self.hospital_id}/{self.system}/{self.table}/{self.local_key}"
        if type(self.op) is not str or self.op not in OPS:
            raise RecordError(f"{where}: unknown op {self.op!r}; expected delete or upsert")
        if self.source_updated_at is not None and type(self.source_updated_at) is not datetime:
            raise RecordError(
                f"{where}: source_updated_at must be a datetime or None, "
                f"not {_type_name(self.source_updated_at)}"
            )
        if type(self.extracted_at) is not datetime:
            raise RecordError(
                f"{where}: extracted_at must be a datetime, not {_type_name(self.extracted_at)}"
            )
        if not isinstance(self.payload, Mapping):
            raise RecordError(f"{where}: payload must be a mapping, not {_type_name(self.payload)}")
        # Copy so that later changes to the caller's dict cannot change a validated record.
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))
        object.__setattr__(self, "_canonical", _encode(self, where))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CanonicalRecord):
            return NotImplemented
        return self._canonical == other._canonical and self.extracted_at == other.extracted_at

    def __hash__(self) -> int:
        return hash((self._canonical, self.extracted_at))


def canonical_bytes(record: CanonicalRecord) -> bytes:
    """The canonical serialization of ``record`` (format version 1).

    Args:
        record: a record (valid by construction).

    Returns:
        UTF-8 JSON with sorted keys and no whitespace, covering every field but
        ``extracted_at``, e.g. ``b'{"hospital_id":"H01","local_key":"1","op":"delete",
        "payload":{},"source_updated_at":null,"system":"LIS","table":"JY_JG","v":1}'``
        (one line).
    """
    return record._canonical


def content_hash(record: CanonicalRecord) -> str:
    """The record's content hash: SHA-256 of :func:`canonical_bytes`, lowercase hex.

    Args:
        record: a record (valid by construction).

    Returns:
        64 lowercase hexadecimal characters.
    """
    return hashlib.sha256(record._canonical).hexdigest()


# --- parsing --------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(
    {"hospital_id", "local_key", "op", "payload", "source_updated_at", "system", "table", "v"}
)
# ASCII digits spelled out: \d would also match other scripts' digits.
_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")
_BASE64_RE: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DATE_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{6}))?(Z?)"
)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RecordError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _bare_float(text: str) -> float:
    raise RecordError(f"bare JSON number {text[:20]!r}: floats are written as {{'$float': ...}}")


def _bare_constant(text: str) -> float:
    raise RecordError(f"{text} is not JSON and not allowed")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise RecordError(f"integer has more than {MAX_DIGITS} digits")
    return int(text)


def _date_from(match: re.Match[str]) -> date:
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as e:
        raise RecordError(f"no such date: {e}") from None


def _datetime_from(text: str) -> datetime:
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        raise RecordError(f"$datetime {text!r} is not YYYY-MM-DDTHH:MM:SS[.ffffff][Z]")
    day = _date_from(match)
    try:
        return datetime(
            day.year,
            day.month,
            day.day,
            int(match[4]),
            int(match[5]),
            int(match[6]),
            int(match[7] or 0),
            tzinfo=UTC if match[8] else None,
        )
    except ValueError as e:
        raise RecordError(f"no such time: {e}") from None


def _tagged_value(tag: str, text: str) -> Value:
    """Decode one tagged value; its text must already be the canonical spelling."""
    value: Value
    if tag == "$float":
        try:
            value = float(text)
        except ValueError:
            raise RecordError(f"$float {text!r} is not a number") from None
        canonical = repr(value)
    elif tag == "$decimal":
        if _DECIMAL_RE.fullmatch(text) is None:
            raise RecordError(f"$decimal {text!r} is not a plain decimal")
        value = Decimal(text)
        canonical = _decimal_plain(value)
    elif tag == "$bytes":
        if _BASE64_RE.fullmatch(text) is None:
            raise RecordError("$bytes is not standard padded base64")
        try:
            value = base64.b64decode(text, validate=True)
        except binascii.Error as e:
            raise RecordError(f"$bytes is not base64: {e}") from None
        canonical = base64.b64encode(value).decode("ascii")
    elif tag == "$date":
        match = _DATE_RE.fullmatch(text)
        if match is None:
            raise RecordError(f"$date {text!r} is not YYYY-MM-DD")
        value = _date_from(match)
        canonical = _date_text(value)
    elif tag == "$datetime":
        value = _datetime_from(text)
        canonical = _datetime_text(value)
    else:
        raise RecordError(f"unknown tag {tag!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"$float {text!r} is not finite")
    if canonical != text:
        raise RecordError(f"{tag} {text!r} is not canonical (expected {canonical!r})")
    return value


def _json_value(value: Any) -> Value:
    if value is None or type(value) in (bool, int, str):
        return value  # type: ignore[no-any-return]  # json.loads gives exactly these types
    if type(value) is dict and len(value) == 1:
        ((tag, text),) = value.items()
        if type(text) is str:
            return _tagged_value(tag, text)
    raise RecordError(
        f"value of JSON type {type(value).__name__} is not null, boolean, integer, string or "
        "a tagged value"
    )


def parse_canonical(
    data: bytes | bytearray | memoryview, extracted_at: datetime
) -> CanonicalRecord:
    """Decode canonical bytes into a record, accepting nothing but canonical bytes.

    Args:
        data: the canonical serialization of a record.
        extracted_at: the extraction time to give the record (the bytes do not carry it).

    Returns:
        The record ``r`` with ``canonical_bytes(r) == data``. Aware datetimes come back in
        UTC; decimals come back normalized.

    Raises:
        RecordError: ``data`` is not UTF-8 or not JSON, has a missing, extra or duplicate
            key, another format version, a value the format does not have, or is not byte
            for byte what the record re-encodes to (key order, whitespace, escapes, number
            spellings) — the message gives the first differing byte offset.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RecordError(f"canonical data must be bytes, not {_type_name(data)}")
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"canonical data is not UTF-8 at byte offset {e.start}") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_bare_float,
            parse_int=_json_int,
            parse_constant=_bare_constant,
        )
    except RecordError as e:
        raise RecordError(f"canonical data: {e}") from None
    except (ValueError, RecursionError) as e:
        raise RecordError(f"canonical data is not JSON: {e}") from None
    if type(obj) is not dict:
        raise RecordError("canonical data is not a JSON object")
    if obj.keys() != _TOP_KEYS:
        missing = sorted(_TOP_KEYS - obj.keys())
        extra = sorted(obj.keys() - _TOP_KEYS)
        raise RecordError(f"canonical data: missing keys {missing}, unexpected keys {extra}")
    if type(obj["v"]) is not int or obj["v"] != FORMAT_VERSION:
        raise RecordError(f"canonical data: format version {obj['v']!r} is not {FORMAT_VERSION}")
    if type(obj["payload"]) is not dict:
        raise RecordError("canonical data: payload is not a JSON object")
    payload: dict[str, Value] = {}
    for column, value in obj["payload"].items():
        try:
            payload[column] = _json_value(value)
        except RecordError as e:
            raise RecordError(f"canonical data: payload column {column!r}: {e}") from None
    source_updated_at = obj["source_updated_at"]
    if source_updated_at is not None:
        try:
            source_updated_at = _json_value(source_updated_at)
        except RecordError as e:
            raise RecordError(f"canonical data: source_updated_at: {e}") from None
        if type(source_updated_at) is not datetime:
            raise RecordError("canonical data: source_updated_at is not null or a $datetime")
    record = CanonicalRecord(
        hospital_id=obj["hospital_id"],
        system=obj["system"],
        table=obj["table"],
        local_key=obj["local_key"],
        op=obj["op"],
        source_updated_at=source_updated_at,
        extracted_at=extracted_at,
        payload=payload,
    )
    if record._canonical != raw:
        offset = next(
            (i for i, (a, b) in enumerate(zip(raw, record._canonical, strict=False)) if a != b),
            min(len(raw), len(record._canonical)),
        )
        got, want = raw[offset : offset + 16], record._canonical[offset : offset + 16]
        raise RecordError(
            f"canonical data is not canonical: first difference at byte offset {offset} "
            f"(got {got!r}, canonical {want!r})"
        )
    return record


# --- source text ----------------------------------------------------------------------------


def decode_source_text(raw: bytes | bytearray | memoryview, encoding: str) -> str:
    """Decode a source text column strictly; nothing is replaced or dropped.

    Args:
        raw: the column's bytes as the source database stores them.
        encoding: "gbk", "gb18030" or "utf-8", or an alias of one ("cp936", "UTF8", …).

    Returns:
        The text, to be put in the payload (and so hashed as UTF-8).

    Raises:
        RecordError: the encoding is unknown or not one of :data:`SOURCE_ENCODINGS`, or
            ``raw`` is not valid in it — naming the encoding and the byte offset.

    Example:
        >>> decode_source_text(bytes.fromhex("c1d6d0e3d3a2"), "gbk")
        '林秀英'
    """
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise RecordError(f"unknown source encoding {encoding!r}") from None
    if name not in SOURCE_ENCODINGS:
        raise RecordError(
            f"source encoding {encoding!r} is not supported; use one of "
            f"{', '.join(SOURCE_ENCODINGS)}"
        )
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise RecordError(f"source text must be bytes to decode as {name}, not {_type_name(raw)}")
    data = bytes(raw)
    try:
        return data.decode(name, errors="strict")
    except UnicodeDecodeError as e:
        raise RecordError(
            f"invalid {name} text at byte offset {e.start}: "
            f"{data[e.start : e.end].hex(' ')} ({e.reason})"
        ) from None


# --- typed JSON form ------------------------------------------------------------------------


def _typed(value: Value) -> Any:
    t = type(value)
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        return {"$float": repr(value)}
    if t is Decimal:
        return {"$decimal": str(value)}
    if t is bytes:
        assert isinstance(value, bytes)
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if t is datetime:
        assert isinstance(value, datetime)
        return {"$datetime": value.isoformat()}
    assert isinstance(value, date)
    return {"$date": value.isoformat()}


def to_dict(record: CanonicalRecord) -> dict[str, Any]:
    """The record as JSON-safe data that keeps every value as given (not canonical).

    Unlike the canonical form this keeps ``extracted_at``, a decimal's exponent
    (``{"$decimal": "1.50"}``) and a datetime's UTC offset (``"2024-03-01T08:00:00+08:00"``);
    :func:`from_dict` inverts it. Golden vectors use it for their inputs.

    Args:
        record: any record.

    Returns:
        A dict of str, int, bool, None and nested dicts, for ``json.dumps``.
    """
    return {
        "hospital_id": record.hospital_id,
        "system": record.system,
        "table": record.table,
        "local_key": record.local_key,
        "op": record.op,
        "source_updated_at": _typed(record.source_updated_at),
        "extracted_at": _typed(record.extracted_at),
        "payload": {column: _typed(value) for column, value in record.payload.items()},
    }


def _from_typed(value: Any) -> Value:
    if value is None or type(value) in (bool, int, str):
        return value  # type: ignore[no-any-return]  # checked just above
    if type(value) is not dict or len(value) != 1:
        raise RecordError(f"{type(value).__name__} is not a typed value")
    ((tag, text),) = value.items()
    if type(text) is not str:
        raise RecordError(f"{tag} holds {type(text).__name__}, not a string")
    try:
        if tag == "$float":
            return float(text)
        if tag == "$decimal":
            return Decimal(text)
        if tag == "$bytes":
            return base64.b64decode(text, validate=True)
        if tag == "$date":
            return date.fromisoformat(text)
        if tag == "$datetime":
            return _iso_datetime(text)
    except (ValueError, ArithmeticError) as e:
        raise RecordError(f"{tag} {text!r}: {e}") from None
    raise RecordError(f"unknown tag {tag!r}")


# Python 3.11's fromisoformat drops the microseconds of a UTC offset, which isoformat writes.
_OFFSET_MICROS: Final = re.compile(r"(.+)([+-])([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})")


def _iso_datetime(text: str) -> datetime:
    match = _OFFSET_MICROS.fullmatch(text)
    if match is None:
        return datetime.fromisoformat(text)
    local = datetime.fromisoformat(match[1])
    if local.tzinfo is not None:
        raise ValueError("two UTC offsets")
    hours, minutes, seconds, micros = (int(match[i]) for i in range(3, 7))
    offset = timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)
    return local.replace(tzinfo=timezone(-offset if match[2] == "-" else offset))


def from_dict(data: Mapping[str, Any]) -> CanonicalRecord:
    """Build a record from :func:`to_dict`'s form.

    Args:
        data: a mapping with exactly the keys :func:`to_dict` writes.

    Returns:
        The record, validated as by :class:`CanonicalRecord`.

    Raises:
        RecordError: a key is missing or unexpected, a typed value is malformed, or the
            record is not valid.
    """
    expected = {f for f in CanonicalRecord.__dataclass_fields__ if not f.startswith("_")}
    if not isinstance(data, Mapping) or set(data) != expected:
        got = sorted(map(str, data)) if isinstance(data, Mapping) else _type_name(data)
        raise RecordError(f"record dict needs exactly the keys {sorted(expected)}, got {got}")
    payload = data["payload"]
    if not isinstance(payload, Mapping):
        raise RecordError(f"payload must be a mapping, not {_type_name(payload)}")
    values: dict[str, Value] = {}
    for column, value in payload.items():
        try:
            values[column] = _from_typed(value)
        except RecordError as e:
            raise RecordError(f"payload column {column!r}: {e}") from None
    return CanonicalRecord(
        hospital_id=data["hospital_id"],
        system=data["system"],
        table=data["table"],
        local_key=data["local_key"],
        op=data["op"],
        source_updated_at=_typed_time(data["source_updated_at"], "source_updated_at"),
        extracted_at=_typed_time(data["extracted_at"], "extracted_at"),
        payload=values,
    )


def _typed_time(value: Any, name: str) -> Any:
    """A typed timestamp decoded; its type is left for the constructor to check and name."""
    try:
        return _from_typed(value)
    except RecordError as e:
        raise RecordError(f"{name}: {e}") from None
