"""The PBFT replica's normal case (Castro & Liskov §4.2–4.3) as a pure, deterministic state machine.

A :class:`Replica` has two entry points, :meth:`Replica.step` (one signed message that already
passed :func:`~medfabric.ledger.messages.open_frame` at the edge) and :meth:`Replica.tick` (one
unit of time). Each returns a :class:`Ready`: what the caller must persist, send and record.
There are no sockets, clocks, randomness or disk here; the only injected dependency is a
deterministic :class:`StateMachine` that the replica executes committed requests on.

The Ready contract (the caller's side, in this order, for each ``Ready`` before the next call):

1. **Persist** ``ready.persist`` durably, in order (the replica's own signed messages and the
   pre-prepares it accepted). A replica that restarts must not sign a different message for
   a ``(view, seq)`` it already spoke about; persisting before sending is what prevents that.
2. **Send** ``ready.messages``: ``Send.to`` is None for every other replica, else one replica
   id or one client id (the membership keeps the two disjoint).
3. **Record** ``ready.committed`` in order: the batches the replica has executed, by strictly
   increasing ``seq`` with no gaps across successive ``Ready`` values (blocks are built from
   them). Execution itself already happened in the core, on the injected state machine,
   because the checkpoint digests and client replies depend on its results.
4. ``ready.stable_checkpoint``, when set, is the new low watermark with its 2f+1 proof; the
   log below it is gone from the replica and may be pruned from storage.

Invariants (for a correct replica; checked by the simulation tests):

- At most one pre-prepare is accepted per ``(view, seq)``; a second one with another digest is
  ignored and counted as ``conflicting``.
- A batch executes only once it is committed-local (pre-prepare, 2f matching prepares from
  distinct backups, 2f+1 matching commits from distinct replicas), and batches execute in
  strictly increasing ``seq`` with no gaps; a committed batch waits for its predecessors.
- Each ``(client, timestamp)`` executes at most once: a request whose timestamp is not above
  the client's last executed one is skipped at execution (deterministically on every replica)
  and, at receipt, answered from the cached reply if it is that last one.
- Only sequence numbers in ``(low, low + log_window]`` are logged, so the log holds at most
  ``log_window`` slots; a stable checkpoint (2f+1 matching ``Checkpoint`` messages including
  this replica's own) moves ``low`` up and drops every slot and checkpoint vote at or below it.
- A message just above the high watermark (seq in ``(high, high + log_window]``) is held, not
  dropped: a backup whose checkpoint is not yet stable would otherwise lose the primary's next
  pre-prepares for good (there is no retransmission yet). At most ``(2n + 1) * log_window``
  messages are held; they are replayed, in arrival order, when the window moves.
- Messages for another view, outside the watermarks (and not held), conflicting, or already
  seen are ignored and counted in :attr:`Replica.ignored` (one counter per reason in
  :data:`IGNORE_REASONS`).

Not built yet: view change, state transfer, retransmission. The view is always 0 here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar, cast

from medfabric.crypto.keys import SigningKey
from medfabric.ledger.messages import (
    DIGEST_SIZE,
    Checkpoint,
    Commit,
    LedgerError,
    Membership,
    Message,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    Signed,
    batch_digest,
    encode,
    sign,
)

__all__ = [
    "IGNORE_REASONS",
    "CommittedBatch",
    "HashChainStateMachine",
    "Ready",
    "Replica",
    "ReplicaConfig",
    "Send",
    "StableCheckpoint",
    "StateMachine",
]

_M = TypeVar("_M", bound=Message)


def _erase(signed: Signed[_M]) -> Signed[Message]:
    """``Signed`` is invariant in its message type; every ``Signed[X]`` is a ``Signed[Message]``."""
    return cast("Signed[Message]", signed)


IGNORE_REASONS: tuple[str, ...] = (
    "other_view",
    "out_of_window",
    "conflicting",
    "duplicate",
    "stale_request",
    "unexpected",
)
"""Every key of :attr:`Replica.ignored`, for metrics."""


class StateMachine(Protocol):
    """The replicated service. Must be deterministic: equal request sequences give equal
    results and equal digests on every replica."""

    def execute(self, request: Request) -> bytes:
        """Apply one request and return its result (sent to the client in a ``Reply``)."""
        ...

    def digest(self) -> bytes:
        """The 32-byte digest of the current state (what ``Checkpoint`` messages carry)."""
        ...


class HashChainStateMachine:
    """A minimal state machine: its state is a hash chain over the executed requests.

    ``digest_{i} = SHA-256(digest_{i-1} || encode(request_i))`` starting from 32 zero bytes;
    the result of a request is the digest after it. Two replicas have equal digests exactly
    when they executed the same requests in the same order (up to SHA-256 collisions).
    """

    def __init__(self) -> None:
        """Start from the empty state."""
        self._digest = bytes(DIGEST_SIZE)
        self.executed: list[Request] = []

    def execute(self, request: Request) -> bytes:
        """Append ``request`` to the chain; return the new digest."""
        self._digest = hashlib.sha256(self._digest + encode(request)).digest()
        self.executed.append(request)
        return self._digest

    def digest(self) -> bytes:
        """The current head of the chain."""
        return self._digest


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Tuning of the normal case.

    Attributes:
        max_batch: The primary sends a pre-prepare as soon as this many requests are pending;
            fewer wait for the next :meth:`Replica.tick`.
        checkpoint_interval: ``K``: a checkpoint is taken after executing every seq that is a
            multiple of ``K``. Must not exceed the membership's ``log_window``, or the window
            would fill before a checkpoint could free it.
    """

    max_batch: int = 64
    checkpoint_interval: int = 128

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise LedgerError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.checkpoint_interval < 1:
            raise LedgerError(f"checkpoint_interval must be >= 1, got {self.checkpoint_interval}")


