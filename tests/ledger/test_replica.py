"""The PBFT replica's normal case in the seeded simulator: every request executes exactly once,
in one order, on every correct replica; replies reach clients; a silent backup does not stop
progress; no seq commits two digests under reordering, duplication and drops; checkpoints
become stable and the log stays bounded; an equivocating primary's second pre-prepare is
ignored; a repeated client request gets the cached reply without executing again.
"""

from __future__ import annotations

import pytest
from tests.ledger.sim import Sim, key_for, make_membership

from medfabric.ledger.messages import (
    Checkpoint,
    Commit,
    LedgerError,
    Message,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    Signed,
    batch_digest,
    sign,
)
from medfabric.ledger.replica import IGNORE_REASONS, Ready, Replica, ReplicaConfig


def _check_complete(sim: Sim) -> None:
    """Every request executed exactly once everywhere, same order, same state; replies seen."""
    expected = {(c, t) for c in sim.client_list for t in range(1, sim.requests + 1)}
    orders = {rid: sim.executed_requests(rid) for rid in sim.replicas if rid not in sim.crashed}
    first = next(iter(orders.values()))
    assert len(first) == len(set(first)) == len(expected)
    assert set(first) == expected
    assert all(order == first for order in orders.values())
    assert len(set(sim.state_digests().values())) == 1
    for client in sim.client_list.values():
        assert sorted(client.accepted) == list(range(1, sim.requests + 1))


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", range(100))
def test_no_faults_every_request_executes_once_everywhere(n: int, seed: int) -> None:
    sim = Sim(n=n, seed=seed, clients=3, requests=3)
    assert sim.run()
    _check_complete(sim)


@pytest.mark.parametrize("seed", range(50))
def test_silent_backup_does_not_stop_progress(seed: int) -> None:
    sim = Sim(n=4, seed=seed, crashed=frozenset({"r3"}))
    assert sim.run()
    _check_complete(sim)
    assert sim.executed["r3"] == []


@pytest.mark.parametrize("seed", range(50))
def test_reordering_and_duplicates_keep_safety_and_liveness(seed: int) -> None:
    # Safety is asserted inside the simulator at every delivery (SafetyViolation).
    sim = Sim(n=4, seed=seed, max_delay=20, dup=0.3)
    assert sim.run()
    _check_complete(sim)


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", range(30))
def test_drops_never_break_safety(n: int, seed: int) -> None:
    # No retransmission yet, so a run with drops may stall; it must never disagree.
    sim = Sim(n=n, seed=seed, max_delay=10, dup=0.1, drop=0.15)
    sim.run(max_events=20_000)
    executed = [sim.executed_requests(rid) for rid in sim.replicas]
    for a in executed:
        for b in executed:
            shorter = min(len(a), len(b))
            assert a[:shorter] == b[:shorter]
            assert len(set(a)) == len(a)  # nothing executed twice


@pytest.mark.parametrize("seed", range(5))
def test_checkpoints_become_stable_and_log_is_garbage_collected(seed: int) -> None:
    config = ReplicaConfig(max_batch=2, checkpoint_interval=4)
    sim = Sim(n=4, seed=seed, clients=4, requests=40, config=config, log_window=8, max_delay=8)
    assert sim.run()
    _check_complete(sim)
    last = max(sim.committed)
    assert last > 40  # many windows' worth of sequence numbers went through a window of 8
    for replica in sim.replicas.values():
        assert replica.low >= last - config.checkpoint_interval - 1
        assert replica.low % config.checkpoint_interval == 0
        assert len(replica.low_proof) >= sim.membership.quorum
        assert {c.message.seq for c in replica.low_proof} == {replica.low}
    # Slots are at most L; checkpoint vote sets at most L / K + 1.
    assert sim.max_log <= sim.log_window + sim.log_window // config.checkpoint_interval + 1


@pytest.mark.parametrize("seed", range(20))
def test_window_full_primary_waits_for_stable_checkpoint(seed: int) -> None:
    # L = K: the primary stalls at every checkpoint, and backups that are not yet stable get
    # the next pre-prepares above their window; holding them is what keeps every replica live.
    config = ReplicaConfig(max_batch=1, checkpoint_interval=2)
    sim = Sim(n=4, seed=seed, max_delay=10, clients=6, requests=5, config=config, log_window=2)
    assert sim.run()
    _check_complete(sim)


