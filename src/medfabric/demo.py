"""``make demo``: bring the platform up on embedded defaults and show each stage working.

Every stage that lands joins this script. Today: the standard code systems are checked, a
small region of hospitals is generated (real SQLite HIS/LIS/PACS/EMR databases in three vendor
dialects, DICOM files, EMR notes, ground truth), keys are issued, the regional receiver starts
(its own process, on loopback), every hospital's gateway makes a full load into ODS, the
region's clock advances one day, the gateways load incrementally, ODS is re-verified hash by
hash, the provenance groundwork is shown on one source table (a Merkle inclusion proof), and a
four-node PBFT ledger (separate processes) notarizes one ODS table's records under the
hospital's key and serves a per-record proof that is checked offline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from medfabric.cli.main import app
from medfabric.crypto.keys import EncryptionKey, SigningKey
from medfabric.crypto.merkle import MerkleTree, leaf_hash, verify_inclusion
from medfabric.crypto.sealing import open_sealed, seal
from medfabric.gateway import CycleReport, Gateway
from medfabric.ledger.blocks import (
    Entry,
    EntryIndex,
    storage_address,
)
from medfabric.ledger.client import LedgerClient, NotNotarized
from medfabric.ledger.cluster import (
    ClusterError,
    free_base_port,
    init_cluster,
    load_node_config,
    node_command,
    wait_until_healthy,
)
from medfabric.records import CanonicalRecord, canonical_bytes, content_hash, decode_source_text
from medfabric.settings import Settings, load_settings
from medfabric.simulator.dialects import DIALECTS

console = Console()


def _run(title: str, args: list[str]) -> None:
    console.print(Rule(f"[bold]{title}"))
    console.print(f"$ medfabric {' '.join(args)}", style="dim")
    app(args, standalone_mode=False)


def provenance_glimpse(region: Path, hospital: str = "H02") -> None:
    """Hash a source table's rows canonically, build their Merkle tree, check a proof, sign, seal.

    What the gateway will do for every batch (docs/canonical.md, docs/ledger.md), shown on the
    GBK-encoded patient table of a `kangning` HIS.
    """
    manifest = json.loads((region / "region.json").read_text("utf-8"))
    h = next(x for x in manifest["hospitals"] if x["id"] == hospital)
    dialect = DIALECTS[h["dialects"]["HIS"]]
    table = dialect.table_name("patient")
    key = dialect.column_name("patient", "patient_id")
    now = datetime.now(UTC)
    conn = sqlite3.connect(region / hospital / "his.db")
    cur = conn.execute(f'SELECT * FROM "{table}" ORDER BY "{key}" LIMIT 1000')
    names = [d[0] for d in cur.description]
    records = []
    for row in cur:
        payload = {
            n: decode_source_text(v, "gb18030") if isinstance(v, bytes) else v
            for n, v in zip(names, row, strict=True)
        }
        records.append(
            CanonicalRecord(hospital, "HIS", table, str(payload[key]), "upsert", None, now, payload)
        )
    conn.close()
    hashes = [bytes.fromhex(content_hash(r)) for r in records]
    tree = MerkleTree(leaf_hash(x) for x in hashes)
    root = tree.root()
    i = len(hashes) // 2
    proof = tree.inclusion_proof(i)
    ok = verify_inclusion(leaf_hash(hashes[i]), i, tree.size, proof, root)
    tampered = bytearray(canonical_bytes(records[i]))
    tampered[-3] ^= 1
    bad = verify_inclusion(leaf_hash(hashlib.sha256(tampered).digest()), i, tree.size, proof, root)
    console.print(
        f"{len(records)} rows of {hospital} {table} hashed canonically; Merkle root "
        f"{root.hex()[:16]}…; row {records[i].local_key}: content hash "
        f"{hashes[i].hex()[:16]}…, inclusion proof of {len(proof)} hashes "
        f"{'[green]verifies[/]' if ok else '[red]FAILS[/]'}; the same row with one byte changed "
        f"{'[red]still verifies[/]' if bad else '[green]is rejected[/]'}."
    )

    # The batch's manifest root is signed with the hospital's key and the payload sealed for
    # the region (X25519 + AES-GCM), as the gateway will do; the region opens and checks both.
    hospital_key, region_key = SigningKey.generate(), EncryptionKey.generate()
    signature = hospital_key.sign(root)
    batch = b"".join(canonical_bytes(r) + b"\n" for r in records)
    sealed = seal(region_key.public_key, batch, context=f"{hospital}/{table}".encode())
    opened = open_sealed(region_key, sealed, context=f"{hospital}/{table}".encode())
    signed_ok = hospital_key.verify_key.verify(root, signature) and opened == batch
    console.print(
        f"batch of {len(batch):,} canonical bytes sealed for the region ({len(sealed):,} bytes) "
        f"and opened; Merkle root signed with the hospital's Ed25519 key: "
        f"{'[green]signature valid[/]' if signed_ok else '[red]INVALID[/]'}."
    )


def start_receiver(config: Path, settings: Settings) -> subprocess.Popen[bytes]:
    """The receiver in its own process, as in production; waits until it answers."""
    log = open(config.parent / "receiver.log", "wb")  # noqa: SIM115 (kept open for the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "medfabric", "receiver", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://{settings.receiver.listen}/readyz"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the receiver exited; see {config.parent / 'receiver.log'}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the receiver did not start on {settings.receiver.listen}")


def ledger_glimpse(out: Path, settings: Settings, hospital: str = "H01") -> None:
    """Four ledger nodes (separate processes) notarize one ODS table's records of a hospital,
    signed with the hospital's key; one record's proof is fetched and checked offline."""
    folder = out / "ledger"
    hospitals = [h.id for h in settings.hospitals]
    files = init_cluster(folder, 4, hospitals, base_port=free_base_port(8), force=True)
    log = open(folder / "nodes.log", "wb")  # noqa: SIM115 (kept open for the children)
    procs = {
        f.node_id: subprocess.Popen(node_command(f.config), stdout=log, stderr=subprocess.STDOUT)
        for f in files
    }
    try:
        try:
            wait_until_healthy(
                {f.node_id: f"http://{f.api[0]}:{f.api[1]}" for f in files}, procs, timeout=60
            )
        except ClusterError as e:
            raise SystemExit(
                f"the ledger nodes did not start ({e}); see {folder}/nodes.log"
            ) from None
        node, _ = load_node_config(files[0].config)
        membership = node.membership
        console.print(
            f"4 nodes up (f = {membership.f}, quorum {membership.quorum}), chain "
            f"{membership.chain_id!r}; institutions: {', '.join(hospitals)}"
        )

        wh = duckdb.connect(str(settings.receiver.warehouse), read_only=True)
        try:
            ods_table, system, table = wh.execute(
                "SELECT ods_table, system, source_table FROM ingest.ods_tables "
                "WHERE hospital_id = ? AND system = 'LIS' ORDER BY ods_table LIMIT 1",
                [hospital],
            ).fetchone() or ("", "", "")
            rows = wh.execute(
                f'SELECT _local_key, _hash FROM ods."{ods_table}__current" '
                "ORDER BY _local_key LIMIT 2000"
            ).fetchall()
        finally:
            wh.close()
        now_ms = int(time.time() * 1000)
        entries = [
            Entry(
                bytes.fromhex(h),
                EntryIndex(storage_address(hospital, system, table, k), table.lower(), now_ms),
            )
            for k, h in rows
        ]
        with LedgerClient.from_cluster(folder, hospital) as client:
            t0 = time.perf_counter()
            outcome = client.notarize(entries)
            console.print(
                f"{hospital} notarized {len(entries):,} records of ODS table {ods_table} in one "
                f"signed transaction: '{outcome.status}', {outcome.new:,} new, accepted on "
                f"{membership.f + 1} matching signed replies in {time.perf_counter() - t0:.2f} s"
            )
            local_key, hash_hex = rows[len(rows) // 2]
            proof = None
            deadline = time.monotonic() + 60
            while proof is None:
                try:
                    proof = client.proof(bytes.fromhex(hash_hex))
                except NotNotarized:  # its block's certificate is still being gathered
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            check = client.verify(bytes.fromhex(hash_hex), proof)
            altered = hashlib.sha256(b"one byte changed " + bytes.fromhex(hash_hex)).digest()
            tampered = client.verify(altered, proof)
        console.print(
            f"record {local_key}: proof (block {proof.header.height}, entry {proof.position} of "
            f"{proof.entry_count}, {len(proof.path)} path hashes, {len(proof.certificate)} "
            f"commit signatures) checked offline: "
            f"{'[green]' if check == 'VALID' else '[red]'}{check}[/]; the record with a changed "
            f"value: {'[green]' if tampered != 'VALID' else '[red]'}{tampered}[/]."
        )
        _run("the ledger's status", ["ledger", "status", "--dir", str(folder)])
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def load_all(settings: Settings, title: str) -> dict[str, CycleReport]:
    """One gateway cycle per hospital; prints rows landed per hospital and system, and lag."""
    console.print(Rule(f"[bold]{title}"))
    reports: dict[str, CycleReport] = {}
    for h in settings.hospitals:
        gw = Gateway(settings, h.id)
        try:
            reports[h.id] = gw.cycle(force_send=True, deletes=True)
        finally:
            gw.close()
    status = httpx.get(f"http://{settings.receiver.listen}/v1/status", timeout=30).json()
    lag = {(t["hospital_id"], t["system"]): t["lag_seconds"] for t in status["tables"]}
    sent: dict[tuple[str, str], int] = defaultdict(int)
    deleted: dict[tuple[str, str], int] = defaultdict(int)
    for hid, rep in reports.items():
        for t in rep.tables:
            sent[(hid, t.system)] += t.records
            deleted[(hid, t.system)] += t.deletes
    current: dict[tuple[str, str], int] = defaultdict(int)
    for name, n in status["current_rows"].items():
        hid, system, _ = name.split("__", 2)
        current[(hid, system)] += n
    table = Table("hospital", "system", "records landed", "of them deletes", "ODS current rows",
                  "lag s")  # fmt: skip
    for h in settings.hospitals:
        for system in h.systems:
            key = (h.id, system)
            table.add_row(
                h.id, system, f"{sent[key]:,}", f"{deleted[key]:,}", f"{current[key]:,}",
                "-" if key not in lag else f"{lag[key]:.1f}",
            )  # fmt: skip
    console.print(table)
    total = sum(r.records for r in reports.values())
    secs = sum(r.seconds for r in reports.values())
    bad = [e for r in reports.values() for e in r.errors]
    quarantined = sum(r.send.quarantined for r in reports.values())
    console.print(
        f"{total:,} records extracted, hashed, signed, sealed, sent, verified and landed in "
        f"{secs:.1f} s; {quarantined} batch(es) quarantined; {len(bad)} error(s)."
    )
    for e in bad:
        console.print(f"[yellow]warning:[/] {e}")
    return reports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/demo-region"))
    parser.add_argument("--hospitals", type=int, default=5)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    a = parser.parse_args(argv)
    t0 = time.perf_counter()
    _run("1. standard code systems", ["standards", "check"])
    _run(
        "2. a synthetic region of hospitals",
        [
            "simulate",
            "--hospitals",
            str(a.hospitals),
            "--patients",
            str(a.patients),
            "--seed",
            str(a.seed),
            "--out",
            str(a.out),
        ],
    )
    config = a.out / "region.toml"
    _run("3. keys for the region and every hospital", ["keys", "init", "--config", str(config)])
    settings = load_settings(config)
    console.print(Rule("[bold]4. the regional receiver starts"))
    receiver = start_receiver(config, settings)
    console.print(f"receiver listening on {settings.receiver.listen} (log: {a.out}/receiver.log)")
    try:
        load_all(settings, "5. every gateway: full load into ODS")
        _run("6. one day passes in the hospitals", ["simulate", "tick", "--out", str(a.out)])
        load_all(settings, "7. every gateway: incremental load")
        _run(
            "8. a gateway's status",
            ["gateway", "status", "--hospital", "H01", "--config", str(config)],
        )
    finally:
        receiver.terminate()
        receiver.wait(30)
    _run(
        "9. ODS re-verified: every row version against its hash",
        ["receiver", "verify", "--config", str(config)],
    )
    console.print(Rule("[bold]10. provenance groundwork: a Merkle proof per record"))
    provenance_glimpse(a.out)
    console.print(Rule("[bold]11. the ledger: four PBFT nodes notarize ODS records; a proof"))
    ledger_glimpse(a.out, settings)
    console.print(Rule("[bold green]demo finished"))
    console.print(
        f"Done in {time.perf_counter() - t0:.0f} s. Region: {a.out}/ — open {a.out}/region.toml, "
        f"query a source with `sqlite3 {a.out}/H01/his.db .tables`, and read the ground truth in "
        f"{a.out}/truth/; ODS is {settings.receiver.warehouse}. Docs: docs/gateway.md, "
        "docs/simulator.md, docs/standards.md, docs/ledger.md."
    )


if __name__ == "__main__":
    main()
