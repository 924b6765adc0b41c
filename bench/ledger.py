"""Benchmark: the notarization ledger, 4 PBFT nodes on one machine (targets of issue 6:
≥ 30,000 notarized records/s sustained from 5 concurrent clients; commit latency p99 ≤ 1 s at
half that load; recovery ≤ 5 s after the primary is killed; ≥ 20,000 proof verifications/s in
one process).

Measures, in one run:

- the ceiling (baseline): in a child process, the same number of entries, in transactions of
  the same size and blocks of the same mean size as the cluster cut, appended with no consensus
  and no network: ``NotarizationState.apply``, ``entries_root``, the state root, a header,
  a certificate of 3 local ``sign_block`` signatures, ``LedgerStore.append_block`` (SQLite).
  The institution-signed transactions are built before the clock starts;
- throughput (the target): 4 ``medfabric ledger node`` processes from ``init_cluster``, 5
  institutions, one ``LedgerClient.from_cluster`` per institution, each in its own thread of
  this process, each sending transactions of ``--entries-per-tx`` fresh entries back to back
  for ``--seconds``. Counted: ``new + duplicates`` of ``notarized`` results (accepted on f + 1
  matching signed replies) over the wall time. CPU of this process and of each node is read
  from /proc, to say where the time goes (and whether the clients' GIL is the limit);
- commit latency: the same clients rate-limited to half the measured throughput; per
  transaction, submit → f + 1 matching replies; p50 and p99;
- proof verification: ``--proofs`` proofs fetched from the nodes, then checked in this
  process with a ``ProofVerifier`` (what ``LedgerClient`` uses: each distinct certificate
  verified once), the figure; and with ``verify_entry_proof`` on each (every proof's 3
  certificate signatures), the baseline;
- recovery: light load (each client one transaction of 100 entries every 0.25 s), the primary
  (from ``/v1/status``) killed with SIGKILL; time from the kill to the first transaction sent
  after it that is accepted (f + 1 replies from the 3 remaining nodes). Then every node is
  stopped with SIGTERM.

Usage: .venv/bin/python bench/ledger.py [--seconds 20] [--entries-per-tx 1000]
       [--proofs 1000] [--out bench/out/ledger]  (about 1.5 minutes with the defaults)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import pstats
import random
import resource
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from medfabric.crypto.keys import SigningKey
from medfabric.ledger.blocks import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockHeader,
    Entry,
    EntryIndex,
    EntryProof,
    NotarizationState,
    ProofVerifier,
    block_hash,
    decode_entry_proof,
    entries_root,
    sign_block,
    sign_tx,
    verify_entry_proof,
)
from medfabric.ledger.client import ClientError, LedgerClient
from medfabric.ledger.cluster import (
    ClusterError,
    free_base_port,
    init_cluster,
    node_command,
    wait_until_healthy,
)
from medfabric.ledger.messages import Membership
from medfabric.ledger.store import LedgerStore

NODES = 4
INSTITUTIONS = tuple(f"hospital-{i}" for i in range(1, 6))
CHAIN = "medfabric"

THROUGHPUT_TARGET = 30_000
LATENCY_P99_TARGET_S = 1.0
RECOVERY_TARGET_S = 5.0
VERIFY_TARGET_PER_S = 20_000

RECOVERY_ENTRIES_PER_TX = 100
RECOVERY_INTERVAL_S = 0.25
RECOVERY_GIVE_UP_S = 60.0


# --- entries ---------------------------------------------------------------------------------


def make_entries(institution: str, phase: str, start: int, n: int) -> list[Entry]:
    """``n`` fresh entries: distinct content hashes, addresses like the gateway's."""
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(start, start + n):
        digest = hashlib.sha256(f"{institution}|{phase}|{i}".encode()).digest()
        index = EntryIndex(f"{institution}/LIS/LAB_RESULT/R{i:010d}", "LAB_RESULT", now)
        out.append(Entry(digest, index))
    return out


# --- the ceiling, in a child process ---------------------------------------------------------


