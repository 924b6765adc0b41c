"""PBFT protocol messages (Castro & Liskov), their canonical encoding, signatures and edge checks.

Messages are frozen, slotted records named by phase: :class:`Request`, :class:`Reply`,
:class:`PrePrepare`, :class:`Prepare`, :class:`Commit`, :class:`Checkpoint`, :class:`ViewChange`,
:class:`NewView`, plus :class:`FetchState` / :class:`StateChunk` for state transfer and
:class:`BlockSignature` for block certificates (a node message: it never enters the replica).
Every message travels inside a :class:`Signed` envelope; nothing else crosses the wire.

Encoding (one format for the wire and for signing; ``encode`` is a pure function):

- Every message starts with a one-byte type tag (``Request`` 0x01 … ``StateChunk`` 0x0A,
  ``BlockSignature`` 0x0B, the nested :class:`PreparedCertificate` 0x40, the :class:`Signed`
  envelope 0x7F), followed by its fields in declaration order.
- Integers are unsigned 64-bit big-endian (views, sequence numbers, timestamps, chunk indexes).
- Byte strings are a 32-bit big-endian length then the bytes; strings (ids, chain id) the same
  over their UTF-8 bytes; lists a 32-bit count then the items. Digests are byte strings too, so
  a digest of the wrong length decodes and is then refused as ``invalid``.
- An optional value (only ``PrePrepare.batch``) is a presence byte, 0 or 1, then the value; a
  present batch is ``u64 origin`` then its requests.
- A nested signed message is embedded as its full envelope: tag 0x7F, chain id, the message,
  signer id, signature. Nested positions are typed: a tag other than the expected one is refused
  before its body is read, so nesting depth is bounded by the grammar, not by the input.
- :func:`decode` and :func:`decode_signed` refuse trailing bytes, unknown tags, presence bytes
  other than 0/1, invalid UTF-8, and anything that does not re-encode to the same bytes. So one
  message has exactly one encoding, and equal messages have equal bytes and signatures.

Signatures: Ed25519 over ``b"medfabric-pbft-v1" || u16 len(chain id) || chain id || encode(m)``
(:func:`signing_bytes`). The chain id is length-prefixed so that no (chain, message) pair can
be read as another; the message's type tag is inside ``encode(m)``, so a signature over a
``Prepare`` can never pass for a ``Commit``, nor a signature for one chain on another. A
``PrePrepare`` is signed without its batch (the batch is bound through ``digest``), as in the
paper: certificates carry the signed pre-prepare without the requests and the signature holds.

Edge checks (:func:`open_frame`), in this order, cheapest first; each failure raises the
:class:`FrameError` subclass of its reason (``REASONS``), never anything else, and never logs:

1. ``oversized``: the frame is longer than ``max_size`` (checked before parsing).
2. ``malformed``: it does not decode canonically as a signed message.
3. ``wrong_chain``: the envelope names another chain.
4. ``unknown_sender``: the signer is not a member of the role the message needs (a ``Request``
   is signed by a client; every other message by a replica).
5. ``invalid``: the signer is not the sender the message names (its ``replica`` or ``client``
   field, or the primary of the view for ``PrePrepare`` and ``NewView``).
6. ``bad_signature``: the Ed25519 signature does not verify.
7. ``invalid``: ``validate_basic`` fails (field ranges, digests, quorums, certificates); nested
   envelopes go through steps 3–7 themselves, with their own reason codes.

Invariants:

- Ids: replica and client ids are non-empty strings of at most 64 UTF-8 bytes, disjoint between
  roles; replica order for primary selection is the sorted order of replica ids.
- A message that passed :func:`open_frame` is structurally valid for ``membership``; whether it
  fits the receiver's state (current view, watermarks, stable checkpoint) is the replica's job.
- Lists of signed votes (checkpoint proofs, prepares, view changes) are sorted by signer with no
  repeats; lists keyed by sequence number are strictly increasing. Builders must sort.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from medfabric.crypto.keys import SigningKey, VerifyKey
from medfabric.crypto.merkle import leaf_hash, verify_inclusion

__all__ = [
    "BLOCK_SIGNATURE_SIZE",
    "DIGEST_SIZE",
    "DOMAIN",
    "MAX_ID_BYTES",
    "MAX_SYNC_BLOCKS",
    "NULL_DIGEST",
    "REASONS",
    "BadSignature",
    "BlockData",
    "BlockRequest",
    "BlockSignature",
    "Checkpoint",
    "Commit",
    "EncodeError",
    "FetchState",
    "FrameError",
    "FrameReader",
    "InvalidMessage",
    "LedgerError",
    "MalformedFrame",
    "Membership",
    "Message",
    "NewView",
    "OversizedFrame",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Reply",
    "Request",
    "Signed",
    "StateChunk",
    "UnknownSender",
    "ViewChange",
    "WrongChain",
    "batch_digest",
    "decode",
    "decode_signed",
    "encode",
    "encode_frame",
    "frame",
    "new_view_pre_prepares",
    "open_frame",
    "sign",
    "signing_bytes",
]

DOMAIN = b"medfabric-pbft-v1"
"""Prefix of every signed byte string; a new wire version gets a new prefix."""

DIGEST_SIZE = 32
"""SHA-256: batch digests, state digests."""

MAX_ID_BYTES = 64
"""Longest replica id, client id or chain id, in UTF-8 bytes."""

REASONS: tuple[str, ...] = (
    "oversized",
    "malformed",
    "unknown_sender",
    "bad_signature",
    "wrong_chain",
    "invalid",
)
"""Every ``FrameError.reason``, for metrics: one counter per reason."""

BLOCK_SIGNATURE_SIZE = 64
"""Ed25519: the length of a :class:`BlockSignature`'s block signature."""

_U64_MAX = 2**64 - 1
_U32_MAX = 2**32 - 1
_LENGTH_PREFIX = 4  # stream framing: u32 big-endian frame length


