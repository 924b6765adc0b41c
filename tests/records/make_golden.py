"""Golden vectors of the canonical record format: ``tests/data/canonical_golden.json``.

The committed file is the reference; ``test_canonical.py`` checks the implementation against
it and checks that this script still renders it. Regenerating is explicit and reviewed, never
automatic: a diff in ``canonical`` or ``sha256`` means the format changed, which needs a new
format version (docs/canonical.md, "Versions"), not a rewrite.

Usage::

    python tests/records/make_golden.py            # exit 1 if the committed file is stale
    python tests/records/make_golden.py --rewrite  # write it
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from medfabric.records import (
    CanonicalRecord,
    Value,
    canonical_bytes,
    content_hash,
    decode_source_text,
    to_dict,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "canonical_golden.json"

CST = timezone(timedelta(hours=8))  # China Standard Time, how hospitals' clocks read
EXTRACTED = datetime(2025, 3, 1, 2, 0, 5, 250000, tzinfo=CST)

# The worked example of docs/canonical.md.
WORKED_EXAMPLE = "his-patient"

GBK_LIN_XIUYING = bytes.fromhex("c1d6d0e3d3a2")  # 林秀英 in GBK
GB18030_EXT_B = bytes.fromhex("95328838")  # U+2003E 𠀾, a 4-byte GB18030 sequence, not in GBK
GBK_CHIEF_COMPLAINT = "头晕、乏力2周，加重1天。".encode("gbk")


@dataclass(frozen=True)
class Vector:
    name: str
    note: str
    record: CanonicalRecord
    # column → (encoding, source bytes) for text the gateway decoded before hashing
    decoded_from: dict[str, tuple[str, bytes]] = field(default_factory=dict)


def _record(
    system: str,
    table: str,
    key: str,
    payload: dict[str, Value],
    *,
    op: str = "upsert",
    updated: datetime | None = None,
    hospital: str = "H01",
    extracted: datetime = EXTRACTED,
) -> CanonicalRecord:
    return CanonicalRecord(hospital, system, table, key, op, updated, extracted, payload)


def _patient(extracted: datetime) -> CanonicalRecord:
    return _record(
        "HIS",
        "PAT_MASTER_INDEX",
        "P000000123",
        {
            "PAT_NAME": "林秀英",
            "SEX_CODE": "2",
            "DATE_OF_BIRTH": date(1958, 4, 12),
            # Check character deliberately wrong (GB 11643 gives 6): nobody's real number.
            "ID_NO": "350102195804120027",
            "PHONE": None,
            "VALID_FLAG": 1,
        },
        updated=datetime(2025, 2, 28, 16, 45, 12),
        extracted=extracted,
    )


def vectors() -> list[Vector]:
    """Every golden vector, in file order."""
    return [
        Vector(
            WORKED_EXAMPLE,
            "patient master row: Chinese name, NULL, date, int, naive source_updated_at",
            _patient(EXTRACTED),
        ),
        Vector(
            "his-patient-re-extracted",
            "the same row extracted again later: extracted_at differs, bytes and hash do not",
            _patient(datetime(2025, 3, 2, 2, 0, 0, tzinfo=CST)),
        ),
        Vector(
            "emr-chief-complaint",
            "free text: full-width punctuation, quotes, a newline and a tab",
            _record(
                "EMR",
                "EMR_NOTE",
                "N20250228-0007",
                {
                    "NOTE_TYPE": "入院记录",
                    "CHIEF_COMPLAINT": "反复咳嗽、咳痰3天，加重伴发热1天。\n"
                    "既往：高血压10年（规律服药）；否认“糖尿病”史！\t（家属代述）",
                    "WRITTEN_AT": datetime(2025, 2, 28, 10, 3, 0),
                },
                updated=datetime(2025, 2, 28, 10, 30, 0),
            ),
        ),
        Vector(
            "gbk-decoded-name",
            "kangning HIS: GBK bytes of a BLOB column decoded strictly, hashed as UTF-8",
            _record(
                "HIS",
                "MS_BRDA",
                "1024",
                {
                    "BRID": 1024,
                    "XM": decode_source_text(GBK_LIN_XIUYING, "gbk"),
                    "ZS": decode_source_text(GBK_CHIEF_COMPLAINT, "gbk"),
                    "CSRQ": "19580412",
                },
                hospital="H02",
                updated=datetime(2025, 2, 27, 9, 0, 0),
            ),
            {"XM": ("gbk", GBK_LIN_XIUYING), "ZS": ("gbk", GBK_CHIEF_COMPLAINT)},
        ),
        Vector(
            "gb18030-four-byte",
            "a CJK Extension B character (U+2003E): 4 bytes in GB18030 and in UTF-8",
            _record(
                "HIS",
                "MS_BRDA",
                "1025",
                {"BRID": 1025, "XM": "林" + decode_source_text(GB18030_EXT_B, "gb18030")},
                hospital="H02",
            ),
            {"XM": ("gb18030", "林".encode("gb18030") + GB18030_EXT_B)},
        ),
        Vector(
            "integers",
            "zero, negative, 64-bit limits and beyond 2^63 and 2^64",
            _record(
                "LIS",
                "LAB_RESULT",
                "R1",
                {
                    "zero": 0,
                    "negative": -42,
                    "int64_max": 2**63 - 1,
                    "int64_min": -(2**63),
                    "above_2_63": 2**63,
                    "above_2_64": 2**64 + 1,
                    "below_minus_2_64": -(2**64) - 1,
                },
            ),
        ),
        Vector(
            "floats",
            "repr: shortest round trip; -0.0 kept; exponent form from 1e16 and below 1e-4",
            _record(
                "LIS",
                "LAB_RESULT",
                "R2",
                {
                    "tenth": 0.1,
                    "big": 1e20,
                    "negative_zero": -0.0,
                    "zero": 0.0,
                    "whole": 100.0,
                    "e15": 1e15,
                    "e16": 1e16,
                    "small": 0.0001,
                    "smaller": 0.00001,
                    "binary_exact": 123456789.125,
                    "third": 1 / 3,
                    "max": 1.7976931348623157e308,
                    "min_subnormal": 5e-324,
                    "negative": -2.5e-7,
                },
            ),
        ),
        Vector(
            "decimals",
            "plain notation: trailing zeros dropped, exponent expanded, -0 becomes 0",
            _record(
                "LIS",
                "LAB_RESULT",
                "R3",
                {
                    "scale_2": Decimal("1.50"),
                    "exponent": Decimal("1E+2"),
                    "negative_zero": Decimal("-0.000"),
                    "negative": Decimal("-12.3400"),
                    "small": Decimal("0.000120"),
                    "small_exponent": Decimal("1.2E-5"),
                    "whole_with_zeros": Decimal("100.000"),
                    "long": Decimal("12345678901234567890.123456789"),
                },
            ),
        ),
        Vector(
            "lab-result",
            "a LIS result row as a gateway builds it: Decimal value, text range, naive times",
            _record(
                "LIS",
                "LAB_RESULT",
                "R000000456",
                {
                    "ITEM_NAME": "血红蛋白",
                    "RESULT_VALUE": Decimal("135.0"),
                    "UNIT": "g/L",
                    "REF_RANGE": "130～175",
                    "ABNORMAL_FLAG": "",
                    "REPORTED_AT": datetime(2025, 2, 28, 11, 2, 40),
                },
                updated=datetime(2025, 2, 28, 11, 2, 41, 500000),
            ),
        ),
        Vector(
            "dates-naive-datetimes",
            "dates; naive datetimes with and without microseconds (6 digits, zeros kept)",
            _record(
                "HIS",
                "OUTP_VISIT",
                "V1",
                {
                    "leap_day": date(2024, 2, 29),
                    "early": date(1, 1, 1),
                    "late": date(9999, 12, 31),
                    "visit_time": datetime(2025, 3, 1, 8, 30, 0),
                    "with_micro": datetime(2025, 3, 1, 8, 30, 0, 120000),
                    "one_micro": datetime(2025, 3, 1, 8, 30, 0, 1),
                    "midnight": datetime(2025, 3, 1),
                },
            ),
        ),
        Vector(
            "aware-datetimes",
            "aware datetimes converted to UTC with Z, across a day and a year boundary",
            _record(
                "PACS",
                "STUDY",
                "S1",
                {
                    "study_time": datetime(2025, 3, 1, 8, 0, 0, tzinfo=CST),
                    "new_year": datetime(2025, 1, 1, 3, 0, 0, 5, tzinfo=CST),
                    "utc": datetime(2025, 3, 1, 0, 0, 0, tzinfo=UTC),
                    "negative_offset": datetime(
                        2025, 2, 28, 19, 30, 0, 250000, tzinfo=timezone(timedelta(hours=-4.5))
                    ),
                },
                updated=datetime(2025, 3, 1, 8, 0, 1, tzinfo=CST),
            ),
        ),
        Vector(
            "bytes-bool-null",
            "bytes (empty, 1 and 2 padding chars, binary), booleans, NULL",
            _record(
                "PACS",
                "STUDY",
                "S2",
                {
                    "empty": b"",
                    "one": b"M",
                    "two": b"DI",
                    "three": b"DIC",
                    "binary": bytes([0, 255, 16, 128, 62, 63]),
                    "yes": True,
                    "no": False,
                    "missing": None,
                },
            ),
        ),
        Vector(
            "delete-empty-payload",
            "a hard delete found by key comparison: op delete, no payload, no source time",
            _record("LIS", "JY_JG", "88031", {}, op="delete", hospital="H02"),
        ),
        Vector(
            "string-escapes",
            'the only escapes: \\" \\\\ \\b \\f \\n \\r \\t and \\u00xx for other C0 controls',
            _record(
                "EMR",
                "EMR_NOTE",
                'key "quoted" \\ slash/',
                {
                    "controls": "\x00\x01\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f",
                    "kept_as_is": "/ \x7f \x80 \u2028 \u00e9 \ufeff 😀",
                },
            ),
        ),
        Vector(
            "key-order",
            "keys sorted by code point (= UTF-8 bytes), not by UTF-16 units: U+FF58 < U+2003E",
            _record(
                "HIS",
                "科室",
                "K1",
                {"𠀾": 1, "ｘ": 2, "a": 3, "B": 4, "_": 5, "ab": 6, "a b": 7, "姓名": 8},
            ),
        ),
        Vector(
            "type-distinctions",
            "the same 1 as int, bool, float, Decimal, str and bytes: six different encodings",
            _record(
                "HIS",
                "T",
                "1",
                {
                    "int": 1,
                    "bool": True,
                    "float": 1.0,
                    "decimal": Decimal("1.0"),
                    "str": "1",
                    "bytes": b"1",
                },
                op="upsert",
            ),
        ),
    ]


def non_canonical() -> list[dict[str, str]]:
    """Byte strings a verifier must reject, each a small change to a golden vector."""
    by_name = {v.name: canonical_bytes(v.record).decode("utf-8") for v in vectors()}
    cases: list[tuple[str, str, str, str, str]] = [
        # (name, vector, old, new, why)
        ("reordered-keys", "delete-empty-payload", '"op":"delete",', "", "op moved to the end"),
        ("space-after-colon", WORKED_EXAMPLE, '"op":', '"op": ', "insignificant whitespace"),
        ("trailing-newline", WORKED_EXAMPLE, '"v":1}', '"v":1}\n', "insignificant whitespace"),
        ("escaped-non-ascii", WORKED_EXAMPLE, "林", "\\u6797", "non-ASCII must be literal"),
        ("escaped-slash", "string-escapes", "/ ", "\\/ ", "/ is never escaped"),
        ("uppercase-hex", "string-escapes", "\\u001f", "\\u001F", "hex digits are lowercase"),
        ("long-newline", "string-escapes", "\\n", "\\u000a", "short escape where one exists"),
        ("raw-control", "string-escapes", "\\u0001", "\x01", "C0 controls must be escaped"),
        ("decimal-scale", "lab-result", '"135"', '"135.0"', "decimal not normalized"),
        ("decimal-exponent", "decimals", '"100"', '"1E+2"', "decimal in exponent form"),
        ("decimal-negative-zero", "decimals", '"0"', '"-0"', "-0 is written 0"),
        ("float-not-repr", "floats", '"1e+20"', '"1e20"', "float not in repr form"),
        ("float-padded", "floats", '"0.1"', '"0.10"', "float not shortest"),
        ("float-bare", "floats", '{"$float":"0.1"}', "0.1", "floats are tagged"),
        ("datetime-zero-micro", WORKED_EXAMPLE, "16:45:12", "16:45:12.000000", ".000000"),
        ("datetime-offset", "aware-datetimes", "00:00:00Z", "00:00:00+00:00", "UTC is Z"),
        ("bytes-unpadded", "bytes-bool-null", '"TQ=="', '"TQ"', "base64 padding required"),
        ("bytes-urlsafe", "bytes-bool-null", "AP8QgD4/", "AP8QgD4_", "standard alphabet"),
        ("version-2", WORKED_EXAMPLE, '"v":1}', '"v":2}', "unknown format version"),
        ("version-true", WORKED_EXAMPLE, '"v":1}', '"v":true}', "version is the integer 1"),
        ("extra-key", WORKED_EXAMPLE, '"v":1}', '"v":1,"x":0}', "unexpected key"),
        ("duplicate-key", WORKED_EXAMPLE, '"op":"upsert",', '"op":"upsert","op":"upsert",', "dup"),
        ("unknown-tag", "dates-naive-datetimes", '"$date"', '"$time"', "unknown tag"),
        ("array-value", WORKED_EXAMPLE, '"PHONE":null', '"PHONE":[]', "arrays are not values"),
        ("int-leading-plus", WORKED_EXAMPLE, '"VALID_FLAG":1', '"VALID_FLAG":+1', "not JSON"),
        ("bom", WORKED_EXAMPLE, '{"hospital_id"', '\ufeff{"hospital_id"', "no byte order mark"),
    ]
    out: list[dict[str, str]] = []
    for name, source, old, new, why in cases:
        text = by_name[source]
        assert text.count(old) >= 1, (name, old)
        bad = text.replace(old, new, 1)
        if name == "reordered-keys":
            bad = bad[:-1] + ',"op":"delete"}'
        out.append(
            {"name": name, "from": source, "why": why, "text": bad, "hex": bad.encode().hex()}
        )
    return out


def render() -> str:
    """The golden file's text, as the committed file must read."""
    entries: list[dict[str, Any]] = []
    for v in vectors():
        data = canonical_bytes(v.record)
        entry: dict[str, Any] = {"name": v.name, "note": v.note, "input": to_dict(v.record)}
        if v.decoded_from:
            entry["decoded_from"] = {
                column: {"encoding": enc, "hex": raw.hex()}
                for column, (enc, raw) in v.decoded_from.items()
            }
        entry["canonical"] = data.decode("utf-8")
        entry["canonical_hex"] = data.hex()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        assert entry["sha256"] == content_hash(v.record)
        entries.append(entry)
    doc = {
        "format": "medfabric canonical record",
        "version": 1,
        "spec": "docs/canonical.md",
        "generated_by": "python tests/records/make_golden.py --rewrite",
        "input_form": "medfabric.records.to_dict (docs/canonical.md, 'Typed JSON form')",
        "vectors": entries,
        "non_canonical": non_canonical(),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewrite", action="store_true", help=f"write {GOLDEN.name}")
    args = parser.parse_args(argv)
    text = render()
    if args.rewrite:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        print(f"wrote {GOLDEN} ({len(vectors())} vectors)")
        return 0
    if GOLDEN.is_file() and GOLDEN.read_text(encoding="utf-8") == text:
        print(f"{GOLDEN.name} is up to date")
        return 0
    print(f"{GOLDEN.name} differs from what this script renders; review, then --rewrite")
    return 1


if __name__ == "__main__":
    sys.exit(main())
