"""Gateways notarize what they send; the receiver confirms landed batches on the ledger; a record
is verified and ODS audited against it (docs/ledger.md, "Notarizing what the gateways send").

Real pieces throughout: a simulated region with keys, four ledger node processes on loopback
whose membership registers the hospitals' own keys, the receiver app in process, and gateways.
"""

from __future__ import annotations

import hmac
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from tests.gateway.kit import Env, build_template, copy_region, in_process_receiver

from medfabric.gateway import Gateway
from medfabric.gateway.notary import Notary, pseudonym_key
from medfabric.gateway.runner import GatewayError
from medfabric.ledger.blocks import encode_block
from medfabric.ledger.client import LedgerClient
from medfabric.ledger.cluster import (
    free_base_port,
    init_cluster,
    node_command,
    wait_until_healthy,
)
from medfabric.ledger.replay import replay_from
from medfabric.receiver.notarization import (
    NotarizationError,
    NotarizationWatch,
    audit,
    open_reader,
    verify_row,
)
from medfabric.receiver.service import ledger_reader
from medfabric.records.keyring import Keyring
from medfabric.settings import parse_settings
from medfabric.warehouse import DuckDBEngine

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@dataclass
class Region:
    env: Env
    cluster: Path


@contextmanager
def running_cluster(root: Path, keys: Path) -> Iterator[Path]:
    """Four node processes on loopback; only H01's key is registered (H02 is not an
    institution)."""
    cluster = root / "ledger"
    h01 = Keyring(keys).hospital_verify_key("H01")
    assert h01 is not None
    files = init_cluster(cluster, 4, [], base_port=free_base_port(8), institution_keys={"H01": h01})
    log = open(root / "nodes.log", "wb")  # noqa: SIM115
    procs = {
        f.node_id: subprocess.Popen(node_command(f.config), stdout=log, stderr=subprocess.STDOUT)
        for f in files
    }
    try:
        wait_until_healthy(
            {f.node_id: f"http://{f.api[0]}:{f.api[1]}" for f in files}, procs, timeout=60
        )
        yield cluster
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(20)
        log.close()


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    """Two hospitals and a ledger shared by the tests that do not depend on its history."""
    root = tmp_path_factory.mktemp("notary")
    template = build_template(root / "tpl", hospitals=2, patients=40)
    with running_cluster(root, template / "keys") as cluster:
        yield Region(_env(template, root / "r0", cluster), cluster)


def _env(template: Path, dest: Path, cluster: Path, **ledger: object) -> Env:
    copy_region(template, dest)
    data = tomllib.loads((dest / "region.toml").read_text("utf-8"))
    data["ledger"] = {"dir": str(cluster), "late_after": 600, "sample": 5, **ledger}
    return Env(dest, parse_settings(data))


@pytest.fixture
def env(region: Region, tmp_path: Path) -> Env:
    return _env(region.env.root.parent / "tpl", tmp_path / "r", region.cluster)


def _cycle(env: Env, hospital: str, client: object) -> Gateway:
    gw = Gateway(env.settings, hospital, client=client)  # type: ignore[arg-type]
    report = gw.cycle(force_send=True)
    assert not report.errors
    return gw


