"""The receiver refuses every tampered or bad batch with a recorded reason and a 4xx, and ODS
stays untouched: one payload byte changed, a record changed (with and without its hash
recomputed, the Merkle root left alone), a wrong key, a replayed batch id, a truncated body,
an oversized body, a malformed payload, a payload for another region's key.

The bad batches are built from real frames a gateway spooled (``Gateway.extract``), re-sealed
and re-signed with the region's and hospital's real keys where the case needs an authentic
frame, so that each one fails at exactly the check it targets (see ``receiver/intake.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from tests.gateway.kit import Env, copy_region, gateway

from medfabric.crypto import EncryptionKey, SigningKey, open_sealed, seal
from medfabric.crypto.sealing import OVERHEAD
from medfabric.receiver import Intake, Rejection, build_app
from medfabric.records.batch import (
    SIGNATURE_DOMAIN,
    BatchManifest,
    merkle_root_hex,
    pack_frame,
    sign_manifest,
    unpack_frame,
)
from medfabric.records.keyring import Keyring
from medfabric.records.payload import read_payload, write_payload
from medfabric.records.sqlcanon import hash_sql
from medfabric.warehouse import OdsStore

HOSPITAL = "H01"
TABLE = "PAT_MASTER_INDEX"  # HIS, a hundred-odd patients with string columns
OTHER_TABLE = "DEPT_DICT"


# --- fixtures ----------------------------------------------------------------------------------


@dataclass
class Spool:
    """H01's spooled frames (source table → frame bytes) and the region's real keys."""

    env: Env
    frames: dict[str, bytes]
    keys: Keyring

    @property
    def hospital_key(self) -> SigningKey:
        return self.keys.hospital_signing_key(HOSPITAL)

    @property
    def region_key(self) -> EncryptionKey:
        return self.keys.region_seal_key()


@pytest.fixture(scope="module")
def spool(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Spool:
    """Extract H01's HIS once, without sending; keep every frame in memory."""
    env = copy_region(template, tmp_path_factory.mktemp("rx-spool") / "r")
    gw = gateway(env, HOSPITAL)
    try:
        report = gw.extract(["HIS"])
        assert not report.errors, report.errors
        rows = gw.state.con.execute("SELECT source_table, file FROM outbox").fetchall()
        frames = {t: (gw.state.spool / f).read_bytes() for t, f in rows}
        assert gw.state.spool == env.settings.gateway.dir / HOSPITAL / "spool"
    finally:
        gw.close()
    assert {TABLE, OTHER_TABLE} <= frames.keys()
    return Spool(env, frames, Keyring(env.settings.receiver.keys_dir))


@dataclass
class Receiver:
    client: TestClient
    intake: Intake

    @property
    def store(self) -> OdsStore:
        return self.intake.store

    def post(self, body: Any) -> httpx.Response:
        response: httpx.Response = self.client.post("/v1/batches", content=body)
        return response


def _open_receiver(spool: Spool, root: Path, *, max_body_mb: int | None = None) -> Receiver:
    r = spool.env.settings.receiver
    update: dict[str, Any] = {"warehouse": root / "warehouse" / "warehouse.duckdb"}
    if max_body_mb is not None:
        update["max_body_mb"] = max_body_mb
    settings = spool.env.settings.model_copy(update={"receiver": r.model_copy(update=update)})
    app, intake = build_app(settings)
    return Receiver(TestClient(app, base_url=settings.gateway.receiver_url), intake)


def _close(rx: Receiver) -> None:
    rx.client.close()
    rx.intake.close()
    rx.intake.store.engine.close()


@pytest.fixture
def rx(spool: Spool, tmp_path: Path) -> Iterator[Receiver]:
    """A receiver over an empty warehouse of its own."""
    receiver = _open_receiver(spool, tmp_path)
    try:
        yield receiver
    finally:
        _close(receiver)


# --- building bad batches ----------------------------------------------------------------------


def _parts(frame: bytes) -> tuple[BatchManifest, bytes, bytes]:
    manifest_bytes, signature, sealed = unpack_frame(frame)
    return BatchManifest.from_bytes(manifest_bytes), signature, sealed