# --- errors -----------------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of the errors raised by ``medfabric.ledger``."""


class EncodeError(LedgerError, ValueError):
    """A locally built message cannot be encoded (an integer outside u64, a string too long)."""


class FrameError(LedgerError):
    """An incoming frame was refused. ``reason`` is one of :data:`REASONS`."""

    reason: ClassVar[str] = "invalid"


class OversizedFrame(FrameError):
    """The frame (or a declared frame length) exceeds the size limit."""

    reason = "oversized"


class MalformedFrame(FrameError):
    """The bytes are not the canonical encoding of a message."""

    reason = "malformed"


class UnknownSender(FrameError):
    """The signer is not a member in the role the message requires."""

    reason = "unknown_sender"


class BadSignature(FrameError):
    """An Ed25519 signature (outer or nested) does not verify."""

    reason = "bad_signature"


class WrongChain(FrameError):
    """An envelope (outer or nested) was signed for another chain."""

    reason = "wrong_chain"


class InvalidMessage(FrameError):
    """The message decodes and is signed, but its fields break a protocol rule."""

    reason = "invalid"


# --- membership -------------------------------------------------------------------------------


def _id_ok(value: object) -> bool:
    try:
        return isinstance(value, str) and 0 < len(value.encode("utf-8")) <= MAX_ID_BYTES
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form
        return False


@dataclass(frozen=True, slots=True)
class Membership:
    """Who may speak on one chain, with which key, and the quorum sizes that follow.

    Args:
        chain_id: Names the chain; part of every signature.
        replicas: Replica id → verify key. ``n = len(replicas)``; the primary of view ``v`` is
            ``replica_ids[v % n]`` with ids in sorted order.
        clients: Client (institution) id → verify key. Ids are disjoint from replica ids.
        log_window: ``L`` of the paper: a sequence number is in the log when it lies in
            ``(h, h + L]`` for the stable checkpoint ``h``. Bounds view-change proofs.

    Raises:
        LedgerError: An id or the chain id is empty or longer than 64 UTF-8 bytes, there is no
            replica, an id is both replica and client, two members share a key (one key would
            then count twice in a quorum), or ``log_window < 1``.
    """

    chain_id: str
    replicas: Mapping[str, VerifyKey]
    clients: Mapping[str, VerifyKey]
    log_window: int = 256

    def __post_init__(self) -> None:
        if not _id_ok(self.chain_id):
            raise LedgerError(f"chain id must be 1..{MAX_ID_BYTES} UTF-8 bytes: {self.chain_id!r}")
        if not self.replicas:
            raise LedgerError("a membership needs at least one replica")
        for member in (*self.replicas, *self.clients):
            if not _id_ok(member):
                raise LedgerError(f"member id must be 1..{MAX_ID_BYTES} UTF-8 bytes: {member!r}")
        both = set(self.replicas) & set(self.clients)
        if both:
            raise LedgerError(f"ids are both replica and client: {sorted(both)}")
        keys = [k.to_bytes() for k in (*self.replicas.values(), *self.clients.values())]
        if len(set(keys)) != len(keys):
            raise LedgerError("two members share a verify key")
        if self.log_window < 1:
            raise LedgerError(f"log_window must be >= 1, got {self.log_window}")
        # Frozen copies: a caller mutating its dict afterwards must not change who is trusted.
        object.__setattr__(self, "replicas", MappingProxyType(dict(self.replicas)))
        object.__setattr__(self, "clients", MappingProxyType(dict(self.clients)))

    @property
    def n(self) -> int:
        """Number of replicas."""
        return len(self.replicas)

    @property
    def f(self) -> int:
        """Most faulty replicas tolerated: ``(n - 1) // 3``."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """``2f + 1``: the size of a certificate (prepared, committed, stable, view change)."""
        return 2 * self.f + 1

    @property
    def replica_ids(self) -> tuple[str, ...]:
        """Replica ids in sorted order: the order of primaries across views."""
        return tuple(sorted(self.replicas))

    def primary(self, view: int) -> str:
        """The primary of ``view``: ``replica_ids[view % n]``."""
        return self.replica_ids[view % self.n]


# --- messages ---------------------------------------------------------------------------------


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise InvalidMessage(why)


def _nonneg(value: int, name: str) -> None:
    _require(0 <= value <= _U64_MAX, f"{name} out of range: {value}")


def _digest_ok(value: bytes, name: str) -> None:
    _require(len(value) == DIGEST_SIZE, f"{name} must be {DIGEST_SIZE} bytes, got {len(value)}")


def _replica_ok(replica: str, membership: Membership, name: str = "replica") -> None:
    _require(replica in membership.replicas, f"{name} {replica!r} is not a replica")


@dataclass(frozen=True, slots=True)
class Request:
    """⟨REQUEST, o, t, c⟩σc: a client asks the replicated service to run an operation.

    Attributes:
        client: The client id (``c``); the request is signed by this client.
        timestamp: The client's request number (``t``), increasing per client; replicas execute
            each ``(client, timestamp)`` at most once and answer repeats from their last reply.
        operation: The opaque operation (``o``), e.g. an encoded notarization transaction.
    """

    TAG: ClassVar[int] = 0x01
    client: str
    timestamp: int
    operation: bytes

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _require(self.client in membership.clients, f"client {self.client!r} is not a client")
        _nonneg(self.timestamp, "timestamp")


@dataclass(frozen=True, slots=True)
class Reply:
    """⟨REPLY, v, t, c, i, r⟩σi: replica ``i``'s result for request ``t`` of client ``c``.

    Attributes:
        view: The view in which the request was executed (lets the client find the primary).
        timestamp: The request's timestamp.
        client: The client that sent the request.
        replica: The replying replica (``i``); the reply is signed by it.
        result: The opaque result (``r``); a client accepts it on ``f + 1`` matching replies.
    """

    TAG: ClassVar[int] = 0x02
    view: int
    timestamp: int
    client: str
    replica: str
    result: bytes

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.view, "view")
        _nonneg(self.timestamp, "timestamp")
        _require(self.client in membership.clients, f"client {self.client!r} is not a client")
        _replica_ok(self.replica, membership)


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """⟨PRE-PREPARE, v, n, d⟩σp, m: the primary assigns sequence number ``n`` to a batch.

    Attributes:
        view: The view (``v``); signed by its primary.
        seq: The sequence number (``n``).
        digest: ``batch_digest(batch, origin)`` (``d``). The empty batch is the null request
            that a new primary proposes for gaps (its digest is :data:`NULL_DIGEST`).
        batch: The client requests (``m``), each signed by its client; or None when stripped,
            as in prepared certificates and ``NewView.pre_prepares``. The signature never covers
            the batch, only ``digest``; a frame on its own must carry the batch.
        origin: The view whose primary built the batch: ``view`` for a new batch, an earlier
            view when a new view's primary proposes a prepared batch again (the digest, which
            covers it, does not change). Every replica that executes the batch thus agrees on
            the view it was proposed in, whatever view it committed in. 0 for the null request
            and when stripped.
    """

    TAG: ClassVar[int] = 0x03
    view: int
    seq: int
    digest: bytes
    batch: tuple[Signed[Request], ...] | None
    origin: int = 0

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields and, if present, the batch: its digest, each request's envelope
        and signature, and no ``(client, timestamp)`` twice.

        Raises:
            FrameError: A subclass naming the first rule broken.
        """
        _nonneg(self.view, "view")
        _nonneg(self.seq, "seq")
        _digest_ok(self.digest, "digest")
        _nonneg(self.origin, "origin")
        _require(self.origin <= self.view, "a batch cannot come from a later view")
        if self.batch is None:
            _require(self.origin == 0, "a stripped pre-prepare has no origin")
            return
        _require(bool(self.batch) or self.origin == 0, "the null request has no origin")
        _require(
            self.digest == batch_digest(self.batch, self.origin), "digest is not the batch's digest"
        )
        seen: set[tuple[str, int]] = set()
        for signed in self.batch:
            key = (signed.message.client, signed.message.timestamp)
            _require(key not in seen, f"request {key} twice in one batch")
            seen.add(key)
            _check_signed(signed, membership)

    def stripped(self) -> PrePrepare:
        """This pre-prepare without its batch: the form signed, and kept in certificates."""
        return self if self.batch is None else replace(self, batch=None, origin=0)


