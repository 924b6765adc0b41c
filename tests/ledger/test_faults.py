"""Crash faults on real node processes: four ``medfabric ledger node`` processes on 127.0.0.1
(free ports), real TCP, real SQLite stores, ``LedgerClient`` submitting through the HTTP APIs.

- The primary is killed with SIGKILL under load: the others change view, the clients carry
  on, and every entry a client got ``f + 1`` replies for has a valid proof afterwards. The
  killed node, restarted, recovers from its disk, catches up (state transfer, block sync) and
  ends with the same block hashes as the others.
- A backup is killed with SIGKILL right at a checkpoint and restarted: it catches up too.
  Then every node is killed with SIGKILL under load and started again on its store.
- The whole cluster is stopped and started again on the same folder with ``ledger up``: the
  heights are unchanged, more notarizations succeed and every node holds the same blocks.

Small checkpoint intervals and log windows (set in each ``node.toml``) make the runs cross
several checkpoints in a few seconds.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medfabric.ledger.blocks import Entry, EntryIndex, storage_address
from medfabric.ledger.client import ClientError, LedgerClient
from medfabric.ledger.cluster import (
    free_base_port,
    init_cluster,
    node_configs,
    wait_until_healthy,
)

TUNING = (
    "max_batch = 4\ncheckpoint_interval = 4\nview_change_timeout = 40\n"
    "retransmit_every = 4\nfetch_after = 8\n"
)
INSTITUTIONS = ("hospital-a", "hospital-b")
IDS = [f"node-{i}" for i in range(4)]
# What ``medfabric ledger node`` runs, without importing the whole CLI (several seconds per
# process on a busy machine); ``ledger up`` itself is run as is by the last test.
RUNNER = (
    "import asyncio, logging, sys\n"
    "from pathlib import Path\n"
    "from medfabric.ledger.cluster import run_node\n"
    "logging.basicConfig(level='INFO', format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
    "asyncio.run(run_node(Path(sys.argv[1]), asyncio.Event()))\n"
)


class Cluster:
    """A cluster folder and its node processes (one log file per node, appended across runs)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        base = free_base_port(8)
        init_cluster(dir, 4, INSTITUTIONS, base_port=base, tick_seconds=0.02)
        for config in node_configs(dir):
            text = config.read_text(encoding="utf-8")
            text = text.replace("log_window = 256", "log_window = 16")
            config.write_text(text.replace("[replica]\n", "[replica]\n" + TUNING, 1))
        self.urls = {rid: f"http://127.0.0.1:{base + 2 * i + 1}" for i, rid in enumerate(IDS)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(timeout=2.0)

    def start(self, *ids: str) -> None:
        for rid in ids or IDS:
            log = (self.dir / f"{rid}.log").open("ab")
            config = self.dir / rid / "node.toml"
            cmd = [sys.executable, "-c", RUNNER, str(config)]
            self.procs[rid] = subprocess.Popen(cmd, stdout=log, stderr=log)
            log.close()
        wait_until_healthy(
            {r: self.urls[r] for r in ids or IDS},
            {r: self.procs[r] for r in ids or IDS},
            timeout=30,
        )

    def kill(self, rid: str) -> None:
        proc = self.procs.pop(rid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def status(self, rid: str) -> dict[str, object] | None:
        try:
            answer = self.http.get(f"{self.urls[rid]}/v1/status")
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]

    def block_hashes(self, rid: str, height: int) -> list[str]:
        out = []
        for h in range(height + 1):
            answer = self.http.get(f"{self.urls[rid]}/v1/blocks/{h}")
            assert answer.status_code == 200, (rid, h, answer.text)
            out.append(answer.json()["hash"])
        return out

    def converged(self, ids: list[str], timeout: float = 30.0, above: int = -1) -> int:
        """Wait until the nodes ``ids`` are at one height (above ``above``) and one head, then
        check that they hold the same block hashes at every height; returns the height."""
        deadline = time.monotonic() + timeout
        seen: dict[str, object] = {}
        while time.monotonic() < deadline:
            seen = {rid: self.status(rid) for rid in ids}
            heads = {(s["height"], s["head"]) for s in seen.values() if s is not None}  # type: ignore[index]
            if None not in seen.values() and len(heads) == 1:
                height = int(next(iter(heads))[0])  # type: ignore[call-overload]
                if height > above:
                    hashes = {tuple(self.block_hashes(rid, height)) for rid in ids}
                    assert len(hashes) == 1
                    return height
            time.sleep(0.2)
        raise AssertionError(f"nodes did not converge: {self._brief(seen)}\n{self.logs()}")

    @staticmethod
    def _brief(seen: dict[str, object]) -> dict[str, object]:
        return {
            rid: None if s is None else {k: s[k] for k in ("view", "last_executed", "height")}  # type: ignore[index]
            for rid, s in seen.items()
        }

    def logs(self) -> str:
        parts = []
        for rid in IDS:
            path = self.dir / f"{rid}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {rid}\n" + "\n".join(lines[-15:]))
        return "\n".join(parts)

    def close(self) -> None:
        self.stop()
        self.http.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()


