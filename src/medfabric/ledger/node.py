"""The node core: one PBFT replica on the network, with its store and its block certificates.

A :class:`Node` wires the pure parts together on one asyncio event loop:

- a :class:`~medfabric.ledger.replica.Replica` whose state machine is a
  :class:`~medfabric.ledger.chain.NotarizationService`;
- a :class:`~medfabric.ledger.store.LedgerStore` (one SQLite file);
- a :class:`~medfabric.ledger.transport.Transport`, whose checked messages reach
  :meth:`Node._on_message`.

Message routing: a :class:`~medfabric.ledger.messages.BlockSignature` goes to the certificate
collector and never to the replica (whose ``step`` would count it as ``unexpected``); every
other message goes to ``replica.step``. A tick task calls ``replica.tick`` every
``tick_seconds``.

The Ready contract of ``replica.py`` is kept by :meth:`Node._handle`, synchronously, for each
``Ready`` before the replica is called again (the event loop runs one callback at a time and
``_handle`` never awaits):

1. ``store.persist(ready.persist)``: durable before anything is sent. If it fails, nothing of
   this ``Ready`` is sent (as if the messages were lost; the replica retransmits).
2. ``transport.send`` for each ``Send``.
3. The committed batches: the service has cut one header per batch; the node takes them
   (``take_built``), signs each with ``sign_block`` and broadcasts a signed ``BlockSignature``.
4. ``ready.stable_checkpoint`` (and ``ready.restored``) → ``store.save_checkpoint``.

Replies to clients: each ``Reply`` sent in step 2 is also handed to the listeners added with
:meth:`Node.add_reply_listener` (the HTTP API waits on them). A listener runs inline, must not
block, and an exception in it is logged and counted (``listener_errors``), never raised.
:meth:`Node.receive` hands a checked message to the node exactly as the transport does.

Certificates: per height the collector keeps this node's own header and the valid signatures
on it. A signature is verified against the own header's hash with the signer's replica key; one
that arrives before the own header is buffered (one per replica and height, and only for
heights at most ``membership.log_window`` above the last header cut here, so the buffer holds
at most ``n * log_window`` signatures). Once ``quorum`` (2f+1) valid signatures are in, the
certificate is the ``quorum`` lowest signer ids, sorted: one canonical certificate per block
whatever the arrival order. The block is checked with ``verify_block`` against the stored head
and appended in height order; a certified block waits for its predecessor. Own signatures are
re-broadcast every ``retransmit_every`` ticks while their block is not stored here, and
``retransmit_rounds`` more times after, so that a lost frame does not leave a peer short of a
quorum for ever.

SQLite writes (persist, append, checkpoints) run inline on the event loop: each is one short
transaction, and running them inline is what keeps "persist, then send" ordered without locks.

Errors: I/O errors (store, transport) are logged and counted, never raised out of the handler
or the tick loop; a local bug in the tick loop is logged with its traceback and the loop goes
on. Errors raised in the message handler are counted by the transport (``handler_errors``).

Stable checkpoints are saved (with the replica's client table at them) only once the blocks
up to them are stored, so that the service state at the saved checkpoint can always be rebuilt
from the store.

Restart recovery (:meth:`Node.start` on an existing store): the service is rebuilt at the
stored checkpoint ``C`` from block ``C - 1`` and the entry index, the replica recovers from it,
the client table and the persisted messages (:meth:`Replica.recover`, which checks the state
against the checkpoint's digest). Re-executed batches cut headers that must equal the stored
blocks: equal ones are skipped, a different one is fatal (:attr:`Node.failed`).

Block sync: when blocks above the stored head are known to be certified elsewhere (peers'
block signatures, ``ready.restored``, a peer's ``BlockData.head_next``) and the head does not
move, the node sends a :class:`~medfabric.ledger.messages.BlockRequest` to one peer at a time;
the :class:`~medfabric.ledger.messages.BlockData` answer's blocks are each checked with
``verify_block`` (chain to the head, certificate) before they are appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from medfabric.crypto.keys import SigningKey
from medfabric.ledger.blocks import (
    Block,
    BlockError,
    BlockHeader,
    CommitSig,
    block_hash,
    block_signing_bytes,
    decode_block,
    encode_block,
    sign_block,
    verify_block,
)
from medfabric.ledger.chain import BuiltBlock, NotarizationService
from medfabric.ledger.messages import (
    MAX_SYNC_BLOCKS,
    BlockData,
    BlockRequest,
    BlockSignature,
    LedgerError,
    Membership,
    Message,
    Reply,
    Signed,
    sign,
)
from medfabric.ledger.replica import (
    Ready,
    Replica,
    ReplicaConfig,
    StableCheckpoint,
    decode_state,
    encode_state,
)
from medfabric.ledger.store import LedgerStore
from medfabric.ledger.transport import Transport

__all__ = ["METRICS", "Node", "NodeConfig", "NodeError", "ReplyListener"]

logger = logging.getLogger(__name__)

SYNC_MAX_BYTES = 4 << 20
"""A :class:`BlockData` answer carries blocks up to about this many bytes (at least one)."""

METRICS: tuple[str, ...] = (
    "blocks_appended",
    "signatures_received",
    "signatures_invalid",
    "signatures_ignored",
    "block_errors",
    "store_errors",
    "send_errors",
    "tick_errors",
    "listener_errors",
    "blocks_synced",
    "sync_requests",
    "sync_invalid",
    "blocks_replayed",
)
"""The node's own counters (``Node.metrics`` adds the transport's as ``transport.<name>``)."""


ReplyListener = Callable[[Signed[Reply]], None]
"""Called with each signed ``Reply`` this node sends to a client (after it is persisted)."""


class NodeError(LedgerError):
    """A node is misconfigured or used in the wrong state."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node needs to run.

    Attributes:
        node_id: This node's replica id in ``membership``.
        signing_key: Its key; the verify key must be the membership's key for ``node_id``.
        membership: The chain's members (``chain_id`` names the store's chain too).
        listen: ``(host, port)`` to listen on; port 0 picks a free port.
        peers: Other replica id → ``(host, port)``; more can be added with
            ``node.transport.set_peer``.
        store_path: The node's SQLite file (created if missing).
        replica: Batching, checkpoint and timer tuning (timers count ticks).
        tick_seconds: Seconds between two ``replica.tick()`` calls.

    Raises:
        NodeError: ``node_id`` is not a replica, the key does not match,
            ``replica.checkpoint_interval`` exceeds ``membership.log_window``, or
            ``tick_seconds`` is not positive.
    """

    node_id: str
    signing_key: SigningKey
    membership: Membership
    listen: tuple[str, int]
    peers: Mapping[str, tuple[str, int]]
    store_path: Path
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    tick_seconds: float = 0.05

    def __post_init__(self) -> None:
        known = self.membership.replicas.get(self.node_id)
        if known is None:
            raise NodeError(f"node_id {self.node_id!r} is not a replica of the membership")
        if known.to_bytes() != self.signing_key.verify_key.to_bytes():
            raise NodeError(f"signing_key is not the membership's key for {self.node_id!r}")
        if self.replica.checkpoint_interval > self.membership.log_window:
            raise NodeError(
                f"replica.checkpoint_interval {self.replica.checkpoint_interval} exceeds "
                f"membership.log_window {self.membership.log_window}"
            )
        if not self.tick_seconds > 0:
            raise NodeError(f"tick_seconds must be > 0, got {self.tick_seconds}")


@dataclass(slots=True)
class _Height:
    """What the collector knows about one height that is not stored yet."""

    built: BuiltBlock | None = None
    valid: dict[str, bytes] = field(default_factory=dict)  # replica → verified signature
    early: dict[str, BlockSignature] = field(default_factory=dict)  # before the own header
    certified: bool = False


@dataclass(slots=True)
class _Own:
    """This node's signed ``BlockSignature`` for one height, kept for re-broadcast."""

    signed: Signed[BlockSignature]
    rounds_left: int  # re-broadcasts left once the block is stored here