def _manifest_len(frame: bytes) -> int:
    return int.from_bytes(frame[4:8], "big")


def _table(spool: Spool, frame: bytes) -> pa.Table:
    """The frame's payload, opened with the region's key."""
    m, _, sealed = _parts(frame)
    payload = open_sealed(spool.region_key, sealed, context=m.batch_id.encode())
    table = read_payload(payload, "arrow-ipc-zstd")
    assert table.column("_seq").to_pylist() == list(range(table.num_rows))
    return table


def _seal(spool: Spool, payload: bytes, batch_id: str) -> bytes:
    return seal(spool.region_key.public_key, payload, context=batch_id.encode())


def _frame(manifest: BatchManifest, sealed: bytes, key: SigningKey, **changes: Any) -> bytes:
    """A frame whose manifest binds ``sealed`` (payload_sha256), signed by ``key``."""
    m = dataclasses.replace(manifest, payload_sha256=hashlib.sha256(sealed).hexdigest(), **changes)
    return pack_frame(m.to_bytes(), sign_manifest(m, key), sealed)


def _reseal(spool: Spool, frame: bytes, table: pa.Table, **changes: Any) -> bytes:
    """``table`` as the payload of ``frame``'s manifest (Merkle root as it was), re-sealed for
    the region and re-signed by the hospital: authentic except for what ``table`` changed."""
    m, _, _ = _parts(frame)
    batch_id = changes.get("batch_id", m.batch_id)
    fmt = changes.get("payload_format", m.payload_format)
    sealed = _seal(spool, write_payload(table, fmt), batch_id)
    return _frame(m, sealed, spool.hospital_key, **changes)


def _hashes(table: pa.Table, m: BatchManifest) -> list[str]:
    """Every row's content hash, computed as the gateway does (DuckDB + ``hash_sql``)."""
    tz = table.schema.field("_source_updated_at").type.tz
    sql = hash_sql(
        hospital_id=m.hospital_id,
        system=m.system,
        table=m.table,
        columns=list(m.columns),
        updated_kind="datetime_tz" if tz else "datetime",
    )
    con = duckdb.connect()
    try:
        con.register("incoming", table)
        return [
            str(r[0]) for r in con.execute(f"SELECT {sql} FROM incoming ORDER BY _seq").fetchall()
        ]
    finally:
        con.close()


def _set_column(table: pa.Table, name: str, values: list[Any]) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values, type=field.type))


def _tamper_value(table: pa.Table, m: BatchManifest) -> tuple[pa.Table, str]:
    """Change one payload string (not a key column) of row 0; returns the table and the column."""
    for name, kind in m.columns:
        values = table.column(name).to_pylist()
        if kind == "string" and name not in m.key_columns and values[0] is not None:
            values[0] = values[0] + "改"
            return _set_column(table, name, values), name
    raise AssertionError(f"{m.table} has no non-null string payload column in row 0")


# --- checking a rejection ----------------------------------------------------------------------


def _ods_state(store: OdsStore) -> dict[str, Any]:
    """Everything a landing would change: ODS tables (all versions), batches, watermarks."""
    e = store.engine
    ods_tables = sorted(
        str(r[0])
        for r in e.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ods'"
        )
    )
    return {
        "ods_tables": ods_tables,
        "rows": {t: e.fetchall(f'SELECT count(*) FROM ods."{t}"')[0][0] for t in ods_tables},
        "current": store.counts_by_table(),
        "registered": store.tables(),
        "batches": sorted(
            tuple(r) for r in e.fetchall("SELECT batch_id, manifest_sha256 FROM ingest.batches")
        ),
        "watermarks": store.watermarks(),
    }


def _rejections(store: OdsStore) -> int:
    return int(store.engine.fetchall("SELECT count(*) FROM ingest.rejections")[0][0])


