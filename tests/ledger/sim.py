"""A seeded, deterministic network simulator for the PBFT replica (no sockets, no real time).

Replicas are :class:`~medfabric.ledger.replica.Replica` cores. The network is a priority queue
of deliveries keyed by simulated time; a ``random.Random(seed)`` chooses each message's delay
(so messages reorder), whether it is duplicated and whether it is dropped. Clients run closed
loops: one outstanding request each, the next one sent once ``f + 1`` replicas gave matching
replies. Replicas are ticked every ``tick_every`` time units.

Invariants checked while running (every delivery, not only at the end):

- Safety: no two correct replicas execute different digests at one seq (``committed``).
- Each replica's ``Ready.committed`` comes in strictly increasing seq with no gaps, except
  right after ``Ready.restored`` (state transfer), where it continues at the restored seq + 1.
- A replica's log never exceeds ``log_window`` slots.

Faults: replicas silent from the start (``crashed``) or crashing at a time (``crash_at``); drops
until a time (``drop_until``: the network heals); a partition of a group of replicas during a
time interval; a replica down during an interval and restarted as a new, empty ``Replica``
(``restart``); replicas that corrupt the state chunks they serve (``corrupt_chunks``); an
equivocating primary of view 0 (``equivocate``: its first pre-prepare goes
with another batch to half the backups). ``ViewChange`` and ``NewView`` messages go through
``frame``/``open_frame`` on delivery, so their proofs are checked as at a real edge. Clients
that wait ``client_retry`` time units re-send their request to every replica (as PBFT clients
do), which is what starts the backups' view-change timers when the primary is silent.

The same seed gives the same run, event for event.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from medfabric.crypto.keys import SigningKey
from medfabric.ledger.messages import (
    Membership,
    Message,
    NewView,
    PrePrepare,
    Reply,
    Request,
    Signed,
    StateChunk,
    ViewChange,
    batch_digest,
    frame,
    open_frame,
    sign,
)
from medfabric.ledger.replica import (
    HashChainStateMachine,
    Ready,
    Replica,
    ReplicaConfig,
    StateMachine,
)

_KEYS: dict[str, SigningKey] = {}


def key_for(member: str) -> SigningKey:
    """A deterministic key per member id (cached: key generation dominates small runs)."""
    key = _KEYS.get(member)
    if key is None:
        key = _KEYS[member] = SigningKey.from_bytes(hashlib.sha256(member.encode()).digest())
    return key


def make_membership(n: int, clients: int, *, log_window: int = 256) -> Membership:
    """A chain with replicas ``r0..r{n-1}`` and clients ``c0..``."""
    return Membership(
        chain_id="sim",
        replicas={f"r{i}": key_for(f"r{i}").verify_key for i in range(n)},
        clients={f"c{i}": key_for(f"c{i}").verify_key for i in range(clients)},
        log_window=log_window,
    )


@dataclass
class SimClient:
    """A closed-loop client: sends request ``t`` and waits for ``f + 1`` matching replies."""

    id: str
    total: int
    timestamp: int = 0
    replies: dict[int, dict[str, bytes]] = field(default_factory=dict)
    accepted: dict[int, bytes] = field(default_factory=dict)
    reply_messages: list[Signed[Reply]] = field(default_factory=list)
    operation: Callable[[str, int], bytes] | None = None  # (client, timestamp) → operation

    @property
    def done(self) -> bool:
        return len(self.accepted) == self.total

    def next_request(self, chain_id: str) -> Signed[Request] | None:
        if self.timestamp >= self.total:
            return None
        self.timestamp += 1
        op = (
            f"{self.id}/op{self.timestamp}".encode()
            if self.operation is None
            else self.operation(self.id, self.timestamp)
        )
        return sign(
            Request(self.id, self.timestamp, op),
            key_for(self.id),
            signer=self.id,
            chain_id=chain_id,
        )

    def on_reply(self, signed: Signed[Reply], f: int) -> bool:
        """Record a reply; True when it completes ``f + 1`` matching ones for the first time."""
        r = signed.message
        self.reply_messages.append(signed)
        votes = self.replies.setdefault(r.timestamp, {})
        votes.setdefault(r.replica, r.result)
        if r.timestamp in self.accepted:
            return False
        count = Counter(votes.values())
        result, hits = count.most_common(1)[0]
        if hits >= f + 1:
            self.accepted[r.timestamp] = result
            return True
        return False


class SafetyViolation(AssertionError):
    """Two correct replicas committed different digests at one seq."""


@dataclass
class Sim:
    """The network, the replicas and the clients of one seeded run.

    Args:
        n: Number of replicas.
        seed: Seeds every random choice.
        clients: Number of closed-loop clients.
        requests: Requests per client.
        crashed: Replica ids that never receive nor send (a silent replica).
        max_delay: Deliveries take 1..max_delay time units.
        dup: Probability that a message is delivered twice.
        drop: Probability that a message is lost (liveness is not expected with drops).
        config: Replica tuning.
        log_window: The membership's ``L``.
    """

    n: int
    seed: int
    clients: int = 3
    requests: int = 4
    crashed: frozenset[str] = frozenset()
    max_delay: int = 5
    dup: float = 0.0
    drop: float = 0.0
    config: ReplicaConfig = field(default_factory=lambda: ReplicaConfig(4, 8))
    log_window: int = 32
    tick_every: int = 3
    crash_at: dict[str, int] = field(default_factory=dict)
    drop_until: int | None = None
    partition: tuple[int, int, frozenset[str]] | None = None
    equivocate: bool = False
    client_retry: int = 120
    idle_limit: int = 1000
    may_lag: frozenset[str] = frozenset()  # correct, but not required to catch up (see tests)
    restart: dict[str, tuple[int, int]] = field(default_factory=dict)  # id → (down, back)
    corrupt_chunks: frozenset[str] = frozenset()
    # The replicated service (HashChainStateMachine by default) and the clients' operations.
    service: Callable[[Membership], StateMachine] | None = None
    operation: Callable[[str, int], bytes] | None = None

    def new_service(self) -> StateMachine:
        """A fresh service for a replica (at start or restart)."""
        return HashChainStateMachine() if self.service is None else self.service(self.membership)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.membership = make_membership(self.n, self.clients, log_window=self.log_window)
        self.replicas = {
            rid: Replica(
                self.config, self.membership, rid, key_for(rid), state_machine=self.new_service()
            )
            for rid in self.membership.replica_ids
        }
        self.client_list = {
            f"c{i}": SimClient(f"c{i}", self.requests, operation=self.operation)
            for i in range(self.clients)
        }
        self.now = 0
        self._counter = 0
        self._queue: list[tuple[int, int, str, Signed[Message]]] = []
        self.committed: dict[int, bytes] = {}  # seq → digest, over correct replicas
        self.executed: dict[str, list[int]] = {rid: [] for rid in self.replicas}
        self.persisted: dict[str, list[Signed[Message]]] = {rid: [] for rid in self.replicas}
        self.restored: dict[str, list[int]] = {rid: [] for rid in self.replicas}
        self.corrupted = 0  # chunks the corrupting replicas altered
        self.max_log = 0
        self.delivered = 0
        self.faulty: set[str] = set()  # excluded from the safety check (Byzantine)
        self._outstanding: dict[str, tuple[Signed[Request], int]] = {}
        self._restarted: set[str] = set()
        self._opened: dict[int, Signed[Message]] = {}  # id → checked (kept alive: ids stay unique)
        if self.equivocate:
            self.faulty.add(self.membership.primary(0))

    # --- network ---------------------------------------------------------------------------

    def send(self, to: str, message: Signed[Message]) -> None:
        """Queue ``message`` for ``to`` with a seeded delay, maybe duplicated or dropped."""
        if to in self.crashed or self._down(to):
            return
        if self.partition is not None and message.signer in self.replicas:
            start, end, group = self.partition
            if start <= self.now < end and (message.signer in group) != (to in group):
                return
        drop = self.drop if self.drop_until is None or self.now < self.drop_until else 0.0
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            if self.rng.random() < drop:
                continue
            self._counter += 1
            at = self.now + self.rng.randint(1, self.max_delay)
            heapq.heappush(self._queue, (at, self._counter, to, message))

    def start(self) -> None:
        """Every client sends its first request to the primary of view 0."""
        for client in self.client_list.values():
            self._client_send(client)

    def _client_send(self, client: SimClient) -> None:
        req = self.next_request_of(client)
        if req is not None:
            self._outstanding[client.id] = (req, self.now)
            self.send(self.membership.primary(0), req)  # type: ignore[arg-type]
        else:
            self._outstanding.pop(client.id, None)

    def _client_retries(self) -> None:
        for cid, (req, at) in list(self._outstanding.items()):
            if self.now - at >= self.client_retry:
                self._outstanding[cid] = (req, self.now)
                for rid in self.replicas:
                    self.send(rid, req)  # type: ignore[arg-type]

    def next_request_of(self, client: SimClient) -> Signed[Request] | None:
        return client.next_request(self.membership.chain_id)

    def _down(self, rid: str) -> bool:
        window = self.restart.get(rid)
        return window is not None and window[0] <= self.now < window[1]

    def _corrupt(self, message: Signed[Message]) -> Signed[Message]:
        """A faulty server's chunk: one byte flipped, re-signed (the proof no longer holds)."""
        chunk = message.message
        assert isinstance(chunk, StateChunk)
        self.corrupted += 1
        data = bytes([chunk.data[0] ^ 1]) + chunk.data[1:] if chunk.data else b"x"
        forged = replace(chunk, data=data)
        return sign(forged, key_for(chunk.replica), signer=chunk.replica, chain_id="sim")  # type: ignore[return-value]

    def handle(self, rid: str, ready: Ready) -> None:
        """Apply the Ready contract for ``rid``: persist, then send, then record commits."""
        self.persisted[rid].extend(ready.persist)
        if ready.restored is not None:
            self.restored[rid].append(ready.restored.seq)
        for out in ready.messages:
            if self.equivocate and self._equivocated(rid, out.message):
                continue
            if rid in self.corrupt_chunks and isinstance(out.message.message, StateChunk):
                out = replace(out, message=self._corrupt(out.message))
            if out.to is None:
                for other in self.replicas:
                    if other != rid:
                        self.send(other, out.message)
            else:
                self.send(out.to, out.message)
        for batch in ready.committed:
            done = self.executed[rid]
            base = max(done[-1] if done else 0, max(self.restored[rid], default=0))
            assert batch.seq == base + 1, (rid, batch.seq, done[-5:], self.restored[rid])
            done.append(batch.seq)
            if rid in self.faulty:
                continue
            prior = self.committed.setdefault(batch.seq, batch.digest)
            if prior != batch.digest:
                raise SafetyViolation(f"seq {batch.seq}: {prior.hex()} vs {batch.digest.hex()}")
        replica = self.replicas[rid]
        assert len(replica._slots) <= self.membership.log_window
        self.max_log = max(self.max_log, replica.log_size)

    def deliver(self, to: str, message: Signed[Message]) -> None:
        """Hand one message to a replica or a client."""
        self.delivered += 1
        if self._down(to):
            return  # lost with the process
        if isinstance(message.message, ViewChange | NewView) and id(message) not in self._opened:
            # The edge check, as a node would run it: every nested proof and signature. A
            # retransmission is the very same object: checked once (the check dominates runs).
            opened = open_frame(frame(message), self.membership, max_size=1 << 24)
            assert opened == message
            self._opened[id(message)] = message
        if to in self.replicas:
            self.handle(to, self.replicas[to].step(message))
            return
        client = self.client_list[to]
        reply = message.message
        assert isinstance(reply, Reply)
        if client.on_reply(message, self.membership.f):  # type: ignore[arg-type]
            self._client_send(client)

    def _equivocated(self, rid: str, message: Signed[Message]) -> bool:
        """The faulty primary's first pre-prepare: half the backups get another batch (the
        same without its first request, or the empty batch if it held only one)."""
        pp = message.message
        if rid != self.membership.primary(0) or not isinstance(pp, PrePrepare) or pp.seq != 1:
            return False
        if pp.view != 0 or not pp.batch:
            return False
        rest = pp.batch[1:]
        other = PrePrepare(0, 1, batch_digest(rest), rest)
        forged = sign(other, key_for(rid), signer=rid, chain_id=self.membership.chain_id)
        backups = [r for r in self.replicas if r != rid]
        for i, to in enumerate(backups):
            self.send(to, message if i % 2 else forged)  # type: ignore[arg-type]
        return True

    def settled(self) -> bool:
        """Every client done; every correct replica in an installed view, at one last seq."""
        if not all(c.done for c in self.client_list.values()):
            return False
        correct = [
            r
            for rid, r in self.replicas.items()
            if rid not in self.crashed and rid not in self.may_lag
        ]
        return all(r.active for r in correct) and len({r.last_executed for r in correct}) == 1

    def tick_all(self) -> None:
        for rid, at in self.crash_at.items():
            if self.now >= at and rid not in self.crashed:
                self.crashed = self.crashed | {rid}
        for rid, (_, back) in self.restart.items():
            if self.now >= back and rid not in self._restarted:
                # A restart that lost everything: a new, empty replica with the same key.
                self._restarted.add(rid)
                self.replicas[rid] = Replica(
                    self.config,
                    self.membership,
                    rid,
                    key_for(rid),
                    state_machine=self.new_service(),
                )
                self.executed[rid], self.restored[rid] = [], []
        self._client_retries()
        for rid, replica in self.replicas.items():
            if rid not in self.crashed and not self._down(rid):
                self.handle(rid, replica.tick())

    def run(self, max_events: int = 200_000) -> bool:
        """Run until quiescent or ``max_events`` deliveries; True if every client finished."""
        self.start()
        next_tick = self.tick_every
        idle_ticks = 0
        while self.delivered < max_events:
            if self._queue and self._queue[0][0] < next_tick:
                at, _, to, message = heapq.heappop(self._queue)
                self.now = at
                self.deliver(to, message)
                continue
            healed = self.partition is None or self.now >= self.partition[1]
            healed = healed and all(self.now >= b for _, b in self.restart.values())
            if not self._queue and all(c.done for c in self.client_list.values()) and healed:
                return True
            back = max((b for _, b in self.restart.values()), default=0)
            busy_until = max(max(self.crash_at.values(), default=0), back)
            if self.settled() and healed and self.now > busy_until:
                # Retransmission may keep the queue busy; the outcome is decided. Deliver what
                # is in flight without ticking (answers to it are bounded) and stop.
                while self._queue and self.delivered < max_events:
                    at, _, to, message = heapq.heappop(self._queue)
                    self.now = at
                    self.deliver(to, message)
                return True
            # Nothing due before the next tick: time jumps there.
            self.now = next_tick
            next_tick += self.tick_every
            before = self._counter
            self.tick_all()
            idle_ticks = idle_ticks + 1 if not self._queue and self._counter == before else 0
            # Quiet is final once clients are done; before, timers may still fire (a client's
            # retry, a view-change timeout with back-off), so give them time.
            done = all(c.done for c in self.client_list.values())
            if idle_ticks > (3 if done and healed else self.idle_limit):
                return all(c.done for c in self.client_list.values())
        return all(c.done for c in self.client_list.values())

    def advance(self, duration: int) -> None:
        """Keep the simulation going for ``duration`` more time units (ticks included)."""
        end = self.now + duration
        next_tick = (self.now // self.tick_every + 1) * self.tick_every
        while self.now < end:
            if self._queue and self._queue[0][0] < next_tick:
                at, _, to, message = heapq.heappop(self._queue)
                self.now = at
                self.deliver(to, message)
                continue
            self.now = next_tick
            next_tick += self.tick_every
            self.tick_all()

    def state_digests(self) -> dict[str, bytes]:
        """Each correct replica's state digest."""
        return {
            rid: r.state_machine.digest()
            for rid, r in self.replicas.items()
            if rid not in self.crashed
        }

    def executed_requests(self, rid: str) -> list[tuple[str, int]]:
        """The ``(client, timestamp)`` pairs ``rid`` executed, in order."""
        sm = self.replicas[rid].state_machine
        assert isinstance(sm, HashChainStateMachine)
        return [(r.client, r.timestamp) for r in sm.executed]
