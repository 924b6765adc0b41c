"""records.digests: SHA-256 per value over Arrow buffers equals hashlib per value, for every
string/binary layout Arrow can hand over (chunked, sliced, large offsets, empty values)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfabric.crypto import merkle
from medfabric.records import RecordError
from medfabric.records.batch import merkle_root_hex, merkle_root_of_digests
from medfabric.records.digests import DIGEST_SIZE, hex_column, sha256_each

TEXTS = st.lists(st.text(max_size=40), max_size=30)


def _expected(values: list[str]) -> bytes:
    return b"".join(hashlib.sha256(v.encode("utf-8")).digest() for v in values)


@given(TEXTS)
def test_each_value_is_hashed_in_order(values: list[str]) -> None:
    assert sha256_each(pa.array(values, type=pa.string())) == _expected(values)


@given(TEXTS, TEXTS)
def test_chunked_arrays_are_hashed_chunk_after_chunk(a: list[str], b: list[str]) -> None:
    chunked = pa.chunked_array([pa.array(a, pa.string()), pa.array(b, pa.string())])
    assert sha256_each(chunked) == _expected(a + b)


@given(TEXTS, st.integers(0, 30), st.integers(0, 30))
def test_a_sliced_array_hashes_only_its_window(values: list[str], start: int, length: int) -> None:
    sliced = pa.array(values, pa.string()).slice(start, length)
    assert sha256_each(sliced) == _expected(values[start : start + length])


@pytest.mark.parametrize("arrow_type", [pa.large_string(), pa.binary(), pa.large_binary()])
def test_large_and_binary_layouts(arrow_type: pa.DataType) -> None:
    values = ["", "白细胞计数", "a\x00b", "x" * 3000]
    raw = [v.encode("utf-8") for v in values]
    array = pa.array(raw if pa.types.is_binary(arrow_type) or arrow_type == pa.large_binary()
                     else values, type=arrow_type)  # fmt: skip
    assert sha256_each(array) == _expected(values)


def test_empty_input_gives_no_digests() -> None:
    assert sha256_each(pa.array([], pa.string())) == b""
    assert hex_column(b"").to_pylist() == []


def test_nulls_and_other_types_are_refused() -> None:
    with pytest.raises(RecordError, match="without canonical bytes"):
        sha256_each(pa.array(["a", None], pa.string()))
    with pytest.raises(RecordError, match="type int64"):
        sha256_each(pa.array([1, 2]))


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=20))
def test_hex_column_is_the_hex_of_each_digest(digests: list[bytes]) -> None:
    column = hex_column(b"".join(digests))
    assert column.type == pa.string()
    assert column.to_pylist() == [d.hex() for d in digests]


def test_hex_column_refuses_partial_digests() -> None:
    with pytest.raises(RecordError, match="whole number"):
        hex_column(b"\x00" * (DIGEST_SIZE + 1))


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40))
def test_merkle_root_of_packed_digests_equals_the_hex_form(digests: list[bytes]) -> None:
    packed = b"".join(digests)
    assert merkle_root_of_digests(packed) == merkle_root_hex([d.hex() for d in digests])
    assert merkle_root_of_digests(packed) == merkle.root(digests).hex()
