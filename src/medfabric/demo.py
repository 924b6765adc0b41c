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
import csv
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
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
from medfabric.ledger.cluster import (
    DESCRIPTION_NAME,
    ClusterError,
    free_base_port,
    init_cluster,
    load_cluster_description,
    node_command,
    wait_until_healthy,
)
from medfabric.records import CanonicalRecord, canonical_bytes, content_hash, decode_source_text
from medfabric.records.keyring import Keyring
from medfabric.settings import Settings, load_settings
from medfabric.simulator.dialects import DIALECTS

console = Console()


def _run(title: str, args: list[str]) -> None:
    console.print(Rule(f"[bold]{title}"))
    console.print(f"$ medfabric {' '.join(args)}", style="dim")
    code = app(args, standalone_mode=False)
    if isinstance(code, int) and code != 0:
        raise SystemExit(f"demo step failed (exit code {code}): medfabric {' '.join(args)}")


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


def start_ledger(out: Path, config: Path, settings: Settings) -> dict[str, subprocess.Popen[bytes]]:
    """Four ledger nodes (separate processes) whose membership registers every hospital's own
    key; ``[ledger] dir`` is written into region.toml so that gateways notarize what they send
    and the receiver confirms it."""
    folder = out / "ledger"
    files = init_cluster(
        folder,
        4,
        [],
        base_port=free_base_port(8),
        force=True,
        institution_keys={
            h.id: k
            for h in settings.hospitals
            if (k := Keyring(settings.gateway.keys_dir).hospital_verify_key(h.id)) is not None
        },
    )
    log = open(folder / "nodes.log", "wb")  # noqa: SIM115 (kept open for the children)
    procs = {
        f.node_id: subprocess.Popen(node_command(f.config), stdout=log, stderr=subprocess.STDOUT)
        for f in files
    }
    try:
        wait_until_healthy(
            {f.node_id: f"http://{f.api[0]}:{f.api[1]}" for f in files}, procs, timeout=60
        )
    except ClusterError as e:
        stop_all(procs)
        raise SystemExit(f"the ledger nodes did not start ({e}); see {folder}/nodes.log") from None
    _, membership = load_cluster_description(folder / DESCRIPTION_NAME)
    text = config.read_text("utf-8")
    if "\n[ledger]\n" not in text:
        config.write_text(
            text + "\n# Written by the demo: notarize on its ledger (its public description).\n"
            f'[ledger]\ndir = "{folder / DESCRIPTION_NAME}"\n'
            "check_every = 2\n",
            "utf-8",
        )
    console.print(
        f"4 nodes up (f = {membership.f}, quorum {membership.quorum}), chain "
        f"{membership.chain_id!r}; institutions (hospitals' own keys): "
        f"{', '.join(sorted(membership.clients))}; \\[ledger] dir written to {config.name}"
    )
    return procs


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Terminate child processes, killing those that do not stop within 20 s."""
    for p in procs.values():
        p.terminate()
    for p in procs.values():
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


EMPI_COLUMNS = (
    "name=name,sex=sex_code,birth_date=birth_date,id_type=id_doc_type_code,"
    "id_number=id_doc_no,phone=phone,address=address_text"
)


def _empi_inputs(settings: Settings, out: Path) -> tuple[Path, Path]:
    """The governed person records as a CSV, and the simulator's truth for them (record →
    person), for `empi link` and `empi eval`."""
    folder = out / "empi"
    folder.mkdir(parents=True, exist_ok=True)
    people, truth = folder / "people.csv", folder / "truth.csv"
    wh = duckdb.connect(str(settings.receiver.warehouse), read_only=True)
    try:
        wh.execute(
            "COPY (SELECT person_id, name, sex_code, birth_date, id_doc_type_code, id_doc_no, "
            f"phone, address_text FROM dwd.person ORDER BY 1) TO '{people}' (HEADER)"
        )
        ids = [str(r[0]) for r in wh.execute("SELECT person_id FROM dwd.person").fetchall()]
    finally:
        wh.close()
    with (out / "truth" / "patients.csv").open(encoding="utf-8") as f:
        local = {(r["hospital"], r["local_patient_id"]): r["person_id"] for r in csv.DictReader(f)}
    with truth.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "person"])
        for pid in ids:
            parts = pid.split("/")
            w.writerow([pid, local.get((parts[0], parts[-1]), pid)])
    return people, truth


def _a_lab_result(settings: Settings) -> str:
    """The id of a governed lab result with a numeric value (for the lineage step)."""
    wh = duckdb.connect(str(settings.receiver.warehouse), read_only=True)
    try:
        row = wh.execute(
            "SELECT min(lab_result_id) FROM dwd.lab_result WHERE value_numeric IS NOT NULL"
        ).fetchone()
    finally:
        wh.close()
    if row is None or row[0] is None:
        raise SystemExit("demo: governance produced no lab results")
    return str(row[0])


def provenance_check(config: Path, settings: Settings, hospital: str = "H01") -> None:
    """One record verified against the ledger, then the same record altered in ODS and found."""
    wh = duckdb.connect(str(settings.receiver.warehouse), read_only=True)
    try:
        (ods_table,) = wh.execute(
            "SELECT ods_table FROM ingest.ods_tables WHERE hospital_id = ? AND system = 'LIS' "
            "ORDER BY ods_table LIMIT 1",
            [hospital],
        ).fetchone() or ("",)
        (key,) = wh.execute(
            f'SELECT min(_local_key) FROM ods."{ods_table}__current"'
        ).fetchone() or ("",)
        column = wh.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'ods' "
            "AND table_name = ? AND data_type = 'VARCHAR' AND NOT starts_with(column_name, '_') "
            "ORDER BY ordinal_position DESC LIMIT 1",
            [ods_table],
        ).fetchone()
    finally:
        wh.close()
    _run(
        f"a record of {ods_table} verified against the ledger",
        ["verify", ods_table, key, "--config", str(config)],
    )
    wh = duckdb.connect(str(settings.receiver.warehouse))
    try:
        col = str(column[0]) if column else "_op"
        wh.execute(
            f'UPDATE ods."{ods_table}" SET "{col}" = coalesce("{col}", \'\') || \' (edited)\' '
            "WHERE _local_key = ?",
            [key],
        )
    finally:
        wh.close()
    console.print(f"[yellow]someone edits column {col} of that row directly in ODS …[/]")
    for args in (["verify", ods_table, key], ["ledger", "audit", "--table", ods_table]):
        try:
            _run(f"medfabric {' '.join(args[:2])} after the edit", [*args, "--config", str(config)])
        except SystemExit as e:  # both exit 1 on a mismatch, as they should
            console.print(f"(exit code {e.code}: the alteration is reported)")


def wait_confirmed(settings: Settings, timeout: float = 120) -> None:
    """Wait until the receiver's notarization watch confirmed every landed batch on the
    ledger, then print its counts."""
    console.print(Rule("[bold]the receiver confirms every landed batch on the ledger"))
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"http://{settings.receiver.listen}/v1/status", timeout=30).json()
        counts = status["notarization"]["batches"]
        open_ = counts.get("unchecked", 0) + counts.get("pending", 0)
        if open_ == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    console.print(
        "landed batches by notarization status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + ("" if open_ == 0 else f" (still {open_} open after {timeout:.0f} s)")
    )


def load_all(settings: Settings, title: str) -> dict[str, CycleReport]:
    """One gateway cycle per hospital; prints rows landed per hospital and system, and lag."""
    console.print(Rule(f"[bold]{title}"))
    started = time.perf_counter()

    def one(hospital: str) -> CycleReport:
        gw = Gateway(settings, hospital)
        try:
            return gw.cycle(force_send=True, deletes=True)
        finally:
            gw.close()

    # The hospitals' gateways are separate machines; here they run side by side in threads.
    with ThreadPoolExecutor(max_workers=len(settings.hospitals)) as pool:
        futures = {h.id: pool.submit(one, h.id) for h in settings.hospitals}
        reports: dict[str, CycleReport] = {hid: f.result() for hid, f in futures.items()}
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
    secs = time.perf_counter() - started
    bad = [e for r in reports.values() for e in r.errors]
    quarantined = sum(r.send.quarantined for r in reports.values())
    console.print(
        f"{total:,} records extracted, hashed, signed, sealed, sent, verified and landed in "
        f"{secs:.1f} s; {quarantined} batch(es) quarantined; {len(bad)} error(s)."
    )
    notary = [r.notary for r in reports.values() if r.notary is not None]
    if notary:
        console.print(
            f"notarized on the ledger by the gateways under each hospital's key: "
            f"{sum(n.entries for n in notary):,} records in {sum(n.batches for n in notary)} "
            f"batches ({sum(n.new for n in notary):,} new); "
            f"{sum(n.pending for n in notary)} batch(es) waiting"
        )
        bad += [n.error for n in notary if n.error]
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
    console.print(
        Rule("[bold]4. the ledger: four PBFT nodes start, the hospitals' keys registered")
    )
    nodes = start_ledger(a.out, config, settings)
    try:
        settings = load_settings(config)
        console.print(Rule("[bold]5. the regional receiver starts"))
        receiver = start_receiver(config, settings)
        console.print(
            f"receiver listening on {settings.receiver.listen} (log: {a.out}/receiver.log)"
        )
        try:
            load_all(settings, "6. every gateway: full load into ODS, notarized as it is sent")
            _run("7. one day passes in the hospitals", ["simulate", "tick", "--out", str(a.out)])
            load_all(settings, "8. every gateway: incremental load, notarized")
            _run(
                "9. a gateway's status",
                ["gateway", "status", "--hospital", "H01", "--config", str(config)],
            )
            wait_confirmed(settings)
        finally:
            receiver.terminate()
            receiver.wait(30)
        _run(
            "10. ODS re-verified: every row version against its hash",
            ["receiver", "verify", "--config", str(config)],
        )
        _run(
            "11. ODS audited against the ledger: the chain replayed and verified, every record "
            "checked",
            ["ledger", "audit", "--config", str(config)],
        )
        _run(
            "12. governance: ODS → DWD by each dialect's source mapping (docs/mapping.md), then "
            "master data, the data-quality checks and the ADS themes",
            ["govern", "run", "--config", str(config)],
        )
        _run(
            "13. governed again: nothing new, nothing changes",
            ["govern", "run", "--config", str(config)],
        )
        _run("14. the unmapped-code queue", ["govern", "unmapped", "--config", str(config)])
        _run(
            "15. counts reconcile: ODS = DWD + quarantined + duplicates, per hospital and table",
            ["govern", "reconcile", "--config", str(config)],
        )
        report = a.out / "quality.html"
        _run(
            "16. data quality: scores per hospital and category, the failing checks "
            f"(HTML report: {report})",
            ["quality", "report", "--config", str(config)],
        )
        app(["quality", "report", "--config", str(config), "--format", "html", "--out",
             str(report)], standalone_mode=False)  # fmt: skip
        _run(
            "17. the simulator's injected defects found by the checks (recall ≥ 95 % per type)",
            ["quality", "eval", "--truth", str(a.out / "truth" / "defects.csv"),
             "--config", str(config)],
        )  # fmt: skip
        _run("18. ADS headline figures", ["ads", "show", "--config", str(config)])
        _run("19. the chronic-disease registry", ["ads", "show", "chronic", "--config", str(config),
                                                  "--limit", "5"])  # fmt: skip
        _run(
            "20. the warehouse's DWD tables: rows, freshness, owner",
            ["catalog", "tables", "--schema", "dwd", "--config", str(config)],
        )
        row = _a_lab_result(settings)
        _run(
            "21. lineage of one DWD row back to its source-system row, checked on the ledger",
            ["lineage", "lab_result", row, "--verify", "--config", str(config)],
        )
        people, truth = _empi_inputs(settings, a.out)
        clusters = a.out / "empi" / "clusters.csv"
        _run(
            "22. patient matching across hospitals (EMPI model, trained without labels) on the "
            "governed person records",
            ["empi", "link", "--input", str(people), "--columns", EMPI_COLUMNS,
             "--id-column", "person_id", "--out", str(clusters)],
        )  # fmt: skip
        _run(
            "23. the matches scored against the simulator's ground truth",
            ["empi", "eval", "--truth", str(truth), "--clusters", str(clusters)],
        )
        console.print(Rule("[bold]24. provenance of one record; an edit made behind its back"))
        provenance_check(config, settings)
        console.print(Rule("[bold]25. a Merkle proof per record, from first principles"))
        provenance_glimpse(a.out)
        _run("26. the ledger's status", ["ledger", "status", "--dir", str(a.out / "ledger")])
    finally:
        stop_all(nodes)
    console.print(Rule("[bold green]demo finished"))
    console.print(
        f"Done in {time.perf_counter() - t0:.0f} s. Region: {a.out}/ — open {a.out}/region.toml, "
        f"query a source with `sqlite3 {a.out}/H01/his.db .tables`, and read the ground truth in "
        f"{a.out}/truth/; ODS is {settings.receiver.warehouse}. Docs: docs/gateway.md, "
        "docs/simulator.md, docs/standards.md, docs/mapping.md, docs/quality.md, docs/ads.md, "
        f"docs/master-data.md, docs/ledger.md. Data-quality report: {a.out}/quality.html."
    )


if __name__ == "__main__":
    main()