@dataclass(frozen=True, slots=True)
class Prepare:
    """⟨PREPARE, v, n, d, i⟩σi: backup ``i`` accepted the pre-prepare for ``(v, n, d)``.

    Attributes:
        view: The view (``v``).
        seq: The sequence number (``n``).
        digest: The batch digest (``d``).
        replica: The backup (``i``), never the primary of ``view``; it signs.
    """

    TAG: ClassVar[int] = 0x04
    view: int
    seq: int
    digest: bytes
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.view, "view")
        _nonneg(self.seq, "seq")
        _digest_ok(self.digest, "digest")
        _replica_ok(self.replica, membership)
        # The primary's pre-prepare stands for its prepare (paper §4.2); a prepare from it is
        # a protocol violation and would let it count twice towards 2f.
        _require(self.replica != membership.primary(self.view), "the primary does not prepare")


@dataclass(frozen=True, slots=True)
class Commit:
    """⟨COMMIT, v, n, d, i⟩σi: replica ``i`` has the batch ``d`` prepared at ``(v, n)``.

    Attributes:
        view: The view (``v``).
        seq: The sequence number (``n``).
        digest: The batch digest (``D(m)``).
        replica: The committing replica (``i``); it signs.
    """

    TAG: ClassVar[int] = 0x05
    view: int
    seq: int
    digest: bytes
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.view, "view")
        _nonneg(self.seq, "seq")
        _digest_ok(self.digest, "digest")
        _replica_ok(self.replica, membership)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """⟨CHECKPOINT, n, d, i⟩σi: replica ``i``'s state after executing up to ``n`` is ``d``.

    Attributes:
        seq: The sequence number (``n``), a multiple of the checkpoint interval.
        state_digest: The state's digest (``d``): the RFC 6962 root over the state's chunks,
            so each :class:`StateChunk` can be checked against it on its own.
        replica: The replica (``i``); it signs. ``2f + 1`` matching ones make it stable.
    """

    TAG: ClassVar[int] = 0x06
    seq: int
    state_digest: bytes
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.seq, "seq")
        _digest_ok(self.state_digest, "state_digest")
        _replica_ok(self.replica, membership)


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """``Pm`` of the paper: proof that a batch was prepared at ``(view, seq)``.

    Not a message of its own: it travels inside :class:`ViewChange`.

    Attributes:
        pre_prepare: The signed pre-prepare, stripped of its batch.
        prepares: At least ``2f`` signed prepares for the same ``(view, seq, digest)`` from
            distinct backups, sorted by signer.
    """

    TAG: ClassVar[int] = 0x40
    pre_prepare: Signed[PrePrepare]
    prepares: tuple[Signed[Prepare], ...]

    @property
    def view(self) -> int:
        """The view in which the batch prepared."""
        return self.pre_prepare.message.view

    @property
    def seq(self) -> int:
        """The sequence number."""
        return self.pre_prepare.message.seq

    @property
    def digest(self) -> bytes:
        """The prepared batch's digest."""
        return self.pre_prepare.message.digest

    def validate_basic(self, membership: Membership) -> None:
        """Check the certificate and every signature in it.

        Raises:
            FrameError: A subclass naming the first rule broken.
        """
        pp = self.pre_prepare.message
        _require(pp.batch is None, "a certificate's pre-prepare carries no batch")
        _require(len(self.prepares) >= 2 * membership.f, "fewer than 2f prepares")
        _sorted_signers(self.prepares, "prepares")
        for signed in self.prepares:
            p = signed.message
            _require(
                (p.view, p.seq, p.digest) == (pp.view, pp.seq, pp.digest),
                "a prepare does not match the pre-prepare",
            )
        _check_signed(self.pre_prepare, membership)
        for signed in self.prepares:
            _check_signed(signed, membership)