def test_a_gateway_notarizes_every_record_it_sends_with_a_pseudonymous_patient(env: Env) -> None:
    with in_process_receiver(env) as rx:
        gw = Gateway(env.settings, "H01", client=rx)
        try:
            report = gw.cycle(force_send=True)
            snap = gw.state.snapshot()["notary"]
        finally:
            gw.close()
    assert report.notary is not None
    assert report.notary.error is None and report.notary.pending == 0
    assert report.notary.entries == report.records > 0
    assert snap["queued_batches"] == 0 and snap["notarized_rows"] == report.records
    with LedgerClient.from_cluster(env.settings.ledger.dir) as client:  # type: ignore[arg-type]
        replay = replay_from(client)
    wh = duckdb.connect(str(env.warehouse), read_only=True)
    rows = wh.execute(
        'SELECT _local_key, _hash, "PATIENT_ID" FROM ods."H01__HIS__PAT_MASTER_INDEX"'
    ).fetchall()
    wh.close()
    assert rows
    key = pseudonym_key(Keyring(env.settings.gateway.keys_dir).hospital_signing_key("H01"))
    for local_key, hash_hex, patient_id in rows:
        found = replay.index[bytes.fromhex(hash_hex)]
        assert found.index.address == f"H01/HIS/PAT_MASTER_INDEX/{local_key}"
        assert found.index.data_type == "PAT_MASTER_INDEX"
        assert found.index.patient == hmac.digest(key, str(patient_id).encode(), "sha256")
    # No direct identifier in clear on chain: names and ID numbers appear in no block.
    wh = duckdb.connect(str(env.warehouse), read_only=True)
    secrets = wh.execute(
        'SELECT "PAT_NAME", "ID_NO" FROM ods."H01__HIS__PAT_MASTER_INDEX" LIMIT 20'
    ).fetchall()
    wh.close()
    with LedgerClient.from_cluster(env.settings.ledger.dir) as client:  # type: ignore[arg-type]
        top = client.height()
        assert top is not None
        raw = b"".join(encode_block(b) for h in range(top + 1) if (b := client.block(h)))
    for name, id_no in secrets:
        for value in (name, id_no):
            if value:
                assert str(value).encode() not in raw


def test_the_watch_confirms_batches_and_flags_late_ones(region: Region, tmp_path: Path) -> None:
    # Its own ledger: nothing of this region may be notarized before the test starts.
    template = region.env.root.parent / "tpl"
    with running_cluster(tmp_path, template / "keys") as cluster:
        _watch_scenario(_env(template, tmp_path / "r", cluster))


def _watch_scenario(env: Env) -> None:
    with in_process_receiver(env) as rx:
        gw = Gateway(env.settings, "H01", client=rx)
        notary, gw.notary = gw.notary, None  # entries are queued, nobody notarizes yet
        try:
            gw.cycle(force_send=True, systems=["LIS"])
        finally:
            gw.close()
    reader = ledger_reader(env.settings)
    assert reader is not None
    wh_engine = _engine(env)
    try:
        watch = NotarizationWatch(wh_engine, reader, late_after=600, sample=5)
        first = watch.check()
        assert first.checked > 0 and first.pending == first.checked and first.notarized == 0
        received = wh_engine.fetchall("SELECT max(received_at) FROM ingest.batches")[0][0]
        late = watch.check(now=received + timedelta(seconds=601))
        assert late.late == first.checked
        assert notary is not None
        gw2 = Gateway(env.settings, "H01")
        try:
            done = Notary(gw2.state, gw2.notary.client).run_pending(force=True)  # type: ignore[union-attr]
        finally:
            gw2.close()
        assert done.batches == first.checked and done.error is None
        after = watch.check()
        assert after.notarized == first.checked
        rows = wh_engine.fetchall(
            "SELECT status, late, first_height, last_height, notarized_at FROM ingest.notarization"
        )
        assert rows and all(r[0] == "notarized" and r[1] is True and r[2] is not None
                            and r[3] >= r[2] and r[4] is not None for r in rows)  # fmt: skip
    finally:
        reader.close()
        wh_engine.close()


def _engine(env: Env) -> DuckDBEngine:
    return DuckDBEngine(env.warehouse)


