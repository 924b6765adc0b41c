"""Canonical records: golden vectors byte for byte, round trips, what is hashed, what is refused.

The golden file is the contract with every other implementation (docs/canonical.md); it is
rewritten only by ``make_golden.py --rewrite``, never by a test.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.records import make_golden

from medfabric.records import (
    MAX_DIGITS,
    CanonicalRecord,
    RecordError,
    Value,
    canonical_bytes,
    content_hash,
    decode_source_text,
    from_dict,
    parse_canonical,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN: dict[str, Any] = json.loads(make_golden.GOLDEN.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = GOLDEN["vectors"]
CST = timezone(timedelta(hours=8))
EXTRACTED = datetime(2025, 3, 1, 10, 0, tzinfo=CST)


def _record(payload: dict[str, Any] | None = None, **fields: Any) -> CanonicalRecord:
    base: dict[str, Any] = {
        "hospital_id": "H01",
        "system": "LIS",
        "table": "LAB_RESULT",
        "local_key": "R1",
        "op": "upsert",
        "source_updated_at": datetime(2025, 2, 28, 11, 2, 41),
        "extracted_at": EXTRACTED,
        "payload": {"ITEM_NAME": "血红蛋白", "RESULT_VALUE": Decimal("135.0")}
        if payload is None
        else payload,
    }
    return CanonicalRecord(**(base | fields))


# --- golden vectors -------------------------------------------------------------------------


def test_golden_file_is_what_make_golden_renders() -> None:
    assert make_golden.render() == make_golden.GOLDEN.read_text(encoding="utf-8"), (
        "the golden file is stale: review, then python tests/records/make_golden.py --rewrite"
    )


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_golden_vector_bytes_and_hash(vector: dict[str, Any]) -> None:
    expected = vector["canonical"].encode("utf-8")
    assert bytes.fromhex(vector["canonical_hex"]) == expected
    assert hashlib.sha256(expected).hexdigest() == vector["sha256"]
    record = from_dict(vector["input"])
    assert canonical_bytes(record) == expected
    assert content_hash(record) == vector["sha256"]
    parsed = parse_canonical(expected, record.extracted_at)
    assert parsed == record
    assert canonical_bytes(parsed) == expected
    for column, source in vector.get("decoded_from", {}).items():
        text = decode_source_text(bytes.fromhex(source["hex"]), source["encoding"])
        assert record.payload[column] == text


def test_golden_vectors_cover_the_format() -> None:
    assert len(VECTORS) >= 12
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)
    everything = "".join(v["canonical"] for v in VECTORS)
    for needle in [
        "林秀英",
        "𠀾",
        "，",
        "\\n",  # an escaped newline
        ":null",
        ":true",
        ":false",
        "18446744073709551617",
        ":-9223372036854775808,",
        '{"$float":"0.1"}',
        '{"$float":"1e+20"}',
        '{"$float":"-0.0"}',
        '{"$decimal":"1.5"}',
        '{"$decimal":"100"}',
        '{"$decimal":"0"}',
        '{"$bytes":""}',
        '{"$date":"',
        '.120000"}',
        'Z"}',
        '"op":"delete","payload":{}',
    ]:
        assert needle in everything, needle
    assert any("decoded_from" in v for v in VECTORS)
    assert any(e["encoding"] == "gbk" for v in VECTORS for e in v.get("decoded_from", {}).values())


def test_re_extraction_vectors_share_the_hash() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    first, again = by_name["his-patient"], by_name["his-patient-re-extracted"]
    assert first["input"]["extracted_at"] != again["input"]["extracted_at"]
    assert first["sha256"] == again["sha256"]


def test_hash_of_a_literal_is_independent_of_the_implementation() -> None:
    # Written out by hand from docs/canonical.md, not produced by the module under test.
    literal = (
        b'{"hospital_id":"H02","local_key":"88031","op":"delete","payload":{},'
        b'"source_updated_at":null,"system":"LIS","table":"JY_JG","v":1}'
    )
    record = CanonicalRecord("H02", "LIS", "JY_JG", "88031", "delete", None, EXTRACTED, {})
    assert canonical_bytes(record) == literal
    assert content_hash(record) == hashlib.sha256(literal).hexdigest()
    chinese = "林秀英".encode()
    assert chinese == b"\xe6\x9e\x97\xe7\xa7\x80\xe8\x8b\xb1"
    record = dataclasses.replace(record, op="upsert", payload={"XM": "林秀英"})
    literal = literal.replace(
        b'"delete","payload":{}', b'"upsert","payload":{"XM":"' + chinese + b'"}'
    )
    assert content_hash(record) == hashlib.sha256(literal).hexdigest()


def test_docs_worked_example_is_the_golden_vector() -> None:
    doc = (ROOT / "docs" / "canonical.md").read_text(encoding="utf-8")
    vector = next(v for v in VECTORS if v["name"] == make_golden.WORKED_EXAMPLE)
    assert vector["canonical"] in doc
    assert vector["sha256"] in doc
    assert all(v["name"] in doc for v in VECTORS)


@pytest.mark.parametrize("case", GOLDEN["non_canonical"], ids=lambda c: c["name"])
def test_golden_non_canonical_bytes_are_rejected(case: dict[str, str]) -> None:
    data = bytes.fromhex(case["hex"])
    assert data == case["text"].encode("utf-8")
    with pytest.raises(RecordError):
        parse_canonical(data, EXTRACTED)


# --- round trips ----------------------------------------------------------------------------

CJK = "林秀英陈黄郑主诉反复咳嗽、，。：；（）“”！？～𠀾𪚥\n\t"
# Any code point but a lone surrogate (which has no UTF-8 form), plus CJK to make it likely.
chars = st.one_of(st.characters(codec="utf-8"), st.sampled_from(CJK))
texts = st.text(chars, max_size=24)
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
naive = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31))
aware = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.builds(timezone, offsets),
)
decimals = st.builds(
    lambda sign, digits, exp: Decimal((sign, tuple(digits), exp)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    st.integers(-40, 40),
)
values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**200), 2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    decimals,
    texts,
    st.binary(max_size=40),
    st.dates(),
    naive,
    aware,
)
columns = st.text(chars, min_size=1, max_size=10)
records = st.builds(
    CanonicalRecord,
    hospital_id=texts.filter(bool),
    system=st.sampled_from(["HIS", "LIS", "PACS", "EMR"]),
    table=texts.filter(bool),
    local_key=texts.filter(bool),
    op=st.sampled_from(["upsert", "delete"]),
    source_updated_at=st.one_of(st.none(), naive, aware),
    extracted_at=st.one_of(naive, aware),
    payload=st.dictionaries(columns, values, max_size=10),
)


def _same_value(original: Value, parsed: Value) -> None:
    if isinstance(original, datetime) and original.utcoffset() is not None:
        assert isinstance(parsed, datetime)
        assert parsed.tzinfo is UTC
    assert type(parsed) is type(original)
    assert parsed == original
    if isinstance(original, float):
        assert repr(parsed) == repr(original)  # -0.0 stays -0.0


@settings(max_examples=300)
@given(records)
def test_round_trip_bytes_parse_bytes(record: CanonicalRecord) -> None:
    data = canonical_bytes(record)
    parsed = parse_canonical(data, record.extracted_at)
    assert parsed == record
    assert canonical_bytes(parsed) == data
    assert content_hash(parsed) == content_hash(record)
    assert parsed.payload.keys() == record.payload.keys()
    for column, value in record.payload.items():
        _same_value(value, parsed.payload[column])


@settings(max_examples=200)
@given(records)
def test_round_trip_typed_json_form(record: CanonicalRecord) -> None:
    again = from_dict(json.loads(json.dumps(to_dict(record), ensure_ascii=False)))
    assert again == record
    for column, value in record.payload.items():
        assert type(again.payload[column]) is type(value)
        if isinstance(value, Decimal):
            assert str(again.payload[column]) == str(value)  # exponent kept, unlike canonical


def _tagged(value: Value) -> str:
    """The canonical text of one payload value, cut out of a record's bytes."""
    data = canonical_bytes(_record({"X": value})).decode("utf-8")
    return data[data.index('"X":') + 4 : data.index(',"source_updated_at"') - 1]