@dataclass(frozen=True, slots=True)
class Send:
    """One outbound message. ``to`` is None for all other replicas, else a replica or client id."""

    to: str | None
    message: Signed[Message]


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """A batch the replica executed, at ``seq`` in ``view``, with its digest."""

    view: int
    seq: int
    digest: bytes
    batch: tuple[Signed[Request], ...]


@dataclass(frozen=True, slots=True)
class StableCheckpoint:
    """A checkpoint that became stable: the new low watermark and its 2f+1 proof."""

    seq: int
    state_digest: bytes
    proof: tuple[Signed[Checkpoint], ...]


@dataclass(frozen=True, slots=True)
class Ready:
    """The effects of one ``step`` or ``tick``; handle them as the module docstring says."""

    persist: tuple[Signed[Message], ...] = ()
    messages: tuple[Send, ...] = ()
    committed: tuple[CommittedBatch, ...] = ()
    stable_checkpoint: StableCheckpoint | None = None

    def __bool__(self) -> bool:
        return bool(self.persist or self.messages or self.committed or self.stable_checkpoint)


@dataclass(slots=True)
class _Slot:
    """What the replica knows about one sequence number in the current view."""

    pre_prepare: Signed[PrePrepare] | None = None
    # By sender: one vote per replica, so a replica repeating itself never counts twice.
    prepares: dict[str, Signed[Prepare]] = field(default_factory=dict)
    commits: dict[str, Signed[Commit]] = field(default_factory=dict)
    commit_sent: bool = False
    committed: bool = False


class _Out:
    """Accumulates one call's effects; turned into a frozen :class:`Ready` at the end."""

    __slots__ = ("committed", "messages", "persist", "stable")

    def __init__(self) -> None:
        self.persist: list[Signed[Message]] = []
        self.messages: list[Send] = []
        self.committed: list[CommittedBatch] = []
        self.stable: StableCheckpoint | None = None

    def ready(self) -> Ready:
        return Ready(tuple(self.persist), tuple(self.messages), tuple(self.committed), self.stable)