class Load:
    """One thread per institution notarizing one new entry per call until stopped; records
    every content hash that got ``f + 1`` matching replies (the client's acceptance)."""

    def __init__(self, dir: Path, tag: str) -> None:
        self.dir, self.tag = dir, tag
        self.accepted: list[bytes] = []
        self.failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(inst,), daemon=True) for inst in INSTITUTIONS
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, institution: str) -> None:
        with LedgerClient.from_cluster(self.dir, institution, timeout=12) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                key = f"{self.tag}/{institution}/{n}"
                content = hashlib.sha256(key.encode()).digest()
                index = EntryIndex(
                    storage_address(institution, "HIS", "records", key),
                    "record",
                    int(time.time() * 1000),
                    b"",
                )
                try:
                    result = client.notarize([Entry(content, index)])
                except ClientError:
                    with self._lock:
                        self.failures += 1
                    continue
                if result.status == "notarized":
                    with self._lock:
                        self.accepted.append(content)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, f"only {len(self.accepted)} of {count} accepted"
            time.sleep(0.05)


def _all_proved(dir: Path, hashes: list[bytes], timeout: float = 20.0) -> None:
    """Every accepted entry has a proof that verifies (blocks may still be certifying)."""
    with LedgerClient.from_cluster(dir, timeout=5) as reader:
        deadline = time.monotonic() + timeout
        for content in hashes:
            while True:
                try:
                    reader.proof(content)
                    break
                except ClientError:
                    assert time.monotonic() < deadline, f"no proof of {content.hex()}"
                    time.sleep(0.2)


def test_primary_killed_under_load_then_restarted_catches_up(cluster: Cluster) -> None:
    cluster.start()
    with Load(cluster.dir, "a") as load:
        load.wait_for(8)
        status = cluster.status("node-0")
        assert status is not None and status["primary"] == "node-0"
        cluster.kill("node-0")
        killed_at = len(load.accepted)
        load.wait_for(killed_at + 12, timeout=60)  # clients carry on after the view change
    survivors = IDS[1:]
    cluster.converged(survivors)
    views = {cluster.status(r)["view"] for r in survivors}  # type: ignore[index]
    assert min(views) >= 1  # type: ignore[type-var]
    _all_proved(cluster.dir, load.accepted)

    cluster.start("node-0")
    with Load(cluster.dir, "b") as more:
        more.wait_for(6, timeout=60)
    height = cluster.converged(IDS, timeout=40)
    assert height >= 10
    _all_proved(cluster.dir, load.accepted + more.accepted)
    status = cluster.status("node-0")
    assert status is not None and status["recovered_at"] is not None


def test_backup_killed_at_a_checkpoint_then_the_whole_cluster_killed(cluster: Cluster) -> None:
    cluster.start()
    with Load(cluster.dir, "c") as load:
        load.wait_for(6)
        deadline = time.monotonic() + 30
        while True:  # kill it right at a checkpoint (every 4 batches) or just before
            status = cluster.status("node-2")
            if status is not None and int(status["last_executed"]) % 4 in (0, 3):  # type: ignore[call-overload]
                break
            assert time.monotonic() < deadline
        cluster.kill("node-2")
        load.wait_for(len(load.accepted) + 12, timeout=60)
        cluster.start("node-2")
        load.wait_for(len(load.accepted) + 6, timeout=60)
    before = cluster.converged(IDS, timeout=40)
    _all_proved(cluster.dir, load.accepted)

    # Then every node dies at once, mid-load, and the cluster starts again on its stores.
    with Load(cluster.dir, "c2") as more:
        more.wait_for(6, timeout=60)
        for rid in IDS:
            cluster.kill(rid)
        cluster.start()
        more.wait_for(len(more.accepted) + 8, timeout=60)
    after = cluster.converged(IDS, timeout=40, above=before)
    assert after > before
    _all_proved(cluster.dir, load.accepted + more.accepted)


def _ledger_up(dir: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "medfabric", "ledger", "up", "--dir", str(dir)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_up(cluster: Cluster, up: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not all(cluster.status(r) is not None for r in IDS):
        assert up.poll() is None, f"ledger up exited with {up.returncode}\n{cluster.logs()}"
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)


def test_whole_cluster_stops_and_starts_again_on_its_folder(cluster: Cluster) -> None:
    up = _ledger_up(cluster.dir)
    try:
        _wait_up(cluster, up)
        with Load(cluster.dir, "d1") as first:
            first.wait_for(8)
        before = cluster.converged(IDS)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=20) == 0

        up = _ledger_up(cluster.dir)  # the same folder: every node recovers from its store
        _wait_up(cluster, up)
        for rid in IDS:
            status = cluster.status(rid)
            assert status is not None and status["height"] == before
        with Load(cluster.dir, "d2") as second:
            second.wait_for(8, timeout=60)
        after = cluster.converged(IDS, above=before)
        assert after > before
        _all_proved(cluster.dir, first.accepted + second.accepted)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=20)
