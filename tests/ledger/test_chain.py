"""The notarization service: requests executed in PBFT order cut the same block headers on every
correct replica, and those headers, certified by 2f+1 replicas, are valid blocks with proofs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.ledger.sim import Sim, key_for, make_membership

from medfabric.ledger.blocks import (
    EMPTY_ROOT,
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockHeader,
    Entry,
    EntryIndex,
    NotarizationState,
    block_entries,
    block_hash,
    encode_tx,
    entries_root,
    sign_block,
    sign_tx,
    storage_address,
    verify_block,
    verify_entry_proof,
)
from medfabric.ledger.chain import NotarizationService, TxResult
from medfabric.ledger.messages import LedgerError, Membership, Request
from medfabric.ledger.replica import ReplicaConfig
from medfabric.ledger.store import LedgerStore

MEMBERS = make_membership(4, 3)


def _hash(client: str, n: int) -> bytes:
    return hashlib.sha256(f"{client}/{n}".encode()).digest()


def _entry(client: str, n: int) -> Entry:
    address = storage_address(client, "LIS", "LAB_RESULT", f"R{n}")
    return Entry(_hash(client, n), EntryIndex(address, "lab_result", 1_700_000_000_000 + n))


def _operation(client: str, timestamp: int, numbers: list[int] | None = None) -> bytes:
    """Request ``timestamp`` of ``client``: entries ``timestamp`` and ``timestamp + 1`` (so
    every second entry repeats one of the previous request: duplicates are exercised)."""
    numbers = [timestamp, timestamp + 1] if numbers is None else numbers
    tx = sign_tx(
        client, timestamp, [_entry(client, n) for n in numbers], key_for(client), chain_id="sim"
    )
    return encode_tx(tx)


def _request(client: str, timestamp: int, operation: bytes | None = None) -> Request:
    return Request(client, timestamp, operation or _operation(client, timestamp))


# --- the service alone ------------------------------------------------------------------------


def test_requests_then_end_batch_cut_a_header() -> None:
    service = NotarizationService(MEMBERS)
    first = TxResult.decode(service.execute(_request("c0", 5)))
    second = TxResult.decode(service.execute(_request("c1", 7)))
    again = TxResult.decode(service.execute(_request("c0", 6)))  # entries 6, 7: 6 is new
    assert (first.status, first.new, first.duplicates) == ("notarized", 2, 0)
    assert (second.new, again.new, again.duplicates) == (2, 1, 1)
    service.end_batch(0, 1)
    [built] = service.take_built()
    h = built.header
    entries = [e for tx in built.txs for e in tx.entries]
    reference = NotarizationState()
    reference.apply(entries, 0)
    assert (h.height, h.previous_hash, h.view, h.proposer) == (0, GENESIS_PREVIOUS_HASH, 0, "r0")
    assert h.entries_root == entries_root(entries) and h.state_root == reference.state_root()
    assert h.time == 7  # the largest request timestamp of the batch
    assert service.take_built() == []
    service.end_batch(1, 2)  # an empty batch: an empty block, chained, time kept
    [empty] = service.take_built()
    assert empty.header.height == 1 and empty.header.previous_hash == block_hash(h)
    assert empty.header.entries_root == EMPTY_ROOT and empty.header.time == 7
    assert empty.header.proposer == "r1" and empty.header.state_root == h.state_root
    service.end_batch(None, 3)  # a new view's null request: the view of the block before
    [null] = service.take_built()
    assert (null.header.view, null.header.proposer) == (1, "r1")


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (Request("c0", 1, b"not a transaction"), "malformed transaction"),
        (Request("c1", 1, _operation("c0", 1)), "sent by client 'c1'"),
        (
            Request(
                "c0",
                1,
                encode_tx(sign_tx("c0", 1, [_entry("c0", 1)], key_for("c1"), chain_id="sim")),
            ),
            "bad_signature",
        ),
        (
            Request(
                "c0",
                1,
                encode_tx(sign_tx("c0", 1, [_entry("c0", 1)], key_for("c0"), chain_id="other")),
            ),
            "bad_signature",
        ),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(request_: Request, reason: str) -> None:
    service = NotarizationService(MEMBERS)
    result = TxResult.decode(service.execute(request_))
    assert result.status == "refused" and reason in result.reason
    service.end_batch(0, 1)
    [built] = service.take_built()
    assert built.txs == () and built.header.entries_root == EMPTY_ROOT
    assert len(service.state) == 0


def test_results_round_trip_and_garbage_is_refused() -> None:
    for result in (TxResult("notarized", 3, 1), TxResult("refused", reason="empty: 空")):
        assert TxResult.decode(result.encode()) == result
    with pytest.raises(LedgerError):
        TxResult.decode(b"\x02abc")


def test_a_batch_out_of_order_is_a_programming_error() -> None:
    service = NotarizationService(MEMBERS)
    with pytest.raises(LedgerError, match="does not follow"):
        service.end_batch(0, 2)


def test_snapshot_restores_a_service_that_cuts_the_same_next_headers() -> None:
    a = NotarizationService(MEMBERS)
    for seq, (client, ts) in enumerate([("c0", 1), ("c1", 1), ("c0", 2)], start=1):
        a.execute(_request(client, ts))
        a.end_batch(0, seq)
    b = NotarizationService(MEMBERS)
    b.restore(a.snapshot())
    assert b.digest() == a.digest() and b.head == a.head and b.snapshot() == a.snapshot()
    for service in (a, b):
        service.take_built()
        service.execute(_request("c2", 9))
        service.end_batch(1, 4)
    assert a.take_built() == b.take_built()
    fresh = NotarizationService(MEMBERS)
    fresh.restore(NotarizationService(MEMBERS).snapshot())
    assert fresh.head is None and fresh.digest() == bytes(32)


def test_a_bad_snapshot_is_refused_and_leaves_the_service_unchanged() -> None:
    a = NotarizationService(MEMBERS)
    a.execute(_request("c0", 1))
    a.end_batch(0, 1)
    good = a.snapshot()
    b = NotarizationService(MEMBERS)
    b.execute(_request("c1", 1))
    b.end_batch(0, 1)
    before = b.snapshot()
    tampered_root = good[:-1] + bytes([good[-1] ^ 1])  # a location changed: root mismatch
    for bad in (b"", good[:-3], good + b"\x00", tampered_root):
        with pytest.raises(LedgerError):
            b.restore(bad)
        assert b.snapshot() == before


# --- replicated: the simulation ---------------------------------------------------------------


def _run(**kw: object) -> Sim:
    sim = Sim(
        n=4,
        seed=int(kw.pop("seed", 1)),  # type: ignore[call-overload]
        clients=3,
        requests=6,
        service=NotarizationService,
        operation=_operation,
        config=ReplicaConfig(max_batch=2, checkpoint_interval=4),
        **kw,  # type: ignore[arg-type]
    )
    assert sim.run(), "the run did not settle"
    return sim


def _headers(sim: Sim, rid: str) -> list[BlockHeader]:
    service = sim.replicas[rid].state_machine
    assert isinstance(service, NotarizationService)
    return [b.header for b in service.take_built()]


def _certified(sim: Sim, membership: Membership) -> list[Block]:
    """Blocks of r0's headers certified by r0..r2 (what the node gathers over the network)."""
    service = sim.replicas["r0"].state_machine
    assert isinstance(service, NotarizationService)
    blocks = []
    for built in service.take_built():
        cert = tuple(
            sign_block(built.header, key_for(r), replica=r, chain_id="sim")
            for r in ("r0", "r1", "r2")
        )
        blocks.append(Block(built.header, built.txs, cert))
    return blocks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_replica_cuts_the_same_headers(seed: int) -> None:
    sim = _run(seed=seed, dup=0.1)
    headers = {rid: _headers(sim, rid) for rid in sim.replicas}
    reference = headers["r0"]
    assert reference and all(h == reference for h in headers.values())
    entries = sum(1 for h in reference if h.entries_root != EMPTY_ROOT)
    assert entries > 0


