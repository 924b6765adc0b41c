"""records.payload: both payload formats give back the table written, types included."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from medfabric.records.payload import (
    CHUNK_ROWS,
    PAYLOAD_FORMATS,
    PayloadError,
    read_payload,
    write_payload,
)


def _table(n: int) -> pa.Table:
    return pa.table(
        {
            "_seq": pa.array(range(n), pa.int64()),
            "name": pa.array([None if i % 7 == 0 else f"张三{i}" for i in range(n)]),
            "value": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
            "day": pa.array([date(2025, 1, 1 + i % 28) for i in range(n)]),
            "at": pa.array(
                [datetime(2025, 1, 1, i % 24, tzinfo=UTC) for i in range(n)],
                pa.timestamp("us", "UTC"),
            ),
            "raw": pa.array([bytes([i % 256]) * 3 for i in range(n)], pa.binary()),
        }
    )


@pytest.mark.parametrize("fmt", PAYLOAD_FORMATS)
@pytest.mark.parametrize("n", [0, 1, CHUNK_ROWS + 5])
def test_round_trip(fmt: str, n: int) -> None:
    table = _table(n)
    back = read_payload(write_payload(table, fmt), fmt)
    assert back.schema == table.schema
    assert back.equals(table.combine_chunks()) or back.to_pylist() == table.to_pylist()


def test_the_ipc_stream_is_cut_into_record_batches() -> None:
    back = read_payload(write_payload(_table(2 * CHUNK_ROWS + 1)), "arrow-ipc-zstd")
    assert back.column(0).num_chunks == 3


def test_garbage_and_unknown_formats_are_refused() -> None:
    with pytest.raises(PayloadError, match="not a readable arrow-ipc-zstd"):
        read_payload(b"not an arrow stream", "arrow-ipc-zstd")
    with pytest.raises(PayloadError, match="not a readable parquet-zstd"):
        read_payload(write_payload(_table(3)), "parquet-zstd")
    with pytest.raises(PayloadError, match="unknown payload format"):
        read_payload(b"", "csv")
    with pytest.raises(PayloadError, match="unknown payload format"):
        write_payload(_table(1), "csv")