def _spec_float_text(x: float) -> str:
    """docs/canonical.md §4.3 written out, taking only the shortest digits from repr."""
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    _, digit_tuple, exp = Decimal(repr(abs(x))).as_tuple()
    assert isinstance(exp, int)
    p = len(digit_tuple) + exp
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    n = len(digits)
    if -4 < p <= 16:
        if p <= 0:
            text = "0." + "0" * -p + digits
        elif p < n:
            text = digits[:p] + "." + digits[p:]
        else:
            text = digits + "0" * (p - n) + ".0"
    else:
        text = digits[0] + ("." + digits[1:] if n > 1 else "") + f"e{p - 1:+03d}"
    return "-" + text if x < 0 else text


@settings(max_examples=500)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_follows_the_spec(x: float) -> None:
    text = _spec_float_text(x)
    assert _tagged(x) == '{"$float":"' + text + '"}'
    assert float(text) == x
    digits = len(Decimal(text).normalize().as_tuple().digits)
    if digits > 1:  # shortest: the nearest string with one digit fewer is another float
        assert float(f"{x:.{digits - 2}e}") != x


@settings(max_examples=500)
@given(decimals)
def test_decimal_text_matches_a_reference(d: Decimal) -> None:
    # The dumb reference: normalize under a context wide enough never to round, then 'f'.
    normal = d.normalize(Context(prec=MAX_DIGITS + 50))
    reference = "0" if normal.is_zero() else format(normal, "f")
    assert _tagged(d) == '{"$decimal":"' + reference + '"}'
    assert Decimal(reference) == d