def test_same_seed_same_run() -> None:
    a = Sim(n=4, seed=11, max_delay=9, dup=0.2)
    b = Sim(n=4, seed=11, max_delay=9, dup=0.2)
    a.run()
    b.run()
    assert a.persisted == b.persisted
    assert a.state_digests() == b.state_digests()


# --- direct scenarios ------------------------------------------------------------------------


def _request(client: str, t: int, op: bytes = b"op") -> Signed[Request]:
    return sign(Request(client, t, op), key_for(client), signer=client, chain_id="sim")


def _by(rid: str, message: Prepare | Commit | PrePrepare | Checkpoint) -> Signed[Message]:
    return sign(message, key_for(rid), signer=rid, chain_id="sim")


def test_a_new_batch_must_be_built_in_its_own_view() -> None:
    # Only a new view's O may carry an earlier view's batch (its digest fixes the origin); a
    # primary that passes a new batch off as an earlier view's (to name another proposer in
    # the block) is refused.
    membership = make_membership(4, 2)
    backup = Replica(ReplicaConfig(4, 8), membership, "r2", key_for("r2"))
    backup.view = 1  # primary: r1
    batch = (_request("c0", 1, b"a"),)
    assert not backup.step(_by("r1", PrePrepare(1, 1, batch_digest(batch, 0), batch, 0)))
    assert backup.ignored["conflicting"] == 1
    ready = backup.step(_by("r1", PrePrepare(1, 1, batch_digest(batch, 1), batch, 1)))
    assert [type(s.message) for s in ready.persist] == [PrePrepare, Prepare]


def test_conflicting_pre_prepare_is_ignored() -> None:
    membership = make_membership(4, 2)
    backup = Replica(ReplicaConfig(4, 8), membership, "r1", key_for("r1"))
    batch_a = (_request("c0", 1, b"a"),)
    batch_b = (_request("c1", 1, b"b"),)
    pp_a = PrePrepare(0, 1, batch_digest(batch_a, 0), batch_a)
    pp_b = PrePrepare(0, 1, batch_digest(batch_b, 0), batch_b)
    first = backup.step(_by("r0", pp_a))
    assert [type(s.message) for s in first.persist] == [PrePrepare, Prepare]
    second = backup.step(_by("r0", pp_b))
    assert not second
    assert backup.ignored["conflicting"] == 1
    # Enough prepares and commits for digest B do not commit B: only A's pre-prepare counts.
    for rid in ("r2", "r3"):
        backup.step(_by(rid, Prepare(0, 1, pp_b.digest, rid)))
    for rid in ("r0", "r2", "r3"):
        ready = backup.step(_by(rid, Commit(0, 1, pp_b.digest, rid)))
        assert not ready.committed
    # A then prepares (2f matching with our own) and commits with 2f+1.
    backup.step(_by("r2", Prepare(0, 1, pp_a.digest, "r2")))
    assert backup.ignored["conflicting"] == 2  # r2 already voted B at (0, 1)
    ready = backup.step(_by("r3", Commit(0, 1, pp_a.digest, "r3")))
    assert not ready.committed


def test_equivocating_primary_in_simulation_never_commits_two_digests() -> None:
    # The primary sends batch A to r1 and batch B (same seq) to r2, r3: at most one commits.
    membership = make_membership(4, 2)
    replicas = {
        rid: Replica(ReplicaConfig(4, 8), membership, rid, key_for(rid))
        for rid in membership.replica_ids
    }
    batch_a = (_request("c0", 1, b"a"),)
    batch_b = (_request("c1", 1, b"b"),)
    pps = {
        "r1": _by("r0", PrePrepare(0, 1, batch_digest(batch_a, 0), batch_a)),
        "r2": _by("r0", PrePrepare(0, 1, batch_digest(batch_b, 0), batch_b)),
        "r3": _by("r0", PrePrepare(0, 1, batch_digest(batch_b, 0), batch_b)),
    }
    queue: list[tuple[str, Signed[Message]]] = [(rid, pp) for rid, pp in pps.items()]
    # r1 later also sees B, r2 also sees A: both ignored as conflicting.
    queue += [("r1", pps["r2"]), ("r2", pps["r1"])]
    committed: dict[str, bytes] = {}
    while queue:
        to, message = queue.pop(0)
        ready: Ready = replicas[to].step(message)
        for out in ready.messages:
            targets = [r for r in replicas if r != to] if out.to is None else [out.to]
            queue += [(t, out.message) for t in targets if t in replicas and t != "r0"]
        for batch in ready.committed:
            committed[to] = batch.digest
    assert not committed  # B prepared at r2, r3, but a commit certificate needs 3 replicas
    # The faulty primary now votes for B too: B commits at r2 and r3; r1 never commits A.
    commit_b = _by("r0", Commit(0, 1, batch_digest(batch_b, 0), "r0"))
    queue = [(rid, commit_b) for rid in ("r1", "r2", "r3")]
    while queue:
        to, message = queue.pop(0)
        for batch in replicas[to].step(message).committed:
            committed[to] = batch.digest
    assert committed == {"r2": batch_digest(batch_b, 0), "r3": batch_digest(batch_b, 0)}
    assert replicas["r1"].ignored["conflicting"] == 1


