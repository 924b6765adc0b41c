"""The canonical record, its canonical serialization and content hash (golden vectors),
the batch manifest and its Merkle root: the provenance format every stage agrees on.

Built by the gateway issue (3). May use: crypto.
"""

from medfabric.records.canonical import (
    FORMAT_VERSION,
    MAX_DIGITS,
    OPS,
    SOURCE_ENCODINGS,
    SYSTEMS,
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