class Node:
    """One ledger node: replica, store and transport on one event loop (module docstring).

    Example (inside a coroutine)::

        node = Node(NodeConfig("node-0", key, members, ("0.0.0.0", 7000), peers, Path("n0.db")))
        await node.start()
        ...
        await node.stop()

    Args:
        config: The node's configuration.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.id = config.node_id
        self.membership = config.membership
        self.chain_id = config.membership.chain_id
        self.service = NotarizationService(config.membership)
        self.replica = Replica(
            config.replica, config.membership, config.node_id, config.signing_key, self.service
        )
        self.transport = Transport(
            config.node_id,
            config.membership,
            chain_id=self.chain_id,
            listen=config.listen,
            peers=config.peers,
            on_message=self._on_message,
        )
        self._store: LedgerStore | None = None
        self._head: BlockHeader | None = None  # the stored head (cached)
        self._heights: dict[int, _Height] = {}  # above the stored head
        self._waiting: dict[int, Block] = {}  # certified, waiting for their predecessor
        self._own: dict[int, _Own] = {}
        self._last_built: int = -1  # height of the last header cut here
        self._ticks = 0
        self._metrics = dict.fromkeys(METRICS, 0)
        self._tick_task: asyncio.Task[None] | None = None
        self._reply_listeners: list[ReplyListener] = []
        self._state = "new"
        # Stable checkpoint (with its client table) waiting for its blocks to be stored: the
        # store keeps a checkpoint only once it holds the blocks up to it (restart recovery
        # rebuilds the service state from them).
        self._unsaved: tuple[StableCheckpoint, dict[str, tuple[int, bytes]]] | None = None
        # Block sync.
        self._sync_target = -1  # the highest height known to be certified elsewhere
        self._sync_seen = -1  # our height at the last sync check (no progress: ask)
        self._sync_peer = 0
        self._served: set[str] = set()  # peers answered this tick
        self.recovered_at: int | None = None  # checkpoint seq restart recovery started from
        self.failure: str | None = None
        self.failed = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, listen, and start ticking.

        Raises:
            NodeError: The node was already started.
            StoreError: The store cannot be opened (another chain, not a ledger store, …).
            OSError: The listen address cannot be bound.
        """
        if self._state != "new":
            raise NodeError(f"node {self.id!r} is {self._state}, not new")
        self._state = "starting"
        store = LedgerStore.open(self.config.store_path, chain_id=self.chain_id)
        try:
            self._head = store.head()
            ready = self._recover(store)
            await self.transport.start()
        except BaseException:
            store.close()
            self._state = "stopped"
            raise
        self._store = store
        self._last_built = self.height
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"node-{self.id}-tick")
        self._state = "running"
        self._handle(ready)
        # Ask every peer where it is: a node that was down learns how far to sync.
        self._send_block_request(None)

    def _recover(self, store: LedgerStore) -> Ready:
        """Restart recovery: rebuild the service at the stored stable checkpoint (from the
        blocks below it) and recover the replica from it and the persisted messages.

        Raises:
            NodeError: The store's blocks and checkpoint do not fit together.
        """
        checkpoint = store.checkpoint()
        persisted = store.persisted()
        state: bytes | None = None
        if checkpoint is not None and checkpoint.seq > 0:
            top = checkpoint.seq - 1  # block h holds batch h + 1
            block = store.block(top)
            if block is None:
                raise NodeError(
                    f"store {store.path} holds stable checkpoint {checkpoint.seq} but not "
                    f"block {top}"
                )
            try:
                self.service.restore_at(block.header, store.locations(top))
            except LedgerError as e:
                raise NodeError(f"store {store.path}: {e}") from e
            state = encode_state(self.service.snapshot(), store.checkpoint_clients())
        elif not persisted and self._head is None:
            return Ready()  # a new store: nothing to recover
        # The stored blocks above the checkpoint are executed again, and each must come out
        # as stored (``_own_header``): a header depends only on the batches executed.
        try:
            ready = self.replica.recover(checkpoint, state, persisted)
        except LedgerError as e:
            raise NodeError(f"store {store.path}: cannot recover the replica: {e}") from e
        self.recovered_at = 0 if checkpoint is None else checkpoint.seq
        logger.info(
            "node %s: recovered at checkpoint %d (view %d, %d persisted messages, %d blocks)",
            self.id,
            self.recovered_at,
            self.replica.view,
            len(persisted),
            self.height + 1,
        )
        return ready

    async def stop(self) -> None:
        """Stop ticking, close the transport, then the store. Safe to call more than once."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        self._state = "stopped"
        self._tick_stop()
        if self._tick_task is not None and self._tick_task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        await self.transport.stop()
        if self._store is not None:
            self._store.close()

    def _tick_stop(self) -> None:
        if self._tick_task is not None and self._tick_task is not asyncio.current_task():
            self._tick_task.cancel()

    def _fatal(self, reason: str) -> None:
        """A fault this node cannot repair (its own chain differs from what it re-executed):
        log it, stop handling anything, and set :attr:`failed` (the runner then stops)."""
        if self.failure is not None:
            return
        self.failure = reason
        logger.critical("node %s: %s; stopping", self.id, reason)
        self._state = "failed"
        self._tick_stop()
        self.failed.set()

    @property
    def store(self) -> LedgerStore:
        """The node's store (open between :meth:`start` and :meth:`stop`).

        Raises:
            NodeError: The node has not been started.
        """
        if self._store is None:
            raise NodeError(f"node {self.id!r} has no open store")
        return self._store

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._state == "running"

    @property
    def height(self) -> int:
        """Height of the stored head block; -1 before genesis."""
        return -1 if self._head is None else self._head.height

    @property
    def metrics(self) -> dict[str, int]:
        """The node's counters (:data:`METRICS`), ``transport.*`` and ``replica.ignored.*``."""
        out = dict(self._metrics)
        out.update({f"transport.{k}": v for k, v in self.transport.metrics.items()})
        out.update({f"replica.ignored.{k}": v for k, v in self.replica.ignored.items()})
        return out

    def status(self) -> dict[str, Any]:
        """A snapshot for operators: ids, view, progress, head and metrics."""
        return {
            "node": self.id,
            "view": self.replica.view,
            "primary": self.membership.primary(self.replica.view),
            "last_executed": self.replica.last_executed,
            "height": self.height,
            "head": None if self._head is None else block_hash(self._head).hex(),
            "sync_target": max(self._sync_target, self.height),
            "recovered_at": self.recovered_at,
            "metrics": self.metrics,
        }

    def add_reply_listener(self, listener: ReplyListener) -> Callable[[], None]:
        """Call ``listener`` with every ``Reply`` this node sends to a client from now on.

        Returns:
            A function that removes the listener again.
        """
        self._reply_listeners.append(listener)
        return lambda: self._reply_listeners.remove(listener)

    def receive(self, signed: Signed[Message]) -> None:
        """Handle a message that passed ``open_frame``, as if the transport had delivered it.

        Ignored unless the node is running. The effects are handled before this returns.
        """
        self._on_message(signed)

    # --- inputs ------------------------------------------------------------------------------

    def _on_message(self, signed: Signed[Message]) -> None:
        if self._state != "running":
            return
        if isinstance(signed.message, BlockSignature):
            self._metrics["signatures_received"] += 1
            self._on_block_signature(signed.message)
            return
        if isinstance(signed.message, BlockRequest):
            self._on_block_request(signed.message)
            return
        if isinstance(signed.message, BlockData):
            self._on_block_data(signed.message)
            return
        self._handle(self.replica.step(signed))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            if self._state != "running":
                return
            try:
                self._ticks += 1
                self._served.clear()
                self._handle(self.replica.tick())
                if self._ticks % self.config.replica.retransmit_every == 0:
                    self._rebroadcast()
                    self._sync_tick()
                self._append_certified()  # retries a failed append
            except Exception:  # a local bug must not stop the node's clock
                self._metrics["tick_errors"] += 1
                logger.exception("node %s: tick failed", self.id)

    # --- the Ready contract ------------------------------------------------------------------

    def _handle(self, ready: Ready) -> None:
        if not ready:
            return
        persisted = True
        if ready.persist:
            try:
                self.store.persist(ready.persist)
            except (LedgerError, OSError) as e:
                # Never send what is not on disk: drop the sends, as a lost network would.
                persisted = False
                self._metrics["store_errors"] += 1
                logger.error("node %s: persist failed, sends dropped: %s", self.id, e)
        if persisted:
            for s in ready.messages:
                try:
                    self.transport.send(s.to, s.message)
                except LedgerError as e:
                    self._metrics["send_errors"] += 1
                    logger.error("node %s: send to %s failed: %s", self.id, s.to, e)
                if isinstance(s.message.message, Reply) and self._reply_listeners:
                    self._notify_reply(cast("Signed[Reply]", s.message))
        for built in self.service.take_built():
            self._own_header(built)
            if self._state != "running":
                return  # fatal: its chain differs from the stored one
        for checkpoint in (ready.stable_checkpoint, ready.restored):
            if checkpoint is None:
                continue
            state = self.replica.checkpoint_state(checkpoint.seq)
            if state is None:
                continue  # superseded within this Ready
            if self._unsaved is None or self._unsaved[0].seq < checkpoint.seq:
                self._unsaved = (checkpoint, decode_state(state)[1])
        if ready.restored is not None:
            self._sync_target = max(self._sync_target, ready.restored.seq - 1)
            logger.info(
                "node %s: state restored at checkpoint %d; syncing blocks %d..%d from peers",
                self.id,
                ready.restored.seq,
                self.height + 1,
                ready.restored.seq - 1,
            )
        self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        """Save the latest stable checkpoint once the blocks up to it are stored."""
        if self._unsaved is None:
            return
        checkpoint, clients = self._unsaved
        if self.height < checkpoint.seq - 1:
            return  # its blocks are not all here yet (certificates, or block sync)
        try:
            self.store.save_checkpoint(checkpoint, clients)
        except (LedgerError, OSError) as e:
            self._metrics["store_errors"] += 1
            logger.error("node %s: saving checkpoint %d failed: %s", self.id, checkpoint.seq, e)
            return
        self._unsaved = None

    def _notify_reply(self, signed: Signed[Reply]) -> None:
        for listener in list(self._reply_listeners):
            try:
                listener(signed)
            except Exception:  # a listener's bug must not break the Ready contract
                self._metrics["listener_errors"] += 1
                logger.exception("node %s: reply listener failed", self.id)

    # --- certificates ------------------------------------------------------------------------

    def _own_header(self, built: BuiltBlock) -> None:
        header = built.header
        self._last_built = max(self._last_built, header.height)
        if header.height <= self.height:
            # Re-executed after a restart, or synced from a peer first: it must be the stored
            # block. Its signature is still sent, for peers that lack this block.
            stored = self.store.block(header.height)
            if stored is None or block_hash(stored.header) != block_hash(header):
                self._fatal(
                    f"the header re-executed at height {header.height} differs from the "
                    "stored block"
                )
                return
            self._metrics["blocks_replayed"] += 1
            if header.height not in self._own:
                commit = sign_block(
                    header, self.config.signing_key, replica=self.id, chain_id=self.chain_id
                )
                message = BlockSignature(
                    header.height, block_hash(header), self.id, commit.signature
                )
                signed = sign(
                    message, self.config.signing_key, signer=self.id, chain_id=self.chain_id
                )
                self._own[header.height] = _Own(signed, self.config.replica.retransmit_rounds)
                self._broadcast(signed)
            return
        commit = sign_block(
            header, self.config.signing_key, replica=self.id, chain_id=self.chain_id
        )
        message = BlockSignature(header.height, block_hash(header), self.id, commit.signature)
        signed = sign(message, self.config.signing_key, signer=self.id, chain_id=self.chain_id)
        self._own[header.height] = _Own(signed, self.config.replica.retransmit_rounds)
        slot = self._heights.setdefault(header.height, _Height())
        slot.built = built
        slot.valid[self.id] = commit.signature
        early, slot.early = slot.early, {}
        for sig in early.values():
            self._add_signature(slot, sig)
        self._broadcast(signed)
        self._try_certify(header.height, slot)

    def _on_block_signature(self, sig: BlockSignature) -> None:
        if sig.replica != self.id:
            self._sync_target = max(self._sync_target, sig.height)
        slot = self._heights.get(sig.height)
        if slot is None:
            # A height not stored yet and at most a log window above what was cut here;
            # anything else is late (already stored) or too far ahead to buffer.
            if not self.height < sig.height <= self._last_built + self.membership.log_window:
                self._metrics["signatures_ignored"] += 1
                return
            slot = self._heights[sig.height] = _Height()
        if slot.certified or sig.replica in slot.valid or sig.replica in slot.early:
            self._metrics["signatures_ignored"] += 1
            return
        if slot.built is None:
            slot.early[sig.replica] = sig
            return
        self._add_signature(slot, sig)
        self._try_certify(sig.height, slot)

    def _add_signature(self, slot: _Height, sig: BlockSignature) -> None:
        assert slot.built is not None
        header = slot.built.header
        key = self.membership.replicas[sig.replica]  # open_frame checked it is a replica
        if sig.block_hash != block_hash(header) or not key.verify(
            block_signing_bytes(self.chain_id, header), sig.signature
        ):
            self._metrics["signatures_invalid"] += 1
            logger.warning(
                "node %s: invalid block signature from %s at height %d",
                self.id,
                sig.replica,
                sig.height,
            )
            return
        slot.valid[sig.replica] = sig.signature

    def _try_certify(self, height: int, slot: _Height) -> None:
        quorum = self.membership.quorum
        if slot.certified or slot.built is None or len(slot.valid) < quorum:
            return
        signers = sorted(slot.valid)[:quorum]
        certificate = tuple(CommitSig(r, slot.valid[r]) for r in signers)
        slot.certified = True
        self._waiting[height] = Block(slot.built.header, slot.built.txs, certificate)
        self._append_certified()

    def _append_certified(self) -> None:
        while (block := self._waiting.get(self.height + 1)) is not None:
            height = block.header.height
            try:
                self._verify_next(block)
            except BlockError as e:
                # A local bug: the service cut a header that does not verify. Drop it loudly.
                del self._waiting[height]
                self._metrics["block_errors"] += 1
                logger.error("node %s: block %d does not verify: %s", self.id, height, e)
                return
            if not self._store_next(block, "blocks_appended"):
                return  # kept; retried on the next tick

    def _verify_next(self, block: Block) -> None:
        """``verify_block`` against this node's head. The state root is the header's own: a
        header this node's service cut (peers' signatures were checked against its hash), or
        one a synced block's certificate (2f+1 replica signatures) vouches for.

        Raises:
            BlockError: The block does not verify.
        """
        verify_block(
            block,
            self._head,
            chain_id=self.chain_id,
            replicas=self.membership.replicas,
            quorum=self.membership.quorum,
            institutions=self.membership.clients,
            state_root=block.header.state_root,
        )

    def _store_next(self, block: Block, counter: str) -> bool:
        """Append ``block`` (verified, the next height) to the store and make it the head;
        False (logged and counted) if the store refused it."""
        height = block.header.height
        try:
            self.store.append_block(block)
        except (LedgerError, OSError) as e:
            self._metrics["store_errors"] += 1
            logger.error("node %s: appending block %d failed: %s", self.id, height, e)
            return False
        self._waiting.pop(height, None)
        self._heights.pop(height, None)
        self._head = block.header
        self._metrics[counter] += 1
        return True
        self._save_checkpoint()

    def _rebroadcast(self) -> None:
        for height in sorted(self._own):
            own = self._own[height]
            if height <= self.height:
                if own.rounds_left <= 0:
                    del self._own[height]
                    continue
                own.rounds_left -= 1
            self._broadcast(own.signed)

    def _broadcast(self, signed: Signed[BlockSignature]) -> None:
        try:
            self.transport.send(None, cast("Signed[Message]", signed))
        except LedgerError as e:
            self._metrics["send_errors"] += 1
            logger.error("node %s: broadcasting a block signature failed: %s", self.id, e)

    # --- block sync --------------------------------------------------------------------------

    def _sync_tick(self) -> None:
        """Every ``retransmit_every`` ticks: if blocks above our head are certified elsewhere
        and our head did not move since the last check, ask the next peer for them."""
        stalled = self.height == self._sync_seen
        self._sync_seen = self.height
        if self._sync_target > self.height and stalled:
            peers = [r for r in self.membership.replica_ids if r != self.id]
            self._sync_peer += 1
            self._send_block_request(peers[self._sync_peer % len(peers)])

    def _send_block_request(self, to: str | None) -> None:
        request = BlockRequest(self.height + 1, MAX_SYNC_BLOCKS, self.id)
        signed = sign(request, self.config.signing_key, signer=self.id, chain_id=self.chain_id)
        self._metrics["sync_requests"] += 1
        try:
            self.transport.send(to, cast("Signed[Message]", signed))
        except LedgerError as e:
            self._metrics["send_errors"] += 1
            logger.error("node %s: sending a block request failed: %s", self.id, e)

    def _on_block_request(self, request: BlockRequest) -> None:
        """Serve our stored blocks from ``request.from_height`` (one answer per peer per tick,
        at most ``count`` blocks and about :data:`SYNC_MAX_BYTES`)."""
        peer = request.replica
        if peer == self.id or peer in self._served:
            return
        self._served.add(peer)
        blocks: list[bytes] = []
        size = 0
        try:
            end = request.from_height + request.count
            for block in self.store.blocks(request.from_height, end):
                data = encode_block(block)
                if blocks and size + len(data) > SYNC_MAX_BYTES:
                    break
                blocks.append(data)
                size += len(data)
        except LedgerError as e:
            self._metrics["store_errors"] += 1
            logger.error("node %s: reading blocks for %s failed: %s", self.id, peer, e)
            return
        answer = BlockData(request.from_height, tuple(blocks), self.height + 1, self.id)
        signed = sign(answer, self.config.signing_key, signer=self.id, chain_id=self.chain_id)
        try:
            self.transport.send(peer, cast("Signed[Message]", signed))
        except LedgerError as e:
            self._metrics["send_errors"] += 1
            logger.error("node %s: sending blocks to %s failed: %s", self.id, peer, e)

    def _on_block_data(self, data: BlockData) -> None:
        """Append the blocks of ``data`` that extend our head, each checked first."""
        if data.replica == self.id:
            return
        self._sync_target = max(self._sync_target, data.head_next - 1)
        for i, raw in enumerate(data.blocks):
            height = data.from_height + i
            if height <= self.height:
                continue
            if height != self.height + 1:
                return  # a gap: an answer to an older request
            try:
                block = decode_block(raw)
                if block.header.height != height:
                    raise BlockError("height", f"block {block.header.height} sent as {height}")
                self._verify_next(block)
            except LedgerError as e:
                self._metrics["sync_invalid"] += 1
                logger.warning(
                    "node %s: block %d from %s refused: %s", self.id, height, data.replica, e
                )
                return
            slot = self._heights.get(height)
            own = None if slot is None or slot.built is None else slot.built.header
            if own is not None and block_hash(own) != block_hash(block.header):
                # Headers depend only on the executed batches (the view they name is the one
                # the batch was built in): a difference means diverged execution.
                self._fatal(
                    f"the header cut here at height {height} differs from the certified "
                    f"block {data.replica} sent"
                )
                return
            if not self._store_next(block, "blocks_synced"):
                return
        self._append_certified()
        self._save_checkpoint()
