"""Restart recovery of the PBFT replica (``Replica.recover``) in the seeded simulator.

A restarted replica recovers from its own disk: the last stable checkpoint with its state, and
the messages it persisted since (``Sim.recover`` replays the simulator's ``persisted`` record).
Checked in every scenario: safety at every delivery (the simulator), every request executed
exactly once everywhere with equal state, and no replica ever signed two different messages
for one ``(view, seq)`` (or two view changes for one view) across its restarts.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from tests.ledger.sim import Sim
from tests.ledger.test_replica import _check_complete

from medfabric.ledger.messages import (
    Checkpoint,
    Commit,
    LedgerError,
    Prepare,
    PrePrepare,
    ViewChange,
)
from medfabric.ledger.replica import Replica, ReplicaConfig, StableCheckpoint

CONFIG = ReplicaConfig(
    max_batch=2,
    checkpoint_interval=4,
    view_change_timeout=20,
    retransmit_every=2,
    state_chunk_size=256,
    fetch_parallel=2,
)


def _check_no_equivocation(sim: Sim) -> None:
    """Across all its runs, a replica signed one digest per (kind, view, seq), one state digest
    per checkpoint seq and one view change per view."""
    for rid, messages in sim.persisted.items():
        said: dict[tuple[str, int, int], set[bytes]] = defaultdict(set)
        for signed in messages:
            m = signed.message
            if signed.signer != rid:
                continue
            if isinstance(m, PrePrepare | Prepare | Commit):
                said[(type(m).__name__, m.view, m.seq)].add(m.digest)
            elif isinstance(m, Checkpoint):
                said[("Checkpoint", 0, m.seq)].add(m.state_digest)
            elif isinstance(m, ViewChange):
                said[("ViewChange", m.new_view, 0)].add(repr(m).encode())
        twice = {k: v for k, v in said.items() if len(v) > 1}
        assert not twice, (rid, twice)


def _finish(sim: Sim, limit: int = 20_000) -> None:
    """Advance an already started simulation until every client is done and it settled."""
    end = sim.now + limit
    while sim.now < end and not (sim.settled() and not any(sim._down(r) for r in sim.replicas)):
        sim.advance(sim.tick_every * 10)
    assert sim.settled(), "did not finish"
    sim.advance(sim.tick_every * 40)  # let retransmissions settle the laggards


@pytest.mark.parametrize("seed", range(12))
def test_backup_restarts_mid_run_and_recovers_from_its_disk(seed: int) -> None:
    sim = Sim(
        n=4,
        seed=seed,
        config=CONFIG,
        requests=30,
        restart={"r2": (60, 90)},
        recover=frozenset({"r2"}),
    )
    assert sim.run()
    _check_complete(sim)
    _check_no_equivocation(sim)
    assert sim.recovered["r2"] > 0  # it recovered at a stable checkpoint, not at genesis


@pytest.mark.parametrize("seed", range(12))
def test_all_replicas_restart_at_once(seed: int) -> None:
    everyone = frozenset(f"r{i}" for i in range(4))
    sim = Sim(
        n=4,
        seed=seed,
        config=CONFIG,
        requests=30,
        restart={r: (70, 100) for r in everyone},
        recover=everyone,
    )
    assert sim.run()
    _check_complete(sim)
    _check_no_equivocation(sim)
    assert set(sim.recovered) == everyone


@pytest.mark.parametrize("seed", range(12))
def test_primary_restarts_and_keeps_its_sequence_numbers(seed: int) -> None:
    sim = Sim(
        n=4,
        seed=seed,
        config=CONFIG,
        requests=30,
        restart={"r0": (50, 70)},
        recover=frozenset({"r0"}),
    )
    assert sim.run()
    _check_complete(sim)
    _check_no_equivocation(sim)


@pytest.mark.parametrize("seed", range(10))
def test_restart_during_a_view_change(seed: int) -> None:
    # The primary dies; a backup restarts while the view change is under way.
    others = frozenset({"r1", "r2", "r3"})
    sim = Sim(
        n=4,
        seed=seed,
        config=CONFIG,
        requests=20,
        crash_at={"r0": 45},
        recover=others,
        client_retry=60,
    )
    sim.start()
    while all(sim.replicas[r].active for r in others):
        sim.advance(1)
        assert sim.now < 10_000, "no view change started"
    victim = min(r for r in others if not sim.replicas[r].active)
    view = sim.replicas[victim].view
    sim.restart[victim] = (sim.now + 1, sim.now + 15)
    sim.advance(16)
    recovered = sim.replicas[victim]
    # It came back in the view it was changing to (or a later one), never a lower one.
    assert recovered.view >= view
    _finish(sim)
    _check_complete(sim)
    _check_no_equivocation(sim)
    assert all(sim.replicas[r].view >= 1 for r in others)


def test_recover_resumes_a_view_change_in_its_view() -> None:
    sim = Sim(n=4, seed=3, config=CONFIG, requests=10, crash_at={"r0": 30}, client_retry=40)
    sim.start()
    while sim.replicas["r2"].active:
        sim.advance(1)
        assert sim.now < 10_000
    old = sim.replicas["r2"]
    cp, state = sim.stable.get("r2", (None, None))
    fresh = Replica(CONFIG, sim.membership, "r2", old._key, state_machine=sim.new_service())
    fresh.recover(cp, state, sim.persisted["r2"])
    assert (fresh.view, fresh.active) == (old.view, False)
    assert fresh._own_view_change == old._own_view_change
    assert fresh.low == old.low and fresh.last_executed == (cp.seq if cp else 0)


def test_recover_refuses_a_state_that_does_not_match_the_checkpoint() -> None:
    sim = Sim(n=4, seed=1, config=CONFIG, requests=10)
    assert sim.run()
    cp, state = sim.stable["r1"]
    fresh = Replica(CONFIG, sim.membership, "r1", sim.replicas["r1"]._key, sim.new_service())
    with pytest.raises(LedgerError, match="digest"):
        fresh.recover(cp, state + b"x", sim.persisted["r1"])
    bad = StableCheckpoint(cp.seq, bytes(32), cp.proof)
    with pytest.raises(LedgerError):
        fresh.recover(bad, state, ())
    ok = Replica(CONFIG, sim.membership, "r1", sim.replicas["r1"]._key, sim.new_service())
    ok.recover(cp, state, sim.persisted["r1"])
    assert ok.last_executed == cp.seq and ok.low == cp.seq
    assert ok.state_machine.snapshot() == sim.replicas["r1"].state_machine.snapshot() or (
        sim.replicas["r1"].last_executed > cp.seq
    )
    with pytest.raises(LedgerError, match="new replica"):
        ok.recover(cp, state, ())


def test_a_recovered_backup_refuses_a_conflicting_pre_prepare_above_its_window() -> None:
    sim = Sim(n=4, seed=5, config=CONFIG, requests=6)
    assert sim.run()
    rid = "r1"
    spoken = [
        s.message for s in sim.persisted[rid] if isinstance(s.message, Prepare) and s.signer == rid
    ]
    last = spoken[-1]
    fresh = Replica(CONFIG, sim.membership, rid, sim.replicas[rid]._key, sim.new_service())
    fresh.recover(None, None, sim.persisted[rid])  # genesis: every slot is replayed
    assert fresh._spoken[(last.view, last.seq)] == last.digest