def _assert_rejected(
    rx: Receiver, body: Any, status: int, code: str, *, batch_id: str | None = None
) -> dict[str, Any]:
    """POST ``body``: the exact status and code, one new rejection recorded with that code,
    and nothing in ODS or the batch log changed."""
    before = _ods_state(rx.store)
    n = _rejections(rx.store)
    r = rx.post(body)
    doc: dict[str, Any] = r.json()
    assert (r.status_code, doc["code"]) == (status, code), doc
    assert doc["detail"]
    assert r.headers["X-Request-Id"] == doc["request_id"]
    assert _rejections(rx.store) == n + 1
    latest = rx.store.rejections(1)[0]
    assert latest.code == code
    assert latest.detail
    assert latest.remote == "testclient"
    if batch_id is not None:
        assert latest.batch_id == batch_id == doc["batch_id"]
        assert latest.hospital_id == HOSPITAL
    assert _ods_state(rx.store) == before
    return doc


def _landed(rx: Receiver, frame: bytes) -> dict[str, Any]:
    r = rx.post(frame)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["status"] == "landed"
    return doc


# --- the good batch ----------------------------------------------------------------------------


def test_good_batches_land_and_the_probes_answer(spool: Spool, rx: Receiver) -> None:
    m, _, _ = _parts(spool.frames[TABLE])
    doc = _landed(rx, spool.frames[TABLE])
    assert doc["batch_id"] == m.batch_id
    assert doc["landed"] == m.row_count > 0
    assert doc["skipped_duplicates"] == 0
    assert rx.store.counts_by_table()[doc["ods_table"]] == m.upserts > 0
    assert [b.batch_id for b in rx.store.batches()] == [m.batch_id]
    for table, frame in spool.frames.items():
        if table != TABLE:
            assert _landed(rx, frame)["landed"] > 0
    assert len(rx.store.tables()) == len(spool.frames)

    # A landed batch with a byte flipped fails its digest before the duplicate check.
    bad = bytearray(spool.frames[OTHER_TABLE])
    bad[-1] ^= 0x01
    _assert_rejected(rx, bytes(bad), 400, "payload-digest-mismatch")

    status = rx.client.get("/v1/status").json()
    assert {t["source_table"] for t in status["tables"]} == set(spool.frames)
    assert status["current_rows"][doc["ods_table"]] == m.upserts
    assert [x["code"] for x in status["rejections"]] == ["payload-digest-mismatch"]
    assert rx.client.get("/healthz").json() == {"status": "ok"}
    assert rx.client.get("/readyz").json() == {"status": "ready"}
    metrics = rx.client.get("/metrics")
    assert metrics.status_code == 200
    lines = dict(line.rsplit(" ", 1) for line in metrics.text.splitlines())
    assert float(lines["medfabric_receiver_batches_landed_total"]) == len(spool.frames)
    assert float(lines["medfabric_receiver_records_landed_total"]) > 0
    assert lines['medfabric_receiver_batches_rejected_total{code="payload-digest-mismatch"}'] == "1"