@dataclass(frozen=True, slots=True)
class ViewChange:
    """⟨VIEW-CHANGE, v+1, n, C, P, i⟩σi: replica ``i`` moves to view ``v+1``.

    Attributes:
        new_view: The view being moved to (``v+1``), at least 1.
        checkpoint_seq: The replica's last stable checkpoint (``n``); 0 is genesis, stable by
            definition and proved by nothing.
        checkpoint_proof: ``C``: at least ``2f + 1`` signed checkpoints for ``checkpoint_seq``
            with one state digest, sorted by signer; empty when ``checkpoint_seq`` is 0.
        prepared: ``P``: for each sequence number in ``(checkpoint_seq, checkpoint_seq + L]``
            that prepared at ``i``, the certificate of the highest view, in increasing ``seq``.
        replica: The replica (``i``); it signs.
    """

    TAG: ClassVar[int] = 0x07
    new_view: int
    checkpoint_seq: int
    checkpoint_proof: tuple[Signed[Checkpoint], ...]
    prepared: tuple[PreparedCertificate, ...]
    replica: str

    @property
    def checkpoint_digest(self) -> bytes | None:
        """The stable checkpoint's state digest per ``C``; None for genesis (seq 0)."""
        return self.checkpoint_proof[0].message.state_digest if self.checkpoint_proof else None

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields, the checkpoint proof, every certificate and nested signature.

        Raises:
            FrameError: A subclass naming the first rule broken.
        """
        _require(1 <= self.new_view <= _U64_MAX, f"new_view out of range: {self.new_view}")
        _nonneg(self.checkpoint_seq, "checkpoint_seq")
        _replica_ok(self.replica, membership)
        if self.checkpoint_seq == 0:
            _require(not self.checkpoint_proof, "the genesis checkpoint takes no proof")
        else:
            _require(
                len(self.checkpoint_proof) >= membership.quorum,
                "checkpoint proof has fewer than 2f+1 signers",
            )
            _sorted_signers(self.checkpoint_proof, "checkpoint proof")
            digest = self.checkpoint_proof[0].message.state_digest
            for signed in self.checkpoint_proof:
                c = signed.message
                _require(
                    (c.seq, c.state_digest) == (self.checkpoint_seq, digest),
                    "checkpoint proof mixes sequence numbers or digests",
                )
        high = self.checkpoint_seq + membership.log_window
        last = self.checkpoint_seq
        for cert in self.prepared:
            _require(last < cert.seq <= high, f"prepared seq {cert.seq} out of order or window")
            _require(cert.view < self.new_view, "a certificate from the new view or later")
            last = cert.seq
        for signed in self.checkpoint_proof:
            _check_signed(signed, membership)
        for cert in self.prepared:
            cert.validate_basic(membership)


@dataclass(frozen=True, slots=True)
class NewView:
    """⟨NEW-VIEW, v+1, V, O⟩σp: the new primary starts view ``v+1``.

    Attributes:
        view: The new view (``v+1``), at least 1; signed by its primary.
        view_changes: ``V``: at least ``2f + 1`` signed view changes for ``view`` from distinct
            replicas, sorted by signer.
        pre_prepares: ``O``: the signed, stripped pre-prepares for ``view`` that
            :func:`new_view_pre_prepares` computes from ``V`` — exactly those, in order.
    """

    TAG: ClassVar[int] = 0x08
    view: int
    view_changes: tuple[Signed[ViewChange], ...]
    pre_prepares: tuple[Signed[PrePrepare], ...]

    def validate_basic(self, membership: Membership) -> None:
        """Check ``V``, recompute ``O`` from it, and check every nested signature.

        Raises:
            FrameError: A subclass naming the first rule broken.
        """
        _require(1 <= self.view <= _U64_MAX, f"view out of range: {self.view}")
        _require(len(self.view_changes) >= membership.quorum, "fewer than 2f+1 view changes")
        _sorted_signers(self.view_changes, "view changes")
        for signed in self.view_changes:
            _require(signed.message.new_view == self.view, "a view change for another view")
        # V is checked in full first: its windows bound O's range, which an unchecked view
        # change could make astronomically long.
        for signed in self.view_changes:
            _check_signed(signed, membership)
        expected = new_view_pre_prepares(self.view, [s.message for s in self.view_changes])
        _require(
            tuple(s.message for s in self.pre_prepares) == expected,
            "pre-prepares differ from those the view changes determine",
        )
        for signed_pp in self.pre_prepares:
            _check_signed(signed_pp, membership)


@dataclass(frozen=True, slots=True)
class FetchState:
    """Asks for one chunk of the state at a stable checkpoint (state transfer).

    Attributes:
        seq: The stable checkpoint whose state is wanted.
        chunk: The index of the chunk wanted (0-based).
        replica: The replica that is behind; it signs, and the answer goes to it.
    """

    TAG: ClassVar[int] = 0x09
    seq: int
    chunk: int
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.seq, "seq")
        _nonneg(self.chunk, "chunk")
        _replica_ok(self.replica, membership)


@dataclass(frozen=True, slots=True)
class StateChunk:
    """One chunk of the state at checkpoint ``seq``, provable against its state digest.

    Attributes:
        seq: The checkpoint.
        state_digest: The checkpoint's state digest: the RFC 6962 root over all chunks. The
            receiver must still check it equals the digest of a stable checkpoint it trusts.
        chunk: This chunk's index, below ``total``.
        total: The number of chunks in the state, at least 1.
        data: The chunk's bytes (the leaf).
        proof: The RFC 6962 inclusion proof of ``data`` at ``chunk`` under ``state_digest``.
        replica: The sending replica; it signs.
    """

    TAG: ClassVar[int] = 0x0A
    seq: int
    state_digest: bytes
    chunk: int
    total: int
    data: bytes
    proof: tuple[bytes, ...]
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields and the chunk's inclusion proof. Raises :class:`InvalidMessage`."""
        _nonneg(self.seq, "seq")
        _digest_ok(self.state_digest, "state_digest")
        _require(0 <= self.chunk < self.total <= _U64_MAX, "chunk index outside 0..total-1")
        _replica_ok(self.replica, membership)
        _require(
            verify_inclusion(
                leaf_hash(self.data), self.chunk, self.total, list(self.proof), self.state_digest
            ),
            "chunk is not in the state with that digest",
        )


