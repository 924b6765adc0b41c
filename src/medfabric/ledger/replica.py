"""The PBFT replica (Castro & Liskov §4.2–4.4) as a pure, deterministic state machine.

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
5. ``ready.restored``, when set, is a checkpoint whose state the replica fetched and restored
   (state transfer): ``committed`` continues at its ``seq + 1``, and the batches up to it
   were never executed here (the caller fetches those blocks from another replica).

Restart: :meth:`Replica.recover` restores a new replica from its last stable checkpoint (with
the state there) and the messages it persisted since, so that it never signs a message that
conflicts with one it signed before the restart (see its docstring).

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
  pre-prepares until retransmission repaired it. At most ``(2n + 1) * log_window``
  messages are held; they are replayed, in arrival order, when the window moves.
- Messages for another view, outside the watermarks (and not held), conflicting, or already
  seen are ignored and counted in :attr:`Replica.ignored` (one counter per reason in
  :data:`IGNORE_REASONS`).

View change (§4.4), with time as ticks:

- A backup holding a client request it has not seen executed counts ticks; after
  ``view_change_timeout`` ticks without an execution it moves to ``view + 1``: it stops taking
  pre-prepares, prepares and commits, and sends a signed ``ViewChange`` with its stable
  checkpoint proof and its prepared certificates above it. If that view does not install
  within the (current) timeout, it moves one view further and the timeout doubles; it goes
  back to ``view_change_timeout`` once a request executes.
- A replica that holds ``ViewChange`` messages from f+1 others for views above its own joins
  the smallest of those views without waiting for its timer (at least one is correct).
- The primary of the new view, with 2f+1 view changes for it (its own included), computes O
  with :func:`~medfabric.ledger.messages.new_view_pre_prepares`, sends ``NewView`` followed by
  the full pre-prepares it has batches for, and installs it; a backup installs a ``NewView``
  whose O recomputes from its V. Installing re-runs the three phases for every entry of O
  (null requests for gaps); entries at or below ``last_executed`` go through again so that
  others can commit them, but nothing executes twice (execution is by ``seq``, in order).
- A correct replica never prepares a second digest at a ``(view, seq)``, and execution needs
  2f+1 matching commits (so f+1 correct replicas prepared it and any later O carries it).

Retransmission, so that drops heal: every ``retransmit_every`` ticks a replica re-sends, not
persisting anything, its own view change (while changing view), or for up to
``retransmit_limit`` slots its prepare and commit (the primary: the full pre-prepare), and its
checkpoints above the low watermark. Slots it already executed are re-sent
``retransmit_rounds`` times more. A replica that committed a slot answers a repeated prepare
or pre-prepare for it with its commit and the full pre-prepare (answers are commits and
pre-prepares, which are never answered, so this cannot loop); any replica answers a message
from an older view with the ``NewView`` that installed its own (once per tick per sender).

State transfer (§4.3 / §5.3.2 of the paper): the checkpointed state is
:func:`encode_state` of the service's snapshot and the client table (last timestamp and result
per client, so nothing executes twice after a transfer), cut into ``state_chunk_size`` chunks;
the ``Checkpoint`` digest is the RFC 6962 root over them. A replica that learns of a stable
checkpoint it has not executed (2f+1 matching votes above its window: at once; inside it:
after ``fetch_after`` ticks without execution; or the low watermark of a ``NewView``) moves its
low watermark there and fetches the chunks, ``fetch_parallel`` at a time, from one replica of
the proof at a time; each chunk is checked against the *certified* digest, and a bad or
missing one is asked again from the next replica on a later tick. Once all are in, it restores
and resumes the normal case. Laggards find out through the help answers: a message below a
replica's stable checkpoint is answered with its proof; a replica whose requests wait with no
next slot announces its checkpoint vote, answered with the slots after it.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar, cast

from medfabric.crypto.keys import SigningKey
from medfabric.crypto.merkle import inclusion_proof, leaf_hash, root_from_leaf_hashes
from medfabric.crypto.merkle import verify_inclusion as _verify_inclusion
from medfabric.ledger.messages import (
    DIGEST_SIZE,
    NULL_DIGEST,
    Checkpoint,
    Commit,
    EncodeError,
    FetchState,
    LedgerError,
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
    decode,
    encode,
    new_view_pre_prepares,
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
    "decode_state",
    "encode_state",
    "state_chunks",
]

_M = TypeVar("_M", bound=Message)
_Batch = tuple[int, tuple[Signed[Request], ...]]  # (origin view, requests)


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
    "in_view_change",
    "invalid_view_change",
    "bad_chunk",
)
"""Every key of :attr:`Replica.ignored`, for metrics."""


class StateMachine(Protocol):
    """The replicated service. Must be deterministic: equal request sequences give equal
    results and equal digests on every replica."""

    def execute(self, request: Request) -> bytes:
        """Apply one request and return its result (sent to the client in a ``Reply``)."""
        ...

    def digest(self) -> bytes:
        """A 32-byte digest of the current state (for callers; checkpoints use snapshots)."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes; equal states give equal bytes on every replica."""
        ...

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one :meth:`snapshot` produced (state transfer).

        Raises:
            LedgerError: ``snapshot`` is not a valid snapshot; the state is then unchanged.
        """
        ...

    def end_batch(self, view: int | None, seq: int) -> None:
        """Every request of the committed batch ``seq`` was executed (or skipped as stale);
        called once per batch, in ``seq`` order, empty batches included. ``view`` is the view
        whose primary built the batch (``PrePrepare.origin``: the same on every replica,
        whatever view the batch committed in), None for a new view's null request. A service
        that groups its work by batch (a block per batch) closes it here."""
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

    def end_batch(self, view: int | None, seq: int) -> None:
        """Nothing to do: the chain has no batch structure."""

    def snapshot(self) -> bytes:
        """The head, then each executed request (u32 length + encoding), oldest first.

        The requests are part of the state so that a replica restored from a snapshot can
        still show (to tests) what the chain holds; a real service would snapshot its tables.
        """
        parts = [self._digest, struct.pack(">I", len(self.executed))]
        for request in self.executed:
            data = encode(request)
            parts += [struct.pack(">I", len(data)), data]
        return b"".join(parts)

    def restore(self, snapshot: bytes) -> None:
        """Load :meth:`snapshot` output; parse it fully before changing anything."""
        r = _Bytes(snapshot)
        digest = r.take(DIGEST_SIZE)
        requests: list[Request] = []
        for _ in range(r.u32()):
            try:
                m = decode(r.take(r.u32()))
            except EncodeError as exc:
                raise LedgerError(f"bad request in snapshot: {exc}") from exc
            if not isinstance(m, Request):
                raise LedgerError("snapshot holds a message that is not a request")
            requests.append(m)
        r.end()
        self._digest, self.executed = digest, requests


class _Bytes:
    """A bounds-checked reader over a snapshot (a malformed one raises LedgerError)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise LedgerError("snapshot truncated")
        chunk, self._pos = self._data[self._pos : end], end
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def end(self) -> None:
        if self._pos != len(self._data):
            raise LedgerError("trailing bytes in snapshot")