# --- tampered payloads -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_payload_byte_changed(spool: Spool, rx: Receiver, where: str) -> None:
    frame = spool.frames[TABLE]
    m, _, sealed = _parts(frame)
    start = len(frame) - len(sealed)
    at = {"first": start, "middle": start + len(sealed) // 2, "last": len(frame) - 1}[where]
    bad = bytearray(frame)
    bad[at] ^= 0x40
    _assert_rejected(rx, bytes(bad), 400, "payload-digest-mismatch", batch_id=m.batch_id)
    assert rx.store.tables() == []


def test_a_record_changed_with_its_hash_recomputed_but_not_the_merkle_root(
    spool: Spool, rx: Receiver
) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    table = _table(spool, frame)
    # The helper hashes exactly as the gateway did.
    assert _hashes(table, m) == table.column("_hash").to_pylist()
    tampered, column = _tamper_value(table, m)
    hashes = _hashes(tampered, m)
    assert hashes[0] != table.column("_hash")[0].as_py()
    assert hashes[1:] == table.column("_hash").to_pylist()[1:]
    rehashed = _set_column(tampered, "_hash", hashes)
    assert merkle_root_hex(hashes) != m.merkle_root
    bad = _reseal(spool, frame, rehashed)  # new payload digest, signed; the old Merkle root
    assert _parts(bad)[0].merkle_root == m.merkle_root
    _assert_rejected(rx, bad, 400, "merkle-root-mismatch", batch_id=m.batch_id)
    assert rx.store.tables() == [], column


def test_a_record_changed_without_its_hash(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    tampered, _ = _tamper_value(_table(spool, frame), m)
    doc = _assert_rejected(
        rx, _reseal(spool, frame, tampered), 400, "record-hash-mismatch", batch_id=m.batch_id
    )
    assert "_seq=0" in doc["detail"]
    assert rx.store.tables() == []


def test_a_hash_changed_without_its_record(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    table = _table(spool, frame)
    hashes = table.column("_hash").to_pylist()
    hashes[3] = hashlib.sha256(b"not this record").hexdigest()
    bad = _reseal(spool, frame, _set_column(table, "_hash", hashes))
    _assert_rejected(rx, bad, 400, "record-hash-mismatch", batch_id=m.batch_id)


def test_the_untouched_payload_resealed_lands(spool: Spool, rx: Receiver) -> None:
    """The control for the cases above: re-sealing and re-signing alone changes nothing."""
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    assert _landed(rx, _reseal(spool, frame, _table(spool, frame)))["landed"] == m.row_count


# --- wrong keys --------------------------------------------------------------------------------


def test_manifest_signed_by_a_fresh_key(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, sealed = _parts(frame)
    stranger = SigningKey.generate()
    # The manifest names the stranger as its signer, and the stranger signed it.
    bad = _frame(m, sealed, stranger, signer=stranger.verify_key.fingerprint)
    _assert_rejected(rx, bad, 401, "bad-signature", batch_id=m.batch_id)
    # The manifest names H01's key, but the stranger signed it.
    forged = pack_frame(m.to_bytes(), stranger.sign(SIGNATURE_DOMAIN + m.to_bytes()), sealed)
    _assert_rejected(rx, forged, 401, "bad-signature", batch_id=m.batch_id)
    assert rx.store.tables() == []


def test_manifest_signed_by_another_hospitals_key(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, sealed = _parts(frame)
    h02 = spool.keys.hospital_signing_key("H02")
    bad = _frame(m, sealed, h02, signer=h02.verify_key.fingerprint)
    _assert_rejected(rx, bad, 401, "bad-signature", batch_id=m.batch_id)


def test_signature_or_signed_manifest_changed(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, signature, sealed = _parts(frame)
    flipped = bytearray(signature)
    flipped[10] ^= 0x01
    _assert_rejected(
        rx, pack_frame(m.to_bytes(), bytes(flipped), sealed), 401, "bad-signature",
        batch_id=m.batch_id,
    )  # fmt: skip
    # A canonical manifest with one field changed keeps the old signature: it no longer verifies.
    other = dataclasses.replace(m, merkle_root=hashlib.sha256(b"x").hexdigest())
    _assert_rejected(
        rx, pack_frame(other.to_bytes(), signature, sealed), 401, "bad-signature",
        batch_id=m.batch_id,
    )  # fmt: skip


def test_unregistered_hospital(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, sealed = _parts(frame)
    bad = _frame(m, sealed, spool.hospital_key, hospital_id="H99")
    doc = _assert_rejected(rx, bad, 403, "unknown-hospital")
    assert doc["batch_id"] == m.batch_id
    latest = rx.store.rejections(1)[0]
    assert (latest.batch_id, latest.hospital_id) == (m.batch_id, "H99")


def test_payload_sealed_for_another_region_key(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    payload = write_payload(_table(spool, frame))
    elsewhere = EncryptionKey.generate().public_key
    sealed = seal(elsewhere, payload, context=m.batch_id.encode())
    # The manifest says so: refused before any decryption.
    honest = _frame(m, sealed, spool.hospital_key, region_key=elsewhere.fingerprint)
    _assert_rejected(rx, honest, 400, "wrong-region-key", batch_id=m.batch_id)
    # The manifest claims this region's key: the payload does not open.
    lying = _frame(m, sealed, spool.hospital_key)
    _assert_rejected(rx, lying, 400, "decrypt-failed", batch_id=m.batch_id)
    # Sealed for this region but under another batch id (the sealing context).
    other_context = _frame(m, _seal(spool, payload, "H01-HIS-elsewhere"), spool.hospital_key)
    _assert_rejected(rx, other_context, 400, "decrypt-failed", batch_id=m.batch_id)
    assert rx.store.tables() == []


# --- replays -----------------------------------------------------------------------------------


def test_replayed_batch(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    first = _landed(rx, frame)
    assert first["landed"] == m.row_count
    # The same batch again: refused, not re-applied.
    _assert_rejected(rx, frame, 409, "duplicate-batch", batch_id=m.batch_id)
    # Another authentic batch (another table's rows) re-using the landed batch id.
    other_m, _, _ = _parts(spool.frames[OTHER_TABLE])
    other = _seal(spool, write_payload(_table(spool, spool.frames[OTHER_TABLE])), m.batch_id)
    reused = _frame(other_m, other, spool.hospital_key, batch_id=m.batch_id)
    _assert_rejected(rx, reused, 409, "replayed-batch-id", batch_id=m.batch_id)
    # The same rows under a changed manifest (a later created_at) are a different batch too.
    later = dataclasses.replace(m, created_at=m.created_at.replace(year=m.created_at.year + 1))
    _, _, sealed = _parts(frame)
    _assert_rejected(
        rx, _frame(later, sealed, spool.hospital_key), 409, "replayed-batch-id",
        batch_id=m.batch_id,
    )  # fmt: skip
    assert rx.store.counts_by_table() == {first["ods_table"]: m.upserts}
    assert [b.batch_id for b in rx.store.batches()] == [m.batch_id]


# --- truncated, malformed and oversized bodies -------------------------------------------------


def _cut_points(frame: bytes) -> dict[str, tuple[int, str]]:
    n = _manifest_len(frame)
    sealed_at = 8 + n + 64
    return {
        "empty": (0, "truncated"),
        "inside the magic": (2, "truncated"),
        "inside the length": (6, "truncated"),
        "inside the manifest": (8 + n // 2, "truncated"),
        "after the manifest": (8 + n, "truncated"),
        "inside the signature": (8 + n + 32, "truncated"),
        "inside the seal header": (sealed_at + OVERHEAD // 2, "truncated"),
        "inside the sealed payload": (sealed_at + OVERHEAD + 10, "payload-digest-mismatch"),
        "one byte short": (len(frame) - 1, "payload-digest-mismatch"),
    }


@pytest.mark.parametrize(
    "cut",
    [
        "empty",
        "inside the magic",
        "inside the length",
        "inside the manifest",
        "after the manifest",
        "inside the signature",
        "inside the seal header",
        "inside the sealed payload",
        "one byte short",
    ],
)
def test_truncated_body(spool: Spool, rx: Receiver, cut: str) -> None:
    frame = spool.frames[TABLE]
    length, code = _cut_points(frame)[cut]
    assert length < len(frame)
    doc = _assert_rejected(rx, frame[:length], 400, code)
    if code == "truncated":
        assert doc["batch_id"] is None  # nothing of the manifest is trusted yet
    else:
        assert doc["batch_id"] == _parts(frame)[0].batch_id
    assert rx.store.tables() == []


def test_bad_frame_and_manifest(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, signature, sealed = _parts(frame)
    _assert_rejected(rx, b"MFB2" + frame[4:], 400, "bad-magic")
    _assert_rejected(rx, b"PK\x03\x04" + frame[4:], 400, "bad-magic")
    zero = frame[:4] + b"\x00\x00\x00\x00" + frame[8:]
    _assert_rejected(rx, zero, 400, "bad-value")
    huge = frame[:4] + (1 << 24).to_bytes(4, "big") + frame[8:]
    _assert_rejected(rx, huge, 400, "manifest-too-large")
    spaced = json.dumps(m.to_dict(), indent=1, ensure_ascii=False).encode()
    _assert_rejected(rx, pack_frame(spaced, signature, sealed), 400, "not-canonical")
    _assert_rejected(rx, pack_frame(b"[1, 2]", signature, sealed), 400, "bad-json")
    assert rx.store.tables() == []


def test_oversized_body(spool: Spool, tmp_path: Path) -> None:
    small = _open_receiver(spool, tmp_path, max_body_mb=1)
    try:
        assert small.intake.max_body == 1 << 20
        frame = spool.frames[TABLE]
        padded = frame + bytes((1 << 20) + 1 - len(frame))
        assert _landed(small, frame)  # a frame under the limit is fine
        doc = _assert_rejected(small, padded, 413, "too-large")
        assert doc.get("batch_id") is None
        # Without a Content-Length (chunked), the limit is enforced while reading.
        chunks = [padded[i : i + 65536] for i in range(0, len(padded), 65536)]
        _assert_rejected(small, iter(chunks), 413, "too-large")
        # The intake enforces it too, whatever the HTTP layer did.
        with pytest.raises(Rejection) as e:
            small.intake.accept(padded)
        assert (e.value.code, e.value.status) == ("too-large", 413)
        assert small.store.rejections(1)[0].code == "too-large"
        assert len(small.store.batches()) == 1
    finally:
        _close(small)


def test_a_parquet_payload_of_an_older_gateway_still_lands(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    older = _reseal(spool, frame, _table(spool, frame), payload_format="parquet-zstd")
    assert _landed(rx, older)["landed"] == m.row_count


def test_garbage_sealed_as_payload(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    garbage = _seal(spool, b"ARROW1 not really an IPC stream " * 40, m.batch_id)
    doc = _assert_rejected(
        rx, _frame(m, garbage, spool.hospital_key), 400, "malformed-payload", batch_id=m.batch_id
    )
    assert "not a readable arrow-ipc-zstd stream" in doc["detail"]
    # Malformed Parquet, for a manifest of the older format.
    garbage = _seal(spool, b"PAR1 not really parquet " * 40, m.batch_id)
    doc = _assert_rejected(
        rx, _frame(m, garbage, spool.hospital_key, payload_format="parquet-zstd"), 400,
        "malformed-payload", batch_id=m.batch_id,
    )  # fmt: skip
    assert "not a readable parquet-zstd stream" in doc["detail"]
    empty = _seal(spool, b"", m.batch_id)
    _assert_rejected(
        rx, _frame(m, empty, spool.hospital_key), 400, "malformed-payload", batch_id=m.batch_id
    )


def _retype(table: pa.Table, name: str, values: list[Any], type_: pa.DataType) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, type_), pa.array(values, type=type_))


def test_payload_not_matching_the_manifest(spool: Spool, rx: Receiver) -> None:
    frame = spool.frames[TABLE]
    m, _, _ = _parts(frame)
    table = _table(spool, frame)
    n = table.num_rows
    last = table.column_names[-1]
    text = next(name for name, kind in m.columns if kind == "string")
    as_bytes = [v.encode() if v is not None else None for v in table.column(text).to_pylist()]
    cases = {
        "a payload column dropped": (table.drop_columns([last]), "differ from the manifest"),
        "a payload column renamed": (
            table.rename_columns([*table.column_names[:-1], last + "_x"]),
            "differ from the manifest",
        ),
        "a meta column dropped": (
            table.drop_columns(["_extracted_at"]),
            "differ from the manifest",
        ),
        "columns reordered": (
            table.select([*table.column_names[1:], "_seq"]),
            "differ from the manifest",
        ),
        "a meta column of another type": (
            _retype(table, "_seq", list(range(n)), pa.int32()),
            "meta column _seq has type int32",
        ),
        "a payload column of another kind": (
            _retype(table, text, as_bytes, pa.binary()),
            f"column {text} has Arrow type binary, not of kind string",
        ),
        "a row missing": (table.slice(0, n - 1), f"payload has {n - 1} rows"),
        "_seq with a gap": (_set_column(table, "_seq", [*range(n - 1), n]), "_seq is not 0"),
        "a local key twice": (
            _set_column(table, "_local_key", [table.column("_local_key")[0].as_py()] * n),
            "a local key appears twice",
        ),
    }
    for what, (bad, detail) in cases.items():
        doc = _assert_rejected(
            rx, _reseal(spool, frame, bad), 400, "malformed-payload", batch_id=m.batch_id
        )
        assert detail in doc["detail"], (what, doc["detail"])
    assert rx.store.tables() == []