@dataclass(frozen=True, slots=True)
class BlockSignature:
    """Replica ``replica``'s commit signature on the block header cut at ``height``.

    Not a PBFT message: nodes exchange it to gather a block's commit certificate, and it never
    enters :meth:`~medfabric.ledger.replica.Replica.step`. The envelope's signature
    authenticates the sender; ``signature`` is the one that goes into the certificate (the
    ``CommitSig.signature`` of ``blocks.py``), checked by the receiver against its own header.

    Attributes:
        height: The block's height.
        block_hash: ``block_hash(header)`` of the header the replica signed.
        replica: The signing replica; it also signs the envelope.
        signature: The replica's Ed25519 signature over ``block_signing_bytes(chain, header)``.
    """

    TAG: ClassVar[int] = 0x0B
    height: int
    block_hash: bytes
    replica: str
    signature: bytes

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.height, "height")
        _digest_ok(self.block_hash, "block_hash")
        _require(
            len(self.signature) == BLOCK_SIGNATURE_SIZE,
            f"signature must be {BLOCK_SIGNATURE_SIZE} bytes, got {len(self.signature)}",
        )
        _replica_ok(self.replica, membership)


MAX_SYNC_BLOCKS = 64
"""At most this many blocks per :class:`BlockRequest` and :class:`BlockData` (block sync)."""


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Replica ``replica`` asks for the stored blocks from ``from_height`` on (block sync).

    Not a PBFT message (like :class:`BlockSignature`, nodes handle it, never the replica).

    Attributes:
        from_height: The first height wanted.
        count: How many blocks at most (1 to :data:`MAX_SYNC_BLOCKS`).
        replica: The asking replica; it also signs the envelope.
    """

    TAG: ClassVar[int] = 0x0C
    from_height: int
    count: int
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.from_height, "from_height")
        _require(1 <= self.count <= MAX_SYNC_BLOCKS, f"count must be 1..{MAX_SYNC_BLOCKS}")
        _replica_ok(self.replica, membership)


@dataclass(frozen=True, slots=True)
class BlockData:
    """Replica ``replica``'s answer to a :class:`BlockRequest`: its stored blocks from
    ``from_height`` on, in height order (``encode_block`` bytes, each with its commit
    certificate), and the height of its stored head (-1 as ``head + 1 = 0`` when empty).

    The receiver trusts none of it: it checks every block with ``verify_block`` (chain to its
    own head, transactions, certificate) before appending.

    Attributes:
        from_height: The height of ``blocks[0]``.
        blocks: At most :data:`MAX_SYNC_BLOCKS` encoded blocks (possibly none).
        head_next: The sender's stored head height + 1 (how far it could serve).
        replica: The answering replica; it also signs the envelope.
    """

    TAG: ClassVar[int] = 0x0D
    from_height: int
    blocks: tuple[bytes, ...]
    head_next: int
    replica: str

    def validate_basic(self, membership: Membership) -> None:
        """Check the fields without any state. Raises :class:`InvalidMessage`."""
        _nonneg(self.from_height, "from_height")
        _nonneg(self.head_next, "head_next")
        _require(len(self.blocks) <= MAX_SYNC_BLOCKS, f"more than {MAX_SYNC_BLOCKS} blocks")
        _replica_ok(self.replica, membership)


Message: TypeAlias = (
    Request
    | Reply
    | PrePrepare
    | Prepare
    | Commit
    | Checkpoint
    | ViewChange
    | NewView
    | FetchState
    | StateChunk
    | BlockSignature
    | BlockRequest
    | BlockData
)
"""Any protocol message (what a :class:`Signed` envelope holds)."""

M = TypeVar("M", bound="Message")


@dataclass(frozen=True, slots=True)
class Signed(Generic[M]):
    """A message, who signed it, and the Ed25519 signature over :func:`signing_bytes`.

    Attributes:
        message: The protocol message.
        signer: The signing member's id: a client for a ``Request``, else a replica.
        signature: 64 bytes (any other length fails verification as ``bad_signature``).
        chain_id: The chain the signature is for.
    """

    TAG: ClassVar[int] = 0x7F
    message: M
    signer: str
    signature: bytes
    chain_id: str

    def verify(self, key: VerifyKey) -> bool:
        """True if ``signature`` is ``key``'s signature of this message on ``chain_id``."""
        return key.verify(signing_bytes(self.chain_id, self.message), self.signature)


def sign(message: M, key: SigningKey, *, signer: str, chain_id: str) -> Signed[M]:
    """Sign ``message`` as ``signer`` for ``chain_id``.

    Args:
        message: The message; a ``PrePrepare`` is signed without its batch.
        key: The signer's private key.
        signer: The signer's id in the membership.
        chain_id: The chain.

    Returns:
        The envelope, ready for :func:`frame`.

    Raises:
        EncodeError: The message cannot be encoded (an integer outside u64, an id too long).
    """
    return Signed(message, signer, key.sign(signing_bytes(chain_id, message)), chain_id)