class Replica:
    """One PBFT replica, normal case only (see the module docstring for the contract).

    Args:
        config: Batching and checkpoint tuning.
        membership: The chain's members; ``membership.log_window`` is ``L``.
        replica_id: This replica's id in ``membership``.
        signing_key: This replica's key (its verify key is the one in ``membership``).
        state_machine: The service to execute on; a fresh :class:`HashChainStateMachine`
            when omitted.

    Raises:
        LedgerError: ``replica_id`` is not a replica, or ``checkpoint_interval`` exceeds
            ``log_window``.
    """

    def __init__(
        self,
        config: ReplicaConfig,
        membership: Membership,
        replica_id: str,
        signing_key: SigningKey,
        state_machine: StateMachine | None = None,
    ) -> None:
        if replica_id not in membership.replicas:
            raise LedgerError(f"{replica_id!r} is not a replica of {membership.chain_id!r}")
        if config.checkpoint_interval > membership.log_window:
            raise LedgerError("checkpoint_interval must not exceed membership.log_window")
        self.config = config
        self.membership = membership
        self.id = replica_id
        self._key = signing_key
        self.state_machine: StateMachine = state_machine or HashChainStateMachine()
        self.view = 0
        self.low = 0  # last stable checkpoint; genesis (0) is stable by definition
        self.low_digest: bytes | None = None
        self.low_proof: tuple[Signed[Checkpoint], ...] = ()
        self.last_executed = 0
        self._next_seq = 0  # primary: the last seq it assigned
        self._slots: dict[int, _Slot] = {}
        self._pending: dict[tuple[str, int], Signed[Request]] = {}  # primary's queue, FIFO
        self._in_flight: set[tuple[str, int]] = set()  # primary: assigned, not yet executed
        self._last_reply: dict[str, Signed[Reply]] = {}  # client → reply to its last request
        self._own_checkpoints: dict[int, bytes] = {}  # seq → own state digest
        self._checkpoints: dict[int, dict[str, Signed[Checkpoint]]] = {}
        self._held: list[Signed[Message]] = []  # just above the window; replayed on GC
        self._ignored: Counter[str] = Counter({reason: 0 for reason in IGNORE_REASONS})

    # --- read-only views ---------------------------------------------------------------------

    @property
    def high(self) -> int:
        """The high watermark: ``low + log_window``."""
        return self.low + self.membership.log_window

    @property
    def is_primary(self) -> bool:
        """Whether this replica is the primary of its current view."""
        return self.membership.primary(self.view) == self.id

    @property
    def ignored(self) -> Mapping[str, int]:
        """Messages ignored so far, by reason (:data:`IGNORE_REASONS`)."""
        return MappingProxyType(dict(self._ignored))

    @property
    def log_size(self) -> int:
        """Slots held in the log (at most ``log_window``) plus checkpoint seqs with votes."""
        return len(self._slots) + len(self._checkpoints)

    @property
    def held(self) -> int:
        """Messages held because they are just above the high watermark."""
        return len(self._held)

    @property
    def pending(self) -> int:
        """Requests waiting at the primary for a sequence number."""
        return len(self._pending)

    # --- entry points ------------------------------------------------------------------------

    def step(self, signed: Signed[Message]) -> Ready:
        """Handle one message that passed ``open_frame``; return its effects.

        Args:
            signed: The checked envelope.

        Returns:
            What to persist, send and record (module docstring).
        """
        out = _Out()
        self._dispatch(signed, out)
        return out.ready()

    def _dispatch(self, signed: Signed[Message], out: _Out) -> None:
        m = signed.message
        if isinstance(m, Request):
            self._on_request(signed, m, out)
        elif isinstance(m, PrePrepare):
            self._on_pre_prepare(signed, m, out)
        elif isinstance(m, Prepare):
            self._on_prepare(signed, m, out)
        elif isinstance(m, Commit):
            self._on_commit(signed, m, out)
        elif isinstance(m, Checkpoint):
            self._on_checkpoint(signed, m, out)
        else:
            # Replies are for clients; view change and state transfer are not built yet.
            self._ignored["unexpected"] += 1

    def tick(self) -> Ready:
        """Advance time by one unit: the primary sends a pre-prepare for a partial batch."""
        out = _Out()
        if self.is_primary:
            self._flush(out, partial=True)
        return out.ready()

    # --- helpers -----------------------------------------------------------------------------

    def _emit(self, out: _Out, message: _M, to: str | None = None) -> Signed[_M]:
        """Sign ``message``, queue it for persisting (replies excepted) and sending."""
        signed = sign(message, self._key, signer=self.id, chain_id=self.membership.chain_id)
        if not isinstance(message, Reply):  # replies are re-derivable from the executed log
            out.persist.append(_erase(signed))
        out.messages.append(Send(to, _erase(signed)))
        return signed

    def _in_window(self, seq: int) -> bool:
        return self.low < seq <= self.high

    def _slot(self, seq: int) -> _Slot:
        slot = self._slots.get(seq)
        if slot is None:
            slot = self._slots[seq] = _Slot()
        return slot

    # --- requests and batching ---------------------------------------------------------------

    def _on_request(self, signed: Signed[Message], r: Request, out: _Out) -> None:
        last = self._last_reply.get(r.client)
        if last is not None and r.timestamp <= last.message.timestamp:
            if r.timestamp == last.message.timestamp:
                # The client missed our reply: answer again from the cache, never re-execute.
                out.messages.append(Send(r.client, _erase(last)))
            else:
                self._ignored["stale_request"] += 1
            return
        if not self.is_primary:
            # The client may not know the primary; relay, the primary de-duplicates.
            out.messages.append(Send(self.membership.primary(self.view), signed))
            return
        key = (r.client, r.timestamp)
        if key in self._pending or key in self._in_flight:
            self._ignored["duplicate"] += 1
            return
        self._pending[key] = cast("Signed[Request]", signed)
        if len(self._pending) >= self.config.max_batch:
            self._flush(out, partial=False)

    def _flush(self, out: _Out, *, partial: bool) -> None:
        """Assign sequence numbers to pending requests while the window has room."""
        while self._pending and self._next_seq < self.high:
            if not partial and len(self._pending) < self.config.max_batch:
                return
            keys = list(self._pending)[: self.config.max_batch]
            batch = tuple(self._pending.pop(k) for k in keys)
            self._in_flight.update(keys)
            self._next_seq += 1
            pp = PrePrepare(self.view, self._next_seq, batch_digest(batch), batch)
            signed = self._emit(out, pp)
            self._slot(pp.seq).pre_prepare = signed
            # The primary's pre-prepare stands for its prepare; prepares may already be here.
            self._advance(pp.seq, out)

    # --- three phases ------------------------------------------------------------------------

    def _admit(self, signed: Signed[Message], view: int, seq: int) -> bool:
        """Common view and watermark filter; holds or counts what it refuses."""
        if view != self.view:
            self._ignored["other_view"] += 1
            return False
        return self._window_ok(signed, seq)

    def _window_ok(self, signed: Signed[Message], seq: int) -> bool:
        if self._in_window(seq):
            return True
        room = (2 * self.membership.n + 1) * self.membership.log_window
        if self.high < seq <= self.high + self.membership.log_window and len(self._held) < room:
            self._held.append(signed)
        else:
            self._ignored["out_of_window"] += 1
        return False

    def _on_pre_prepare(self, signed: Signed[Message], pp: PrePrepare, out: _Out) -> None:
        if not self._admit(signed, pp.view, pp.seq):
            return
        if pp.batch is None or signed.signer != self.membership.primary(pp.view):
            self._ignored["unexpected"] += 1  # open_frame refuses both; defence in depth
            return
        slot = self._slot(pp.seq)
        if slot.pre_prepare is not None:
            same = slot.pre_prepare.message.digest == pp.digest
            self._ignored["duplicate" if same else "conflicting"] += 1
            return
        slot.pre_prepare = cast("Signed[PrePrepare]", signed)
        out.persist.append(signed)
        if not self.is_primary:
            prepare = Prepare(pp.view, pp.seq, pp.digest, self.id)
            slot.prepares[self.id] = self._emit(out, prepare)
        self._advance(pp.seq, out)

    def _on_prepare(self, signed: Signed[Message], p: Prepare, out: _Out) -> None:
        if not self._admit(signed, p.view, p.seq):
            return
        slot = self._slot(p.seq)
        seen = slot.prepares.get(p.replica)
        if seen is not None:
            self._ignored["duplicate" if seen.message.digest == p.digest else "conflicting"] += 1
            return
        slot.prepares[p.replica] = cast("Signed[Prepare]", signed)
        self._advance(p.seq, out)

    def _on_commit(self, signed: Signed[Message], c: Commit, out: _Out) -> None:
        if not self._admit(signed, c.view, c.seq):
            return
        slot = self._slot(c.seq)
        seen = slot.commits.get(c.replica)
        if seen is not None:
            self._ignored["duplicate" if seen.message.digest == c.digest else "conflicting"] += 1
            return
        slot.commits[c.replica] = cast("Signed[Commit]", signed)
        self._advance(c.seq, out)

    def _advance(self, seq: int, out: _Out) -> None:
        """Move ``seq`` through prepared → commit sent → committed-local → executed."""
        slot = self._slots.get(seq)
        if slot is None or slot.pre_prepare is None or slot.committed:
            return
        digest = slot.pre_prepare.message.digest
        f = self.membership.f
        if not slot.commit_sent:
            matching = sum(1 for p in slot.prepares.values() if p.message.digest == digest)
            if matching < 2 * f:
                return
            slot.commit_sent = True
            commit = Commit(self.view, seq, digest, self.id)
            slot.commits[self.id] = self._emit(out, commit)
        matching = sum(1 for c in slot.commits.values() if c.message.digest == digest)
        if matching < self.membership.quorum:
            return
        slot.committed = True
        self._execute_ready(out)

    # --- execution, replies, checkpoints -----------------------------------------------------

    def _execute_ready(self, out: _Out) -> None:
        """Execute committed batches in order, stopping at the first gap."""
        while True:
            slot = self._slots.get(self.last_executed + 1)
            if slot is None or not slot.committed or slot.pre_prepare is None:
                return
            pp = slot.pre_prepare.message
            batch = pp.batch or ()
            for signed in batch:
                self._execute_one(signed.message, out)
            self.last_executed = pp.seq
            out.committed.append(CommittedBatch(pp.view, pp.seq, pp.digest, batch))
            if pp.seq % self.config.checkpoint_interval == 0:
                self._take_checkpoint(pp.seq, out)

    def _execute_one(self, r: Request, out: _Out) -> None:
        key = (r.client, r.timestamp)
        self._in_flight.discard(key)
        last = self._last_reply.get(r.client)
        if last is not None and r.timestamp <= last.message.timestamp:
            # Same decision on every replica (it depends only on the executed prefix), so the
            # states stay equal even when a faulty primary batches a request twice.
            self._ignored["stale_request"] += 1
            return
        result = self.state_machine.execute(r)
        reply = Reply(self.view, r.timestamp, r.client, self.id, result)
        self._last_reply[r.client] = self._emit(out, reply, to=r.client)

    def _take_checkpoint(self, seq: int, out: _Out) -> None:
        digest = self.state_machine.digest()
        self._own_checkpoints[seq] = digest
        signed = self._emit(out, Checkpoint(seq, digest, self.id))
        self._checkpoints.setdefault(seq, {})[self.id] = signed
        self._check_stable(seq, out)

    def _on_checkpoint(self, signed: Signed[Message], c: Checkpoint, out: _Out) -> None:
        if not self._window_ok(signed, c.seq):
            return
        votes = self._checkpoints.setdefault(c.seq, {})
        seen = votes.get(c.replica)
        if seen is not None:
            same = seen.message.state_digest == c.state_digest
            self._ignored["duplicate" if same else "conflicting"] += 1
            return
        votes[c.replica] = cast("Signed[Checkpoint]", signed)
        self._check_stable(c.seq, out)

    def _check_stable(self, seq: int, out: _Out) -> None:
        """Make ``seq`` stable once 2f+1 votes match this replica's own digest for it."""
        own = self._own_checkpoints.get(seq)
        if own is None:
            return  # not executed that far yet; the check reruns when we take our checkpoint
        votes = self._checkpoints.get(seq, {}).values()
        matching = [v for v in votes if v.message.state_digest == own]
        proof = tuple(sorted(matching, key=lambda v: v.signer))
        if len(proof) < self.membership.quorum or seq <= self.low:
            return
        self.low, self.low_digest, self.low_proof = seq, own, proof
        # Garbage collection: nothing at or below the stable checkpoint is needed any more.
        self._slots = {s: slot for s, slot in self._slots.items() if s > seq}
        self._checkpoints = {s: v for s, v in self._checkpoints.items() if s > seq}
        self._own_checkpoints = {s: d for s, d in self._own_checkpoints.items() if s > seq}
        out.stable = StableCheckpoint(seq, own, proof)
        held, self._held = self._held, []
        for message in held:  # each goes through the filters again: some are held once more
            self._dispatch(message, out)
        if self.is_primary:
            self._flush(out, partial=False)  # the window just moved: full batches may go now
