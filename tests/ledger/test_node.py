"""Four nodes on loopback: real TCP, real SQLite stores, real signatures. Clients get f+1
matching replies, every node stores the same certified blocks, and every notarized entry has a
proof that verifies offline; with one backup stopped the other three carry on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.ledger.kit import CLIENT_KEYS, MESSAGE_CHAIN, REPLICA_KEYS, membership

from medfabric.ledger.blocks import (
    Entry,
    EntryIndex,
    block_hash,
    encode_tx,
    sign_tx,
    storage_address,
    verify_entry_proof,
)
from medfabric.ledger.chain import TxResult
from medfabric.ledger.messages import (
    FrameError,
    FrameReader,
    Reply,
    Request,
    encode_frame,
    frame,
    open_frame,
    sign,
)
from medfabric.ledger.node import Node, NodeConfig, NodeError
from medfabric.ledger.replica import ReplicaConfig

MEMBERS = membership(MESSAGE_CHAIN, log_window=8)
CONFIG = ReplicaConfig(
    max_batch=2, checkpoint_interval=4, view_change_timeout=200, retransmit_every=4
)
TICK = 0.01
REPLY_TIMEOUT = 20.0
MAX_FRAME = 1 << 20


def _hash(client: str, n: int) -> bytes:
    return hashlib.sha256(f"{client}/{n}".encode()).digest()


def _operation(client: str, n: int) -> bytes:
    """Request ``n`` of ``client`` notarizes entries ``n`` and ``n + 1`` (so every entry but
    the first is also a duplicate of the previous request's)."""
    entries = [
        Entry(_hash(client, k), EntryIndex(storage_address(client, "LIS", "LAB", f"R{k}"), "lab",
                                           1_700_000_000_000 + k))
        for k in (n, n + 1)
    ]  # fmt: skip
    tx = sign_tx(client, n, entries, CLIENT_KEYS[client], chain_id=MESSAGE_CHAIN)
    return encode_tx(tx)


@dataclass
class Client:
    """A test client: one TCP connection per node, requests to all, f+1 matching replies."""

    id: str
    conns: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(
        default_factory=dict
    )
    replies: dict[int, dict[str, bytes]] = field(default_factory=dict)
    waiters: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self, nodes: dict[str, Node]) -> None:
        for rid, node in nodes.items():
            reader, writer = await asyncio.open_connection(*node.transport.address)
            self.conns[rid] = (reader, writer)
            self.tasks.append(asyncio.create_task(self._read(reader)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(max_size=MAX_FRAME)
        while data := await reader.read(65536):
            for raw in frames.feed(data):
                try:
                    reply = open_frame(raw, MEMBERS, max_size=MAX_FRAME).message
                except FrameError:
                    continue
                if isinstance(reply, Reply) and reply.client == self.id:
                    self._on_reply(reply)

    def _on_reply(self, reply: Reply) -> None:
        votes = self.replies.setdefault(reply.timestamp, {})
        votes[reply.replica] = reply.result
        waiter = self.waiters.get(reply.timestamp)
        matching = sum(1 for r in votes.values() if r == reply.result)
        if waiter is not None and not waiter.done() and matching >= MEMBERS.f + 1:
            waiter.set_result(reply.result)

    async def submit(self, n: int) -> TxResult:
        request = sign(Request(self.id, n, _operation(self.id, n)), CLIENT_KEYS[self.id],
                       signer=self.id, chain_id=MESSAGE_CHAIN)  # fmt: skip
        waiter = self.waiters[n] = asyncio.get_running_loop().create_future()
        wire = encode_frame(frame(request))
        for _, writer in self.conns.values():
            if not writer.is_closing():
                writer.write(wire)
        async with asyncio.timeout(REPLY_TIMEOUT):
            result = await waiter
        return TxResult.decode(result)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for _, writer in self.conns.values():
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def run(test: Callable[[], Coroutine[Any, Any, None]], deadline: float = 30.0) -> None:
    """Run ``test`` on a fresh loop; fail on a timeout, on any unhandled task exception, or on
    a task still pending once the test (and so every node's ``stop``) is done."""
    errors: list[dict[str, Any]] = []
    leftover: set[asyncio.Task[Any]] = set()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        async with asyncio.timeout(deadline):
            await test()
        leftover.update(t for t in asyncio.all_tasks() if t is not asyncio.current_task())

    asyncio.run(main())
    assert errors == []
    assert leftover == set()


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """Four nodes on 127.0.0.1, port 0, each with its own store; peers set once all listen."""
    started: dict[str, Node] = {}
    for rid in MEMBERS.replica_ids:
        config = NodeConfig(rid, REPLICA_KEYS[rid], MEMBERS, ("127.0.0.1", 0), {},
                            tmp_path / f"{rid}.db", CONFIG, tick_seconds=TICK)  # fmt: skip
        node = Node(config)
        await node.start()
        started[rid] = node
    for rid, node in started.items():
        for other, peer in started.items():
            if other != rid:
                node.transport.set_peer(other, peer.transport.address)
    try:
        yield started
    finally:
        for node in started.values():
            await node.stop()


async def _run_clients(clients: list[Client], numbers: range) -> None:
    async def one(client: Client) -> None:
        for n in numbers:
            result = await client.submit(n)
            assert result.status == "notarized", result

    await asyncio.gather(*(one(c) for c in clients))


async def _settled(nodes: list[Node], timeout: float = 10.0) -> int:
    """Wait until every node stored a block for each batch it executed, all at one height."""
    async with asyncio.timeout(timeout):
        while True:
            executed = {n.replica.last_executed for n in nodes}
            heights = {n.height for n in nodes}
            if len(executed) == 1 and heights == {executed.pop() - 1}:
                return heights.pop()
            await asyncio.sleep(0.02)


def _check_stores(nodes: list[Node], clients: list[Client], numbers: range) -> None:
    reference = nodes[0].store
    height = reference.height()
    assert height is not None
    hashes = [block_hash(b.header) for b in reference.blocks(0, height + 1)]
    for node in nodes[1:]:
        assert node.store.height() == height
        assert [block_hash(b.header) for b in node.store.blocks(0, height + 1)] == hashes
    for node in nodes:
        for client in clients:
            for k in range(numbers.start, numbers.stop + 1):
                proof = node.store.proof(_hash(client.id, k))
                assert proof is not None, (node.id, client.id, k)
                assert verify_entry_proof(
                    proof, _hash(client.id, k), chain_id=MESSAGE_CHAIN,
                    replicas=MEMBERS.replicas, quorum=MEMBERS.quorum,
                ) == "VALID"  # fmt: skip


def test_four_nodes_notarize_certify_and_store_the_same_blocks(tmp_path: Path) -> None:
    run(lambda: _four_nodes(tmp_path))


async def _four_nodes(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes:
        clients = [Client(c) for c in sorted(CLIENT_KEYS)]
        numbers = range(1, 11)  # 2 clients x 10 requests
        try:
            for client in clients:
                await client.connect(nodes)
            await _run_clients(clients, numbers)
            height = await _settled(list(nodes.values()))
        finally:
            for client in clients:
                await client.close()
        _check_four(nodes, clients, numbers, height)


def _check_four(nodes: dict[str, Node], clients: list[Client], numbers: range, height: int) -> None:
    assert height >= 9  # at most 2 requests per batch, one block per batch
    _check_stores(list(nodes.values()), clients, numbers)
    head = nodes["node-0"].store.head()
    assert head is not None
    for node in nodes.values():
        status = node.status()
        assert status["height"] == height and status["view"] == 0
        assert status["head"] == block_hash(head).hex()
        metrics = status["metrics"]
        assert metrics["blocks_appended"] == height + 1
        assert metrics["signatures_invalid"] == 0 and metrics["transport.handler_errors"] == 0
        assert metrics["store_errors"] == metrics["tick_errors"] == metrics["block_errors"] == 0
        assert node.store.checkpoint() is not None  # checkpoints every 4 batches
        assert len(node.store.state().locations()) == 2 * 11  # each entry once


def test_three_nodes_carry_on_when_a_backup_stops(tmp_path: Path) -> None:
    run(lambda: _one_backup_stopped(tmp_path))


async def _one_backup_stopped(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes:
        clients = [Client(c) for c in sorted(CLIENT_KEYS)]
        try:
            for client in clients:
                await client.connect(nodes)
            await _run_clients(clients, range(1, 6))
            stopped = nodes["node-3"]
            assert MEMBERS.primary(stopped.replica.view) != "node-3"
            await stopped.stop()
            await _run_clients(clients, range(6, 13))
            running = [n for rid, n in nodes.items() if rid != "node-3"]
            await _settled(running)
        finally:
            for client in clients:
                await client.close()
        _check_stores(running, clients, range(1, 13))


def test_a_node_checks_its_config(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="not the membership's key"):
        NodeConfig("node-0", REPLICA_KEYS["node-1"], MEMBERS, ("127.0.0.1", 0), {},
                   tmp_path / "x.db", CONFIG)  # fmt: skip
    with pytest.raises(NodeError, match="not a replica"):
        NodeConfig("clinic-a", REPLICA_KEYS["node-1"], MEMBERS, ("127.0.0.1", 0), {},
                   tmp_path / "x.db", CONFIG)  # fmt: skip
    with pytest.raises(NodeError, match="exceeds membership"):
        NodeConfig("node-0", REPLICA_KEYS["node-0"], MEMBERS, ("127.0.0.1", 0), {},
                   tmp_path / "x.db")  # fmt: skip
    with pytest.raises(NodeError, match="tick_seconds"):
        NodeConfig("node-0", REPLICA_KEYS["node-0"], MEMBERS, ("127.0.0.1", 0), {},
                   tmp_path / "x.db", CONFIG, tick_seconds=0)  # fmt: skip
    config = NodeConfig("node-0", REPLICA_KEYS["node-0"], MEMBERS, ("127.0.0.1", 0), {},
                        tmp_path / "x.db", CONFIG)  # fmt: skip
    node = Node(config)
    with pytest.raises(NodeError, match="no open store"):
        _ = node.store
    asyncio.run(node.stop())  # stopping a node never started is a no-op


async def _start(tmp_path: Path, rid: str) -> Node:
    config = NodeConfig(rid, REPLICA_KEYS[rid], MEMBERS, ("127.0.0.1", 0), {},
                        tmp_path / f"{rid}.db", CONFIG, tick_seconds=TICK)  # fmt: skip
    node = Node(config)
    await node.start()
    return node


def _link(nodes: dict[str, Node]) -> None:
    for rid, node in nodes.items():
        for other, peer in nodes.items():
            if other != rid:
                node.transport.set_peer(other, peer.transport.address)


def test_the_whole_cluster_restarts_on_its_stores_and_carries_on(tmp_path: Path) -> None:
    run(lambda: _whole_restart(tmp_path), deadline=60)


async def _whole_restart(tmp_path: Path) -> None:
    clients = [Client(c) for c in sorted(CLIENT_KEYS)]
    async with cluster(tmp_path) as nodes:
        try:
            for client in clients:
                await client.connect(nodes)
            await _run_clients(clients, range(1, 8))
            before = await _settled(list(nodes.values()))
        finally:
            for client in clients:
                await client.close()
    # Every process stops; the same stores come back (new ports, as after a reboot).
    nodes = {rid: await _start(tmp_path, rid) for rid in MEMBERS.replica_ids}
    _link(nodes)
    clients = [Client(c) for c in sorted(CLIENT_KEYS)]
    try:
        for node in nodes.values():
            assert node.recovered_at is not None and node.recovered_at > 0
            assert node.height == before
        for client in clients:
            await client.connect(nodes)
        await _run_clients(clients, range(8, 14))
        after = await _settled(list(nodes.values()))
        assert after > before
        _check_stores(list(nodes.values()), clients, range(1, 14))
        for node in nodes.values():
            m = node.metrics
            assert m["store_errors"] == m["block_errors"] == m["tick_errors"] == 0
            assert node.failure is None
    finally:
        for client in clients:
            await client.close()
        for node in nodes.values():
            await node.stop()


def test_a_restarted_backup_recovers_and_syncs_the_blocks_it_missed(tmp_path: Path) -> None:
    run(lambda: _backup_restart(tmp_path), deadline=60)


async def _backup_restart(tmp_path: Path) -> None:
    clients = [Client(c) for c in sorted(CLIENT_KEYS)]
    nodes = {rid: await _start(tmp_path, rid) for rid in MEMBERS.replica_ids}
    _link(nodes)
    try:
        for client in clients:
            await client.connect(nodes)
        await _run_clients(clients, range(1, 6))
        await nodes["node-3"].stop()
        # The others run several checkpoints (and log windows) past it.
        await _run_clients(clients, range(6, 20))
        nodes["node-3"] = await _start(tmp_path, "node-3")
        _link(nodes)
        assert nodes["node-3"].recovered_at is not None
        await _run_clients(clients, range(20, 24))
        await _settled(list(nodes.values()), timeout=20)
        _check_stores(list(nodes.values()), clients, range(1, 24))
        back = nodes["node-3"].metrics
        # The missed blocks came by block sync (the others collected their logs past it and it
        # fetched their checkpoint) or, when it came back while they still held the slots, by
        # the normal protocol's retransmissions: which one depends on timing under load. Either
        # way it now holds the same blocks (_check_stores) and appended or synced them here.
        assert back["blocks_synced"] + back["blocks_appended"] > 0
        assert nodes["node-3"].failure is None
    finally:
        for client in clients:
            await client.close()
        for node in nodes.values():
            await node.stop()