def signing_bytes(chain_id: str, message: Message) -> bytes:
    """The bytes an Ed25519 signature covers: ``DOMAIN || u16 len || chain id || encode(m)``.

    Args:
        chain_id: The chain.
        message: The message; a ``PrePrepare`` is taken without its batch.

    Returns:
        The domain-separated bytes.

    Raises:
        EncodeError: The message or chain id cannot be encoded.
    """
    chain = _id_bytes(chain_id)
    if isinstance(message, PrePrepare):
        message = message.stripped()
    return DOMAIN + len(chain).to_bytes(2, "big") + chain + encode(message)


def batch_digest(batch: Sequence[Signed[Request]], origin: int) -> bytes:
    """SHA-256 of the batch: the view it was built in, then the signed requests' encodings, as
    a counted list.

    The digest covers the clients' signatures too, so a batch fetched by digest arrives with
    the proof that each client asked for its request; and it covers the view, so that the
    view a block names is the same on every replica (``PrePrepare.origin``).

    Args:
        batch: The signed requests, in execution order.
        origin: The view whose primary built the batch (0 for the null request).

    Returns:
        The 32-byte digest.
    """
    w = _Writer()
    w.u64(origin)
    w.items(batch, w.signed)
    return hashlib.sha256(DOMAIN + b"/batch" + w.getvalue()).digest()


def new_view_pre_prepares(view: int, view_changes: Sequence[ViewChange]) -> tuple[PrePrepare, ...]:
    """The stripped pre-prepares ``O`` that view changes ``V`` determine (paper §4.4).

    ``min_s`` is the highest stable checkpoint in ``V`` and ``max_s`` the highest prepared
    sequence number (or ``min_s``). For each ``n`` in ``(min_s, max_s]``: the digest of the
    certificate for ``n`` with the highest view in ``V``, else :data:`NULL_DIGEST`. Ties between
    equal views (impossible with at most ``f`` faulty replicas) break on the larger digest, so
    the answer is a function of ``V`` alone.

    Args:
        view: The new view.
        view_changes: The (already checked) view changes.

    Returns:
        The pre-prepares for ``view``, by increasing ``seq``, without batches.
    """
    min_s = max((vc.checkpoint_seq for vc in view_changes), default=0)
    best: dict[int, tuple[int, bytes]] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            if cert.seq > min_s:
                candidate = (cert.view, cert.digest)
                best[cert.seq] = max(best.get(cert.seq, candidate), candidate)
    max_s = max(best, default=min_s)
    return tuple(
        PrePrepare(view, n, best[n][1] if n in best else NULL_DIGEST, None)
        for n in range(min_s + 1, max_s + 1)
    )


# --- edge checks ------------------------------------------------------------------------------


def _sorted_signers(items: Sequence[Signed[Any]], what: str) -> None:
    signers = [s.signer for s in items]
    _require(
        all(a < b for a, b in pairwise(signers)),
        f"{what} not sorted by distinct signers",
    )


def _expected_signer(message: Message, membership: Membership) -> str:
    if isinstance(message, Request):
        return message.client
    if isinstance(message, PrePrepare | NewView):
        return membership.primary(message.view)
    return message.replica


def _check_signed(signed: Signed[Any], membership: Membership) -> None:
    """Steps 3–7 of the module docstring for one envelope, outer or nested."""
    if signed.chain_id != membership.chain_id:
        raise WrongChain(f"signed for chain {signed.chain_id!r}")
    message: Message = signed.message
    role = membership.clients if isinstance(message, Request) else membership.replicas
    key = role.get(signed.signer)
    if key is None:
        kind = "client" if isinstance(message, Request) else "replica"
        raise UnknownSender(f"{signed.signer!r} is not a {kind} ({type(message).__name__})")
    if signed.signer != _expected_signer(message, membership):
        raise InvalidMessage(f"{type(message).__name__} may not be signed by {signed.signer!r}")
    if not signed.verify(key):
        raise BadSignature(f"bad signature by {signed.signer!r} on {type(message).__name__}")
    message.validate_basic(membership)


def open_frame(data: bytes, membership: Membership, *, max_size: int) -> Signed[Message]:
    """Decode, authenticate and validate one frame from the network.

    Args:
        data: The frame (without the stream's length prefix), untrusted.
        membership: Who may sign what on this chain.
        max_size: Frames longer than this are refused unread.

    Returns:
        The signed message, every signature in it verified and every field checked.

    Raises:
        FrameError: One subclass per reason in :data:`REASONS`; nothing else, whatever ``data``
            holds. The caller counts ``e.reason``, logs, and drops the frame.
    """
    if len(data) > max_size:
        raise OversizedFrame(f"frame of {len(data)} bytes exceeds {max_size}")
    signed = decode_signed(data)
    if isinstance(signed.message, PrePrepare) and signed.message.batch is None:
        raise InvalidMessage("a pre-prepare on its own must carry its batch")
    _check_signed(signed, membership)
    return signed


# --- encoding ---------------------------------------------------------------------------------


def _id_bytes(value: str) -> bytes:
    if not _id_ok(value):
        raise EncodeError(f"id must be 1..{MAX_ID_BYTES} UTF-8 bytes: {value!r}")
    return value.encode("utf-8")


