"""``medfabric ledger``: init writes a loadable cluster and never overwrites by accident, bad
configs get one clear line, and ``ledger up`` runs four real node processes that notarize,
agree, and all exit on Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.crypto.keys import SigningKey, load_private_key
from medfabric.ledger.blocks import (
    Entry,
    EntryIndex,
    decode_entry_proof,
    encode_tx,
    sign_tx,
    storage_address,
)
from medfabric.ledger.chain import TxResult
from medfabric.ledger.cluster import (
    free_base_port,
    init_cluster,
    load_node_config,
    node_configs,
    serve_node,
)
from medfabric.ledger.messages import Request, frame, sign

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_writes_a_loadable_cluster_and_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    code, output = _run("ledger", "init", "--nodes", "4", "--dir", str(folder),
                        "--base-port", "17500")  # fmt: skip
    assert code == 0, output
    configs = node_configs(folder)
    assert [p.parent.name for p in configs] == [f"node-{i}" for i in range(4)]
    loaded = [load_node_config(p) for p in configs]
    memberships = {
        (c.membership.chain_id, tuple(sorted(c.membership.replicas.items())),
         tuple(sorted(c.membership.clients.items())))
        for c, _ in loaded
    }  # fmt: skip
    assert len(memberships) == 1  # every node holds the same membership
    for i, (config, api) in enumerate(loaded):
        assert config.node_id == f"node-{i}"
        assert config.listen == ("127.0.0.1", 17500 + 2 * i)
        assert api == ("127.0.0.1", 17500 + 2 * i + 1)
        assert set(config.peers) == {f"node-{j}" for j in range(4)} - {config.node_id}
    clients = loaded[0][0].membership.clients
    assert set(clients) == {"hospital-a", "hospital-b"}
    for cid, verify in clients.items():
        key = load_private_key(folder / "institutions" / f"{cid}.key", None, kind=SigningKey)
        assert key.verify_key == verify
    before = configs[0].read_bytes()
    code, output = _run("ledger", "init", "--dir", str(folder))
    assert code == 2 and "is not empty" in output
    assert configs[0].read_bytes() == before
    code, output = _run("ledger", "init", "--dir", str(folder), "--nodes", "7", "--force")
    assert code == 0, output
    assert len(node_configs(folder)) == 7
    assert load_node_config(configs[0])[0].membership.n == 7


def test_bad_configs_get_one_clear_line(tmp_path: Path) -> None:
    code, output = _run("ledger", "node", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read" in output and len(output.strip().splitlines()) == 1
    _run("ledger", "init", "--dir", str(tmp_path / "c"), "--nodes", "1")
    config = tmp_path / "c" / "node-0" / "node.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("tick_seconds", "tick_secnods"), encoding="utf-8")
    code, output = _run("ledger", "node", "--config", str(config))
    assert code == 2 and "tick_secnods: unknown key" in output
    config.write_text(text.replace("[replica]", "[replica]\nmax_batch = 0"), encoding="utf-8")
    code, output = _run("ledger", "node", "--config", str(config))
    assert code == 2 and "max_batch" in output
    config.write_text(text.replace('node_id = "node-0"', 'node_id = "node-9"'), encoding="utf-8")
    code, output = _run("ledger", "node", "--config", str(config))
    assert code == 2 and "not a replica" in output
    code, output = _run("ledger", "status", "--dir", str(tmp_path / "empty"))
    assert code == 2 and "holds neither cluster.toml nor node configs" in output


def test_status_shows_a_node_that_does_not_answer_as_down(tmp_path: Path) -> None:
    _run("ledger", "init", "--dir", str(tmp_path), "--base-port", str(free_base_port(8)))
    code, output = _run("ledger", "status", "--dir", str(tmp_path), "--timeout", "0.5")
    assert code == 0 and output.count("down") == 4
    code, output = _run("ledger", "status", "--dir", str(tmp_path), "--json")
    assert [row["up"] for row in json.loads(output)] == [False] * 4


def _request(folder: Path, client: str, n: int, chain_id: str) -> bytes:
    key = load_private_key(folder / "institutions" / f"{client}.key", None, kind=SigningKey)
    digest = bytes([n]) * 32
    entry = Entry(digest, EntryIndex(storage_address(client, "LIS", "LAB", f"R{n}"), "lab", n))
    tx = sign_tx(client, n, [entry], key, chain_id=chain_id)
    return frame(sign(Request(client, n, encode_tx(tx)), key, signer=client, chain_id=chain_id))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_up_runs_four_node_processes_until_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    base = free_base_port(8)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "medfabric", "ledger", "up", "--nodes", "4", "--dir", str(folder),
         "--base-port", str(base)],
        stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the finally below reaches the nodes
    )  # fmt: skip
    pids: list[int] = []
    try:
        urls = [f"http://127.0.0.1:{base + 2 * i + 1}" for i in range(4)]
        # Generous: four Python processes start on 2 cores while the rest of the suite runs.
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=10) as http:
            while True:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if all(http.get(f"{u}/healthz").status_code == 200 for u in urls):
                        break
                assert time.monotonic() < deadline, "nodes did not become healthy"
                time.sleep(0.1)
            pids = [int((folder / f"node-{i}" / "node.pid").read_text()) for i in range(4)]
            chain_id = load_node_config(node_configs(folder)[0])[0].membership.chain_id
            for n in range(1, 4):
                body = _request(folder, "hospital-a", n, chain_id)
                answers = [http.post(f"{u}/v1/requests", content=body).json() for u in urls]
                results = [a["result"] for a in answers]
                assert max(results.count(r) for r in results) >= 2  # f + 1
                assert TxResult.decode(base64.b64decode(results[0])).status == "notarized"
            rows: list[dict[str, object]] = []
            settle = time.monotonic() + 30
            while time.monotonic() < settle:
                code, output = _run("ledger", "status", "--dir", str(folder), "--json")
                assert code == 0, output
                rows = json.loads(output)
                if len({row["height"] for row in rows}) == 1 and rows[0]["height"] == 2:
                    break
                time.sleep(0.1)
            assert [row["up"] for row in rows] == [True] * 4
            assert {row["height"] for row in rows} == {2}  # three requests, one block each
            assert len({row["head"] for row in rows}) == 1
            code, output = _run("ledger", "status", "--dir", str(folder))
            assert code == 0 and output.count(" up ") == 4
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=15) == 0, (tmp_path / "up.log").read_text()
        assert not any(_alive(pid) for pid in pids)
        assert not list(folder.glob("*/node.pid"))
        assert "stopped 4 nodes" in (tmp_path / "up.log").read_text()
    finally:
        if up.poll() is None:
            # Kill the whole group (``up`` and the nodes it started), so that a failed run
            # leaves no node process behind for the rest of the suite.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def _cluster_in_process(folder: Path) -> Iterator[None]:
    """``ledger init`` + every node of ``folder`` served on one event loop in a thread."""
    init_cluster(folder, base_port=free_base_port(8), tick_seconds=0.01)
    configs = [load_node_config(p) for p in node_configs(folder)]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        await asyncio.gather(*(serve_node(c, api, stop) for c, api in configs))

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # reported to the test below
            failure.append(e)
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="ledger-cluster")
    thread.start()
    try:
        urls = [f"http://{api[0]}:{api[1]}/healthz" for _, api in configs]
        deadline = time.monotonic() + 15
        while not all(_up(u) for u in urls):
            assert not failure and time.monotonic() < deadline, failure
            time.sleep(0.05)
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=20)
        assert not thread.is_alive() and not failure, failure


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_submit_prove_and_verify_proof_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    digests = [hashlib.sha256(f"record {i}".encode()).hexdigest() for i in range(3)]
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"{digests[0]}\n{digests[1]}\thospital-a/LIS/LAB/R1\n\n{digests[2]}\n")
    proof = tmp_path / "proof.bin"
    with _cluster_in_process(folder):
        d = ("--dir", str(folder))
        code, output = _run("ledger", "submit", *d, "--institution", "hospital-a",
                            "--hashes", str(hashes))  # fmt: skip
        assert code == 0 and "notarized: 3 new, 0 duplicates" in output, output
        code, output = _run("ledger", "submit", *d, "-i", "hospital-a", "--hashes", str(hashes))
        assert code == 0 and "notarized: 0 new, 3 duplicates" in output, output
        deadline = time.monotonic() + 10  # the block is certified shortly after the replies
        while True:
            code, output = _run("ledger", "prove", *d, digests[1], "--out", str(proof))
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 0 and "VALID" in output, output
        code, output = _run("ledger", "prove", *d, "ab" * 32, "--out", str(tmp_path / "x"))
        assert code == 1 and "not notarized" in output
        assert not (tmp_path / "x").exists()
        bad = tmp_path / "bad.txt"
        bad.write_text(f"{digests[0]}\nnot-a-hash\n")
        code, output = _run("ledger", "submit", *d, "-i", "hospital-a", "--hashes", str(bad))
        assert code == 2 and "bad.txt:2" in output
    # Offline: the cluster is stopped; only its membership is read.
    entry = decode_entry_proof(proof.read_bytes()).entry
    assert entry.index.address == "hospital-a/LIS/LAB/R1" and entry.index.data_type == "record"
    verify = ("ledger", "verify-proof", "--dir", str(folder), "--proof", str(proof))
    code, output = _run(*verify, "--hash", digests[1])
    assert (code, output.strip()) == (0, "VALID")
    code, output = _run(*verify, "--hash", digests[0])
    assert (code, output.strip()) == (1, "hash mismatch")
    code, output = _run(*verify, "--hash", "xyz")
    assert code == 2 and "not a content hash" in output
    proof.write_bytes(proof.read_bytes()[:-1])
    code, output = _run(*verify, "--hash", digests[1])
    assert code == 2 and "is not an entry proof" in output
