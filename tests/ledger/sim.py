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

Byzantine replicas (``tests/ledger/test_byzantine.py``), counted in ``faulty`` and left out of
the safety check, the ``settled`` test and :meth:`Sim.correct`:

- ``twins``: each id listed runs as two :class:`Replica` instances with the one key and
  separate state, ``rid`` and ``twin_name(rid)`` (Twins, Bano et al. 2020). Until ``twin_heal``,
  ``twin_groups`` cuts the network into groups of instances (a replica in no group is cut off
  from every other one); an instance talks only within its groups, so each twin can sign, for
  the same ``(view, seq)``, what its own side of the network led it to. Clients reach every
  instance. After the heal both twins reach everyone.
- ``adversaries``: replica id → :class:`Adversary`, a correct core whose outgoing traffic is
  rewritten (and to which messages may be added on receipt or on each tick): an
  :class:`Equivocator`, a :class:`Forger`, a :class:`Replayer`, a :class:`ViewChangeLiar`, a
  :class:`NewViewLiar` and an :class:`Instigator` (see each class).
- Every message an adversary sends goes through ``frame``/``open_frame`` on delivery, like
  ``ViewChange`` and ``NewView`` (``edge_all``: every message does); what the edge refuses is
  dropped and counted in ``refused`` by reason. A message from a correct replica that the
  edge refuses still raises.