def test_duplicate_request_executes_once_and_gets_cached_reply() -> None:
    sim = Sim(n=4, seed=5, clients=1, requests=2)
    assert sim.run()
    client = sim.client_list["c0"]
    replies_before = len(client.reply_messages)
    # The client re-sends request 2 (the last executed) to every replica, twice.
    again = _request("c0", 2, b"c0/op2")
    for rid in sim.replicas:
        for _ in range(2):
            ready = sim.replicas[rid].step(again)  # type: ignore[arg-type]
            assert not ready.persist and not ready.committed
            assert len(ready.messages) == 1
            cached = ready.messages[0]
            assert cached.to == "c0" and isinstance(cached.message.message, Reply)
            first = next(
                r for r in client.reply_messages if r.signer == rid and r.message.timestamp == 2
            )
            assert cached.message == first  # the very same signed reply
    assert len(client.reply_messages) == replies_before
    assert [t for _, t in sim.executed_requests("r0")] == [1, 2]
    # An older request is stale: no reply, no execution.
    stale = sim.replicas["r0"].step(_request("c0", 1, b"c0/op1"))  # type: ignore[arg-type]
    assert not stale and sim.replicas["r0"].ignored["stale_request"] == 1


def test_duplicated_network_requests_are_batched_once() -> None:
    membership = make_membership(4, 1)
    primary = Replica(ReplicaConfig(2, 8), membership, "r0", key_for("r0"))
    req = _request("c0", 1)
    assert not primary.step(req)  # type: ignore[arg-type]
    assert not primary.step(req)  # type: ignore[arg-type]
    assert primary.ignored["duplicate"] == 1 and primary.pending == 1
    ready = primary.tick()
    pps = [s.message for s in ready.persist if isinstance(s.message, PrePrepare)]
    assert len(pps) == 1 and pps[0].batch == (req,)
    assert not primary.step(req)  # type: ignore[arg-type]  # in flight: still not re-batched
    assert primary.ignored["duplicate"] == 2


def test_out_of_window_and_other_view_are_counted() -> None:
    membership = make_membership(4, 1, log_window=8)
    backup = Replica(ReplicaConfig(2, 4), membership, "r1", key_for("r1"))
    d = bytes(32)
    # Just above the window (8, 16]: held for replay, not counted.
    assert not backup.step(_by("r2", Prepare(0, 9, d, "r2")))
    assert not backup.step(_by("r2", Checkpoint(12, d, "r2")))
    assert backup.held == 2 and backup.ignored["out_of_window"] == 0
    # Below the window, far above it, or for another view: dropped and counted.
    assert not backup.step(_by("r2", Prepare(0, 0, d, "r2")))
    assert not backup.step(_by("r2", Prepare(0, 17, d, "r2")))
    assert not backup.step(_by("r2", Checkpoint(100, d, "r2")))
    assert not backup.step(_by("r2", Commit(1, 1, d, "r2")))
    assert backup.ignored["out_of_window"] == 3
    assert backup.ignored["other_view"] == 1
    assert set(backup.ignored) == set(IGNORE_REASONS)


def test_config_is_checked() -> None:
    with pytest.raises(LedgerError):
        ReplicaConfig(max_batch=0)
    with pytest.raises(LedgerError):
        Replica(ReplicaConfig(4, 64), make_membership(4, 1, log_window=8), "r0", key_for("r0"))
    with pytest.raises(LedgerError):
        Replica(ReplicaConfig(), make_membership(4, 1), "c0", key_for("c0"))