def test_the_same_headers_after_a_view_change() -> None:
    sim = _run(seed=4, crashed=frozenset({"r0"}))  # the primary of view 0 is silent
    correct = [rid for rid in sim.replicas if rid != "r0"]
    headers = [_headers(sim, rid) for rid in correct]
    assert headers[0] and all(h == headers[0] for h in headers)
    assert all(h.view >= 1 and h.proposer != "r0" for h in headers[0])


@pytest.mark.parametrize("seed", range(12))
def test_a_batch_committed_in_two_views_gives_one_header(seed: int) -> None:
    # The primary crashes while batches are in flight on a lossy network: a batch it (or a
    # backup) committed in view 0 is proposed again after the view change and commits in view
    # 1 on the others. The header names the view the batch was built in, so every replica
    # cuts the same chain (a header naming the commit view split the replicas 2-2, and no
    # block reached its 2f+1 certificate).
    sim = _run(seed=seed, crash_at={"r0": 40}, drop=0.15, drop_until=300)
    # By height: a replica restored by state transfer did not cut the heights below it.
    cut = {rid: {h.height: h for h in _headers(sim, rid)} for rid in sim.replicas}
    by_height: dict[int, set[BlockHeader]] = {}
    for own in cut.values():
        for height, header in own.items():
            by_height.setdefault(height, set()).add(header)
    assert all(len(variants) == 1 for variants in by_height.values()), by_height
    headers = [variants.pop() for _, variants in sorted(by_height.items())]
    assert any(h.view >= 1 for h in headers)  # the view did change
    assert all(h.proposer == sim.membership.primary(h.view) for h in headers)


def test_certified_blocks_verify_land_in_the_store_and_prove(tmp_path: Path) -> None:
    sim = _run(seed=5)
    blocks = _certified(sim, sim.membership)
    replicas = dict(sim.membership.replicas)
    state = NotarizationState()
    previous: BlockHeader | None = None
    with LedgerStore.open(tmp_path / "node.db", chain_id="sim") as store:
        for block in blocks:
            state.apply(block_entries(block), block.header.height)
            verify_block(
                block, previous, chain_id="sim", replicas=replicas, quorum=3,
                institutions=dict(sim.membership.clients), state_root=state.state_root(),
            )  # fmt: skip
            store.append_block(block)
            previous = block.header
        # Every request's entries are notarized once and provable offline.
        for client in ("c0", "c1", "c2"):
            for n in range(1, 8):
                proof = store.proof(_hash(client, n))
                assert proof is not None
                assert verify_entry_proof(
                    proof, _hash(client, n), chain_id="sim", replicas=replicas, quorum=3
                ) == "VALID"  # fmt: skip
        assert store.state().state_root() == state.state_root()
