"""The gateway end to end against an in-process receiver: what lands in ODS equals the
sources, row for row and hash for hash, computed independently with the Python encoder."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from tests.gateway.kit import (
    Env,
    assert_ods_equals_sources,
    copy_region,
    duplicate_versions,
    gateway,
    in_process_receiver,
)

from medfabric.gateway import Gateway
from medfabric.records.keyring import Keyring
from medfabric.records.messages import DownlinkMessage, sign_downlink
from medfabric.simulator.tick import tick_region

HOSPITALS = ("H01", "H02", "H03")


def _cycle_all(env: Env, client: httpx.Client, **kw: object) -> dict[str, object]:
    reports = {}
    for h in HOSPITALS:
        gw = gateway(env, h, client)
        try:
            reports[h] = gw.cycle(force_send=True, **kw)  # type: ignore[arg-type]
        finally:
            gw.close()
    return reports


def _sqlite(env: Env, hospital: str, system: str) -> sqlite3.Connection:
    url = env.settings.hospital(hospital).systems[system].url  # type: ignore[index]
    return sqlite3.connect(url.removeprefix("sqlite:///"))


def _versions(env: Env, ods_table: str, key: str) -> list[tuple[int, str, str]]:
    con = duckdb.connect(str(env.warehouse))
    try:
        return con.execute(
            f'SELECT _version, _op, _hash FROM ods."{ods_table}" WHERE _local_key = ? '
            "ORDER BY _version",
            [key],
        ).fetchall()
    finally:
        con.close()


def test_full_then_incremental_load_equals_the_sources(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:
        first = _cycle_all(env, client)
        for h in HOSPITALS:
            report = first[h]
            assert not report.errors, report.errors  # type: ignore[attr-defined]
            assert report.send.quarantined == 0  # type: ignore[attr-defined]
            assert {t.mode for t in report.tables} == {"full"}  # type: ignore[attr-defined]
            assert assert_ods_equals_sources(env, h) > 1000
        # Nothing changed: a second cycle reads the overlap window and sends nothing.
        again = _cycle_all(env, client)
        assert all(r.records == 0 for r in again.values())  # type: ignore[attr-defined]
        assert {t.mode for t in again["H01"].tables} == {"incremental"}  # type: ignore[attr-defined]

        summary = tick_region(env.root, days=2)
        assert summary
        after = _cycle_all(env, client, deletes=True)  # kangning deletes rows physically
        sent = sum(r.records for r in after.values())  # type: ignore[attr-defined]
        assert 0 < sent < sum(r.records for r in first.values())  # type: ignore[attr-defined]
        for h in HOSPITALS:
            assert_ods_equals_sources(env, h)
    assert duplicate_versions(env) == 0


def test_hard_deletes_are_found_by_key_comparison(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    # H02's HIS speaks kangning: rows are physically deleted.
    assert env.settings.hospital("H02").systems["HIS"].dialect == "kangning"
    with in_process_receiver(env) as client:
        _cycle_all(env, client)
        con = _sqlite(env, "H02", "HIS")
        gone = [r[0] for r in con.execute('SELECT "ZDID" FROM "YS_ZDJL" LIMIT 3').fetchall()]
        con.execute('DELETE FROM "YS_ZDJL" WHERE "ZDID" IN (?, ?, ?)', gone)
        con.commit()
        con.close()
        gw = gateway(env, "H02", client)
        try:
            skipped = gw.cycle(force_send=True, deletes=False)
            assert skipped.records == 0  # without the key scan nothing is seen
            report = gw.cycle(force_send=True, deletes=True)
        finally:
            gw.close()
        assert sum(t.deletes for t in report.tables) == 3
        for key in gone:
            versions = _versions(env, "H02__HIS__YS_ZDJL", str(key))
            assert [op for _, op, _ in versions] == ["upsert", "delete"]
        assert_ods_equals_sources(env, "H02")


def test_a_b_a_change_keeps_three_versions_and_late_rows_are_caught(
    template: Path, tmp_path: Path
) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:
        _cycle_all(env, client)
        con = _sqlite(env, "H01", "HIS")
        key, name, stamp = con.execute(
            'SELECT "PATIENT_ID", "PAT_NAME", "LAST_UPDATE_TIME" FROM "PAT_MASTER_INDEX" '
            'ORDER BY "LAST_UPDATE_TIME" DESC LIMIT 1'
        ).fetchone()
        for new_name in ("林新名", name):
            con.execute(
                'UPDATE "PAT_MASTER_INDEX" SET "PAT_NAME" = ?, "LAST_UPDATE_TIME" = ? '
                'WHERE "PATIENT_ID" = ?',
                [new_name, stamp, key],  # same change time: found by the overlap window
            )
            con.commit()
            gw = gateway(env, "H01", client)
            try:
                assert gw.cycle(force_send=True, deletes=False).records == 1
            finally:
                gw.close()
        con.close()
        versions = _versions(env, "H01__HIS__PAT_MASTER_INDEX", key)
        assert len(versions) == 3
        assert versions[0][2] == versions[2][2] != versions[1][2]
        assert_ods_equals_sources(env, "H01")


def test_schema_change_warns_and_goes_on(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:
        _cycle_all(env, client)
        con = _sqlite(env, "H03", "HIS")
        con.execute('ALTER TABLE "his_dept" ADD COLUMN "floor" INTEGER')
        con.execute('UPDATE "his_dept" SET "floor" = 3, "updateTime" = "updateTime" + 1000')
        con.commit()
        con.close()
        gw = gateway(env, "H03", client)
        try:
            report = gw.cycle(force_send=True, deletes=False)
            snap = gw.state.snapshot()
        finally:
            gw.close()
        assert not report.errors
        dept = next(t for t in snap["tables"] if t["table"] == "his_dept")
        assert dept["schema_warning"] == "source schema changed: added floor"
        assert_ods_equals_sources(env, "H03")


def test_receiver_down_spool_grows_then_drains(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    down = httpx.Client(base_url="http://127.0.0.1:9", timeout=2)  # nothing listens on port 9
    gw = gateway(env, "H01", down)
    try:
        report = gw.cycle(force_send=True, downlink=False)
        snap = gw.state.snapshot()
    finally:
        gw.close()
        down.close()
    assert report.send.sent == 0 and report.send.error
    assert snap["spool"]["batches"] == len(
        report.tables and [b for t in report.tables for b in t.batches]
    )
    assert snap["spool"]["rows"] == report.records > 0
    with in_process_receiver(env) as client:
        gw = gateway(env, "H01", client)
        try:
            drained = gw.cycle(force_send=True)
            assert drained.send.sent == snap["spool"]["batches"]
            assert gw.state.snapshot()["spool"]["batches"] == 0
        finally:
            gw.close()
    assert_ods_equals_sources(env, "H01")
    assert not list((env.root / "gateway" / "H01" / "spool").iterdir())


def test_batches_are_sent_while_extraction_goes_on(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r", batch_rows=100)
    posted = threading.Event()
    overlapped: list[bool] = []
    with in_process_receiver(env) as client:
        real_post = client.post

        def post(*args: Any, **kw: Any) -> httpx.Response:
            posted.set()
            return real_post(*args, **kw)

        client.post = post  # type: ignore[method-assign]
        gw = gateway(env, "H01", client)

        def point(label: str) -> None:
            # Extraction stops after its second batch until the first one is on the wire.
            committed.append(label)
            if committed.count("batch-committed") == 2 and not overlapped:
                overlapped.append(posted.wait(30))

        committed: list[str] = []
        gw.extractor.crash_point = point
        try:
            report = gw.cycle(force_send=True, downlink=False)
        finally:
            gw.close()
    assert overlapped == [True]
    batches = sum(len(t.batches) for t in report.tables)
    assert batches > 2 and report.send.sent == batches and report.send.pending == 0
    assert assert_ods_equals_sources(env, "H01") > 0


def test_an_unexpected_sender_failure_is_raised_not_swallowed(
    template: Path, tmp_path: Path
) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:

        def post(*args: Any, **kw: Any) -> httpx.Response:
            raise RuntimeError("sender bug")

        client.post = post  # type: ignore[method-assign]
        gw = gateway(env, "H01", client)
        try:
            with pytest.raises(RuntimeError, match="sender bug"):
                gw.cycle(force_send=True, downlink=False)
            # Everything extracted is still spooled for the next cycle.
            assert gw.state.snapshot()["spool"]["rows"] > 0
        finally:
            gw.close()


def test_a_tampered_batch_is_quarantined_and_recovered(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    gw = gateway(env, "H01", httpx.Client(base_url="http://127.0.0.1:9", timeout=2))
    try:
        gw.extract()
        victim = gw.state.con.execute("SELECT file FROM outbox ORDER BY seq LIMIT 1").fetchone()[0]
    finally:
        gw.close()
    path = env.root / "gateway" / "H01" / "spool" / victim
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one payload byte
    path.write_bytes(bytes(data))
    with in_process_receiver(env) as client:
        gw = gateway(env, "H01", client)
        try:
            report = gw.cycle(force_send=True)
            snap = gw.state.snapshot()
            assert report.send.quarantined == 1
            [q] = snap["quarantine"]
            assert q["code"] == "payload-digest-mismatch"
            assert (env.root / "gateway" / "H01" / "quarantine" / victim).exists()
            # Retrying as is fails again and stays quarantined (no endless retries).
            gw.quarantine_retry(q["batch_id"])
            assert gw.cycle(force_send=True).send.quarantined == 1
            table = gw.quarantine_drop(q["batch_id"])
            assert table.startswith("HIS.")
            gw.cycle(force_send=True)
            assert gw.state.snapshot()["quarantine"] == []
        finally:
            gw.close()
    assert_ods_equals_sources(env, "H01")
    assert duplicate_versions(env) == 0


def test_sqlalchemy_reader_hashes_like_the_sqlite_fast_path(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:
        for h in HOSPITALS:
            gw = Gateway(env.settings, h, client=client, fast_sqlite=False)
            try:
                report = gw.cycle(force_send=True)
            finally:
                gw.close()
            assert not report.errors
            assert_ods_equals_sources(env, h)


def test_downlink_messages_reach_only_their_hospital(template: Path, tmp_path: Path) -> None:
    env = copy_region(template, tmp_path / "r")
    region_key = Keyring(env.settings.receiver.keys_dir).region_signing_key()
    msg = DownlinkMessage(
        "H01", "dictionary", "科室字典更新", "2026-11-29T00:00:00+00:00", {"v": 2}
    )
    data, sig = sign_downlink(msg, region_key)
    body = {"message": base64.b64encode(data).decode(), "signature": base64.b64encode(sig).decode()}
    with in_process_receiver(env) as client:
        assert client.post("/v1/downlink/H01", content=json.dumps(body)).status_code == 200
        forged = dict(body, signature=base64.b64encode(bytes(64)).decode())
        r = client.post("/v1/downlink/H01", content=json.dumps(forged))
        assert r.status_code == 401 and r.json()["code"] == "bad-signature"
        assert client.post("/v1/downlink/H02", content=json.dumps(body)).status_code == 400
        # An unsigned fetch is refused.
        assert client.get("/v1/downlink/H01").status_code == 401
        for h, expected in (("H02", 0), ("H01", 1), ("H01", 0)):
            gw = gateway(env, h, client)
            try:
                assert gw.uplink.fetch_downlink() == expected
            finally:
                gw.close()
    inbox = list((env.root / "gateway" / "H01" / "inbox").glob("*.json"))
    assert len(inbox) == 1
    assert json.loads(inbox[0].read_bytes())["title"] == "科室字典更新"


@pytest.mark.parametrize("hospital", ["H01"])
def test_status_shows_watermarks_lag_and_spool(
    template: Path, tmp_path: Path, hospital: str
) -> None:
    env = copy_region(template, tmp_path / "r")
    with in_process_receiver(env) as client:
        gw = gateway(env, hospital, client)
        try:
            gw.cycle(force_send=True)
            snap = gw.state.snapshot()
        finally:
            gw.close()
    assert snap["spool"]["batches"] == 0 and snap["last_ack"]
    assert all(t["watermark"] and t["lag_seconds"] is not None for t in snap["tables"])
    assert (
        json.loads((env.root / "gateway" / hospital / "status.json").read_text())["hospital_id"]
        == hospital
    )
