"""The ledger client against four nodes and their APIs in one process: results on f+1 matching
checked replies, failover past stopped nodes, forged and altered replies ignored, proofs
verified locally with a tampering node skipped, and clear errors when the cluster cannot
answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.ledger.kit import CLIENT_KEYS, MESSAGE_CHAIN, REPLICA_KEYS
from tests.ledger.test_node import MEMBERS, _settled, cluster, run

from medfabric.crypto.keys import SigningKey
from medfabric.ledger import client as client_module
from medfabric.ledger.api import ApiServer
from medfabric.ledger.blocks import (
    Entry,
    EntryIndex,
    decode_entry_proof,
    encode_entry_proof,
    storage_address,
)
from medfabric.ledger.chain import TxResult
from medfabric.ledger.client import ClientError, LedgerClient, NotNotarized
from medfabric.ledger.messages import Reply, Signed, frame, open_frame, sign
from medfabric.ledger.node import Node

CLIENT = "clinic-a"
FORGED = TxResult("refused", reason="forged").encode()
Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


def _entries(numbers: range) -> list[Entry]:
    return [
        Entry(bytes([n]) * 32, EntryIndex(storage_address(CLIENT, "LIS", "LAB", f"R{n}"), "lab",
                                          1_700_000_000_000 + n))
        for n in numbers
    ]  # fmt: skip


class Tamper(httpx.BaseTransport):
    """Real HTTP, except that chosen nodes are unreachable, slow, or have answers rewritten."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.down: set[int] = set()
        self.slow: set[int] = set()
        self.rewrite: dict[tuple[int, str], Rewrite] = {}  # (port, "requests"|"proofs") → fn

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or 80
        if port in self.down:
            raise httpx.ConnectError("down (test)", request=request)
        response = self.inner.handle_request(request)
        if port in self.slow:
            time.sleep(0.3)
        kind = request.url.path.split("/")[2]
        fn = self.rewrite.get((port, kind))
        if fn is None or response.status_code != 200:
            return response
        response.read()
        return httpx.Response(200, json=fn(response.json()))

    def close(self) -> None:
        self.inner.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _signed_reply(data: dict[str, Any]) -> Signed[Reply]:
    signed = open_frame(base64.b64decode(data["reply"]), MEMBERS, max_size=1 << 20)
    assert isinstance(signed.message, Reply)
    return signed  # type: ignore[return-value]


def _altered(data: dict[str, Any]) -> dict[str, Any]:
    """The node's genuine envelope with the result changed (its signature no longer holds)."""
    s = _signed_reply(data)
    forged = Signed(dataclasses.replace(s.message, result=FORGED), s.signer, s.signature,
                    s.chain_id)  # fmt: skip
    return {**data, "result": base64.b64encode(FORGED).decode(), "reply": _b64(frame(forged))}


def _replayed(data: dict[str, Any]) -> dict[str, Any]:
    """A correctly signed reply of this (faulty) replica, but to an earlier request."""
    m = _signed_reply(data).message
    old = dataclasses.replace(m, timestamp=m.timestamp - 1, result=FORGED)
    signed = sign(old, REPLICA_KEYS[m.replica], signer=m.replica, chain_id=MESSAGE_CHAIN)
    return {**data, "result": base64.b64encode(FORGED).decode(), "reply": _b64(frame(signed))}


def _moved_entry(data: dict[str, Any]) -> dict[str, Any]:
    """The genuine proof with the entry's index altered (the leaf no longer matches)."""
    proof = decode_entry_proof(base64.b64decode(data["proof"]))
    index = dataclasses.replace(proof.entry.index, address=storage_address("x", "y", "z", "w"))
    moved = dataclasses.replace(proof, entry=dataclasses.replace(proof.entry, index=index))
    return {**data, "proof": _b64(encode_entry_proof(moved))}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@contextlib.asynccontextmanager
async def servers(nodes: dict[str, Node]) -> AsyncIterator[dict[str, ApiServer]]:
    found = {rid: ApiServer(node, "127.0.0.1", 0, reply_timeout=2.0) for rid, node in nodes.items()}
    try:
        for server in found.values():
            await server.start()
        yield found
    finally:
        for server in found.values():
            await server.stop()


def test_the_client_notarizes_fails_over_and_trusts_only_checked_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_TX_ENTRIES", 2)
    run(lambda: _client(tmp_path), deadline=40)