@settings(max_examples=300)
@given(st.one_of(naive, aware))
def test_datetime_text_matches_isoformat(when: datetime) -> None:
    if when.utcoffset() is None:
        reference = when.isoformat()
    else:
        reference = when.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    assert _tagged(when) == '{"$datetime":"' + reference + '"}'


@given(records, st.randoms(use_true_random=False))
def test_payload_order_does_not_matter(record: CanonicalRecord, rnd: Any) -> None:
    items = list(record.payload.items())
    rnd.shuffle(items)
    shuffled = dataclasses.replace(record, payload=dict(items))
    assert canonical_bytes(shuffled) == canonical_bytes(record)


@given(records, st.one_of(naive, aware))
def test_extracted_at_is_not_hashed(record: CanonicalRecord, when: datetime) -> None:
    later = dataclasses.replace(record, extracted_at=when)
    assert content_hash(later) == content_hash(record)


CHANGES: dict[str, Callable[[CanonicalRecord], CanonicalRecord]] = {
    "hospital_id": lambda r: dataclasses.replace(r, hospital_id="H02"),
    "system": lambda r: dataclasses.replace(r, system="HIS"),
    "table": lambda r: dataclasses.replace(r, table="JY_JG"),
    "local_key": lambda r: dataclasses.replace(r, local_key="R2"),
    "op": lambda r: dataclasses.replace(r, op="delete"),
    "source_updated_at": lambda r: dataclasses.replace(
        r, source_updated_at=datetime(2025, 2, 28, 11, 2, 41, 1)
    ),
    "source_updated_at=None": lambda r: dataclasses.replace(r, source_updated_at=None),
    "source_updated_at aware": lambda r: dataclasses.replace(
        r, source_updated_at=datetime(2025, 2, 28, 11, 2, 41, tzinfo=UTC)
    ),
    "payload value": lambda r: dataclasses.replace(
        r, payload={**r.payload, "RESULT_VALUE": Decimal("135.1")}
    ),
    "payload column added": lambda r: dataclasses.replace(r, payload={**r.payload, "UNIT": None}),
    "payload column renamed": lambda r: dataclasses.replace(
        r, payload={"ITEM_NAME ": "血红蛋白", "RESULT_VALUE": Decimal("135")}
    ),
    "payload value type": lambda r: dataclasses.replace(
        r, payload={**r.payload, "RESULT_VALUE": 135}
    ),
    "payload text normalization": lambda r: dataclasses.replace(
        r, payload={**r.payload, "ITEM_NAME": "血红蛋白\u3000"}
    ),
}


@pytest.mark.parametrize("change", CHANGES, ids=str)
def test_every_hashed_field_changes_the_hash(change: str) -> None:
    record = _record()
    assert content_hash(CHANGES[change](record)) != content_hash(record)


def test_equal_values_of_different_types_hash_differently() -> None:
    ones: list[Value] = [1, True, 1.0, Decimal(1), "1", b"1", datetime(1, 1, 1), date(1, 1, 1)]
    hashes = {content_hash(_record({"X": v})) for v in ones}
    assert len(hashes) == len(ones)
    assert content_hash(_record({"X": 0.0})) != content_hash(_record({"X": -0.0}))
    naive_utc = _record({"X": datetime(2025, 3, 1)})
    aware_utc = _record({"X": datetime(2025, 3, 1, tzinfo=UTC)})
    assert content_hash(naive_utc) != content_hash(aware_utc)


