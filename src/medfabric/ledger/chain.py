"""The ledger's replicated service: notarization transactions executed in PBFT order, one block
header cut per executed batch, identically on every correct replica.

:class:`NotarizationService` is the :class:`~medfabric.ledger.replica.StateMachine` a ledger
node gives its :class:`~medfabric.ledger.replica.Replica`. A client request's operation is an
encoded :class:`~medfabric.ledger.blocks.NotarizeTx`; the service checks it, executes its
entries on the native notarization contract (:class:`~medfabric.ledger.blocks.NotarizationState`)
and answers with a :class:`TxResult`. When the replica has executed a whole committed batch it
calls :meth:`NotarizationService.end_batch`, and the service cuts the block header of that batch.
The node then takes the built headers (:meth:`NotarizationService.take_built`), signs them
(``sign_block``) and gathers ``2f + 1`` signatures into the block's commit certificate.

Invariants (the same on every correct replica, because they depend only on the executed
sequence of batches):

- Block ``h`` holds the batch of sequence number ``h + 1`` (PBFT numbers batches from 1 and
  executes them in order with no gaps); an empty batch (a view change's null request, or a
  batch whose requests were all refused or stale) gives an empty block, so heights and
  sequence numbers never drift apart.
- A request is executed only if its operation decodes canonically as a transaction, the
  transaction is signed by the requesting client itself (``tx.institution == request.client``)
  and :func:`~medfabric.ledger.blocks.verify_tx` accepts it against the registered
  institutions. A refused request changes nothing and its result says why.
- The header: ``previous_hash`` chains to the previous header (the genesis hash at height 0),
  ``entries_root`` covers the entries of the executed transactions in order, ``state_root`` is
  the contract's root after them, ``view`` is the view whose primary built the batch (its
  ``PrePrepare.origin``, covered by the batch digest: the same on every replica even when the
  batch commits in view ``v`` on some replicas and, proposed again after a view change, in
  ``v + 1`` on others) and ``proposer`` that view's primary. A null request's empty block takes
  the view of the block before it (0 at genesis). ``time`` is the largest request timestamp
  in the batch, never below the previous block's: clients number their requests with
  wall-clock milliseconds (the ledger client does), so block times are real times that every
  replica computes alike, with no clock read here.
- :meth:`NotarizationService.snapshot` holds everything that determines the next blocks (the
  head header and the contract's mapping), so a replica restored by state transfer cuts the
  same headers as the others from the next batch on.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from medfabric.crypto.keys import VerifyKey
from medfabric.ledger.blocks import (
    GENESIS_PREVIOUS_HASH,
    BlockHeader,
    Entry,
    InvalidTx,
    Location,
    NotarizationState,
    NotarizeTx,
    block_hash,
    decode_header,
    decode_tx,
    encode_header,
    entries_root,
    verify_tx,
)
from medfabric.ledger.messages import (
    DIGEST_SIZE,
    FrameError,
    LedgerError,
    Membership,
    Request,
)

__all__ = ["BuiltBlock", "NotarizationService", "TxResult"]


@dataclass(frozen=True, slots=True)
class TxResult:
    """The answer to one request, as the replicas send it in their replies.

    ``status`` is ``notarized`` (``new`` entries notarized now, ``duplicates`` already
    notarized before) or ``refused`` (``reason`` says why; nothing changed).

    Encoding: ``0x01 || u32 new || u32 duplicates`` or ``0x00 || UTF-8 reason``.
    """

    NOTARIZED: ClassVar[int] = 0x01
    REFUSED: ClassVar[int] = 0x00
    status: str
    new: int = 0
    duplicates: int = 0
    reason: str = ""

    def encode(self) -> bytes:
        """The result bytes of the reply."""
        if self.status == "notarized":
            return struct.pack(">BII", self.NOTARIZED, self.new, self.duplicates)
        return bytes((self.REFUSED,)) + self.reason.encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> TxResult:
        """Read a reply's result.

        Raises:
            LedgerError: The bytes are not a result.
        """
        if len(data) == 9 and data[0] == cls.NOTARIZED:
            _, new, duplicates = struct.unpack(">BII", data)
            return cls("notarized", new, duplicates)
        if data[:1] == bytes((cls.REFUSED,)):
            try:
                return cls("refused", reason=data[1:].decode("utf-8"))
            except UnicodeDecodeError:
                pass
        raise LedgerError(f"not a transaction result: {data[:16].hex()}…")


@dataclass(frozen=True, slots=True)
class BuiltBlock:
    """A header the service cut, with the transactions it covers (not yet certified)."""

    seq: int
    header: BlockHeader
    txs: tuple[NotarizeTx, ...]


class NotarizationService:
    """The replicated notarization service of one replica (see the module docstring).

    Args:
        membership: The chain's membership: its clients are the institutions that may
            notarize, its replicas propose blocks.
        institutions: Institution id → verify key for transactions; the membership's client
            keys when omitted (an institution signs its requests and its transactions with
            one key).
    """

    def __init__(
        self, membership: Membership, *, institutions: Mapping[str, VerifyKey] | None = None
    ) -> None:
        self.membership = membership
        self.chain_id = membership.chain_id
        self.institutions = dict(institutions if institutions is not None else membership.clients)
        self.state = NotarizationState()
        self.head: BlockHeader | None = None
        self._txs: list[NotarizeTx] = []
        self._pending: set[bytes] = set()  # content hashes executed in the open batch
        self._time = 0
        self._built: list[BuiltBlock] = []

    # --- the StateMachine protocol -----------------------------------------------------------

    def execute(self, request: Request) -> bytes:
        """Check and execute one notarization request; return its encoded :class:`TxResult`."""
        self._time = max(self._time, request.timestamp)
        try:
            tx = decode_tx(request.operation)
        except (FrameError, LedgerError) as e:
            return TxResult("refused", reason=f"malformed transaction: {e}").encode()
        if tx.institution != request.client:
            return TxResult(
                "refused",
                reason=f"transaction of {tx.institution!r} sent by client {request.client!r}",
            ).encode()
        try:
            verify_tx(tx, self.institutions, chain_id=self.chain_id)
        except InvalidTx as e:
            return TxResult("refused", reason=f"{e.reason}: {e}").encode()
        new = 0
        for entry in tx.entries:
            h = entry.content_hash
            if h not in self._pending and self.state.locate(h) is None:
                new += 1
            self._pending.add(h)
        self._txs.append(tx)
        return TxResult("notarized", new, len(tx.entries) - new).encode()

    def end_batch(self, view: int | None, seq: int) -> None:
        """The replica executed the whole batch ``seq``, built in ``view`` (None: a null
        request): cut its block header."""
        height = 0 if self.head is None else self.head.height + 1
        if seq != height + 1:
            raise LedgerError(f"batch {seq} does not follow block {height - 1}")
        if view is None:
            view = 0 if self.head is None else self.head.view
        entries: list[Entry] = [e for tx in self._txs for e in tx.entries]
        self.state.apply(entries, height)
        header = BlockHeader(
            height=height,
            previous_hash=GENESIS_PREVIOUS_HASH if self.head is None else block_hash(self.head),
            entries_root=entries_root(entries),
            state_root=self.state.state_root(),
            view=view,
            proposer=self.membership.primary(view),
            time=max(self._time, 0 if self.head is None else self.head.time),
        )
        self._built.append(BuiltBlock(seq, header, tuple(self._txs)))
        self.head = header
        self._txs, self._pending, self._time = [], set(), 0

    def digest(self) -> bytes:
        """The hash of the head header (it covers the state root), zeros before any block."""
        return bytes(DIGEST_SIZE) if self.head is None else block_hash(self.head)

    def snapshot(self) -> bytes:
        """``u32 len || head header`` (length 0 without a head), then ``u32 count`` and per
        notarized hash, sorted: ``hash (32) || u64 height || u64 position``."""
        head = b"" if self.head is None else encode_header(self.head)
        locations = sorted(self.state.locations().items())
        parts = [struct.pack(">I", len(head)), head, struct.pack(">I", len(locations))]
        parts += [h + struct.pack(">QQ", loc.height, loc.position) for h, loc in locations]
        return b"".join(parts)

    def restore(self, snapshot: bytes) -> None:
        """Load :meth:`snapshot` output (state transfer); parse it fully before changing
        anything.

        Raises:
            LedgerError: ``snapshot`` is not a valid snapshot; the service is then unchanged.
        """
        view = memoryview(snapshot)
        try:
            (size,) = struct.unpack_from(">I", view, 0)
            at = 4 + size
            head = decode_header(bytes(view[4:at])) if size else None
            (count,) = struct.unpack_from(">I", view, at)
            at += 4
            if len(view) != at + count * (DIGEST_SIZE + 16):
                raise LedgerError("snapshot length does not match its count")
            locations: dict[bytes, Location] = {}
            for _ in range(count):
                content_hash = bytes(view[at : at + DIGEST_SIZE])
                height, position = struct.unpack_from(">QQ", view, at + DIGEST_SIZE)
                locations[content_hash] = Location(height, position)
                at += DIGEST_SIZE + 16
        except (struct.error, FrameError) as e:
            raise LedgerError(f"bad service snapshot: {e}") from e
        if len(locations) != count:
            raise LedgerError("bad service snapshot: a content hash appears twice")
        state = NotarizationState.from_locations(locations, None if head is None else head.height)
        if head is not None and state.state_root() != head.state_root:
            raise LedgerError("bad service snapshot: its state does not match its head's root")
        if head is None and locations:
            raise LedgerError("bad service snapshot: notarized hashes without a head block")
        self.state, self.head = state, head
        self._txs, self._pending, self._time = [], set(), 0

    def restore_at(self, head: BlockHeader, locations: Mapping[bytes, Location]) -> None:
        """Load the state after the stored block ``head`` (restart recovery): ``locations`` is
        the first notarization of every hash in the blocks up to ``head.height`` (the store's
        entry index). Checks, before changing anything, that they give ``head.state_root``.

        Raises:
            LedgerError: A location is above ``head``, or the root does not match.
        """
        if any(loc.height > head.height for loc in locations.values()):
            raise LedgerError(f"a location is above block {head.height}")
        state = NotarizationState.from_locations(locations, head.height)
        if state.state_root() != head.state_root:
            raise LedgerError(
                f"the notarized hashes up to block {head.height} do not give its state root"
            )
        self.state, self.head = state, head
        self._txs, self._pending, self._time = [], set(), 0

    # --- for the node ------------------------------------------------------------------------

    def take_built(self) -> list[BuiltBlock]:
        """The headers cut since the last call, in height order (the node certifies them)."""
        built, self._built = self._built, []
        return built