_STATE_MAGIC = b"medfabric-replica-state-v1"


def encode_state(app: bytes, replies: Mapping[str, tuple[int, bytes]]) -> bytes:
    """The checkpointed state of a replica: the service's snapshot and, per client, the
    timestamp and result of its last executed request (the de-duplication table). Both are in
    the certified state so that a replica restored by state transfer never executes a request
    twice and can still answer a repeated one from its cache. Clients are in sorted order."""
    parts = [_STATE_MAGIC, struct.pack(">Q", len(app)), app, struct.pack(">I", len(replies))]
    for client in sorted(replies):
        timestamp, result = replies[client]
        cid = client.encode()
        parts += [struct.pack(">I", len(cid)), cid, struct.pack(">Q", timestamp)]
        parts += [struct.pack(">I", len(result)), result]
    return b"".join(parts)


def decode_state(state: bytes) -> tuple[bytes, dict[str, tuple[int, bytes]]]:
    """Inverse of :func:`encode_state`. Raises :class:`LedgerError` on malformed input."""
    r = _Bytes(state)
    if r.take(len(_STATE_MAGIC)) != _STATE_MAGIC:
        raise LedgerError("not a replica state")
    app = r.take(r.u64())
    replies: dict[str, tuple[int, bytes]] = {}
    for _ in range(r.u32()):
        try:
            client = r.take(r.u32()).decode()
        except UnicodeDecodeError as exc:
            raise LedgerError("client id in snapshot is not UTF-8") from exc
        timestamp = r.u64()
        replies[client] = (timestamp, r.take(r.u32()))
    r.end()
    if list(replies) != sorted(replies):
        raise LedgerError("snapshot clients not in sorted order")  # one state, one encoding
    return app, replies