def test_verify_and_audit_find_every_altered_record(env: Env) -> None:
    with in_process_receiver(env) as rx:
        gw = _cycle(env, "H01", rx)
        gw.close()
    engine = _engine(env)
    reader = open_reader(env.settings.ledger.dir)  # type: ignore[arg-type]
    try:
        table = (
            "H01__LIS__"
            + engine.fetchall(
                "SELECT source_table FROM ingest.ods_tables WHERE system = 'LIS' ORDER BY 1 LIMIT 1"
            )[0][0]
        )
        keys = [r[0] for r in engine.fetchall(f'SELECT _local_key FROM ods."{table}" LIMIT 3')]
        ok = verify_row(engine, reader, table, keys[0])
        assert ok.verdict == "VALID" and ok.proof is not None
        assert ok.proof.entry.index.address.endswith("/" + keys[0])
        clean = audit(engine, reader)
        assert clean.checked > 0 and clean.valid == clean.checked and not clean.findings
        assert clean.blocks > 0 and clean.entries >= clean.checked

        # A value changed after landing; then a value and the stored hash changed together.
        text_col = engine.fetchall(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'ods' "
            "AND table_name = ? AND data_type = 'VARCHAR' AND column_name NOT LIKE '\\_%' "
            "ESCAPE '\\' ORDER BY ordinal_position DESC LIMIT 1",
            [table],
        )[0][0]
        engine.execute(
            f'UPDATE ods."{table}" SET "{text_col}" = coalesce("{text_col}", \'\') || \'x\' '
            "WHERE _local_key = ?",
            [keys[1]],
        )
        engine.execute(
            f'UPDATE ods."{table}" SET "{text_col}" = coalesce("{text_col}", \'\') || \'y\' '
            "WHERE _local_key = ?",
            [keys[2]],
        )
        rehashed = verify_row(engine, reader, table, keys[2]).recomputed_hash
        engine.execute(
            f'UPDATE ods."{table}" SET _hash = ? WHERE _local_key = ?', [rehashed, keys[2]]
        )
        altered = verify_row(engine, reader, table, keys[1])
        assert altered.verdict == "ALTERED" and "block" in altered.detail
        forged = verify_row(engine, reader, table, keys[2])
        assert forged.verdict == "NOT NOTARIZED"
        found = audit(engine, reader)
        assert {(f.local_key, f.verdict) for f in found.findings} == {
            (keys[1], "ALTERED"),
            (keys[2], "NOT NOTARIZED"),
        }
        assert found.valid == clean.valid - 2
        one = audit(engine, reader, ods_table=table, sample=10_000)
        assert one.mode == "sample" and {f.local_key for f in one.findings} == {keys[1], keys[2]}
        with pytest.raises(NotarizationError, match="no row"):
            verify_row(engine, reader, table, "no-such-key")
        with pytest.raises(NotarizationError, match="no ODS table"):
            verify_row(engine, reader, "H09__LIS__NOPE", "1")
    finally:
        reader.close()
        engine.close()


def test_a_hospital_not_registered_on_the_ledger_is_refused_at_start(env: Env) -> None:
    with pytest.raises(GatewayError, match="not an institution"):
        Gateway(env.settings, "H02")


def test_an_unreachable_ledger_leaves_batches_queued_with_back_off(
    region: Region, tmp_path: Path
) -> None:
    # A copy of the cluster's configs whose API ports point nowhere.
    dead = tmp_path / "dead-ledger"
    for cfg in sorted(region.cluster.glob("*/node.toml")):
        (dead / cfg.parent.name).mkdir(parents=True)
        text = cfg.read_text("utf-8")
        data = tomllib.loads(text)
        port = data["api"]["port"]
        text = text.replace(f"[api]\nhost = \"127.0.0.1\"\nport = {port}",
                            "[api]\nhost = \"127.0.0.1\"\nport = 9")  # fmt: skip
        (dead / cfg.parent.name / "node.toml").write_text(text, "utf-8")
        shutil.copy2(cfg.parent / "node.key", dead / cfg.parent.name / "node.key")
    env = _env(region.env.root.parent / "tpl", tmp_path / "r", dead, timeout=2)
    with in_process_receiver(env) as rx:
        gw = Gateway(env.settings, "H01", client=rx)
        try:
            report = gw.cycle(force_send=True, systems=["LIS"])
            queued = gw.state.con.execute(
                "SELECT count(*), min(attempts), min(next_try) FROM notary WHERE status = 'pending'"
            ).fetchone()
        finally:
            gw.close()
    assert report.send.sent > 0  # sending does not wait for the ledger
    assert report.notary is not None and report.notary.error is not None
    assert queued is not None and queued[0] == report.send.sent
    assert queued[1] == 0  # only the first batch was tried
    assert queued[2] is not None