def test_equivalent_spellings_hash_the_same() -> None:
    assert content_hash(_record({"X": Decimal("1.50")})) == content_hash(
        _record({"X": Decimal("15E-1")})
    )
    in_cst = _record({"X": datetime(2025, 3, 1, 8, tzinfo=CST)})
    in_utc = _record({"X": datetime(2025, 3, 1, 0, tzinfo=UTC)})
    assert content_hash(in_cst) == content_hash(in_utc)


def test_records_compare_by_canonical_bytes_and_extracted_at() -> None:
    assert _record({"X": Decimal("1.50")}) == _record({"X": Decimal("1.5")})
    assert _record({"X": 1}) != _record({"X": True})
    assert _record() != dataclasses.replace(_record(), extracted_at=datetime(2025, 3, 2))
    assert len({_record(), _record(), _record({"X": 1})}) == 2


def test_payload_is_a_frozen_copy() -> None:
    payload: dict[str, Value] = {"X": 1}
    record = _record(payload)
    payload["X"] = 2
    assert record.payload["X"] == 1
    with pytest.raises(TypeError):
        record.payload["X"] = 3  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.op = "delete"  # type: ignore[misc]


# --- what construction refuses --------------------------------------------------------------


class Flag(enum.IntEnum):
    ON = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "inf"),
        (Decimal("NaN"), "finite"),
        (Decimal("sNaN"), "finite"),
        (Decimal("-Infinity"), "finite"),
        (["a"], "list"),
        (("a",), "tuple"),
        ({"a": 1}, "dict"),
        ({1}, "set"),
        (bytearray(b"x"), "bytearray"),
        (np.float64(0.1), "numpy.float64"),
        (np.int64(1), "numpy.int64"),
        (Flag.ON, "Flag"),
        (Name("林"), "Name"),
        ("lone \udc80 surrogate", "surrogate"),
        (10**MAX_DIGITS, "digits"),
        (-(10**MAX_DIGITS), "digits"),
        (Decimal(f"1E+{MAX_DIGITS}"), "digits"),
        (Decimal(f"1E-{MAX_DIGITS}"), "digits"),
        (datetime(1, 1, 1, tzinfo=CST), "UTC"),
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))), "UTC"),
    ],
    ids=repr,
)
def test_rejects_payload_values(value: object, message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)) as err:
        _record({"RESULT_VALUE": value})
    assert "payload column 'RESULT_VALUE'" in str(err.value)
    assert "H01/LIS/LAB_RESULT/R1" in str(err.value)


def test_accepts_the_largest_numbers() -> None:
    big = 10**MAX_DIGITS - 1
    assert parse_canonical(canonical_bytes(_record({"X": -big})), EXTRACTED).payload["X"] == -big
    exact = Decimal(f"1E-{MAX_DIGITS - 1}")
    assert parse_canonical(canonical_bytes(_record({"X": exact})), EXTRACTED).payload["X"] == exact


@pytest.mark.parametrize("name", [1, None, b"XM", ("X",), "", "X\ud800"], ids=repr)
def test_rejects_bad_column_names(name: Any) -> None:
    with pytest.raises(RecordError, match="payload column name"):
        _record({"OK": 1, name: 1})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"system": "XIS"}, "unknown system 'XIS'"),
        ({"system": "his"}, "unknown system"),
        ({"system": ["HIS"]}, "unknown system"),
        ({"op": "insert"}, "unknown op 'insert'"),
        ({"op": "UPSERT"}, "unknown op"),
        ({"hospital_id": ""}, "hospital_id must not be empty"),
        ({"table": ""}, "table must not be empty"),
        ({"local_key": ""}, "local_key must not be empty"),
        ({"local_key": 123}, "local_key must be str, not int"),
        ({"hospital_id": None}, "hospital_id must be str"),
        ({"table": "T\udc80"}, "table holds a lone surrogate"),
        ({"extracted_at": None}, "extracted_at must be a datetime"),
        ({"extracted_at": date(2025, 3, 1)}, "extracted_at must be a datetime, not date"),
        ({"extracted_at": "2025-03-01T00:00:00"}, "extracted_at must be a datetime"),
        ({"source_updated_at": date(2025, 3, 1)}, "source_updated_at must be a datetime"),
        ({"source_updated_at": 1740700000}, "source_updated_at must be a datetime"),
        ({"source_updated_at": datetime(1, 1, 1, tzinfo=CST)}, "source_updated_at:"),
        ({"payload": [("X", 1)]}, "payload must be a mapping"),
    ],
    ids=repr,
)
def test_rejects_bad_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        _record(**fields)


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)