def state_chunks(state: bytes, chunk_size: int) -> list[bytes]:
    """Split ``state`` into chunks of ``chunk_size`` bytes (the last may be shorter; the empty
    state is one empty chunk). The checkpoint digest is the RFC 6962 root over these."""
    return [state[i : i + chunk_size] for i in range(0, len(state), chunk_size)] or [b""]


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Tuning of batching, checkpoints, view-change timers and retransmission.

    Attributes:
        max_batch: The primary sends a pre-prepare as soon as this many requests are pending;
            fewer wait for the next :meth:`Replica.tick`.
        checkpoint_interval: ``K``: a checkpoint is taken after executing every seq that is a
            multiple of ``K``. Must not exceed the membership's ``log_window``, or the window
            would fill before a checkpoint could free it.
        view_change_timeout: ``T`` in ticks: a backup holding a request it has not seen
            executed moves to the next view after ``T`` ticks without an execution; while the
            next view does not install, each further expiry moves one view on and doubles the
            timeout (back to ``T`` once a request executes).
        retransmit_every: Every this many ticks, a replica with unfinished work re-sends its
            latest messages for it (see :meth:`Replica.tick`).
        retransmit_limit: At most this many slots are re-sent per retransmission.
        retransmit_rounds: A slot this replica already executed is re-sent (its commit, and
            the primary's pre-prepare) this many more times, for replicas that missed it.
        state_chunk_size: Bytes per state-transfer chunk. Part of the checkpoint digest (the
            Merkle root is over the chunks), so it must be equal on every replica.
        max_state_chunks: A state of more chunks is refused (bounds what a fetch may hold).
        fetch_parallel: At most this many chunk requests are outstanding at once.
        fetch_after: A replica that knows a stable checkpoint above what it executed, inside
            its window, fetches the state after this many ticks without executing anything
            (above its window it fetches at once: the normal case cannot get it there).
    """

    max_batch: int = 64
    checkpoint_interval: int = 128
    view_change_timeout: int = 50
    retransmit_every: int = 4
    retransmit_limit: int = 8
    retransmit_rounds: int = 8
    state_chunk_size: int = 1 << 16
    max_state_chunks: int = 1 << 16
    fetch_parallel: int = 4
    fetch_after: int = 16

    def __post_init__(self) -> None:
        for name in (
            "max_batch",
            "checkpoint_interval",
            "view_change_timeout",
            "retransmit_every",
            "retransmit_limit",
            "retransmit_rounds",
            "state_chunk_size",
            "max_state_chunks",
            "fetch_parallel",
            "fetch_after",
        ):
            value = getattr(self, name)
            if value < 1:
                raise LedgerError(f"{name} must be >= 1, got {value}")


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
    restored: StableCheckpoint | None = None

    def __bool__(self) -> bool:
        return bool(
            self.persist
            or self.messages
            or self.committed
            or self.stable_checkpoint
            or self.restored
        )


@dataclass(slots=True)
class _Slot:
    """What the replica knows about one sequence number in the current view."""

    pre_prepare: Signed[PrePrepare] | None = None
    # By sender: one vote per replica, so a replica repeating itself never counts twice.
    prepares: dict[str, Signed[Prepare]] = field(default_factory=dict)
    commits: dict[str, Signed[Commit]] = field(default_factory=dict)
    commit_sent: bool = False
    committed: bool = False
    resends: int = 0  # retransmissions since it executed (bounded by retransmit_rounds)


@dataclass(slots=True)
class _Snapshot:
    """This replica's state at one of its checkpoints, chunked, to serve state transfer."""

    chunks: list[bytes]
    leaves: list[bytes]  # leaf hashes of ``chunks``
    digest: bytes


@dataclass(slots=True)
class _Fetch:
    """A state transfer in progress towards the certified checkpoint ``seq``."""

    seq: int
    digest: bytes
    proof: tuple[Signed[Checkpoint], ...]
    sources: tuple[str, ...]  # the proof's signers but us: at least f+1 correct hold it
    source: int = 0  # index into ``sources``; moves on after a bad chunk or a timeout
    total: int | None = None  # learnt from the first verified chunk
    chunks: dict[int, bytes] = field(default_factory=dict)
    asked: dict[int, int] = field(default_factory=dict)  # chunk → tick it was asked for


class _Out:
    """Accumulates one call's effects; turned into a frozen :class:`Ready` at the end."""

    __slots__ = ("committed", "messages", "persist", "restored", "stable")

    def __init__(self) -> None:
        self.persist: list[Signed[Message]] = []
        self.messages: list[Send] = []
        self.committed: list[CommittedBatch] = []
        self.stable: StableCheckpoint | None = None
        self.restored: StableCheckpoint | None = None

    def ready(self) -> Ready:
        return Ready(
            tuple(self.persist),
            tuple(self.messages),
            tuple(self.committed),
            self.stable,
            self.restored,
        )


class Replica:
    """One PBFT replica: normal case and view change (see the module docstring for the contract).

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
        # View change (§4.4). ``view`` is the view this replica is in, or moving to while
        # ``active`` is False (between its ViewChange and the matching NewView).
        self.active = True
        self._waiting: dict[str, Signed[Request]] = {}  # client → latest request not executed
        self._elapsed = 0  # ticks since the last execution while something waits
        self.timeout = config.view_change_timeout  # current, doubled by back-off
        self.view_change_log: list[tuple[int, int]] = []  # (view moved to, timeout it got)
        self._view_changes: dict[str, Signed[ViewChange]] = {}  # sender → its highest
        self._own_view_change: Signed[ViewChange] | None = None
        self._new_view: Signed[NewView] | None = None  # what installed ``view`` (to re-send)
        self._prepared: dict[int, PreparedCertificate] = {}  # seq → highest-view certificate
        # digest → (origin view, requests) of every batch the log may still need.
        self._batches: dict[bytes, _Batch] = {NULL_DIGEST: (0, ())}
        self._ticks = 0
        self._helped: set[str] = set()  # replicas sent our NewView this tick
        self._helped_low: set[str] = set()  # replicas sent our stable-checkpoint proof
        # State transfer.
        self._snapshots: dict[int, _Snapshot] = {}  # own checkpoints at or above ``low``
        self._ahead: dict[str, Signed[Checkpoint]] = {}  # per replica: its vote above ``high``
        self._behind: tuple[int, bytes, tuple[Signed[Checkpoint], ...]] | None = None
        self._stalled = 0  # ticks without execution while ``_behind`` is above us
        self._fetch: _Fetch | None = None
        # Genesis, so that a replica stuck before its first checkpoint can announce it too.
        self._snapshots[0] = self._snapshot_now()
        self._far_from: str | None = None  # a replica that spoke far above our window
        self._low_vote_cache: Signed[Checkpoint] | None = None
        # Recovery: (view, seq) → digest this replica pre-prepared, prepared or committed
        # before a restart, for seqs that did not fit the recovered window; it never accepts
        # another digest there (dropped as the low watermark passes them).
        self._spoken: dict[tuple[int, int], bytes] = {}

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
        elif isinstance(m, ViewChange):
            self._on_view_change(cast("Signed[ViewChange]", signed), m, out)
        elif isinstance(m, NewView):
            self._on_new_view(cast("Signed[NewView]", signed), m, out)
        elif isinstance(m, FetchState):
            self._on_fetch_state(m, out)
        elif isinstance(m, StateChunk):
            self._on_state_chunk(m, out)
        else:
            self._ignored["unexpected"] += 1  # replies are for clients

    def tick(self) -> Ready:
        """Advance time by one unit.

        The primary sends a pre-prepare for a partial batch; a backup's view-change timer
        advances (and may expire); every ``retransmit_every`` ticks, unfinished work is re-sent.
        """
        out = _Out()
        self._ticks += 1
        self._helped.clear()
        self._helped_low.clear()
        if self.is_primary and self.active:
            self._flush(out, partial=True)
        self._tick_timer(out)
        self._tick_state_transfer(out)
        if self._ticks % self.config.retransmit_every == 0:
            self._retransmit(out)
        return out.ready()

    def checkpoint_state(self, seq: int) -> bytes | None:
        """The encoded state (:func:`encode_state`) of this replica's own checkpoint ``seq``,
        if it still holds it (checkpoints at or above the low watermark). A node keeps the
        client table from it with the stable checkpoint, for :meth:`recover`."""
        snap = self._snapshots.get(seq)
        return None if snap is None else b"".join(snap.chunks)

    def recover(
        self,
        checkpoint: StableCheckpoint | None,
        state: bytes | None,
        persisted: Sequence[Signed[Message]],
    ) -> Ready:
        """Restart a new replica from what an earlier run of it left on disk.

        Restores the stable ``checkpoint`` (its ``state``, an :func:`encode_state` whose chunk
        root must be the checkpoint's digest; genesis when ``checkpoint`` is None) as state
        transfer would, then replays ``persisted`` (every ``Ready.persist`` of the earlier run
        since that checkpoint, in order) so that this replica never signs a second, different
        message for a ``(view, seq)`` it already spoke about:

        - its view is the highest view of any persisted message; if its latest message there
          is its own ``ViewChange`` (no ``NewView`` for that view persisted), it is still
          changing view, else the persisted ``NewView`` (if any) installed it;
        - in that view, the persisted pre-prepares (and the ``NewView``'s O) fill the slots in
          the window, with its own prepares and commits and the prepares of its prepared
          certificates; a primary's next seq goes above every seq it pre-prepared;
        - prepared certificates (for later view changes) come back from the persisted prepares
          and from its own latest ``ViewChange``;
        - for seqs above the window, the digests it spoke about are remembered, and a
          pre-prepare with another digest is refused there (``conflicting``).

        The slots above the checkpoint commit again through the normal protocol (its own
        retransmissions and the other replicas' answers), and execute again: the caller sees
        them in ``Ready.committed`` once more, identical to the first time.

        Args:
            checkpoint: The last stable checkpoint saved, or None for genesis.
            state: The replica state at ``checkpoint`` (ignored for genesis).
            persisted: The persisted messages, in the order they were persisted.

        Returns:
            Effects to handle as usual (nothing to persist; possibly messages to send).

        Raises:
            LedgerError: The replica is not new, or ``state`` does not match the checkpoint's
                digest or does not decode.
        """
        if self._ticks or self.last_executed or self.low or self.view or self._slots:
            raise LedgerError("recover needs a new replica")
        out = _Out()
        if checkpoint is not None and checkpoint.seq > 0:
            chunks = state_chunks(state or b"", self.config.state_chunk_size)
            leaves = [leaf_hash(c) for c in chunks]
            if root_from_leaf_hashes(leaves) != checkpoint.state_digest:
                raise LedgerError(
                    f"the recovered state does not give the digest of checkpoint {checkpoint.seq}"
                )
            fetch = _Fetch(
                checkpoint.seq,
                checkpoint.state_digest,
                checkpoint.proof,
                (),
                total=len(chunks),
                chunks=dict(enumerate(chunks)),
            )
            self._restore(fetch, out)
            if self.last_executed != checkpoint.seq:
                raise LedgerError(f"the state of checkpoint {checkpoint.seq} does not decode")
        self._replay(persisted)
        return Ready(messages=tuple(out.messages))

    def _replay(self, persisted: Sequence[Signed[Message]]) -> None:
        """Rebuild view, slots and prepared certificates from ``persisted`` (see recover)."""
        f, low = self.membership.f, self.low
        pps: dict[tuple[int, int], Signed[PrePrepare]] = {}  # (view, seq) → stripped
        full: dict[bytes, _Batch] = {}
        prepares: dict[tuple[int, int], dict[str, Signed[Prepare]]] = {}
        commits: dict[tuple[int, int], Signed[Commit]] = {}  # own
        new_views: dict[int, Signed[NewView]] = {}
        own_vc: Signed[ViewChange] | None = None
        view = 0
        for signed in persisted:
            m = signed.message
            if isinstance(m, PrePrepare):
                view = max(view, m.view)
                if m.seq > low:
                    spp = cast("Signed[PrePrepare]", signed)
                    stripped = Signed(m.stripped(), spp.signer, spp.signature, spp.chain_id)
                    pps[(m.view, m.seq)] = stripped
                    if m.batch is not None:
                        full[m.digest] = (m.origin, m.batch)
                    self._spoken[(m.view, m.seq)] = m.digest
            elif isinstance(m, Prepare):
                view = max(view, m.view)
                if m.seq > low:
                    prepares.setdefault((m.view, m.seq), {})[signed.signer] = cast(
                        "Signed[Prepare]", signed
                    )
                    if signed.signer == self.id:
                        self._spoken[(m.view, m.seq)] = m.digest
            elif isinstance(m, Commit) and signed.signer == self.id:
                view = max(view, m.view)
                if m.seq > low:
                    commits[(m.view, m.seq)] = cast("Signed[Commit]", signed)
                    self._spoken[(m.view, m.seq)] = m.digest
            elif isinstance(m, ViewChange) and signed.signer == self.id:
                view = max(view, m.new_view)
                if own_vc is None or own_vc.message.new_view <= m.new_view:
                    own_vc = cast("Signed[ViewChange]", signed)
            elif isinstance(m, NewView):
                view = max(view, m.view)
                new_views[m.view] = cast("Signed[NewView]", signed)
                for spp in m.pre_prepares:
                    if spp.message.seq > low:
                        pps[(m.view, spp.message.seq)] = spp
        # Prepared certificates: our latest view change's, then any persisted one above it.
        if own_vc is not None:
            for cert in own_vc.message.prepared:
                if cert.seq > low:
                    self._prepared[cert.seq] = cert
        for (v, seq), spp in sorted(pps.items()):
            digest = spp.message.digest
            primary = self.membership.primary(v)
            matching = sorted(
                (
                    p
                    for p in prepares.get((v, seq), {}).values()
                    if p.message.digest == digest and p.signer != primary
                ),
                key=lambda p: p.signer,
            )
            seen = self._prepared.get(seq)
            if len(matching) >= 2 * f and (seen is None or seen.view <= v):
                self._prepared[seq] = PreparedCertificate(spp, tuple(matching))
        self._batches.update(full)
        self.view = view
        nv = new_views.get(view)
        if nv is None and own_vc is not None and own_vc.message.new_view == view:
            # Crashed while changing view: carry on waiting for that view's NewView.
            self.active = False
            self._own_view_change = own_vc
            self._view_changes[self.id] = own_vc
            self.view_change_log.append((view, self.timeout))
            return
        self._new_view = nv
        top = low
        if nv is not None:
            top = max([top] + [spp.message.seq for spp in nv.message.pre_prepares])
        for (v, seq), spp in sorted(pps.items()):
            if v != view:
                continue
            if spp.signer == self.id:
                top = max(top, seq)
            if not self._in_window(seq):
                continue
            slot = self._slot(seq)
            slot.pre_prepare = spp
            for p in prepares.get((v, seq), {}).values():
                slot.prepares[p.signer] = p
            own_commit = commits.get((v, seq))
            if own_commit is not None:
                slot.commits[self.id] = own_commit
                slot.commit_sent = True
        self._next_seq = max(self._next_seq, top, self.last_executed)

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
        waiting = self._waiting.get(r.client)
        if waiting is None or waiting.message.timestamp < r.timestamp:
            # What the view-change timer watches: one (the latest) request per client.
            self._waiting[r.client] = cast("Signed[Request]", signed)
        if not self.is_primary or not self.active:
            # The client may not know the primary; relay, the primary de-duplicates.
            if self.active:
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
            digest = batch_digest(batch, self.view)
            pp = PrePrepare(self.view, self._next_seq, digest, batch, self.view)
            signed = self._emit(out, pp)
            self._slot(pp.seq).pre_prepare = signed
            self._batches[pp.digest] = (self.view, batch)
            # The primary's pre-prepare stands for its prepare; prepares may already be here.
            self._advance(pp.seq, out)

    # --- three phases ------------------------------------------------------------------------

    def _admit(self, signed: Signed[Message], view: int, seq: int, out: _Out) -> bool:
        """Common view and watermark filter; holds or counts what it refuses."""
        if view != self.view:
            self._ignored["other_view"] += 1
            if view < self.view:
                self._help_lagging(signed.signer, out)
            return False
        if not self.active:
            self._ignored["in_view_change"] += 1  # §4.4: no normal case while changing view
            return False
        return self._window_ok(signed, seq, out)

    def _window_ok(self, signed: Signed[Message], seq: int, out: _Out) -> bool:
        if self._in_window(seq):
            return True
        # A checkpoint vote at ``low`` itself is a late vote, not a sign of a laggard.
        below = seq < self.low or (seq == self.low and not isinstance(signed.message, Checkpoint))
        sender = signed.signer
        if below and self.low_proof and self._help_once(sender):
            # Its sender works below our stable checkpoint, whose log we collected: send it
            # the proof (2f+1 checkpoints signed by others) so it can fetch the state.
            for vote in self.low_proof:
                out.messages.append(Send(sender, _erase(vote)))
        room = (2 * self.membership.n + 1) * self.membership.log_window
        if self.high < seq <= self.high + self.membership.log_window and len(self._held) < room:
            self._held.append(signed)
        else:
            self._ignored["out_of_window"] += 1
            if seq > self.high and signed.signer in self.membership.replicas:
                self._far_from = signed.signer  # we are far behind: ask it (next retransmit)
        return False

    def _on_pre_prepare(self, signed: Signed[Message], pp: PrePrepare, out: _Out) -> None:
        if not self._admit(signed, pp.view, pp.seq, out):
            return
        if pp.batch is None or signed.signer != self.membership.primary(pp.view):
            self._ignored["unexpected"] += 1  # open_frame refuses both; defence in depth
            return
        slot = self._slot(pp.seq)
        if slot.pre_prepare is not None:
            same = slot.pre_prepare.message.digest == pp.digest
            self._ignored["duplicate" if same else "conflicting"] += 1
            if same and pp.digest not in self._batches and pp.batch is not None:
                # A new view's O carries no batches; a re-sent full pre-prepare supplies it.
                self._batches[pp.digest] = (pp.origin, pp.batch)
                self._execute_ready(out)
            elif same and slot.committed:
                self._help_slot(signed.signer, pp.seq, out)
            return
        if pp.batch and pp.origin != pp.view:
            # Only a new view's O may propose an earlier view's batch again, and O is in the
            # slot already: a new batch is built in the view it is proposed in.
            self._ignored["conflicting"] += 1
            return
        spoken = self._spoken.get((pp.view, pp.seq))
        if spoken is not None and spoken != pp.digest:
            # Before a restart we spoke about another digest here: never prepare a second one.
            self._ignored["conflicting"] += 1
            return
        slot.pre_prepare = cast("Signed[PrePrepare]", signed)
        self._batches[pp.digest] = (pp.origin, pp.batch)
        out.persist.append(signed)
        if not self.is_primary:
            prepare = Prepare(pp.view, pp.seq, pp.digest, self.id)
            slot.prepares[self.id] = self._emit(out, prepare)
        self._advance(pp.seq, out)

    def _on_prepare(self, signed: Signed[Message], p: Prepare, out: _Out) -> None:
        if not self._admit(signed, p.view, p.seq, out):
            return
        slot = self._slot(p.seq)
        seen = slot.prepares.get(p.replica)
        if seen is not None:
            self._ignored["duplicate" if seen.message.digest == p.digest else "conflicting"] += 1
            if seen.message.digest == p.digest and slot.committed:
                # A re-sent prepare for a slot we committed: its sender is behind on it. We
                # answer with commits only, which never trigger answers: no ping-pong.
                self._help_slot(signed.signer, p.seq, out)
            return
        slot.prepares[p.replica] = cast("Signed[Prepare]", signed)
        self._advance(p.seq, out)

    def _on_commit(self, signed: Signed[Message], c: Commit, out: _Out) -> None:
        if not self._admit(signed, c.view, c.seq, out):
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
        pp = slot.pre_prepare
        digest = pp.message.digest
        f = self.membership.f
        if not slot.commit_sent:
            primary = self.membership.primary(self.view)
            matching = sorted(
                (p for p in slot.prepares.values() if p.message.digest == digest),
                key=lambda p: p.signer,
            )
            matching = [p for p in matching if p.signer != primary]  # 2f from backups
            if len(matching) >= 2 * f:
                slot.commit_sent = True
                stripped = Signed(pp.message.stripped(), pp.signer, pp.signature, pp.chain_id)
                self._prepared[seq] = PreparedCertificate(stripped, tuple(matching))
                # The others' prepares of the certificate are persisted with our commit, so a
                # restarted replica still holds its prepared certificates for view changes.
                out.persist.extend(_erase(p) for p in matching if p.signer != self.id)
                commit = Commit(self.view, seq, digest, self.id)
                slot.commits[self.id] = self._emit(out, commit)
        matching_commits = sum(1 for c in slot.commits.values() if c.message.digest == digest)
        # 2f+1 matching commits prove f+1 correct replicas prepared it: executing is safe even
        # before our own prepares arrive (a laggard catching up relies on this).
        if matching_commits < self.membership.quorum:
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
            found = self._batches.get(pp.digest)
            if found is None:
                return  # committed without its batch (from a NewView): wait for a re-send
            origin, batch = found
            for signed in batch:
                self._execute_one(signed.message, out)
            self.state_machine.end_batch(origin if batch else None, pp.seq)
            self.last_executed = pp.seq
            self._stalled = 0
            if self._fetch is not None and self._fetch.seq <= pp.seq:
                self._fetch = None  # the normal case got there first
            out.committed.append(CommittedBatch(pp.view, pp.seq, pp.digest, batch))
            if pp.seq % self.config.checkpoint_interval == 0:
                self._take_checkpoint(pp.seq, out)

    def _execute_one(self, r: Request, out: _Out) -> None:
        key = (r.client, r.timestamp)
        self._in_flight.discard(key)
        waiting = self._waiting.get(r.client)
        if waiting is not None and waiting.message.timestamp <= r.timestamp:
            del self._waiting[r.client]
        # Progress: the timer restarts and the back-off ends (§4.4: "executes a request").
        self._elapsed = 0
        self.timeout = self.config.view_change_timeout
        last = self._last_reply.get(r.client)
        if last is not None and r.timestamp <= last.message.timestamp:
            # Same decision on every replica (it depends only on the executed prefix), so the
            # states stay equal even when a faulty primary batches a request twice.
            self._ignored["stale_request"] += 1
            return
        result = self.state_machine.execute(r)
        reply = Reply(self.view, r.timestamp, r.client, self.id, result)
        self._last_reply[r.client] = self._emit(out, reply, to=r.client)

    def _state_table(self) -> dict[str, tuple[int, bytes]]:
        return {c: (r.message.timestamp, r.message.result) for c, r in self._last_reply.items()}

    def _take_checkpoint(self, seq: int, out: _Out) -> None:
        snap = self._snapshots[seq] = self._snapshot_now()
        digest = self._own_checkpoints[seq] = snap.digest
        signed = self._emit(out, Checkpoint(seq, digest, self.id))
        self._checkpoints.setdefault(seq, {})[self.id] = signed
        self._check_stable(seq, out)

    def _on_checkpoint(self, signed: Signed[Message], c: Checkpoint, out: _Out) -> None:
        if c.seq > self.high:
            # Ahead of our window: besides holding or dropping it as any message, remember one
            # vote per replica (its highest), so memory stays bounded by n, and fetch the state
            # once 2f+1 agree (the normal case cannot get us there).
            seen_ahead = self._ahead.get(c.replica)
            if seen_ahead is None or seen_ahead.message.seq < c.seq:
                self._ahead[c.replica] = cast("Signed[Checkpoint]", signed)
                votes_ahead = [v for v in self._ahead.values() if v.message.seq == c.seq]
                self._certified(c.seq, votes_ahead, out, at_once=True)
        if c.seq == self.low and c.replica != self.id:
            self._help_after_low(c.replica, out)
        if not self._window_ok(signed, c.seq, out):
            return
        votes = self._checkpoints.setdefault(c.seq, {})
        seen = votes.get(c.replica)
        if seen is not None:
            same = seen.message.state_digest == c.state_digest
            self._ignored["duplicate" if same else "conflicting"] += 1
            return
        votes[c.replica] = cast("Signed[Checkpoint]", signed)
        self._check_stable(c.seq, out)
        if c.seq > self.last_executed:
            self._certified(c.seq, list(votes.values()), out, at_once=False)

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
        self._make_stable(seq, proof, out)

    def _make_stable(self, seq: int, proof: tuple[Signed[Checkpoint], ...], out: _Out) -> None:
        """Move the low watermark to ``seq`` (proved by ``proof``) and collect the log."""
        self._set_low(seq, self._own_checkpoints[seq], proof, out)

    def _set_low(
        self, seq: int, digest: bytes, proof: tuple[Signed[Checkpoint], ...], out: _Out
    ) -> None:
        """Move the low watermark to the certified checkpoint ``seq`` and collect the log.

        ``seq`` may be above ``last_executed`` (state transfer): the slots below it are
        dropped too, since the fetched state replaces their execution.
        """
        self.low, self.low_digest, self.low_proof = seq, digest, proof
        # Garbage collection: nothing at or below the stable checkpoint is needed any more.
        self._snapshots = {s: snap for s, snap in self._snapshots.items() if s >= seq}
        self._ahead = {r: v for r, v in self._ahead.items() if v.message.seq > self.high}
        self._slots = {s: slot for s, slot in self._slots.items() if s > seq}
        self._checkpoints = {s: v for s, v in self._checkpoints.items() if s > seq}
        self._own_checkpoints = {s: d for s, d in self._own_checkpoints.items() if s > seq}
        self._prepared = {s: c for s, c in self._prepared.items() if s > seq}
        self._spoken = {k: d for k, d in self._spoken.items() if k[1] > seq}
        live = {sl.pre_prepare.message.digest for sl in self._slots.values() if sl.pre_prepare}
        live |= {c.digest for c in self._prepared.values()} | {NULL_DIGEST}
        self._batches = {d: b for d, b in self._batches.items() if d in live}
        out.stable = StableCheckpoint(seq, digest, proof)
        held, self._held = self._held, []
        for message in held:  # each goes through the filters again: some are held once more
            self._dispatch(message, out)
        if self.is_primary and self.active:
            self._flush(out, partial=False)  # the window just moved: full batches may go now

    # --- view change (§4.4) ------------------------------------------------------------------

    def _tick_timer(self, out: _Out) -> None:
        """The view-change timer: backups waiting on a request, and replicas changing view."""
        if (self.active and (self.is_primary or not self._waiting)) or self._lagging:
            # While we know we are behind, the delay is ours, not the primary's.
            self._elapsed = 0
            return
        if not self.active and self._view_change_votes() < self.membership.quorum:
            # Paper §4.5.2: the timer for the view we are moving to starts only once 2f+1
            # replicas (us included) want it. A replica whose timer ran out alone waits here
            # for the others (or for a NewView) instead of climbing views nobody else will
            # install, from which it could never come back.
            self._elapsed = 0
            return
        self._elapsed += 1
        if self._elapsed < self.timeout:
            return
        self._start_view_change(self.view + 1, out)

    def _view_change_votes(self) -> int:
        """Replicas (this one included) whose latest view change is for ``view`` or later (one
        that gave up on ``view`` already wanted to leave the views before it too)."""
        return sum(1 for s in self._view_changes.values() if s.message.new_view >= self.view)

    def _start_view_change(self, new_view: int, out: _Out) -> None:
        """Leave the current view: stop the normal case, send ⟨VIEW-CHANGE, new_view, …⟩."""
        if not self.active:
            # The view we were moving to did not install (our timer ran out, or f+1 others
            # gave up on it): wait twice as long for the next one.
            self.timeout *= 2
        self.view, self.active, self._elapsed = new_view, False, 0
        self.view_change_log.append((new_view, self.timeout))
        # The old view's slots are superseded by the NewView's O; what must survive them (the
        # prepared certificates) is in ``_prepared``.
        self._slots = {}
        self._held = []  # all for the old view
        self._pending.clear()
        self._in_flight.clear()
        prepared = tuple(self._prepared[s] for s in sorted(self._prepared) if s > self.low)
        vc = ViewChange(new_view, self.low, self.low_proof, prepared, self.id)
        self._own_view_change = self._emit(out, vc)
        self._view_changes[self.id] = self._own_view_change
        self._maybe_new_view(out)

    def _on_view_change(self, signed: Signed[ViewChange], vc: ViewChange, out: _Out) -> None:
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            # Its sender is behind us: the NewView we hold lets it catch up.
            self._ignored["other_view"] += 1
            self._help_lagging(signed.signer, out)
            return
        seen = self._view_changes.get(vc.replica)
        if seen is not None and seen.message.new_view >= vc.new_view:
            self._ignored["duplicate"] += 1
            return
        self._view_changes[vc.replica] = signed
        # Liveness rule: f+1 replicas want a later view, so at least one correct one does; join
        # the smallest such view rather than wait for our own timer.
        later = sorted(
            v.message.new_view
            for r, v in self._view_changes.items()
            if r != self.id and v.message.new_view > self.view
        )
        if len(later) >= self.membership.f + 1:
            self._start_view_change(later[0], out)
            return
        self._maybe_new_view(out)

    def _maybe_new_view(self, out: _Out) -> None:
        """As the next view's primary, send NewView once 2f+1 view changes (ours too) are in."""
        if self.active or self.membership.primary(self.view) != self.id:
            return
        v = sorted(
            (s for s in self._view_changes.values() if s.message.new_view == self.view),
            key=lambda s: s.signer,
        )
        if len(v) < self.membership.quorum or self.id not in {s.signer for s in v}:
            return
        chain = self.membership.chain_id
        o = tuple(
            sign(pp, self._key, signer=self.id, chain_id=chain)
            for pp in new_view_pre_prepares(self.view, [s.message for s in v])
        )
        signed = self._emit(out, NewView(self.view, tuple(v), o))
        self._install(signed, out)
        for spp in o:  # O carries no batches: send the full pre-prepares we can
            full = self._full(spp)
            if full is not None:
                out.messages.append(Send(None, full))

    def _on_new_view(self, signed: Signed[NewView], nv: NewView, out: _Out) -> None:
        if nv.view < self.view or (nv.view == self.view and self.active):
            self._ignored["duplicate" if nv.view == self.view else "other_view"] += 1
            return
        # open_frame checked V and O; the core re-checks what is cheap (no signatures), so a
        # caller that skipped the edge cannot move it to a view with a wrong O.
        vcs = [s.message for s in nv.view_changes]
        signers = {s.signer for s in nv.view_changes}
        if (
            signed.signer != self.membership.primary(nv.view)
            or len(signers) < self.membership.quorum
            or any(vc.new_view != nv.view for vc in vcs)
            or tuple(s.message for s in nv.pre_prepares) != new_view_pre_prepares(nv.view, vcs)
        ):
            self._ignored["invalid_view_change"] += 1
            return
        out.persist.append(_erase(signed))
        self._install(signed, out)

    def _install(self, signed: Signed[NewView], out: _Out) -> None:
        """Enter ``signed``'s view and re-process its O (pre-prepares and null requests)."""
        nv = signed.message
        self.view, self.active, self._elapsed = nv.view, True, 0
        self._new_view = signed
        self._slots = {}
        self._pending.clear()
        self._in_flight.clear()
        self._view_changes = {
            r: v for r, v in self._view_changes.items() if v.message.new_view > nv.view
        }
        best = max(nv.view_changes, key=lambda s: s.message.checkpoint_seq)
        min_s = best.message.checkpoint_seq
        min_digest = best.message.checkpoint_digest
        if min_s > self.low and self._own_checkpoints.get(min_s) == min_digest:
            # We executed that far with the same state: V's proof makes the checkpoint stable.
            self._make_stable(min_s, best.message.checkpoint_proof, out)
        elif min_s > self.last_executed and min_digest is not None:
            # The others collected their logs past us: move the window there now (so O's
            # entries fit) and fetch the certified state; execution resumes above it.
            self._adopt(min_s, min_digest, best.message.checkpoint_proof, out)
        top = min_s
        for spp in nv.pre_prepares:
            pp = spp.message
            top = max(top, pp.seq)
            if not self._in_window(pp.seq):
                continue
            slot = self._slot(pp.seq)
            slot.pre_prepare = spp
            if not self.is_primary:
                prepare = Prepare(pp.view, pp.seq, pp.digest, self.id)
                slot.prepares[self.id] = self._emit(out, prepare)
        if self.is_primary:
            self._next_seq = max(top, self.last_executed)
            for req in self._waiting.values():  # requests the old primary never ordered
                key = (req.message.client, req.message.timestamp)
                self._pending[key] = req
        else:
            for req in self._waiting.values():
                out.messages.append(Send(self.membership.primary(self.view), _erase(req)))

    def _full(self, spp: Signed[PrePrepare]) -> Signed[Message] | None:
        """``spp`` with its batch (the signature covers only the digest), if we have it."""
        if spp.message.batch is not None:
            return _erase(spp)
        found = self._batches.get(spp.message.digest)
        if found is None:
            return None
        origin, batch = found
        full = PrePrepare(spp.message.view, spp.message.seq, spp.message.digest, batch, origin)
        return _erase(Signed(full, spp.signer, spp.signature, spp.chain_id))

    # --- retransmission ----------------------------------------------------------------------

    def _retransmit(self, out: _Out) -> None:
        """Re-send this replica's latest messages for unfinished work, so drops heal.

        Nothing here is new (nothing is persisted); receivers count repeats as duplicates.
        """
        if not self.active:
            if self._own_view_change is not None:
                out.messages.append(Send(None, _erase(self._own_view_change)))
            return
        sent = 0
        for seq in sorted(self._slots):
            if sent >= self.config.retransmit_limit:
                break
            slot = self._slots[seq]
            if slot.pre_prepare is None:
                continue
            done = seq <= self.last_executed
            if done:
                if slot.resends >= self.config.retransmit_rounds:
                    continue
                slot.resends += 1
            sent += 1
            if self.is_primary:
                full = self._full(slot.pre_prepare)
                if full is not None:
                    out.messages.append(Send(None, full))
            elif not done and self.id in slot.prepares:
                out.messages.append(Send(None, _erase(slot.prepares[self.id])))
            if self.id in slot.commits:
                out.messages.append(Send(None, _erase(slot.commits[self.id])))
        for seq in sorted(self._own_checkpoints):
            own = self._checkpoints.get(seq, {}).get(self.id)
            if own is not None and seq > self.low:
                out.messages.append(Send(None, _erase(own)))
        if not self.is_primary:
            for req in list(self._waiting.values())[: self.config.retransmit_limit]:
                out.messages.append(Send(self.membership.primary(self.view), _erase(req)))
        if self._waiting and self.last_executed + 1 not in self._slots and self._fetch is None:
            # Requests wait, and we know nothing of the next seq (missed, or collected from
            # the others' retransmissions before we got there): announce our checkpoint; a
            # replica at the same one answers with the slots after it, one further with its
            # stable-checkpoint proof.
            vote = self._low_vote()
            if vote is not None:
                out.messages.append(Send(None, _erase(vote)))
        if self._far_from is not None and self._fetch is None:
            # Something arrived far above our window: ask its sender where it is (it answers
            # a FetchState below its low watermark with its stable-checkpoint proof).
            self._send(out, FetchState(self.low, 0, self.id), self._far_from)
            self._far_from = None

    def _help_slot(self, to: str, seq: int, out: _Out) -> None:
        """``to`` re-sent a message for ``seq``, which we committed: send it our commit and the
        full pre-prepare (commits and pre-prepares never trigger help, so this cannot loop)."""
        slot = self._slots.get(seq)
        if slot is None or slot.pre_prepare is None or to == self.id:
            return
        full = self._full(slot.pre_prepare)
        if full is not None:
            out.messages.append(Send(to, full))
        if self.id in slot.commits:
            out.messages.append(Send(to, _erase(slot.commits[self.id])))

    def _help_lagging(self, to: str, out: _Out) -> None:
        """``to`` spoke in an older view: send it the NewView that installed ours (once per
        tick per replica, since a laggard may have many old messages in flight)."""
        if self._new_view is None or to == self.id or to in self._helped:
            return
        if to not in self.membership.replicas:
            return
        self._helped.add(to)
        out.messages.append(Send(to, _erase(self._new_view)))

    # --- state transfer ----------------------------------------------------------------------

    @property
    def _lagging(self) -> bool:
        return self._fetch is not None or self._behind is not None

    def _snapshot_now(self) -> _Snapshot:
        state = encode_state(self.state_machine.snapshot(), self._state_table())
        chunks = state_chunks(state, self.config.state_chunk_size)
        leaves = [leaf_hash(c) for c in chunks]
        return _Snapshot(chunks, leaves, root_from_leaf_hashes(leaves))

    def _send(self, out: _Out, message: Message, to: str) -> None:
        """Sign and send without persisting: state-transfer traffic is re-derivable."""
        signed = sign(message, self._key, signer=self.id, chain_id=self.membership.chain_id)
        out.messages.append(Send(to, _erase(signed)))

    def _certified(
        self, seq: int, votes: list[Signed[Checkpoint]], out: _Out, *, at_once: bool
    ) -> None:
        """``votes`` for ``seq`` (above what we executed): if 2f+1 agree on a digest, the
        checkpoint is stable elsewhere; fetch it now (``at_once``) or once we stall."""
        by_digest: dict[bytes, list[Signed[Checkpoint]]] = {}
        for v in votes:
            by_digest.setdefault(v.message.state_digest, []).append(v)
        for digest, agreeing in by_digest.items():
            if len(agreeing) < self.membership.quorum:
                continue
            proof = tuple(sorted(agreeing, key=lambda v: v.signer))
            if at_once:
                self._adopt(seq, digest, proof, out)
            elif self._behind is None or self._behind[0] < seq:
                self._behind = (seq, digest, proof)
            return

    def _adopt(
        self, seq: int, digest: bytes, proof: tuple[Signed[Checkpoint], ...], out: _Out
    ) -> None:
        """Take the certified checkpoint ``seq`` as low watermark and fetch its state."""
        if seq <= self.last_executed or (self._fetch is not None and self._fetch.seq >= seq):
            return
        if seq > self.low:
            self._set_low(seq, digest, proof, out)
        self._behind = None
        sources = tuple(v.signer for v in proof if v.signer != self.id)
        self._fetch = _Fetch(seq, digest, proof, sources)
        self._fetch_more(out)

    def _tick_state_transfer(self, out: _Out) -> None:
        behind = self._behind
        if behind is not None:
            if behind[0] <= self.last_executed:
                self._behind = None
            else:
                self._stalled += 1
                stuck = self._waiting and self.last_executed + 1 not in self._slots
                if stuck or self._stalled >= self.config.fetch_after:
                    # Stuck at a gap (requests wait, no next slot): nothing will fill it.
                    self._adopt(*behind, out)
        fetch = self._fetch
        if fetch is None:
            return
        late = [
            i for i, at in fetch.asked.items() if self._ticks - at >= self.config.retransmit_every
        ]
        if late:
            # No answer in time: ask another replica (the source may be slow, faulty or down).
            for i in late:
                del fetch.asked[i]
            fetch.source += 1
        self._fetch_more(out)

    def _fetch_more(self, out: _Out) -> None:
        """Ask the current source for missing chunks, at most ``fetch_parallel`` at a time."""
        fetch = self._fetch
        if fetch is None or not fetch.sources:
            return
        to = fetch.sources[fetch.source % len(fetch.sources)]
        wanted = range(fetch.total) if fetch.total is not None else range(1)
        for i in wanted:
            if len(fetch.asked) >= self.config.fetch_parallel:
                return
            if i in fetch.chunks or i in fetch.asked:
                continue
            fetch.asked[i] = self._ticks
            self._send(out, FetchState(fetch.seq, i, self.id), to)

    def _on_fetch_state(self, m: FetchState, out: _Out) -> None:
        if m.replica == self.id:
            return
        snap = self._snapshots.get(m.seq)
        if snap is not None and m.chunk < len(snap.chunks):
            proof = tuple(inclusion_proof(snap.leaves, m.chunk))
            chunk = StateChunk(
                m.seq, snap.digest, m.chunk, len(snap.chunks), snap.chunks[m.chunk], proof, self.id
            )
            self._send(out, chunk, m.replica)
        elif m.seq < self.low and m.chunk == 0:
            # It asks for a state we collected: tell it where we are (the proof is 2f+1
            # checkpoints signed by others, so it can check them itself).
            for vote in self.low_proof:
                out.messages.append(Send(m.replica, _erase(vote)))
        else:
            self._ignored["unexpected"] += 1

    def _on_state_chunk(self, m: StateChunk, out: _Out) -> None:
        fetch = self._fetch
        if fetch is None or m.seq != fetch.seq:
            self._ignored["unexpected"] += 1  # late, or for a fetch we gave up
            return
        # The edge checked the proof against the digest the chunk names; what matters is the
        # digest the 2f+1 proof certifies (a faulty replica can prove chunks of a fake state).
        ok = (
            m.state_digest == fetch.digest
            and m.total <= self.config.max_state_chunks
            and (fetch.total is None or m.total == fetch.total)
            and len(m.data) <= self.config.state_chunk_size
            and _verify_inclusion(leaf_hash(m.data), m.chunk, m.total, m.proof, fetch.digest)
        )
        if not ok:
            self._ignored["bad_chunk"] += 1
            fetch.asked.pop(m.chunk, None)  # asked again on a later tick, from the next replica
            if fetch.sources and fetch.sources[fetch.source % len(fetch.sources)] == m.replica:
                fetch.source += 1
            return
        if m.chunk in fetch.chunks:
            self._ignored["duplicate"] += 1
            return
        fetch.total = m.total
        fetch.chunks[m.chunk] = m.data
        fetch.asked.pop(m.chunk, None)
        if len(fetch.chunks) == fetch.total:
            self._restore(fetch, out)
        else:
            self._fetch_more(out)

    def _restore(self, fetch: _Fetch, out: _Out) -> None:
        """Install the fetched state as of checkpoint ``fetch.seq`` and resume above it."""
        assert fetch.total is not None
        chunks = [fetch.chunks[i] for i in range(fetch.total)]
        self._fetch = None
        try:
            app, table = decode_state(b"".join(chunks))
            self.state_machine.restore(app)
        except LedgerError:
            # 2f+1 replicas signed this digest, so at least one correct one holds the state:
            # a malformed one means a bug, not an attack. Count it; the next proof retries.
            self._ignored["bad_chunk"] += 1
            return
        chain = self.membership.chain_id
        self._last_reply = {
            client: sign(
                Reply(self.view, ts, client, self.id, result),
                self._key,
                signer=self.id,
                chain_id=chain,
            )
            for client, (ts, result) in table.items()
        }
        for client, (ts, _) in table.items():
            waiting = self._waiting.get(client)
            if waiting is not None and waiting.message.timestamp <= ts:
                del self._waiting[client]
        self._pending = {k: r for k, r in self._pending.items() if k[1] > table.get(k[0], (0,))[0]}
        self.last_executed = fetch.seq
        self._next_seq = max(self._next_seq, fetch.seq)
        self._elapsed, self._stalled, self.timeout = 0, 0, self.config.view_change_timeout
        leaves = [leaf_hash(c) for c in chunks]
        self._snapshots[fetch.seq] = _Snapshot(chunks, leaves, fetch.digest)
        self._own_checkpoints[fetch.seq] = fetch.digest
        out.restored = StableCheckpoint(fetch.seq, fetch.digest, fetch.proof)
        if fetch.seq > self.low:
            self._set_low(fetch.seq, fetch.digest, fetch.proof, out)
        if self.active and self._new_view is not None and self._new_view.message.view == self.view:
            # O entries we skipped while they were above our window: take them up now.
            for spp in self._new_view.message.pre_prepares:
                pp = spp.message
                if not self._in_window(pp.seq) or pp.seq in self._slots:
                    continue
                slot = self._slot(pp.seq)
                slot.pre_prepare = spp
                if not self.is_primary:
                    slot.prepares[self.id] = self._emit(
                        out, Prepare(pp.view, pp.seq, pp.digest, self.id)
                    )
        self._execute_ready(out)

    def _low_vote(self) -> Signed[Checkpoint] | None:
        """Our own signed vote for ``low``, if we hold the state there (cached per seq)."""
        snap = self._snapshots.get(self.low)
        if snap is None:
            return None
        if self._low_vote_cache is None or self._low_vote_cache.message.seq != self.low:
            vote = Checkpoint(self.low, snap.digest, self.id)
            chain = self.membership.chain_id
            self._low_vote_cache = sign(vote, self._key, signer=self.id, chain_id=chain)
        return self._low_vote_cache

    def _help_after_low(self, to: str, out: _Out) -> None:
        """``to`` is at our stable checkpoint: send it the slots we executed after it (full
        pre-prepares and our commits; never answered, so no loop), once per tick."""
        if not self._help_once(to):
            return
        for seq in range(
            self.low + 1, min(self.last_executed, self.low + self.config.retransmit_limit) + 1
        ):
            self._help_slot(to, seq, out)

    def _help_once(self, to: str) -> bool:
        """Whether to help replica ``to`` now: once per tick per replica, as a laggard may
        have many messages in flight that each ask for the same help."""
        if to == self.id or to in self._helped_low or to not in self.membership.replicas:
            return False
        self._helped_low.add(to)
        return True