def ceiling_append(folder: str, total: int, per_tx: int, txs_per_block: int) -> dict[str, Any]:
    """Append ``total`` entries with no consensus and no network; the timed part is the
    contract, the roots, the certificate (3 local keys) and the SQLite append."""
    path = Path(folder) / "ceiling.db"
    for stale in Path(folder).glob("ceiling.db*"):
        stale.unlink()
    institution = SigningKey.generate()
    replicas = {f"node-{i}": SigningKey.generate() for i in range(NODES)}
    signers = sorted(replicas)[:3]  # quorum of 4 replicas
    txs = []
    done = 0
    while done < total:
        n = min(per_tx, total - done)
        entries = make_entries("ceiling", "c", done, n)
        txs.append(sign_tx("ceiling", len(txs) + 1, entries, institution, chain_id=CHAIN))
        done += n
    blocks_of_txs = [txs[i : i + txs_per_block] for i in range(0, len(txs), txs_per_block)]
    state = NotarizationState()
    head: BlockHeader | None = None
    store = LedgerStore.open(path, chain_id=CHAIN)
    try:
        t0 = time.perf_counter()
        for height, block_txs in enumerate(blocks_of_txs):
            entries = [e for tx in block_txs for e in tx.entries]
            state.apply(entries, height)
            header = BlockHeader(
                height=height,
                previous_hash=GENESIS_PREVIOUS_HASH if head is None else block_hash(head),
                entries_root=entries_root(entries),
                state_root=state.state_root(),
                view=0,
                proposer="node-0",
                time=time.time_ns() // 1_000_000,
            )
            certificate = tuple(
                sign_block(header, replicas[r], replica=r, chain_id=CHAIN) for r in signers
            )
            store.append_block(Block(header, tuple(block_txs), certificate))
            head = header
        seconds = time.perf_counter() - t0
        height = store.height()
    finally:
        store.close()
    for stale in Path(folder).glob("ceiling.db*"):
        stale.unlink()
    return {"seconds": seconds, "entries": total, "blocks": len(blocks_of_txs), "height": height}