async def _client(tmp_path: Path) -> None:
    tamper = Tamper()
    async with cluster(tmp_path) as nodes, servers(nodes) as apis:
        urls = {rid: f"http://127.0.0.1:{s.address[1]}" for rid, s in apis.items()}
        ports = {rid: _port(url) for rid, url in urls.items()}
        client = LedgerClient(urls, MEMBERS, CLIENT, CLIENT_KEYS[CLIENT], timeout=10,
                              transport=tamper)  # fmt: skip
        try:
            await _submit_and_forge(client, tamper, ports)
            await _settled(list(nodes.values()))
            await _proofs(client, tamper, ports)
            # Failover: a stopped backup is skipped; two stopped leave no quorum.
            for rid in ("node-3", "node-2"):
                await apis[rid].stop()
                await nodes[rid].stop()
                if rid == "node-3":
                    result = await asyncio.to_thread(client.notarize, _entries(range(20, 22)))
                    assert result == TxResult("notarized", 2, 0)
            with pytest.raises(ClientError, match="no 2 matching replies") as error:
                await asyncio.to_thread(client.notarize, _entries(range(30, 31)))
            answers = error.value.answers
            assert answers["node-0"] == answers["node-1"] == "HTTP 504 timeout"
            assert answers["node-2"].startswith("unreachable")
            assert "node-3: unreachable" in str(error.value)
        finally:
            client.close()


async def _submit_and_forge(client: LedgerClient, tamper: Tamper, ports: dict[str, int]) -> None:
    result = await asyncio.to_thread(client.notarize, _entries(range(1, 4)))
    assert result == TxResult("notarized", 3, 0)
    again = await asyncio.to_thread(client.notarize, _entries(range(1, 4)))
    assert again == TxResult("notarized", 0, 3)
    # Over MAX_TX_ENTRIES (2 here): one transaction per chunk, in order.
    many = await asyncio.to_thread(client.notarize_many, _entries(range(3, 8)))
    assert many == [TxResult("notarized", 1, 1), TxResult("notarized", 2, 0),
                    TxResult("notarized", 1, 0)]  # fmt: skip
    # Two forged replies with the same result would make f + 1 if they counted; the honest
    # nodes answer late, so the client has seen both forgeries before it can decide.
    tamper.rewrite[ports["node-0"], "requests"] = _altered
    tamper.rewrite[ports["node-1"], "requests"] = _replayed
    tamper.slow = {ports["node-2"], ports["node-3"]}
    ignored = client.metrics["replies_ignored"]
    result = await asyncio.to_thread(client.notarize, _entries(range(10, 12)))
    assert result == TxResult("notarized", 2, 0)
    assert client.metrics["replies_ignored"] == ignored + 2
    tamper.rewrite.clear()
    tamper.slow.clear()
    with pytest.raises(ClientError, match="duplicate_entry"):
        await asyncio.to_thread(client.notarize, _entries(range(1, 2)) * 2)


async def _proofs(client: LedgerClient, tamper: Tamper, ports: dict[str, int]) -> None:
    content_hash = bytes([2]) * 32
    tamper.rewrite[ports["node-0"], "proofs"] = _moved_entry
    proof = await asyncio.to_thread(client.proof, content_hash)
    assert client.verify(content_hash, proof) == "VALID"
    assert proof.entry == _entries(range(2, 3))[0]
    assert client.metrics["proofs_invalid"] == 1
    assert client.verify(bytes([9]) * 32, proof) == "hash mismatch"
    # A node that is down is skipped as well.
    tamper.down = {ports["node-1"]}
    other = await asyncio.to_thread(client.proof, content_hash)
    assert (other.entry, other.header) == (proof.entry, proof.header)  # certificates may differ
    tamper.down.clear()
    for port in ports.values():
        tamper.rewrite[port, "proofs"] = _moved_entry
    with pytest.raises(ClientError, match="invalid proofs served") as error:
        await asyncio.to_thread(client.proof, content_hash)
    assert not isinstance(error.value, NotNotarized)
    assert error.value.answers["node-3"] == "invalid proof: not in block"
    tamper.rewrite.clear()
    tamper.down = {ports["node-2"]}
    with pytest.raises(NotNotarized, match="not notarized"):
        await asyncio.to_thread(client.proof, bytes([99]) * 32)
    tamper.down.clear()


def test_the_client_checks_its_configuration() -> None:
    urls = {"node-0": "http://127.0.0.1:1"}
    with pytest.raises(ClientError, match="not replicas"):
        LedgerClient({"node-9": "http://x"}, MEMBERS, CLIENT, CLIENT_KEYS[CLIENT])
    with pytest.raises(ClientError, match="not an institution"):
        LedgerClient(urls, MEMBERS, "nobody", CLIENT_KEYS[CLIENT])
    with pytest.raises(ClientError, match="registered key"):
        LedgerClient(urls, MEMBERS, CLIENT, SigningKey.generate())
    with (
        LedgerClient(urls, MEMBERS) as reader,
        pytest.raises(ClientError, match="no institution key"),
    ):
        reader.notarize(_entries(range(1, 2)))
    with (
        LedgerClient(urls, MEMBERS, CLIENT, CLIENT_KEYS[CLIENT], timeout=1) as lonely,
        pytest.raises(ClientError, match="no 2 matching replies") as error,
    ):
        lonely.notarize(_entries(range(1, 2)))
    assert error.value.answers == {"node-0": "unreachable: ConnectError"}
