"""The HTTP API of four nodes in one process: requests through every node's API reach f+1
matching replies, blocks and proofs come back in their canonical bytes, bad input is a 400
with its reason, and the servers share the nodes' event loop and leave no task behind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from tests.ledger.kit import CLIENT_KEYS, MESSAGE_CHAIN, OUTSIDER, REPLICA_KEYS
from tests.ledger.test_node import MEMBERS, _hash, _operation, _settled, cluster, run

from medfabric.ledger.api import ApiServer
from medfabric.ledger.blocks import (
    block_hash,
    decode_block,
    decode_entry_proof,
    encode_block,
    verify_entry_proof,
)
from medfabric.ledger.chain import TxResult
from medfabric.ledger.messages import Reply, Request, Signed, frame, open_frame, sign
from medfabric.ledger.node import Node

OCTETS = {"content-type": "application/octet-stream"}


@contextlib.asynccontextmanager
async def apis(nodes: dict[str, Node], **options: Any) -> AsyncIterator[dict[str, str]]:
    """An API server per node on 127.0.0.1, port 0; yields node id → base URL."""
    servers = {rid: ApiServer(node, "127.0.0.1", 0, **options) for rid, node in nodes.items()}
    try:
        for server in servers.values():
            await server.start()
        yield {rid: f"http://{s.address[0]}:{s.address[1]}" for rid, s in servers.items()}
    finally:
        for server in servers.values():
            await server.stop()


def _request(client: str, n: int) -> bytes:
    signed = sign(Request(client, n, _operation(client, n)), CLIENT_KEYS[client],
                  signer=client, chain_id=MESSAGE_CHAIN)  # fmt: skip
    return frame(signed)


async def _submit(http: httpx.AsyncClient, urls: dict[str, str], body: bytes) -> TxResult:
    """POST to every node; accept the result f+1 nodes answered alike."""
    answers = await asyncio.gather(
        *(http.post(f"{url}/v1/requests", content=body, headers=OCTETS) for url in urls.values())
    )
    results: dict[str, int] = {}
    for rid, answer in zip(urls, answers, strict=True):
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert data["replica"] == rid
        reply = open_frame(base64.b64decode(data["reply"]), MEMBERS, max_size=1 << 20)
        assert isinstance(reply.message, Reply) and reply.signer == rid
        assert reply.message.result == base64.b64decode(data["result"])
        results[data["result"]] = results.get(data["result"], 0) + 1
    best, votes = max(results.items(), key=lambda kv: kv[1])
    assert votes >= MEMBERS.f + 1
    return TxResult.decode(base64.b64decode(best))


def test_requests_blocks_and_proofs_through_the_api(tmp_path: Path) -> None:
    run(lambda: _through_the_api(tmp_path))


async def _through_the_api(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes, apis(nodes) as urls:

        def broken(_: Signed[Reply]) -> None:
            raise RuntimeError("a listener bug")

        nodes["node-3"].add_reply_listener(broken)
        async with httpx.AsyncClient(timeout=15) as http:
            for n in range(1, 4):
                for client in sorted(CLIENT_KEYS):
                    result = await _submit(http, urls, _request(client, n))
                    assert result.status == "notarized", result
            # A repeat is answered again from the replica's cache, never re-executed.
            again = await _submit(http, urls, _request("clinic-b", 3))
            assert again == result
            height = await _settled(list(nodes.values()))
            await _check_reads(http, nodes, urls["node-1"], height)
            await _check_bad_input(http, urls["node-2"])
            metrics = (await http.get(f"{urls['node-0']}/metrics")).text
            assert f'medfabric_ledger_blocks_appended_total{{node="node-0"}} {height + 1}' in (
                metrics
            )
            assert "# TYPE medfabric_ledger_transport_received_total counter" in metrics
            health = await http.get(f"{urls['node-3']}/healthz")
            assert health.json() == {"status": "ok", "node": "node-3"}
    assert nodes["node-3"].metrics["listener_errors"] > 0
    assert nodes["node-0"].metrics["listener_errors"] == 0


async def _check_reads(
    http: httpx.AsyncClient, nodes: dict[str, Node], url: str, height: int
) -> None:
    status = (await http.get(f"{url}/v1/status")).json()
    assert status["node"] == "node-1" and status["height"] == height
    stored = nodes["node-1"].store.block(height)
    assert stored is not None
    data = (await http.get(f"{url}/v1/blocks/{height}")).json()
    assert data["hash"] == block_hash(stored.header).hex() == status["head"]
    assert data["height"] == height and data["proposer"] == stored.header.proposer
    assert data["certificate"] == sorted(data["certificate"])
    assert len(data["certificate"]) == MEMBERS.quorum
    block = decode_block(base64.b64decode(data["block"]))
    assert encode_block(block) == encode_block(stored)
    assert data["entry_count"] == sum(len(tx.entries) for tx in block.txs)
    missing = await http.get(f"{url}/v1/blocks/{height + 100}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for client in CLIENT_KEYS:
        for k in range(1, 5):
            answer = await http.get(f"{url}/v1/proofs/{_hash(client, k).hex()}")
            assert answer.status_code == 200, (client, k, answer.text)
            proof = decode_entry_proof(base64.b64decode(answer.json()["proof"]))
            assert answer.json()["height"] == proof.header.height
            assert answer.json()["position"] == proof.position
            assert verify_entry_proof(
                proof, _hash(client, k), chain_id=MESSAGE_CHAIN,
                replicas=MEMBERS.replicas, quorum=MEMBERS.quorum,
            ) == "VALID"  # fmt: skip
    unknown = await http.get(f"{url}/v1/proofs/{_hash('nobody', 1).hex()}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    for bad in ("zz", "abcd", "00" * 33):
        answer = await http.get(f"{url}/v1/proofs/{bad}")
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_hash"


async def _check_bad_input(http: httpx.AsyncClient, url: str) -> None:
    async def post(body: bytes) -> str:
        answer = await http.post(f"{url}/v1/requests", content=body, headers=OCTETS)
        assert answer.status_code == 400, answer.text
        code: str = answer.json()["error"]["code"]
        return code

    assert await post(b"") == "malformed"
    assert await post(b"\x7f not a frame") == "malformed"
    good = _request("clinic-a", 99)
    assert await post(good[:-1] + bytes([good[-1] ^ 1])) == "bad_signature"
    forged = sign(Request("clinic-a", 99, b"x"), OUTSIDER, signer="clinic-a",
                  chain_id=MESSAGE_CHAIN)  # fmt: skip
    assert await post(frame(forged)) == "bad_signature"
    other_chain = sign(Request("clinic-a", 99, b"x"), CLIENT_KEYS["clinic-a"],
                       signer="clinic-a", chain_id="another-chain")  # fmt: skip
    assert await post(frame(other_chain)) == "wrong_chain"
    reply = sign(Reply(0, 1, "clinic-a", "node-0", b"\x01"), REPLICA_KEYS["node-0"],
                 signer="node-0", chain_id=MESSAGE_CHAIN)  # fmt: skip
    assert await post(frame(reply)) == "not_a_request"


def test_a_request_without_a_reply_times_out(tmp_path: Path) -> None:
    run(lambda: _times_out(tmp_path))


async def _times_out(tmp_path: Path) -> None:
    async with (
        cluster(tmp_path) as nodes,
        apis(nodes, reply_timeout=0.5) as urls,
        httpx.AsyncClient(timeout=15) as http,
    ):
        assert (await _submit(http, urls, _request("clinic-a", 5))).status == "notarized"
        # An older timestamp than the client's last executed request is stale: no reply.
        answer = await http.post(
            f"{urls['node-0']}/v1/requests", content=_request("clinic-a", 4), headers=OCTETS
        )
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