def in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh (spawned) process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- the cluster in child processes ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Cluster:
    """``init_cluster`` plus one ``python -m medfabric ledger node`` process per node."""

    def __init__(self, folder: Path, profile: str | None = None) -> None:
        files = init_cluster(
            folder, NODES, INSTITUTIONS, base_port=free_base_port(2 * NODES), force=True
        )
        self.folder = folder
        self.urls = {f.node_id: f"http://{f.api[0]}:{f.api[1]}" for f in files}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs = []
        for f in files:
            log = open(folder / f"{f.node_id}.log", "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            cmd = node_command(f.config)
            if f.node_id == profile:  # written when the node exits on SIGTERM
                cmd[1:1] = ["-m", "cProfile", "-o", str(folder / f"{f.node_id}.prof")]
            self.procs[f.node_id] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(timeout=30)
        try:
            wait_until_healthy(self.urls, self.procs, timeout=60)
        except ClusterError as e:
            self.stop()
            logs = "\n".join((folder / f"{n}.log").read_text() for n in self.urls)
            raise SystemExit(f"{e}:\n{logs}") from None

    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def status(self, node: str) -> dict[str, Any]:
        r = self.http.get(f"{self.urls[node]}/v1/status")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def cpu(self) -> dict[str, float]:
        return {n: cpu_seconds(self.procs[n].pid) for n in self.live()}

    def kill(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every live node, wait 10 s, then kill; the exit codes."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for node, p in self.procs.items():
            try:
                codes[node] = p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes[node] = None  # had to be killed
        for log in self._logs:
            log.close()
        self.http.close()
        return codes


# --- clients ---------------------------------------------------------------------------------


@dataclass
class ClientRun:
    """What one client thread saw in one phase."""

    accepted: int = 0  # new + duplicates of notarized results
    new: int = 0
    txs: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    # (submit time, done time, accepted?) per transaction, perf_counter clock
    timeline: list[tuple[float, float, bool]] = field(default_factory=list)
    samples: list[bytes] = field(default_factory=list)  # some notarized content hashes


def run_client(
    client: LedgerClient,
    phase: str,
    per_tx: int,
    stop_at: float,
    interval: float | None,
    stop_event: threading.Event | None = None,
    run: ClientRun | None = None,
) -> ClientRun:
    """Send transactions until ``stop_at`` (perf_counter) or ``stop_event``: back to back, or one
    every ``interval`` seconds (a late one goes at once). Fills ``run`` if given (so another
    thread can watch its timeline) and returns it."""
    assert client.institution is not None
    run = run if run is not None else ClientRun()
    start = time.perf_counter()
    k = 0
    while True:
        if interval is not None:
            wait = start + k * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        now = time.perf_counter()
        if now >= stop_at or (stop_event is not None and stop_event.is_set()):
            break
        entries = make_entries(client.institution, phase, k * per_tx, per_tx)
        t0 = time.perf_counter()
        try:
            result = client.notarize(entries)
        except ClientError as e:
            run.timeline.append((t0, time.perf_counter(), False))
            run.errors.append(str(e)[:300])
            k += 1
            continue
        t1 = time.perf_counter()
        k += 1
        run.txs += 1
        if result.status != "notarized":
            run.refused += 1
            run.errors.append(f"refused: {result.reason}")
            run.timeline.append((t0, t1, False))
            continue
        run.accepted += result.new + result.duplicates
        run.new += result.new
        run.latencies.append(t1 - t0)
        run.timeline.append((t0, t1, True))
        run.samples += [e.content_hash for e in entries[:: max(1, len(entries) // 20)]]
    return run


def run_clients(
    clients: list[LedgerClient],
    phase: str,
    per_tx: int,
    seconds: float,
    interval: float | None,
    stop_event: threading.Event | None = None,
) -> tuple[list[ClientRun], float]:
    """All clients in threads for ``seconds``; their runs and the wall time until the last
    one returned."""
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        futures = [
            pool.submit(run_client, c, phase, per_tx, stop_at, interval, stop_event)
            for c in clients
        ]
        runs = [f.result() for f in futures]
    return runs, time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --- proofs ----------------------------------------------------------------------------------


def fetch_proofs(
    urls: dict[str, str], hashes: list[bytes]
) -> tuple[list[tuple[bytes, EntryProof]], float]:
    """The proofs of ``hashes``, asked of the nodes in turn (4 at a time); seconds taken."""
    nodes = list(urls.values())

    def one(args: tuple[int, bytes]) -> tuple[bytes, EntryProof]:
        i, h = args
        r = http.get(f"{nodes[i % len(nodes)]}/v1/proofs/{h.hex()}")
        r.raise_for_status()
        return h, decode_entry_proof(base64.b64decode(r.json()["proof"], validate=True))

    t0 = time.perf_counter()
    with (
        httpx.Client(timeout=60, limits=httpx.Limits(max_connections=8)) as http,
        ThreadPoolExecutor(max_workers=len(nodes)) as pool,
    ):
        proofs = list(pool.map(one, enumerate(hashes)))
    return proofs, time.perf_counter() - t0


def time_verification(
    proofs: list[tuple[bytes, EntryProof]], membership: Membership, *, cached: bool
) -> tuple[float, int]:
    """Seconds to check every proof, and how many were VALID: with a fresh ``ProofVerifier``
    (``cached``: each distinct certificate verified once) or ``verify_entry_proof`` on each."""
    replicas, quorum = membership.replicas, membership.quorum
    if cached:
        verifier = ProofVerifier(chain_id=membership.chain_id, replicas=replicas, quorum=quorum)
        t0 = time.perf_counter()
        valid = sum(verifier.verify(p, h) == "VALID" for h, p in proofs)
        return time.perf_counter() - t0, valid
    t0 = time.perf_counter()
    valid = sum(
        verify_entry_proof(p, h, chain_id=membership.chain_id, replicas=replicas, quorum=quorum)
        == "VALID"
        for h, p in proofs
    )
    return time.perf_counter() - t0, valid


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0, help="throughput phase length")
    ap.add_argument(
        "--latency-seconds", type=float, default=None, help="latency phase (default: --seconds)"
    )
    ap.add_argument("--entries-per-tx", type=int, default=1000)
    ap.add_argument("--proofs", type=int, default=1000, help="proofs fetched and verified")
    ap.add_argument("--out", type=Path, default=Path("bench/out/ledger"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--profile",
        metavar="NODE",
        help="run this node (e.g. node-1) under cProfile; print its top",
    )
    args = ap.parse_args()
    per_tx: int = args.entries_per_tx
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "cluster").mkdir(parents=True)
    (out / "scratch").mkdir()
    rng = random.Random(args.seed)

    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    print(
        f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; "
        f"{NODES} nodes, {len(INSTITUTIONS)} clients (threads), {per_tx:,} entries per tx"
    )
    results: dict[str, Any] = {
        "machine": machine,
        "nodes": NODES,
        "clients": len(INSTITUTIONS),
        "entries_per_tx": per_tx,
    }

    cluster = Cluster(out / "cluster", args.profile)
    clients = [LedgerClient.from_cluster(out / "cluster", i) for i in INSTITUTIONS]
    membership = clients[0].membership
    try:
        # 1. Throughput: back to back.
        height0 = cluster.status("node-0")["height"]
        cpu0 = (own_cpu(), cluster.cpu())
        runs, wall = run_clients(clients, "tp", per_tx, args.seconds, None)
        cpu_bench = own_cpu() - cpu0[0]
        cpu_nodes = {n: c - cpu0[1][n] for n, c in cluster.cpu().items()}
        time.sleep(0.5)  # let the certificates of the last blocks land
        height1 = cluster.status("node-0")["height"]
        accepted = sum(r.accepted for r in runs)
        txs = sum(r.txs for r in runs)
        tp_errors = [e for r in runs for e in r.errors]
        rate = accepted / wall
        blocks = (height1 or 0) - (-1 if height0 is None else height0)
        txs_per_block = max(1, round(txs / blocks)) if blocks > 0 else 1
        machine_share = (cpu_bench + sum(cpu_nodes.values())) / (wall * (os.cpu_count() or 1))
        print(
            f"throughput: {accepted:,} entries in {txs:,} txs in {wall:.2f} s = {rate:,.0f}/s; "
            f"{blocks} blocks ({txs / max(blocks, 1):.2f} txs/block); {len(tp_errors)} errors"
        )
        print(
            f"  CPU: clients (this process) {cpu_bench:.1f} s, nodes "
            + ", ".join(f"{n} {c:.1f} s" for n, c in cpu_nodes.items())
            + f"; {machine_share:.0%} of the machine"
        )
        for e in tp_errors[:3]:
            print(f"  error: {e}")
        # The rate in each quarter of the phase (by completion time): does it hold up as the
        # ledger grows?
        done = [t1 for r in runs for _, t1, ok in r.timeline if ok]
        t_start = min((t0 for r in runs for t0, _, _ in r.timeline), default=0.0)
        quarter = wall / 4
        quarters = [
            per_tx
            * sum(t_start + q * quarter <= t < t_start + (q + 1) * quarter for t in done)
            / quarter
            for q in range(4)
        ]
        print("  by quarter: " + ", ".join(f"{x:,.0f}/s" for x in quarters))

        # 2. Latency at half the measured load.
        lat_seconds = args.latency_seconds or args.seconds
        interval = per_tx * len(clients) / (rate / 2) if rate > 0 else 1.0
        lat_runs, lat_wall = run_clients(clients, "lat", per_tx, lat_seconds, interval)
        latencies = [x for r in lat_runs for x in r.latencies]
        lat_rate = sum(r.accepted for r in lat_runs) / lat_wall
        lat_errors = [e for r in lat_runs for e in r.errors]
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(
            f"latency at {lat_rate:,.0f} entries/s (aimed {rate / 2:,.0f}): "
            f"{len(latencies)} txs, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {max(latencies, default=float('nan')) * 1000:.0f} ms; {len(lat_errors)} errors"
        )

        # 3. Proof verification, all four nodes up.
        pool = [h for r in runs for h in r.samples]
        sample = rng.sample(pool, min(args.proofs, len(pool)))
        proofs, t_fetch = fetch_proofs(cluster.urls, sample)
        t_verify, valid = time_verification(proofs, membership, cached=True)
        verify_rate = len(proofs) / t_verify if t_verify > 0 else 0.0
        t_uncached, valid_uncached = time_verification(proofs, membership, cached=False)
        uncached_rate = len(proofs) / t_uncached if t_uncached > 0 else 0.0
        blocks_proved = len({p.header for _, p in proofs})
        print(
            f"proofs: {len(proofs):,} fetched in {t_fetch:.2f} s; verified in {t_verify:.3f} s "
            f"= {verify_rate:,.0f}/s ({valid:,} VALID, {blocks_proved} distinct blocks); "
            f"every certificate checked: {t_uncached:.3f} s = {uncached_rate:,.0f}/s "
            f"({valid_uncached:,} VALID)"
        )

        # 4. Recovery: kill -9 the primary under light load.
        primary = cluster.status("node-0")["primary"]
        stop_event = threading.Event()
        kill_at: list[float] = []

        def killer() -> None:
            time.sleep(2.0)  # light load before the kill
            kill_at.append(time.perf_counter())
            cluster.kill(primary)

        rec_runs = [ClientRun() for _ in clients]
        with ThreadPoolExecutor(max_workers=len(clients)) as tpool:
            futures = [
                tpool.submit(
                    run_client, c, "rec", RECOVERY_ENTRIES_PER_TX,
                    time.perf_counter() + RECOVERY_GIVE_UP_S + 10, RECOVERY_INTERVAL_S,
                    stop_event, run,
                )
                for c, run in zip(clients, rec_runs, strict=True)
            ]  # fmt: skip
            killer()
            # Light load goes on until every client had a transaction accepted that it sent
            # after the kill (then 2 s more), or for RECOVERY_GIVE_UP_S.
            give_up = kill_at[0] + RECOVERY_GIVE_UP_S
            while time.perf_counter() < give_up:
                time.sleep(0.1)
                if all(
                    any(ok and t0 >= kill_at[0] for t0, _, ok in list(r.timeline)) for r in rec_runs
                ):
                    time.sleep(2.0)
                    break
            stop_event.set()
            for f in futures:
                f.result()
        t_kill = kill_at[0] if kill_at else float("nan")
        after = [t1 for r in rec_runs for (t0, t1, ok) in r.timeline if ok and t0 >= t_kill]
        any_after = [t1 for r in rec_runs for (t0, t1, ok) in r.timeline if ok and t1 >= t_kill]
        recovery = min(after) - t_kill if after else float("nan")
        first_any = min(any_after) - t_kill if any_after else float("nan")
        rec_errors = [e for r in rec_runs for e in r.errors]
        stalled = [t1 - t0 for r in rec_runs for (t0, t1, ok) in r.timeline if t1 >= t_kill >= t0]
        views = {n: cluster.status(n)["view"] for n in cluster.live()}
        new_primary = cluster.status(cluster.live()[0])["primary"]
        print(
            f"recovery: killed {primary}; first tx sent after the kill accepted "
            f"{recovery:.2f} s after it (first acceptance of any tx {first_any:.2f} s); "
            f"views now {views}, primary {new_primary}; {len(rec_errors)} failed txs"
        )
        for e in rec_errors[:3]:
            print(f"  failed: {e}")
    finally:
        for c in clients:
            c.close()
        exit_codes = cluster.stop()
    print(f"nodes stopped: exit codes {exit_codes}")

    # 5. The ceiling: the same entries, no consensus, no network.
    ceiling = in_child(ceiling_append, str(out / "scratch"), accepted, per_tx, txs_per_block)
    ceiling_rate = ceiling["entries"] / ceiling["seconds"]
    ratio = rate / ceiling_rate
    print(
        f"ceiling: {ceiling['entries']:,} entries in {ceiling['blocks']} blocks of "
        f"{txs_per_block} txs in {ceiling['seconds']:.2f} s = {ceiling_rate:,.0f}/s"
    )

    results.update(
        {
            "throughput": {
                "seconds": wall,
                "entries": accepted,
                "txs": txs,
                "blocks": blocks,
                "entries_per_s": rate,
                "errors": len(tp_errors),
                "cpu_s": {"clients": cpu_bench, **cpu_nodes},
                "machine_cpu_share": machine_share,
                "entries_per_s_by_quarter": quarters,
            },
            "latency": {
                "aimed_entries_per_s": rate / 2,
                "entries_per_s": lat_rate,
                "txs": len(latencies),
                "p50_s": p50,
                "p99_s": p99,
                "max_s": max(latencies, default=None),
                "errors": len(lat_errors),
            },
            "proofs": {
                "count": len(proofs),
                "fetch_s": t_fetch,
                "verify_s": t_verify,
                "per_s": verify_rate,
                "valid": valid,
                "distinct_blocks": blocks_proved,
                "uncached_verify_s": t_uncached,
                "uncached_per_s": uncached_rate,
            },
            "recovery": {
                "killed": primary,
                "new_primary": new_primary,
                "views": views,
                "first_new_tx_accepted_s": recovery,
                "first_any_tx_accepted_s": first_any,
                "stalled_in_flight_s": stalled,
                "failed_txs": len(rec_errors),
                "exit_codes": exit_codes,
            },
            "ceiling": {**ceiling, "txs_per_block": txs_per_block, "entries_per_s": ceiling_rate},
            "ratio_to_ceiling": ratio,
        }
    )

    print()
    print(f"{'':46}{'figure':>20}   baseline (same run)")
    print(
        f"{'ceiling: apply + roots + 3 sigs + SQLite':46}{ceiling_rate:>12,.0f} entries/s"
        f"   {ceiling['seconds']:.2f} s, {ceiling['blocks']} blocks"
    )
    print(
        f"{'4 nodes, 5 clients, back to back':46}{rate:>12,.0f} entries/s"
        f"   {wall:.2f} s; {ratio:.1%} of the ceiling"
    )
    print(
        f"{'commit latency p50 / p99 at half load':46}{p50 * 1000:>9,.0f} / {p99 * 1000:,.0f} ms"
        f"   {lat_rate:,.0f} entries/s achieved"
    )
    print(
        f"{'recovery after kill -9 of the primary':46}{recovery:>18.2f} s"
        f"   {primary} → {new_primary}"
    )
    print(
        f"{'proof verification, one process':46}{verify_rate:>13,.0f} proofs/s"
        f"   every certificate checked: {uncached_rate:,.0f} proofs/s"
    )

    checks = [
        ("notarized entries/s", f"{rate:,.0f}", f"≥ {THROUGHPUT_TARGET:,}",
         rate >= THROUGHPUT_TARGET),
        ("p99 commit latency, half load", f"{p99:.3f} s", f"≤ {LATENCY_P99_TARGET_S:.0f} s",
         p99 <= LATENCY_P99_TARGET_S),
        ("recovery after killing primary", f"{recovery:.2f} s", f"≤ {RECOVERY_TARGET_S:.0f} s",
         recovery <= RECOVERY_TARGET_S),
        ("proof verifications/s", f"{verify_rate:,.0f}", f"≥ {VERIFY_TARGET_PER_S:,}",
         verify_rate >= VERIFY_TARGET_PER_S),
    ]  # fmt: skip
    print()
    print(f"{'figure':34}{'measured':>16}{'target':>14}   met?")
    for name, measured, target, met in checks:
        print(f"{name:34}{measured:>16}{target:>14}   {'yes' if met else 'NOT met'}")
    results["targets"] = [
        {"figure": name, "measured": m, "target": t, "met": met} for name, m, t, met in checks
    ]
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")
    print(f"\nfigures written to {out / 'results.json'}")
    shutil.rmtree(out / "scratch", ignore_errors=True)
    prof = out / "cluster" / f"{args.profile}.prof"
    if args.profile and prof.exists():
        print(f"\nprofile of {args.profile}, whole run (top 20 by own time):")
        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