# --- what parsing refuses -------------------------------------------------------------------

VALID = canonical_bytes(
    _record(
        {
            "ITEM_NAME": "血红蛋白",
            "RESULT_VALUE": Decimal("135.0"),
            "RATIO": 0.5,
            "RAW": b"\x00\x01",
            "DAY": date(2025, 2, 28),
            "NOTE": "a\nb",
        }
    )
)


def _mutate(old: bytes, new: bytes) -> bytes:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_mutate(b'"op":"upsert",', b""), "missing keys ['op']"),
        (
            b'{"local_key":"R1","hospital_id":"H01"' + VALID[VALID.index(b',"op"') :],
            "byte offset 2",
        ),
        (_mutate(b'"op":', b'"op" :'), "byte offset"),
        (_mutate(b",", b", "), "byte offset"),
        (b" " + VALID, "byte offset 0"),
        (VALID + b"\n", "byte offset"),
        (_mutate("血".encode(), b"\\u8840"), "byte offset"),
        (_mutate(b"a\\nb", b"a\\u000ab"), "byte offset"),
        (_mutate(b"a\\nb", b"a\nb"), "not JSON"),
        (_mutate(b'"135"', b'"135.0"'), "'135.0' is not a plain decimal"),
        (_mutate(b'"135"', b'"1.35E+2"'), "not a plain decimal"),
        (_mutate(b'"135"', b'"Infinity"'), "not a plain decimal"),
        (_mutate(b'"135"', b'"\xd9\xa1"'), "not a plain decimal"),  # ARABIC-INDIC DIGIT ONE
        (_mutate(b'"0.5"', b'"5e-1"'), "not canonical (expected '0.5')"),
        (_mutate(b'"0.5"', b'"nan"'), "not finite"),
        (_mutate(b'"0.5"', b'"1e999"'), "not finite"),
        (_mutate(b'"0.5"', b'"half"'), "not a number"),
        (_mutate(b'{"$float":"0.5"}', b"0.5"), "floats are written as"),
        (_mutate(b'{"$float":"0.5"}', b"NaN"), "NaN is not JSON"),
        (_mutate(b'{"$float":"0.5"}', b'{"$float":0.5}'), "floats are written as"),
        (_mutate(b'{"$float":"0.5"}', b'{"$float":"0.5","$x":"1"}'), "tagged value"),
        (_mutate(b'{"$float":"0.5"}', b'{"$double":"0.5"}'), "unknown tag '$double'"),
        (_mutate(b'{"$float":"0.5"}', b'["0.5"]'), "JSON type list"),
        (_mutate(b'"AAE="', b'"AAE"'), "padded base64"),
        (_mutate(b'"AAE="', b'"AAF="'), "not canonical"),
        (_mutate(b'"2025-02-28"', b'"2025-02-30"'), "no such date"),
        (_mutate(b'"2025-02-28"', b'"20250228"'), "not YYYY-MM-DD"),
        (_mutate(b'"2025-02-28T11:02:41"', b'"2025-02-28T11:02:41.000000"'), "not canonical"),
        (_mutate(b'"2025-02-28T11:02:41"', b'"2025-02-28T11:02:41+00:00"'), "not YYYY"),
        (_mutate(b'"2025-02-28T11:02:41"', b'"2025-02-28 11:02:41"'), "not YYYY"),
        (_mutate(b'"2025-02-28T11:02:41"', b'"2025-02-28T24:00:00"'), "no such time"),
        (_mutate(b'{"$datetime":"2025-02-28T11:02:41"}', b'{"$date":"2025-02-28"}'), "null or"),
        (_mutate(b'"v":1', b'"v":2'), "format version 2"),
        (_mutate(b'"v":1', b'"v":true'), "format version True"),
        (_mutate(b'"v":1', b'"v":1.0'), "floats are written as"),
        (_mutate(b'"v":1', b'"v":1,"w":1'), "unexpected keys ['w']"),
        (_mutate(b'"op":"upsert"', b'"op":"upsert","op":"upsert"'), "duplicate key 'op'"),
        (_mutate(b'"op":"upsert"', b'"op":"insert"'), "unknown op"),
        (_mutate(b'"table":"LAB_RESULT"', b'"table":7'), "table must be str"),
        (_mutate(b'"payload":{', b'"payload":{"":1,'), "must not be empty"),
        (_mutate(b'"DAY"', b'"D\\ud800Y"'), "lone surrogate"),
        (_mutate(b'"H01"', b'"H0\xff"'), "not UTF-8 at byte offset 18"),
        (b"\xef\xbb\xbf" + VALID, "not JSON"),
        (b"[1]", "not a JSON object"),
        (b"", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (_mutate(b'"DAY"', b'"BIG":' + b"9" * (MAX_DIGITS + 1) + b',"DAY"'), "digits"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_parse_rejects_non_canonical_data(data: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        parse_canonical(data, EXTRACTED)


def test_parse_accepts_the_unmutated_data_and_only_bytes() -> None:
    assert canonical_bytes(parse_canonical(VALID, EXTRACTED)) == VALID
    assert canonical_bytes(parse_canonical(bytearray(VALID), EXTRACTED)) == VALID
    with pytest.raises(RecordError, match="must be bytes, not str"):
        parse_canonical(VALID.decode(), EXTRACTED)  # type: ignore[arg-type]


# --- source text ----------------------------------------------------------------------------


def test_gbk_bytes_decode() -> None:
    raw = bytes.fromhex("c1d6d0e3d3a2")
    assert decode_source_text(raw, "gbk") == "林秀英"
    assert decode_source_text(raw, "GBK") == "林秀英"
    assert decode_source_text(raw, "cp936") == "林秀英"
    assert decode_source_text(raw, "gb18030") == "林秀英"
    assert decode_source_text("主诉：头晕，乏力。".encode("gbk"), "gbk") == "主诉：头晕，乏力。"
    assert decode_source_text(b"", "gbk") == ""


def test_gb18030_four_byte_character() -> None:
    assert decode_source_text(bytes.fromhex("95328838"), "gb18030") == "𠀾"
    with pytest.raises(RecordError, match="invalid gbk text at byte offset 0"):
        decode_source_text(bytes.fromhex("95328838"), "gbk")


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (b"\xc1\xd6\xff\xfe", "gbk", "invalid gbk text at byte offset 2: ff"),
        (b"\xc1\xd6\xd0", "gbk", "invalid gbk text at byte offset 2: d0 (incomplete"),
        (b"ok\xc1\xd6\x80", "gb18030", "invalid gb18030 text at byte offset 4"),
        ("林秀英".encode("gbk"), "utf-8", "invalid utf-8 text at byte offset 0: c1"),
        (b"a\xed\xa0\x80", "utf-8", "invalid utf-8 text at byte offset 1"),
        (b"x", "latin-1", "not supported"),
        (b"x", "gb2312", "not supported"),
        (b"x", "no-such-codec", "unknown source encoding"),
        ("林秀英", "gbk", "must be bytes"),
    ],
    ids=repr,
)
def test_invalid_source_text_names_encoding_and_offset(
    raw: bytes, encoding: str, message: str
) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        decode_source_text(raw, encoding)


# --- the typed JSON form --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("extracted_at"), "needs exactly the keys"),
        (lambda d: d.update(extra=1), "needs exactly the keys"),
        (lambda d: d["payload"].update(X=[1]), "payload column 'X': list is not a typed value"),
        (lambda d: d["payload"].update(X={"$decimal": "abc"}), "payload column 'X': $decimal"),
        (lambda d: d["payload"].update(X={"$bytes": "A"}), "payload column 'X': $bytes"),
        (lambda d: d["payload"].update(X={"$when": "x"}), "unknown tag '$when'"),
        (lambda d: d["payload"].update(X={"$date": 20250301}), "holds int"),
        (lambda d: d.update(extracted_at={"$date": "2025-03-01"}), "must be a datetime"),
        (lambda d: d.update(extracted_at={"$datetime": "soon"}), "extracted_at: $datetime"),
        (lambda d: d["payload"].update(X={"$float": "nan"}), "not allowed"),
    ],
)
def test_from_dict_rejects(change: Callable[[dict[str, Any]], Any], message: str) -> None:
    data = to_dict(_record())
    change(data)
    with pytest.raises(RecordError, match=re.escape(message)):
        from_dict(data)