- A correct replica that a faulty primary or a partition left behind learns it only from
  later traffic: ``stall_limit`` ends :meth:`Sim.run` once nothing executes any more, and
  :meth:`Sim.more` then sends more requests until the correct replicas settle.
  :meth:`Sim.stranded` names correct replicas left changing view to a later view.

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
    Checkpoint,
    Commit,
    FrameError,
    Membership,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
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
    StableCheckpoint,
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
    # Restarted replicas (``restart``) that recover from their own ``persisted`` record and
    # last stable checkpoint (``Replica.recover``) instead of starting empty.
    recover: frozenset[str] = frozenset()
    # The replicated service (HashChainStateMachine by default) and the clients' operations.
    service: Callable[[Membership], StateMachine] | None = None
    operation: Callable[[str, int], bytes] | None = None
    # Byzantine replicas (module docstring).
    twins: frozenset[str] = frozenset()
    twin_groups: tuple[frozenset[str], ...] = ()  # instance names; until ``twin_heal``
    twin_heal: int = 0
    adversaries: dict[str, Adversary] = field(default_factory=dict)
    edge_all: bool = False  # open_frame on every delivery, not only on the risky ones
    # run() also stops once clients are done, the network healed and nothing executed
    # anywhere for this long (None: it does not).
    stall_limit: int | None = None

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
        self.base: dict[str, str] = {rid: rid for rid in self.replicas}  # instance → replica id
        for rid in sorted(self.twins):
            twin = twin_name(rid)
            self.base[twin] = rid
            self.replicas[twin] = Replica(
                self.config, self.membership, rid, key_for(rid), state_machine=self.new_service()
            )
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
        # Per replica: its last stable checkpoint and its state there (what a node saves).
        self.stable: dict[str, tuple[StableCheckpoint, bytes]] = {}
        self.recovered: dict[str, int] = {}  # replica → checkpoint seq it recovered at
        self.corrupted = 0  # chunks the corrupting replicas altered
        self.max_log = 0
        self.delivered = 0
        self.faulty: set[str] = set()  # excluded from the safety check (Byzantine)
        self._outstanding: dict[str, tuple[Signed[Request], int]] = {}
        self._restarted: set[str] = set()
        self._opened: dict[int, Signed[Message]] = {}  # id → checked (kept alive: ids stay unique)
        if self.equivocate:
            self.faulty.add(self.membership.primary(0))
        self.faulty |= self.twins | set(self.adversaries)
        self.refused: Counter[str] = Counter()  # what the edge dropped, by FrameError.reason
        self._suspect: dict[int, Signed[Message]] = {}  # adversaries' messages (kept alive)
        self._refused: dict[int, Signed[Message]] = {}
        self._refused_reason: dict[int, str] = {}
        self._progress_at = 0  # when a replica last executed a batch

    # --- network ---------------------------------------------------------------------------

    def send(self, to: str, message: Signed[Message], frm: str | None = None) -> None:
        """Queue ``message`` for ``to`` with a seeded delay, maybe duplicated or dropped.

        ``to`` is a replica instance or a client; ``frm`` the sending replica instance (None
        for a client), which the Twins partition may keep from reaching ``to``.
        """
        if to in self.crashed or self._down(to):
            return
        if frm is not None and not self._linked(frm, to):
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

    def _linked(self, a: str, b: str) -> bool:
        """Whether instances ``a`` and ``b`` reach each other now (the Twins partition)."""
        if not self.twin_groups or self.now >= self.twin_heal:
            return True
        if a in self.client_list or b in self.client_list:
            return True
        return any(a in group and b in group for group in self.twin_groups)

    def instances(self, rid: str) -> list[str]:
        """The instances that run replica id ``rid`` (two for a twin)."""
        return [rid, twin_name(rid)] if rid in self.twins else [rid]

    def route(self, frm: str, to: str | None, message: Signed[Message]) -> None:
        """Send ``message`` from instance ``frm`` as ``Send(to, message)`` asks: to every
        other replica (None), to a client, or to every instance of one replica id."""
        if to is None:
            for other in self.replicas:
                if self.base[other] != self.base[frm]:
                    self.send(other, message, frm)
        elif to in self.client_list:
            self.send(to, message, frm)
        else:
            for inst in self.instances(to):
                self.send(inst, message, frm)

    def inject(self, frm: str, to: str | None, message: Signed[Message]) -> None:
        """Send an adversary's message: checked at the receiving edge like untrusted bytes."""
        self._suspect[id(message)] = message
        self.route(frm, to, message)

    def correct(self) -> list[str]:
        """The instances of correct replicas that are not crashed."""
        return [
            rid
            for rid in self.replicas
            if self.base[rid] not in self.faulty and rid not in self.crashed
        ]

    def start(self) -> None:
        """Every client sends its first request to the primary of view 0."""
        for client in self.client_list.values():
            self._client_send(client)

    def _client_send(self, client: SimClient) -> None:
        req = self.next_request_of(client)
        if req is not None:
            self._outstanding[client.id] = (req, self.now)
            for inst in self.instances(self.membership.primary(0)):
                self.send(inst, req)  # type: ignore[arg-type]
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
        for cp in (ready.stable_checkpoint, ready.restored):
            state = None if cp is None else self.replicas[rid].checkpoint_state(cp.seq)
            newer = cp is not None and (rid not in self.stable or self.stable[rid][0].seq < cp.seq)
            if cp is not None and state is not None and newer:
                self.stable[rid] = (cp, state)
        if ready.restored is not None:
            self.restored[rid].append(ready.restored.seq)
        adversary = self.adversaries.get(self.base[rid])
        for out in ready.messages:
            if self.equivocate and self._equivocated(rid, out.message):
                continue
            if rid in self.corrupt_chunks and isinstance(out.message.message, StateChunk):
                out = replace(out, message=self._corrupt(out.message))
            if adversary is not None:
                for to, message in adversary.outgoing(self, rid, out.to, out.message):
                    self.inject(rid, to, message)
                continue
            self.route(rid, out.to, out.message)
        if ready.committed:
            self._progress_at = self.now
        for batch in ready.committed:
            done = self.executed[rid]
            base = max(done[-1] if done else 0, max(self.restored[rid], default=0))
            assert batch.seq == base + 1, (rid, batch.seq, done[-5:], self.restored[rid])
            done.append(batch.seq)
            if self.base[rid] in self.faulty:
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
        if id(message) in self._refused:
            self.refused[self._refused_reason[id(message)]] += 1
            return
        risky = self.edge_all or id(message) in self._suspect
        if (risky or isinstance(message.message, ViewChange | NewView)) and id(
            message
        ) not in self._opened:
            # The edge check, as a node would run it: every nested proof and signature. A
            # retransmission is the very same object: checked once (the check dominates runs).
            try:
                opened = open_frame(frame(message), self.membership, max_size=1 << 24)
            except FrameError as e:
                if id(message) not in self._suspect:
                    raise  # a correct replica sent something the edge refuses: a bug
                self._refused[id(message)] = message
                self._refused_reason[id(message)] = e.reason
                self.refused[e.reason] += 1
                return
            assert opened == message
            self._opened[id(message)] = message
        adversary = self.adversaries.get(self.base.get(to, ""))
        if adversary is not None:
            adversary.incoming(self, to, message)
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
        other = PrePrepare(0, 1, batch_digest(rest, 0), rest)
        forged = sign(other, key_for(rid), signer=rid, chain_id=self.membership.chain_id)
        backups = [r for r in self.replicas if r != rid]
        for i, to in enumerate(backups):
            self.send(to, message if i % 2 else forged)  # type: ignore[arg-type]
        return True

    def settled(self) -> bool:
        """Every client done; every correct replica in an installed view, at one last seq."""
        if not all(c.done for c in self.client_list.values()):
            return False
        byzantine = self.twins | set(self.adversaries)
        correct = [
            r
            for rid, r in self.replicas.items()
            if rid not in self.crashed
            and rid not in self.may_lag
            and self.base[rid] not in byzantine
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
                if rid in self.recover:
                    self._recover(rid)
        self._client_retries()
        for rid, replica in self.replicas.items():
            if rid not in self.crashed and not self._down(rid):
                self.handle(rid, replica.tick())
                adversary = self.adversaries.get(self.base[rid])
                if adversary is not None:
                    for to, message in adversary.on_tick(self, rid):
                        self.inject(rid, to, message)

    def _recover(self, rid: str) -> None:
        """Recover the new replica ``rid`` from its persisted record and stable checkpoint."""
        cp, state = self.stable.get(rid, (None, None))
        low = 0 if cp is None else cp.seq
        self.recovered[rid] = low
        self.restored[rid] = [low]  # execution continues above the checkpoint
        self.handle(rid, self.replicas[rid].recover(cp, state, self.persisted[rid]))

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
            healed = healed and self.now >= self.twin_heal
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
            stalled = (
                self.stall_limit is not None and self.now - self._progress_at > self.stall_limit
            )
            if done and healed and stalled:
                return True  # a replica left behind retransmits forever: see ``more``
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

    def more(self, requests: int, *, rounds: int = 12, within: int = 1500) -> bool:
        """After :meth:`run`: rounds of ``requests`` more requests per client, each round
        waited for, until the correct replicas settle; returns whether they did.

        A correct replica left behind while the others went on (cut off by a partition, or
        holding a faulty primary's other pre-prepare for a seq) learns it is behind only from
        later traffic: a stable checkpoint to fetch, or a view change once the others' window
        is full and their clients' requests time out. This is that traffic.
        """
        for _ in range(rounds):
            for client in self.client_list.values():
                client.total += requests
                if client.id not in self._outstanding:
                    self._client_send(client)
            end = self.now + within
            while self.now < end:
                self.advance(10 * self.tick_every)
                if self.settled():
                    return True
                if all(c.done for c in self.client_list.values()):
                    break
        return self.settled()

    def stranded(self) -> frozenset[str]:
        """Correct replicas left in a later view: not active, in a view above every view a
        correct replica is active in (see ``STRANDED_OK`` in ``test_byzantine.py``)."""
        correct = [rid for rid in self.correct() if not self._down(rid)]
        installed = [self.replicas[rid].view for rid in correct if self.replicas[rid].active]
        if not installed:
            return frozenset()
        top = max(installed)
        return frozenset(
            rid
            for rid in correct
            if not self.replicas[rid].active and self.replicas[rid].view > top
        )

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


# --- Byzantine replicas ---------------------------------------------------------------------

Out = list[tuple[str | None, Signed[Message]]]  # (Send.to, message) pairs an adversary sends


def twin_name(rid: str) -> str:
    """The name of the second instance of a twinned replica id (the first is ``rid``)."""
    return f"{rid}'"


def _resign(
    message: Message, signer: str, *, key_of: str | None = None, chain: str = "sim"
) -> Signed[Message]:
    """Sign ``message`` as ``signer`` with the key of ``key_of`` (default: the signer's)."""
    return sign(message, key_for(key_of or signer), signer=signer, chain_id=chain)


class Adversary:
    """A Byzantine replica: the real :class:`Replica` core underneath, its traffic rewritten.

    The base class is honest but for ``mute_after``: from that time on it drops the core's
    pre-prepares, prepares and commits (a primary that stops ordering, so that the others
    change view) while it keeps talking otherwise. Subclasses override the hooks:
    :meth:`outgoing` (each message the core sends), :meth:`incoming` (each message delivered
    to it) and :meth:`on_tick`. What they return is sent as ``Send(to, message)`` would be,
    and checked with ``open_frame`` at the receiving edge. ``lies`` counts what it did, by kind.
    """

    def __init__(self, *, mute_after: int | None = None) -> None:
        self.mute_after = mute_after
        self.lies: Counter[str] = Counter()
        self._rng: random.Random | None = None

    def rng(self, sim: Sim) -> random.Random:
        """Its own seeded randomness (the network's stream stays that of an honest run)."""
        if self._rng is None:
            self._rng = random.Random(f"{sim.seed}/{type(self).__name__}")
        return self._rng

    def muted(self, sim: Sim, message: Signed[Message]) -> bool:
        """Whether the core's ``message`` is withheld (``mute_after``)."""
        if self.mute_after is None or sim.now < self.mute_after:
            return False
        return isinstance(message.message, PrePrepare | Prepare | Commit)

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        """What to send in place of the core's ``Send(to, message)``."""
        if self.muted(sim, message):
            self.lies["muted"] += 1
            return []
        return [(to, message)]

    def incoming(self, sim: Sim, inst: str, message: Signed[Message]) -> None:
        """Sees each message delivered to it (after the edge check)."""

    def on_tick(self, sim: Sim, inst: str) -> Out:
        """Extra messages to send after its core's tick."""
        return []


class Equivocator(Adversary):
    """A primary that sends two pre-prepares for each ``(view, seq)`` it orders, in every view
    it leads: backups at even positions (sorted, the primary left out) get a conflicting
    batch (the requests in reverse order, or the null request for a batch of one), the others
    the real one. Both are validly signed: only the protocol can stop them. Its own prepares
    and commits follow the real batch (it votes for what it persisted)."""

    def __init__(
        self, *, views: frozenset[int] | None = None, mute_after: int | None = None
    ) -> None:
        super().__init__(mute_after=mute_after)
        self.views = views  # None: every view it is primary of
        self._forged: dict[tuple[int, int, bytes], Signed[Message]] = {}

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        pp = message.message
        rid = sim.base[inst]
        if (
            self.muted(sim, message)
            or not isinstance(pp, PrePrepare)
            or pp.batch is None
            or sim.membership.primary(pp.view) != rid
            or (self.views is not None and pp.view not in self.views)
        ):
            return super().outgoing(sim, inst, to, message)
        key = (pp.view, pp.seq, pp.digest)
        forged = self._forged.get(key)
        if forged is None:
            batch = pp.batch[::-1] if len(pp.batch) > 1 else ()
            other = PrePrepare(pp.view, pp.seq, batch_digest(batch, pp.view), batch, pp.view)
            forged = self._forged[key] = _resign(other, rid)
            self.lies["equivocation"] += 1
        backups = [r for r in sim.membership.replica_ids if r != rid]
        targets = backups if to is None else [to]
        return [
            (r, forged if backups.index(r) % 2 == 0 else message) for r in targets if r in backups
        ]


class Forger(Adversary):
    """A replica that forges: for a share (``rate``) of the messages its core sends it adds
    one forgery, cycling through the kinds below. Every one must die at the edge, each with
    its own ``FrameError`` reason:

    - ``impersonate``: a vote (prepare, commit, checkpoint) in another replica's name, signed
      with its own key (``bad_signature``);
    - ``misattributed``: a vote naming another replica but signed, validly, as itself
      (``invalid``: the signer is not the sender the message names);
    - ``flipped``: its own message with one bit of the signature flipped (``bad_signature``);
    - ``wrong_chain``: its own message signed for another chain (``wrong_chain``);
    - ``stranger``: a vote from a replica id that is not a member (``unknown_sender``);
    - ``fake_primary``: a pre-prepare of the current view with a batch of its own making, in
      the primary's name (``bad_signature``) or its own (``invalid``);
    - ``client``: a client request forged with its key (``bad_signature``): executing it
      would be executing an operation no client asked for;
    - ``reply``: a reply to a client in another replica's name (``bad_signature``).

    It also lies validly: every reply it sends carries a wrong result (a client needs f+1
    matching replies), and with ``bad_votes`` its own prepares and commits name a digest no
    batch has (they conflict and never count).
    """

    KINDS = (
        "impersonate",
        "misattributed",
        "flipped",
        "wrong_chain",
        "stranger",
        "fake_primary",
        "client",
        "reply",
    )

    def __init__(
        self, *, rate: float = 0.3, bad_votes: bool = False, mute_after: int | None = None
    ) -> None:
        super().__init__(mute_after=mute_after)
        self.rate = rate
        self.bad_votes = bad_votes
        self._next = 0

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        out = super().outgoing(sim, inst, to, message)
        rid = sim.base[inst]
        m = message.message
        if isinstance(m, Reply):
            lie = replace(m, result=hashlib.sha256(b"lie" + m.result).digest())
            out = [(to, _resign(lie, rid))]
            self.lies["wrong_result"] += 1
        elif self.bad_votes and isinstance(m, Prepare | Commit) and out:
            bogus = replace(m, digest=hashlib.sha256(b"bogus" + m.digest).digest())
            out = [(to, _resign(bogus, rid))]
            self.lies["bad_vote"] += 1
        if self.rng(sim).random() < self.rate:
            forged = self._forge(sim, rid, message)
            if forged is not None:
                out.append(forged)
        return out

    def _forge(
        self, sim: Sim, rid: str, message: Signed[Message]
    ) -> tuple[str | None, Signed[Message]] | None:
        kind = self.KINDS[self._next % len(self.KINDS)]
        self._next += 1
        rng = self.rng(sim)
        m = message.message
        victim = rng.choice([r for r in sim.membership.replica_ids if r != rid])
        view = sim.replicas[rid].view
        forged: Signed[Message] | None = None
        to: str | None = None
        if kind in ("impersonate", "misattributed", "stranger"):
            own: Prepare | Commit | Checkpoint = (
                m
                if isinstance(m, Prepare | Commit | Checkpoint)
                else Commit(view, max(1, sim.replicas[rid].last_executed + 1), bytes(32), rid)
            )
            claimed = "r99" if kind == "stranger" else victim
            vote = replace(own, replica=claimed)
            signer = rid if kind == "misattributed" else claimed
            forged = _resign(vote, signer, key_of=rid)
        elif kind == "flipped":
            sig = bytes([message.signature[0] ^ 1]) + message.signature[1:]
            forged = Signed(m, message.signer, sig, message.chain_id)
        elif kind == "wrong_chain":
            forged = _resign(m, message.signer, key_of=rid, chain="other")
        elif kind == "fake_primary":
            req = _resign(Request("c0", 10_000 + self._next, b"forged"), "c0")
            batch = (req,)
            seq = sim.replicas[rid].last_executed + 1
            pp = PrePrepare(view, seq, batch_digest(batch, view), batch, view)  # type: ignore[arg-type]
            primary = sim.membership.primary(view)
            signer = rid if primary == rid or rng.random() < 0.5 else primary
            if signer == rid and primary == rid:
                signer = victim  # it is the primary: claim to be someone else
            forged = _resign(pp, signer, key_of=rid)
        elif kind == "client":
            client = rng.choice(sorted(sim.client_list))
            forged = _resign(Request(client, 10_000 + self._next, b"forged"), client, key_of=rid)
            to = sim.membership.primary(view)
        else:  # reply
            client = rng.choice(sorted(sim.client_list))
            ts = sim.client_list[client].timestamp
            forged = _resign(Reply(view, ts, client, victim, b"forged"), victim, key_of=rid)
            to = client
        self.lies[kind] += 1
        return to, forged


class Replayer(Adversary):
    """A replica that replays: it records every message delivered to it (other replicas'
    votes, pre-prepares, view changes, new views, checkpoints, client requests) and its own,
    and every ``every`` ticks sends ``burst`` of them, mostly old ones (earlier seqs and
    views), to random replicas. Each is authentic, so the edge lets it through; the core must
    treat it as the duplicate, stale or other-view message it is."""

    def __init__(self, *, every: int = 2, burst: int = 4, mute_after: int | None = None) -> None:
        super().__init__(mute_after=mute_after)
        self.every = every
        self.burst = burst
        self.seen: list[Signed[Message]] = []
        self._ticks = 0

    def incoming(self, sim: Sim, inst: str, message: Signed[Message]) -> None:
        if not isinstance(message.message, Reply):
            self.seen.append(message)

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        if not isinstance(message.message, Reply):
            self.seen.append(message)
        return super().outgoing(sim, inst, to, message)

    def on_tick(self, sim: Sim, inst: str) -> Out:
        self._ticks += 1
        if self._ticks % self.every or not self.seen:
            return []
        rng = self.rng(sim)
        others = [r for r in sim.membership.replica_ids if r != sim.base[inst]]
        out: Out = []
        for _ in range(self.burst):
            # Biased to the old end: the square of a uniform draw.
            old = self.seen[int(len(self.seen) * rng.random() ** 2)]
            out.append((rng.choice(others), old))
            self.lies["replayed"] += 1
        return out


class ViewChangeLiar(Adversary):
    """A replica that lies in its ``ViewChange`` messages, one lie per view it moves to
    (``modes`` in turn):

    - ``omit``: it leaves out every prepared certificate (valid: the edge cannot tell);
    - ``stale``: it claims the genesis checkpoint and nothing prepared (valid, too);
    - ``fake_checkpoint``: it claims a stable checkpoint ``4 K`` above its own, with a proof
      of 2f+1 checkpoints in others' names signed with its key (``bad_signature``);
    - ``forged_cert``: it adds a prepared certificate for the seq after its last one, with a
      pre-prepare and 2f prepares it signed in others' names (``bad_signature``, or
      ``invalid`` where it is that view's primary and the prepares fail);
    - ``future_cert``: a certificate from the new view itself (``invalid``).

    With ``eager`` it also sends, every ``eager`` ticks, a valid ``ViewChange`` for the view
    after its own (a view change nobody else asked for: f of them cannot move anyone)."""

    MODES = ("omit", "stale", "fake_checkpoint", "forged_cert", "future_cert")

    def __init__(
        self, *, modes: tuple[str, ...] = MODES, eager: int = 0, mute_after: int | None = None
    ) -> None:
        super().__init__(mute_after=mute_after)
        self.modes = modes
        self.eager = eager
        self._lies: dict[int, Signed[Message]] = {}  # new view → the lie (retransmitted as is)
        self._ticks = 0

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        vc = message.message
        if not isinstance(vc, ViewChange):
            return super().outgoing(sim, inst, to, message)
        lie = self._lies.get(vc.new_view)
        if lie is None:
            mode = self.modes[vc.new_view % len(self.modes)]
            lie = self._lies[vc.new_view] = _resign(self._lie(sim, vc, mode), vc.replica)
            self.lies[mode] += 1
        return [(to, lie)]

    def _lie(self, sim: Sim, vc: ViewChange, mode: str) -> ViewChange:
        mem = sim.membership
        rid = vc.replica
        others = [r for r in mem.replica_ids if r != rid]
        if mode == "omit":
            return replace(vc, prepared=())
        if mode == "stale":
            return ViewChange(vc.new_view, 0, (), (), rid)
        if mode == "fake_checkpoint":
            seq = vc.checkpoint_seq + 4 * sim.config.checkpoint_interval
            digest = hashlib.sha256(b"fake state").digest()
            signers = sorted([rid, *others[: mem.quorum - 1]])
            proof = tuple(_resign(Checkpoint(seq, digest, s), s, key_of=rid) for s in signers)
            return ViewChange(vc.new_view, seq, proof, (), rid)  # type: ignore[arg-type]
        last = vc.prepared[-1].seq if vc.prepared else vc.checkpoint_seq
        view = vc.new_view if mode == "future_cert" else vc.new_view - 1
        digest = hashlib.sha256(b"never ordered").digest()
        primary = mem.primary(view)
        pp = _resign(PrePrepare(view, last + 1, digest, None), primary, key_of=rid)
        backups = [r for r in mem.replica_ids if r != primary][: 2 * mem.f]
        prepares = tuple(
            _resign(Prepare(view, last + 1, digest, b), b, key_of=rid) for b in sorted(backups)
        )
        cert = PreparedCertificate(pp, prepares)  # type: ignore[arg-type]
        return replace(vc, prepared=(*vc.prepared, cert))

    def on_tick(self, sim: Sim, inst: str) -> Out:
        self._ticks += 1
        if not self.eager or self._ticks % self.eager:
            return []
        core = sim.replicas[inst]
        vc = ViewChange(core.view + 1, core.low, core.low_proof, (), sim.base[inst])
        self.lies["eager"] += 1
        return [(None, _resign(vc, vc.replica))]


class NewViewLiar(Adversary):
    """The primary of a new view, lying in its ``NewView`` (``mode``):

    - ``tamper``: O with one entry's digest changed (or a made-up entry if O is empty),
      re-signed by itself: the edge recomputes O from V and refuses it (``invalid``);
    - ``short``: V cut to 2f view changes (``invalid``);
    - ``withhold``: the genuine ``NewView``, but sent to one backup only.

    The correct replicas' timers must then move them on to the next view."""

    def __init__(self, *, mode: str = "tamper", mute_after: int | None = None) -> None:
        super().__init__(mute_after=mute_after)
        self.mode = mode
        self._lies: dict[int, Signed[Message]] = {}

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        nv = message.message
        if not isinstance(nv, NewView):
            return super().outgoing(sim, inst, to, message)
        if self.mode == "withhold":
            self.lies["withhold"] += 1
            keep = min(r for r in sim.membership.replica_ids if r != message.signer)
            return [(keep, message)] if to in (None, keep) else []
        lie = self._lies.get(nv.view)
        if lie is None:
            if self.mode == "short":
                forged = replace(nv, view_changes=nv.view_changes[: 2 * sim.membership.f])
            else:
                o = list(nv.pre_prepares)
                bogus = hashlib.sha256(b"tampered").digest()
                signer = message.signer
                key = key_for(signer)
                if o:
                    first = o[0].message
                    o[0] = sign(replace(first, digest=bogus), key, signer=signer, chain_id="sim")
                else:
                    seq = max(vc.message.checkpoint_seq for vc in nv.view_changes) + 1
                    pp = PrePrepare(nv.view, seq, bogus, None)
                    o = [sign(pp, key, signer=signer, chain_id="sim")]
                forged = replace(nv, pre_prepares=tuple(o))
            lie = self._lies[nv.view] = _resign(forged, message.signer)
            self.lies[self.mode] += 1
        return [(to, lie)]


class Instigator(Adversary):
    """A primary that gets one correct backup to change view alone, early.

    In view 0 it stops ordering (its pre-prepares are withheld) and relays every client
    request it gets to ``target`` at once, as a backup relays requests to a primary. Only
    ``target`` then holds a request waiting for execution: its timer runs out long before
    the others' (who hear of the requests from the clients' retry), it moves to view 1
    alone, and, with no ``NewView`` within its timeout, on to view 2, 3, … while the others
    later install view 1 without it. In every other view the instigator behaves correctly.
    """

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def incoming(self, sim: Sim, inst: str, message: Signed[Message]) -> None:
        if isinstance(message.message, Request) and sim.replicas[inst].view == 0:
            sim.inject(inst, self.target, message)
            self.lies["relayed"] += 1

    def outgoing(self, sim: Sim, inst: str, to: str | None, message: Signed[Message]) -> Out:
        m = message.message
        if isinstance(m, PrePrepare) and m.view == 0:
            self.lies["withheld"] += 1
            return []
        return [(to, message)]
