"""State transfer (Castro & Liskov §4.3 / §5.3.2) in the seeded simulator.

A replica that fell behind its peers' stable checkpoint (partitioned long enough for them to
collect their logs past it, or restarted with nothing) fetches the state of a certified
checkpoint in chunks, checks every chunk against the state digest that 2f+1 replicas signed,
restores it, and resumes the normal case above it. The client de-duplication table is part
of that state, so nothing executes twice. A replica serving corrupted chunks is detected and
the transfer completes from another one.
"""

from __future__ import annotations

import pytest
from tests.ledger.sim import Sim, key_for, make_membership
from tests.ledger.test_replica import _check_complete

from medfabric.crypto.merkle import inclusion_proof, leaf_hash, root_from_leaf_hashes
from medfabric.ledger.messages import (
    Checkpoint,
    FetchState,
    LedgerError,
    Message,
    Request,
    Signed,
    StateChunk,
    sign,
)
from medfabric.ledger.replica import (
    HashChainStateMachine,
    Replica,
    ReplicaConfig,
    decode_state,
    encode_state,
    state_chunks,
)

# Small chunks so that every state takes several of them.
CONFIG = ReplicaConfig(
    max_batch=2,
    checkpoint_interval=8,
    view_change_timeout=20,
    retransmit_every=2,
    state_chunk_size=256,
    fetch_parallel=2,
)


def _check_transferred(sim: Sim, rid: str) -> None:
    _check_complete(sim)  # same order everywhere, each request once, equal state digests
    assert sim.restored[rid], f"{rid} caught up without state transfer"
    low = {r.low for r in sim.replicas.values()}
    assert len(low) == 1, low


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", range(12))
def test_partitioned_backup_catches_up_by_state_transfer(n: int, seed: int) -> None:
    # Cut off from the other replicas while they run many checkpoints past it and collect
    # their logs; healed while clients are still busy.
    late = f"r{n - 1}"
    sim = Sim(n=n, seed=seed, config=CONFIG, requests=30, partition=(20, 250, frozenset({late})))
    assert sim.run(max_events=300_000)
    _check_transferred(sim, late)


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", range(12))
def test_restarted_empty_replica_catches_up(n: int, seed: int) -> None:
    late = f"r{n - 1}"
    sim = Sim(n=n, seed=seed, config=CONFIG, requests=30, restart={late: (40, 250)})
    assert sim.run(max_events=300_000)
    _check_transferred(sim, late)
    assert sim.replicas[late].state_machine.digest() == sim.replicas["r0"].state_machine.digest()


@pytest.mark.parametrize("seed", range(12))
def test_corrupted_chunks_are_rejected_and_transfer_completes(seed: int) -> None:
    # r0 (the first replica asked) alters every chunk it serves; r3 rejects each one and
    # fetches it again from the next replica of the checkpoint proof.
    sim = Sim(
        n=4,
        seed=seed,
        config=CONFIG,
        requests=30,
        partition=(20, 250, frozenset({"r3"})),
        corrupt_chunks=frozenset({"r0"}),
    )
    assert sim.run(max_events=300_000)
    _check_transferred(sim, "r3")
    assert sim.corrupted >= 1 and sim.replicas["r3"].ignored["bad_chunk"] >= 1


def _certified_state(
    replicas: list[str], requests: int
) -> tuple[bytes, list[bytes], list[Signed[Checkpoint]]]:
    sm = HashChainStateMachine()
    table: dict[str, tuple[int, bytes]] = {}
    for t in range(1, requests + 1):
        table["c0"] = (t, sm.execute(Request("c0", t, b"op")))
    chunks = state_chunks(encode_state(sm.snapshot(), table), CONFIG.state_chunk_size)
    digest = root_from_leaf_hashes([leaf_hash(c) for c in chunks])
    votes = [
        sign(Checkpoint(64, digest, r), key_for(r), signer=r, chain_id="sim") for r in replicas
    ]
    return digest, chunks, votes


def _chunk(
    rid: str, digest: bytes, chunks: list[bytes], i: int, data: bytes | None = None
) -> Signed[Message]:
    leaves = [leaf_hash(c) for c in chunks]
    m = StateChunk(
        64,
        digest,
        i,
        len(chunks),
        chunks[i] if data is None else data,
        tuple(inclusion_proof(leaves, i)),
        rid,
    )
    return sign(m, key_for(rid), signer=rid, chain_id="sim")  # type: ignore[return-value]


def test_far_checkpoint_proof_starts_a_verified_fetch() -> None:
    membership = make_membership(4, 1, log_window=16)
    replica = Replica(CONFIG, membership, "r3", key_for("r3"))
    digest, chunks, votes = _certified_state(["r0", "r1", "r2"], 40)
    assert len(chunks) > 2
    replica.step(votes[0])  # type: ignore[arg-type]
    ready = replica.step(votes[1])  # type: ignore[arg-type]
    assert not ready.messages  # 2 < 2f+1: not certified
    ready = replica.step(votes[2])  # type: ignore[arg-type]
    asks = [(s.to, s.message.message) for s in ready.messages]
    assert asks == [("r0", FetchState(64, 0, "r3"))]
    assert replica.low == 64 and replica.last_executed == 0
    # A chunk of another (self-consistent) state passes the edge but not the core.
    _, fake, _ = _certified_state(["r0"], 41)
    fake_digest = root_from_leaf_hashes([leaf_hash(c) for c in fake])
    replica.step(_chunk("r0", fake_digest, fake, 0))
    # A chunk whose bytes do not match the proof.
    replica.step(_chunk("r0", digest, chunks, 0, data=b"tampered"))
    assert replica.ignored["bad_chunk"] == 2
    for i in range(len(chunks)):
        ready = replica.step(_chunk("r1", digest, chunks, i))
    assert ready.restored is not None and ready.restored.seq == 64
    assert replica.last_executed == 64 and replica.low == 64
    sm = replica.state_machine
    assert isinstance(sm, HashChainStateMachine) and len(sm.executed) == 40
    # The de-duplication table came with the state: request 40 is answered, not executed.
    req = sign(Request("c0", 40, b"op"), key_for("c0"), signer="c0", chain_id="sim")
    again = replica.step(req)  # type: ignore[arg-type]
    assert [s.to for s in again.messages] == ["c0"] and len(sm.executed) == 40


def test_snapshot_round_trip_and_malformed_snapshots() -> None:
    sm = HashChainStateMachine()
    for t in range(1, 4):
        sm.execute(Request("c0", t, b"op"))
    copy = HashChainStateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest() and copy.executed == sm.executed
    for bad in (sm.snapshot()[:-1], sm.snapshot() + b"\0", b""):
        with pytest.raises(LedgerError):
            HashChainStateMachine().restore(bad)
    state = encode_state(b"app", {"a": (1, b"x"), "b": (2, b"")})
    assert decode_state(state) == (b"app", {"a": (1, b"x"), "b": (2, b"")})
    with pytest.raises(LedgerError):
        decode_state(state[:-1])
    assert state_chunks(b"", 4) == [b""] and state_chunks(b"abcde", 2) == [b"ab", b"cd", b"e"]