class _Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def u8(self, value: int) -> None:
        self._parts.append(bytes((value,)))

    def u64(self, value: int) -> None:
        if not 0 <= value <= _U64_MAX:
            raise EncodeError(f"integer outside u64: {value}")
        self._parts.append(value.to_bytes(8, "big"))

    def raw(self, value: bytes) -> None:
        """Bytes that are already an encoding (a cached one), written as they are."""
        self._parts.append(value)

    def blob(self, value: bytes) -> None:
        if len(value) > _U32_MAX:
            raise EncodeError("byte string longer than 2**32 - 1")
        self._parts.append(len(value).to_bytes(4, "big"))
        self._parts.append(bytes(value))

    def ident(self, value: str) -> None:
        self.blob(_id_bytes(value))

    def items(self, values: Sequence[Any], write: Callable[[Any], None]) -> None:
        self._parts.append(len(values).to_bytes(4, "big"))
        for value in values:
            write(value)

    def signed(self, signed: Signed[Any]) -> None:
        self.u8(Signed.TAG)
        self.ident(signed.chain_id)
        self.message(signed.message)
        self.ident(signed.signer)
        self.blob(signed.signature)

    def cert(self, cert: PreparedCertificate) -> None:
        self.u8(PreparedCertificate.TAG)
        self.signed(cert.pre_prepare)
        self.items(cert.prepares, self.signed)

    def message(self, m: Message) -> None:
        self.u8(m.TAG)
        if isinstance(m, Request):
            self.ident(m.client)
            self.u64(m.timestamp)
            self.blob(m.operation)
        elif isinstance(m, Reply):
            self.u64(m.view)
            self.u64(m.timestamp)
            self.ident(m.client)
            self.ident(m.replica)
            self.blob(m.result)
        elif isinstance(m, PrePrepare):
            self.u64(m.view)
            self.u64(m.seq)
            self.blob(m.digest)
            if m.batch is None:
                self.u8(0)
            else:
                self.u8(1)
                self.u64(m.origin)
                self.items(m.batch, self.signed)
        elif isinstance(m, Prepare | Commit):
            self.u64(m.view)
            self.u64(m.seq)
            self.blob(m.digest)
            self.ident(m.replica)
        elif isinstance(m, Checkpoint):
            self.u64(m.seq)
            self.blob(m.state_digest)
            self.ident(m.replica)
        elif isinstance(m, ViewChange):
            self.u64(m.new_view)
            self.u64(m.checkpoint_seq)
            self.items(m.checkpoint_proof, self.signed)
            self.items(m.prepared, self.cert)
            self.ident(m.replica)
        elif isinstance(m, NewView):
            self.u64(m.view)
            self.items(m.view_changes, self.signed)
            self.items(m.pre_prepares, self.signed)
        elif isinstance(m, FetchState):
            self.u64(m.seq)
            self.u64(m.chunk)
            self.ident(m.replica)
        elif isinstance(m, StateChunk):
            self.u64(m.seq)
            self.blob(m.state_digest)
            self.u64(m.chunk)
            self.u64(m.total)
            self.blob(m.data)
            self.items(m.proof, self.blob)
            self.ident(m.replica)
        elif isinstance(m, BlockRequest):
            self.u64(m.from_height)
            self.u64(m.count)
            self.ident(m.replica)
        elif isinstance(m, BlockData):
            self.u64(m.from_height)
            self.items(m.blocks, self.blob)
            self.u64(m.head_next)
            self.ident(m.replica)
        else:
            self.u64(m.height)
            self.blob(m.block_hash)
            self.ident(m.replica)
            self.blob(m.signature)


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise MalformedFrame("truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    @property
    def pos(self) -> int:
        """How many bytes were read so far."""
        return self._pos

    def since(self, start: int) -> bytes:
        """The bytes read from ``start`` (an earlier :attr:`pos`) up to now."""
        return self._data[start : self._pos]

    @property
    def data(self) -> bytes:
        """All the bytes being read (for a caller parsing a hot structure in one go)."""
        return self._data

    def seek(self, pos: int) -> None:
        """Continue at ``pos`` (at or after :attr:`pos`): the caller read up to there.

        Raises:
            MalformedFrame: ``pos`` is past the end.
        """
        if pos > len(self._data):
            raise MalformedFrame("truncated")
        self._pos = pos

    def done(self) -> None:
        if self._pos != len(self._data):
            raise MalformedFrame(f"{len(self._data) - self._pos} trailing bytes")

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def blob(self) -> bytes:
        return self._take(self.u32())

    def ident(self) -> str:
        raw = self.blob()
        if not 0 < len(raw) <= MAX_ID_BYTES:
            raise MalformedFrame(f"id of {len(raw)} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedFrame("id is not UTF-8") from e

    def items(self, read: Callable[[], Any]) -> tuple[Any, ...]:
        count = self.u32()
        # Every item takes at least one byte: a count larger than what is left is a lie, and
        # refusing it now keeps a 4-byte header from promising billions of loop turns.
        if count > len(self._data) - self._pos:
            raise MalformedFrame(f"list of {count} items in {len(self._data) - self._pos} bytes")
        return tuple(read() for _ in range(count))

    def tag(self, *expected: int) -> int:
        tag = self.u8()
        if tag not in expected:
            raise MalformedFrame(f"unexpected type tag 0x{tag:02x}")
        return tag

    def signed(self, *expected: type[Any]) -> Signed[Any]:
        self.tag(Signed.TAG)
        chain_id = self.ident()
        message = self.message(*expected)
        signer = self.ident()
        signature = self.blob()
        return Signed(message, signer, signature, chain_id)

    def cert(self) -> PreparedCertificate:
        self.tag(PreparedCertificate.TAG)
        return PreparedCertificate(
            self.signed(PrePrepare), self.items(lambda: self.signed(Prepare))
        )

    def message(self, *expected: type[Any]) -> Message:
        tag = self.tag(*(cls.TAG for cls in expected))
        if tag == Request.TAG:
            return Request(self.ident(), self.u64(), self.blob())
        if tag == Reply.TAG:
            return Reply(self.u64(), self.u64(), self.ident(), self.ident(), self.blob())
        if tag == PrePrepare.TAG:
            view, seq, digest = self.u64(), self.u64(), self.blob()
            present = self.u8()
            if present > 1:
                raise MalformedFrame(f"presence byte {present}")
            if not present:
                return PrePrepare(view, seq, digest, None)
            origin = self.u64()
            return PrePrepare(view, seq, digest, self.items(lambda: self.signed(Request)), origin)
        if tag == Prepare.TAG:
            return Prepare(self.u64(), self.u64(), self.blob(), self.ident())
        if tag == Commit.TAG:
            return Commit(self.u64(), self.u64(), self.blob(), self.ident())
        if tag == Checkpoint.TAG:
            return Checkpoint(self.u64(), self.blob(), self.ident())
        if tag == ViewChange.TAG:
            return ViewChange(
                self.u64(),
                self.u64(),
                self.items(lambda: self.signed(Checkpoint)),
                self.items(self.cert),
                self.ident(),
            )
        if tag == NewView.TAG:
            return NewView(
                self.u64(),
                self.items(lambda: self.signed(ViewChange)),
                self.items(lambda: self.signed(PrePrepare)),
            )
        if tag == FetchState.TAG:
            return FetchState(self.u64(), self.u64(), self.ident())
        if tag == BlockSignature.TAG:
            return BlockSignature(self.u64(), self.blob(), self.ident(), self.blob())
        if tag == BlockRequest.TAG:
            return BlockRequest(self.u64(), self.u64(), self.ident())
        if tag == BlockData.TAG:
            return BlockData(self.u64(), self.items(self.blob), self.u64(), self.ident())
        return StateChunk(
            self.u64(),
            self.blob(),
            self.u64(),
            self.u64(),
            self.blob(),
            self.items(self.blob),
            self.ident(),
        )


_MESSAGE_TYPES: tuple[type[Any], ...] = (
    Request,
    Reply,
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    FetchState,
    StateChunk,
    BlockSignature,
    BlockRequest,
    BlockData,
)


def encode(item: Message | Signed[Any]) -> bytes:
    """The canonical encoding of a message or a signed envelope (module docstring).

    Args:
        item: The message or envelope.

    Returns:
        Its bytes; equal items give equal bytes.

    Raises:
        EncodeError: An integer is outside u64, or an id is empty or longer than 64 bytes.
    """
    w = _Writer()
    if isinstance(item, Signed):
        w.signed(item)
    else:
        w.message(item)
    return w.getvalue()


def _decode_canonical(data: bytes, read: Callable[[_Reader], Any]) -> Any:
    r = _Reader(bytes(data))
    item = read(r)
    r.done()
    try:
        again = encode(item)
    except EncodeError as e:
        raise MalformedFrame(f"decoded value does not re-encode: {e}") from e
    if again != data:
        raise MalformedFrame("not the canonical encoding")
    return item


def decode(data: bytes) -> Message:
    """Decode a bare message (no envelope), refusing anything but its canonical encoding.

    Args:
        data: The bytes, untrusted.

    Returns:
        The message. Its fields are not validated: see ``validate_basic``.

    Raises:
        MalformedFrame: The bytes are not exactly one canonically encoded message.
    """
    message: Message = _decode_canonical(data, lambda r: r.message(*_MESSAGE_TYPES))
    return message


def decode_signed(data: bytes) -> Signed[Message]:
    """Decode a signed envelope, refusing anything but its canonical encoding.

    Args:
        data: The bytes, untrusted.

    Returns:
        The envelope. Nothing is verified: use :func:`open_frame` on untrusted input.

    Raises:
        MalformedFrame: The bytes are not exactly one canonically encoded envelope.
    """
    signed: Signed[Message] = _decode_canonical(data, lambda r: r.signed(*_MESSAGE_TYPES))
    return signed


def frame(signed: Signed[Any]) -> bytes:
    """The wire bytes of a signed message (what :func:`open_frame` takes back).

    Raises:
        EncodeError: The message cannot be encoded.
    """
    return encode(signed)


NULL_DIGEST = batch_digest((), 0)
"""Digest of the empty batch: the null request a new primary proposes for a gap."""


# --- stream framing ---------------------------------------------------------------------------


def encode_frame(data: bytes) -> bytes:
    """Prefix a frame with its length (u32 big-endian) for a byte stream such as TCP.

    Args:
        data: The frame, e.g. ``frame(signed)``.

    Returns:
        ``u32 len(data) || data``.

    Raises:
        EncodeError: The frame is 2**32 bytes or longer.
    """
    if len(data) > _U32_MAX:
        raise EncodeError("frame longer than 2**32 - 1 bytes")
    return len(data).to_bytes(_LENGTH_PREFIX, "big") + data


class FrameReader:
    """Splits a byte stream into frames, however the bytes are chunked.

    At most ``4 + max_size`` bytes of an unfinished frame are kept between calls: a declared
    length above ``max_size`` raises :class:`OversizedFrame` as soon as the 4-byte header is
    seen, and the reader stays failed (the stream cannot be resynchronised; close it).

    Example:
        >>> reader = FrameReader(max_size=1024)
        >>> stream = encode_frame(b"ab") + encode_frame(b"c")
        >>> reader.feed(stream[:3]), reader.feed(stream[3:])
        ([], [b'ab', b'c'])
    """

    def __init__(self, *, max_size: int) -> None:
        """Start a reader for one stream.

        Args:
            max_size: Largest frame accepted, in bytes (without the length prefix).

        Raises:
            ValueError: ``max_size`` is negative.
        """
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self._max_size = max_size
        self._buffer = bytearray()
        self._failed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the stream; return the frames they complete, in order.

        Args:
            data: The next bytes of the stream, any length.

        Returns:
            The complete frames, without their length prefixes.

        Raises:
            OversizedFrame: A declared frame length exceeds ``max_size`` (now or earlier).
        """
        if self._failed:
            raise OversizedFrame("stream already failed on an oversized frame")
        self._buffer += data
        frames: list[bytes] = []
        start = 0
        while len(self._buffer) - start >= _LENGTH_PREFIX:
            size = int.from_bytes(self._buffer[start : start + _LENGTH_PREFIX], "big")
            if size > self._max_size:
                self._failed = True
                self._buffer.clear()
                raise OversizedFrame(f"declared frame of {size} bytes exceeds {self._max_size}")
            end = start + _LENGTH_PREFIX + size
            if end > len(self._buffer):
                break
            frames.append(bytes(self._buffer[start + _LENGTH_PREFIX : end]))
            start = end
        del self._buffer[:start]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame (at most ``4 + max_size``)."""
        return len(self._buffer)
