"""Notarization entries, institution transactions, blocks, the notarization contract and proofs.

Pure: no I/O, clocks or randomness. The flow is: an institution signs a :class:`NotarizeTx`
holding a batch of :class:`Entry` values; the primary orders transactions into a
:class:`Block`; the native contract :class:`NotarizationState` executes the block's entries;
``2f + 1`` replicas sign the header hash (the commit certificate); :func:`prove` then serves one
entry's :class:`EntryProof`, which :func:`verify_entry_proof` checks offline (or a
:class:`ProofVerifier`, which verifies each distinct commit signature once across many proofs).

Encoding (the conventions of ``messages.py``): a one-byte type tag (``Entry`` 0x21,
``NotarizeTx`` 0x22, ``BlockHeader`` 0x23, ``Block`` 0x24, ``CommitSig`` 0x25, ``EntryProof``
0x26, state leaf 0x27), then the fields in order; integers u64 big-endian; byte strings and
UTF-8 strings with a u32 big-endian length; lists with a u32 count. Decoders refuse unknown tags,
truncation, trailing bytes and anything that does not re-encode to the same bytes, so each value
has exactly one encoding.

Hashes and signatures:

- The Merkle leaf of an entry is its encoding: the entries root of a block is the RFC 6962 root
  over ``leaf_hash(encode(entry))`` for the entries of all its transactions, in order.
- ``block_hash(header) = SHA-256(encode(header))``.
- An institution signs ``b"medfabric-tx-v1" || u16 len(chain) || chain || tx body`` (the tx
  encoding without its signature); a replica's commit signature covers
  ``b"medfabric-block-v1" || u16 len(chain) || chain || block_hash(header)``. The distinct
  prefixes keep a tx signature, a block signature and a PBFT message signature
  (``b"medfabric-pbft-v1"``) from ever standing for one another.

Invariants:

- An :class:`Entry` holds a 32-byte content hash, a storage address
  ``hospital/system/table/local_key`` (first three parts non-empty and without ``/``), a data type,
  a timestamp in ms and a pseudonymous patient id that is empty or 32 bytes (a keyed hash: no
  identifier is ever on chain). Construction refuses anything else.
- A valid transaction has 1 to :data:`MAX_TX_ENTRIES` entries with distinct content hashes.
- A certificate lists commit signatures sorted by replica id with no repeats; every signature
  in it must verify (a certificate carrying a bad signature is refused even if enough others are
  good: there is one canonical certificate, not a bag of votes).
- :class:`NotarizationState` maps a content hash to the first ``(height, position)`` that
  notarized it; later notarizations of the same hash are reported as duplicates and change
  nothing. Its root depends only on the mapping, never on insertion order.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from types import MappingProxyType
from typing import ClassVar, TypeVar

from medfabric.crypto.keys import SigningKey, VerifyKey
from medfabric.crypto.merkle import (
    MerkleFrontier,
    MerkleTree,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)
from medfabric.ledger.messages import (
    DIGEST_SIZE,
    InvalidMessage,
    LedgerError,
    MalformedFrame,
    _id_bytes,
    _id_ok,
    _Reader,
    _Writer,
)

__all__ = [
    "BLOCK_DOMAIN",
    "DEFAULT_SIGNATURE_CACHE",
    "EMPTY_ROOT",
    "GENESIS_PREVIOUS_HASH",
    "MAX_ADDRESS_BYTES",
    "MAX_DATA_TYPE_BYTES",
    "MAX_TX_ENTRIES",
    "PROOF_RESULTS",
    "TX_DOMAIN",
    "Block",
    "BlockError",
    "BlockHeader",
    "CommitSig",
    "Entry",
    "EntryIndex",
    "EntryProof",
    "InvalidTx",
    "Location",
    "NotarizationResult",
    "NotarizationState",
    "NotarizeTx",
    "ProofVerifier",
    "block_entries",
    "block_hash",
    "block_signing_bytes",
    "check_certificate",
    "decode_block",
    "decode_entry",
    "decode_entry_proof",
    "decode_header",
    "decode_tx",
    "encode_block",
    "encode_entry",
    "encode_entry_proof",
    "encode_header",
    "encode_tx",
    "entries_root",
    "prove",
    "sign_block",
    "sign_tx",
    "storage_address",
    "tx_signing_bytes",
    "verify_block",
    "verify_entry_proof",
    "verify_tx",
]

TX_DOMAIN = b"medfabric-tx-v1"
"""Prefix of the bytes an institution signs for a transaction."""

BLOCK_DOMAIN = b"medfabric-block-v1"
"""Prefix of the bytes a replica signs for a block's commit certificate."""

MAX_TX_ENTRIES = 10_000
"""Most entries in one transaction: bounds a tx to about 1.5 MB and one verification's work."""

MAX_ADDRESS_BYTES = 1024
"""Longest storage address, in UTF-8 bytes."""

MAX_DATA_TYPE_BYTES = 64
"""Longest data type, in UTF-8 bytes."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 6962 root of the empty tree: the entries root of an empty block, the empty state root."""

GENESIS_PREVIOUS_HASH = bytes(DIGEST_SIZE)
"""The previous hash of the block at height 0."""

PROOF_RESULTS: tuple[str, ...] = (
    "VALID",
    "hash mismatch",
    "not in block",
    "bad certificate",
    "untrusted header",
)
"""Every answer of :func:`verify_entry_proof` and :meth:`ProofVerifier.verify`."""

_U64_MAX = 2**64 - 1
T = TypeVar("T")
_PATIENT_ID_SIZES = (0, 32)


class BlockError(LedgerError):
    """A block failed :func:`verify_block`; ``reason`` names the first check that failed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidTx(LedgerError):
    """A transaction failed :func:`verify_tx`; ``reason`` is one of :attr:`REASONS`."""

    REASONS: ClassVar[tuple[str, ...]] = (
        "unknown_institution",
        "bad_signature",
        "empty",
        "oversized",
        "duplicate_entry",
    )

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise InvalidMessage(why)


def _text_ok(value: object, limit: int) -> bool:
    try:
        return isinstance(value, str) and 0 < len(value.encode("utf-8")) <= limit
    except UnicodeEncodeError:
        return False


def _u64_ok(value: object) -> bool:
    return isinstance(value, int) and 0 <= value <= _U64_MAX


def _hash_ok(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_SIZE


# --- entries ----------------------------------------------------------------------------------


def storage_address(hospital: str, system: str, table: str, local_key: str) -> str:
    """Join the four parts of a storage address: ``hospital/system/table/local_key``.

    The local key may contain ``/`` (the address splits at the first three); the other parts
    may not, so the join is reversible.

    Raises:
        InvalidMessage: A part is empty, or one of the first three contains ``/``.
    """
    for name, part in (("hospital", hospital), ("system", system), ("table", table)):
        _require(bool(part) and "/" not in part, f"{name} must be non-empty without '/': {part!r}")
    _require(bool(local_key), "local_key must be non-empty")
    return f"{hospital}/{system}/{table}/{local_key}"


@dataclass(frozen=True, slots=True)
class EntryIndex:
    """Where a notarized record lives and what it is; no identifier is ever on chain.

    Attributes:
        address: ``hospital/system/table/local_key`` (see :func:`storage_address`).
        data_type: What the record is (a table or resource type), 1 to 64 UTF-8 bytes.
        timestamp: The record's timestamp, milliseconds since the Unix epoch (u64).
        patient: A pseudonymous patient id (a 32-byte keyed hash), or empty for no patient.

    Raises:
        InvalidMessage: A field breaks the rules above.
    """

    address: str
    data_type: str
    timestamp: int
    patient: bytes = b""

    def __post_init__(self) -> None:
        # Every record's entry passes here, several times per node: the messages are only
        # formatted for a field that fails.
        if not _text_ok(self.address, MAX_ADDRESS_BYTES):
            raise InvalidMessage(f"bad address: {self.address!r}")
        parts = self.address.split("/", 3)
        if not (len(parts) == 4 and all(parts)):
            raise InvalidMessage(
                f"address is not hospital/system/table/local_key: {self.address!r}"
            )
        if not _text_ok(self.data_type, MAX_DATA_TYPE_BYTES):
            raise InvalidMessage(f"bad data type: {self.data_type!r}")
        if not _u64_ok(self.timestamp):
            raise InvalidMessage(f"timestamp out of range: {self.timestamp!r}")
        if not (isinstance(self.patient, bytes) and len(self.patient) in _PATIENT_ID_SIZES):
            raise InvalidMessage("patient id must be empty or 32 bytes")


@dataclass(frozen=True, slots=True)
class Entry:
    """One notarized record: its content hash and its index.

    Raises:
        InvalidMessage: ``content_hash`` is not 32 bytes.
    """

    TAG: ClassVar[int] = 0x21
    content_hash: bytes
    index: EntryIndex
    # The canonical encoding and the leaf hash, computed once (a decoded entry keeps the bytes
    # it was read from): an entry is encoded for its transaction's signature, the entries
    # root, block checks, storage and proofs. Not part of the value (never compared).
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _leaf: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require(_hash_ok(self.content_hash), "content hash must be 32 bytes")

    @property
    def encoding(self) -> bytes:
        """The canonical encoding (:func:`encode_entry`)."""
        encoded = self._encoding
        if encoded is None:
            w = _Writer()
            w.u8(Entry.TAG)
            w.blob(self.content_hash)
            w.blob(self.index.address.encode("utf-8"))
            w.blob(self.index.data_type.encode("utf-8"))
            w.u64(self.index.timestamp)
            w.blob(self.index.patient)
            encoded = w.getvalue()
            object.__setattr__(self, "_encoding", encoded)
        return encoded

    @property
    def leaf_hash(self) -> bytes:
        """The entry's RFC 6962 leaf hash: ``leaf_hash(encode_entry(self))``."""
        leaf = self._leaf
        if leaf is None:
            leaf = leaf_hash(self.encoding)
            object.__setattr__(self, "_leaf", leaf)
        return leaf


def _write_entry(w: _Writer, e: Entry) -> None:
    w.raw(e.encoding)


_U32 = struct.Struct(">I")
_U64_U32 = struct.Struct(">QI")


def _read_entry(r: _Reader) -> Entry:
    # The hottest decoder (every record, several times per node): one pass over the buffer
    # instead of a reader call per field; the same rules and refusals as the reader's.
    data, start = r.data, r.pos
    try:
        if data[start] != Entry.TAG:
            raise MalformedFrame(f"unexpected type tag 0x{data[start]:02x}")
        at = start + 1
        (n,) = _U32.unpack_from(data, at)
        content_hash = data[at + 4 : at + 4 + n]
        at += 4 + n
        (n,) = _U32.unpack_from(data, at)
        address = data[at + 4 : at + 4 + n]
        at += 4 + n
        (n,) = _U32.unpack_from(data, at)
        data_type = data[at + 4 : at + 4 + n]
        at += 4 + n
        timestamp, n = _U64_U32.unpack_from(data, at)
        patient = data[at + 12 : at + 12 + n]
        at += 12 + n
    except (IndexError, struct.error) as e:
        raise MalformedFrame("truncated") from e
    r.seek(at)  # a short last field leaves ``at`` past the end: truncated
    try:
        index = EntryIndex(address.decode("utf-8"), data_type.decode("utf-8"), timestamp, patient)
    except UnicodeDecodeError as e:
        raise MalformedFrame("text is not UTF-8") from e
    entry = Entry(content_hash, index)
    # Fixed-width numbers, exact length prefixes and strict UTF-8: these fields encode back to
    # exactly the bytes just read, so they are the entry's encoding.
    object.__setattr__(entry, "_encoding", r.since(start))
    return entry


def encode_entry(entry: Entry) -> bytes:
    """The canonical encoding of an entry (also its Merkle leaf)."""
    return entry.encoding


def decode_entry(data: bytes) -> Entry:
    """Decode an entry, refusing anything but its canonical encoding.

    Raises:
        MalformedFrame: The bytes are not a canonical entry.
        InvalidMessage: A field breaks the :class:`Entry` rules.
    """
    return _decode(data, _read_entry, encode_entry)


def entries_root(entries: Iterable[Entry]) -> bytes:
    """The RFC 6962 root over the entries' leaf hashes, in order."""
    return root_from_leaf_hashes([e.leaf_hash for e in entries])


# --- transactions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotarizeTx:
    """A batch of entries signed by an institution registered in the ledger's membership.

    Attributes:
        institution: The institution (client) id, 1 to 64 UTF-8 bytes.
        nonce: Chosen by the institution, unique per institution (the PBFT request timestamp
            de-duplicates replays; the nonce makes two equal batches two distinct txs).
        entries: The entries, in the order they take in the block.
        signature: Ed25519 over :func:`tx_signing_bytes`.
    """

    TAG: ClassVar[int] = 0x22
    institution: str
    nonce: int
    entries: tuple[Entry, ...]
    signature: bytes = b""


def _write_tx_body(w: _Writer, tx: NotarizeTx) -> None:
    w.u8(NotarizeTx.TAG)
    w.ident(tx.institution)
    w.u64(tx.nonce)
    w.items(tx.entries, lambda e: _write_entry(w, e))


def _write_tx(w: _Writer, tx: NotarizeTx) -> None:
    _write_tx_body(w, tx)
    w.blob(tx.signature)


def _read_tx(r: _Reader) -> NotarizeTx:
    r.tag(NotarizeTx.TAG)
    institution, nonce = r.ident(), r.u64()
    entries = r.items(lambda: _read_entry(r))
    return NotarizeTx(institution, nonce, entries, r.blob())


def encode_tx(tx: NotarizeTx) -> bytes:
    """The canonical encoding of a transaction, signature included."""
    w = _Writer()
    _write_tx(w, tx)
    return w.getvalue()


def _domain(prefix: bytes, chain_id: str) -> bytes:
    chain = _id_bytes(chain_id)
    return prefix + len(chain).to_bytes(2, "big") + chain


def tx_signing_bytes(chain_id: str, tx: NotarizeTx) -> bytes:
    """``TX_DOMAIN || u16 len(chain) || chain || body``: what the institution signs."""
    w = _Writer()
    _write_tx_body(w, tx)
    return _domain(TX_DOMAIN, chain_id) + w.getvalue()


def sign_tx(
    institution: str, nonce: int, entries: Sequence[Entry], key: SigningKey, *, chain_id: str
) -> NotarizeTx:
    """Build and sign a notarization transaction.

    Raises:
        EncodeError: The institution id or chain id is not 1..64 UTF-8 bytes, or the nonce is
            outside u64.
    """
    tx = NotarizeTx(institution, nonce, tuple(entries))
    return replace(tx, signature=key.sign(tx_signing_bytes(chain_id, tx)))


def verify_tx(tx: NotarizeTx, registry: Mapping[str, VerifyKey], *, chain_id: str) -> None:
    """Check a transaction against the institutions registered on the chain.

    Checks, cheapest first: the batch is not empty nor larger than :data:`MAX_TX_ENTRIES`,
    no content hash appears twice, the institution is registered, the signature verifies.

    Args:
        tx: The transaction, untrusted.
        registry: Institution id → verify key (the membership's clients).
        chain_id: The chain.

    Raises:
        InvalidTx: With ``reason`` ``empty``, ``oversized``, ``duplicate_entry``,
            ``unknown_institution`` or ``bad_signature``.
    """
    if not tx.entries:
        raise InvalidTx("empty", "a transaction notarizes at least one entry")
    if len(tx.entries) > MAX_TX_ENTRIES:
        raise InvalidTx("oversized", f"{len(tx.entries)} entries > {MAX_TX_ENTRIES}")
    seen: set[bytes] = set()
    for e in tx.entries:
        if e.content_hash in seen:
            raise InvalidTx("duplicate_entry", e.content_hash.hex())
        seen.add(e.content_hash)
    key = registry.get(tx.institution) if _id_ok(tx.institution) else None
    if key is None:
        raise InvalidTx("unknown_institution", repr(tx.institution))
    if not key.verify(tx_signing_bytes(chain_id, tx), tx.signature):
        raise InvalidTx("bad_signature", f"institution {tx.institution!r}")


def decode_tx(data: bytes) -> NotarizeTx:
    """Decode a transaction, refusing anything but its canonical encoding.

    Raises:
        MalformedFrame: The bytes are not a canonical transaction.
        InvalidMessage: An entry breaks the :class:`Entry` rules.
    """
    return _decode(data, _read_tx, encode_tx)


# --- blocks -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """What the commit certificate signs (through :func:`block_hash`).

    Attributes:
        height: 0 for genesis, then +1 per block.
        previous_hash: ``block_hash`` of the previous header; :data:`GENESIS_PREVIOUS_HASH` at 0.
        entries_root: RFC 6962 root over all the block's entries (see :func:`entries_root`).
        state_root: :meth:`NotarizationState.state_root` after executing this block.
        view: The PBFT view in which the block was proposed.
        proposer: The replica id of the primary that proposed it.
        time: The proposer's time, ms since the Unix epoch; never less than the previous one.
    """

    TAG: ClassVar[int] = 0x23
    height: int
    previous_hash: bytes
    entries_root: bytes
    state_root: bytes
    view: int
    proposer: str
    time: int


@dataclass(frozen=True, slots=True)
class CommitSig:
    """A replica's signature over :func:`block_signing_bytes` of one header."""

    TAG: ClassVar[int] = 0x25
    replica: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Block:
    """A header, its transactions, and the commit certificate (sorted, distinct signers)."""

    TAG: ClassVar[int] = 0x24
    header: BlockHeader
    txs: tuple[NotarizeTx, ...]
    certificate: tuple[CommitSig, ...]


def _write_header(w: _Writer, h: BlockHeader) -> None:
    w.u8(BlockHeader.TAG)
    w.u64(h.height)
    w.blob(h.previous_hash)
    w.blob(h.entries_root)
    w.blob(h.state_root)
    w.u64(h.view)
    w.ident(h.proposer)
    w.u64(h.time)


def _read_header(r: _Reader) -> BlockHeader:
    r.tag(BlockHeader.TAG)
    return BlockHeader(r.u64(), r.blob(), r.blob(), r.blob(), r.u64(), r.ident(), r.u64())


def _write_sig(w: _Writer, s: CommitSig) -> None:
    w.u8(CommitSig.TAG)
    w.ident(s.replica)
    w.blob(s.signature)


def _read_sig(r: _Reader) -> CommitSig:
    r.tag(CommitSig.TAG)
    return CommitSig(r.ident(), r.blob())


def _write_block(w: _Writer, b: Block) -> None:
    w.u8(Block.TAG)
    _write_header(w, b.header)
    w.items(b.txs, lambda tx: _write_tx(w, tx))
    w.items(b.certificate, lambda s: _write_sig(w, s))


def _read_block(r: _Reader) -> Block:
    r.tag(Block.TAG)
    header = _read_header(r)
    txs = r.items(lambda: _read_tx(r))
    return Block(header, txs, r.items(lambda: _read_sig(r)))


def encode_header(header: BlockHeader) -> bytes:
    """The canonical encoding of a header."""
    w = _Writer()
    _write_header(w, header)
    return w.getvalue()


def decode_header(data: bytes) -> BlockHeader:
    """Decode a block header, refusing anything but its canonical encoding.

    Raises:
        MalformedFrame: The bytes are not a canonical header.
    """
    return _decode(data, _read_header, encode_header)


def encode_block(block: Block) -> bytes:
    """The canonical encoding of a block: header, transactions, certificate."""
    w = _Writer()
    _write_block(w, block)
    return w.getvalue()


def decode_block(data: bytes) -> Block:
    """Decode a block, refusing anything but its canonical encoding.

    Raises:
        MalformedFrame: The bytes are not a canonical block.
        InvalidMessage: An entry breaks the :class:`Entry` rules.
    """
    return _decode(data, _read_block, encode_block)


def block_hash(header: BlockHeader) -> bytes:
    """``SHA-256(encode_header(header))``: names the block; the next block chains to it."""
    return hashlib.sha256(encode_header(header)).digest()


def block_signing_bytes(chain_id: str, header: BlockHeader) -> bytes:
    """``BLOCK_DOMAIN || u16 len(chain) || chain || block_hash(header)``: what replicas sign."""
    return _domain(BLOCK_DOMAIN, chain_id) + block_hash(header)


def sign_block(header: BlockHeader, key: SigningKey, *, replica: str, chain_id: str) -> CommitSig:
    """One replica's commit signature on ``header``."""
    return CommitSig(replica, key.sign(block_signing_bytes(chain_id, header)))


def block_entries(block: Block) -> tuple[Entry, ...]:
    """All entries of the block's transactions, in order: the leaves of its entries root."""
    return tuple(e for tx in block.txs for e in tx.entries)


def check_certificate(
    header: BlockHeader,
    certificate: Sequence[CommitSig],
    replicas: Mapping[str, VerifyKey],
    quorum: int,
    *,
    chain_id: str,
) -> str | None:
    """Check a commit certificate; return None if it holds, else why it does not.

    Holds when signers are strictly sorted (so distinct), each is a replica, each signature
    verifies over :func:`block_signing_bytes`, and there are at least ``quorum`` of them.
    """
    if quorum < 1:
        return f"quorum must be >= 1, got {quorum}"
    for a, b in pairwise(certificate):
        if a.replica >= b.replica:
            return f"signers not sorted and distinct: {a.replica!r}, {b.replica!r}"
    if len(certificate) < quorum:
        return f"{len(certificate)} signatures < quorum {quorum}"
    message = block_signing_bytes(chain_id, header)
    for s in certificate:
        key = replicas.get(s.replica)
        if key is None:
            return f"signer {s.replica!r} is not a replica"
        if not key.verify(message, s.signature):
            return f"bad signature from {s.replica!r}"
    return None


def verify_block(
    block: Block,
    previous: BlockHeader | None,
    *,
    chain_id: str,
    replicas: Mapping[str, VerifyKey],
    quorum: int,
    institutions: Mapping[str, VerifyKey],
    state_root: bytes,
) -> None:
    """Check a block against its predecessor, its content and its certificate.

    Args:
        block: The block, untrusted.
        previous: The header of the block at ``height - 1`` (already trusted), or None when
            ``block`` is genesis.
        chain_id: The chain.
        replicas: Replica id → verify key (the membership's replicas).
        quorum: Signatures needed, ``2f + 1``.
        institutions: Institution id → verify key, to check every transaction.
        state_root: The root the contract computed by executing this block's entries on the
            state after ``previous`` (:meth:`NotarizationState.state_root`).

    Raises:
        BlockError: ``reason`` is ``height``, ``previous hash``, ``time``, ``proposer``,
            ``bad transaction``, ``entries root``, ``state root`` or ``bad certificate``.
    """
    h = block.header
    if previous is None:
        if h.height != 0:
            raise BlockError("height", f"genesis must be height 0, got {h.height}")
        if h.previous_hash != GENESIS_PREVIOUS_HASH:
            raise BlockError("previous hash", "genesis must chain to the zero hash")
    else:
        if h.height != previous.height + 1:
            raise BlockError("height", f"{h.height} does not follow {previous.height}")
        if h.previous_hash != block_hash(previous):
            raise BlockError("previous hash", f"at height {h.height}")
        if h.time < previous.time:
            raise BlockError("time", f"{h.time} < previous {previous.time}")
    if h.proposer not in replicas:
        raise BlockError("proposer", f"{h.proposer!r} is not a replica")
    for i, tx in enumerate(block.txs):
        try:
            verify_tx(tx, institutions, chain_id=chain_id)
        except InvalidTx as e:
            raise BlockError("bad transaction", f"tx {i}: {e}") from e
    if h.entries_root != entries_root(block_entries(block)):
        raise BlockError("entries root", f"at height {h.height}")
    if h.state_root != state_root:
        raise BlockError("state root", f"at height {h.height}")
    why = check_certificate(h, block.certificate, replicas, quorum, chain_id=chain_id)
    if why is not None:
        raise BlockError("bad certificate", why)


# --- the notarization contract ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """Where a content hash was notarized: block height and position in the block's entries."""

    height: int
    position: int


@dataclass(frozen=True, slots=True)
class NotarizationResult:
    """What one :meth:`NotarizationState.apply` did: content hashes newly notarized, in block
    order, and positions whose hash was already notarized (earlier, or earlier in this block)."""

    notarized: tuple[bytes, ...]
    duplicates: tuple[int, ...]


_STATE_LEAF_TAG = 0x27
_STATE_LEAF_HASH_PREFIX = bytes((0x00, _STATE_LEAF_TAG))  # the RFC 6962 leaf prefix, then the tag
_U64_PAIR = struct.Struct(">QQ")


def _state_leaf_hash(content_hash: bytes, height: int, position: int) -> bytes:
    """The leaf hash of a state leaf ``0x27 || content_hash || u64 height || u64 position``:
    ``SHA-256(0x00 || 0x27 || ...)``, the same as ``leaf_hash`` of those bytes, in one call."""
    return hashlib.sha256(
        _STATE_LEAF_HASH_PREFIX + content_hash + _U64_PAIR.pack(height, position)
    ).digest()


class NotarizationState:
    """The native notarization contract: content hash → first :class:`Location`.

    ``state_root()`` is the RFC 6962 root over the leaf hashes of
    ``0x27 || content_hash (32) || u64 height || u64 position``, one per notarized hash, in
    notarization order: sorted by ``(height, position)``, ties (which a valid state never has)
    broken by content hash. It depends only on the mapping. Because :meth:`apply` notarizes at
    increasing heights and, within a block, increasing positions, that order is the order in
    which hashes are first notarized, so the root is kept incrementally in a
    :class:`~medfabric.crypto.merkle.MerkleFrontier`: applying a block of ``k`` new hashes costs
    O(k) amortized hashes, reading the root at most O(log n), and memory beyond the mapping is
    O(log n). The definition is part of the format.
    """

    def __init__(self) -> None:
        """Create the empty state (no block applied, root :data:`EMPTY_ROOT`)."""
        self._where: dict[bytes, Location] = {}
        self._frontier = MerkleFrontier()
        self._height: int | None = None

    def __len__(self) -> int:
        return len(self._where)

    @property
    def height(self) -> int | None:
        """The last height applied, or None before any block."""
        return self._height

    def _check_height(self, height: int) -> None:
        if not _u64_ok(height) or (self._height is not None and height <= self._height):
            raise LedgerError(f"height {height} does not follow {self._height}")

    def apply(self, entries: Sequence[Entry], height: int) -> NotarizationResult:
        """Execute one block's entries (in block order) at ``height``.

        Each new content hash maps to ``Location(height, position)`` with ``position`` its
        index in ``entries``; a hash already notarized keeps its first location and its
        position is reported in ``duplicates``.

        Raises:
            LedgerError: ``height`` is not greater than the last height applied.
        """
        self._check_height(height)
        self._height = height
        where = self._where
        notarized: list[bytes] = []
        duplicates: list[int] = []
        leaves: list[bytes] = []
        for position, e in enumerate(entries):
            content_hash = e.content_hash
            if content_hash in where:
                duplicates.append(position)
                continue
            where[content_hash] = Location(height, position)
            leaves.append(_state_leaf_hash(content_hash, height, position))
            notarized.append(content_hash)
        self._frontier.extend(leaves)
        return NotarizationResult(tuple(notarized), tuple(duplicates))

    def locate(self, content_hash: bytes) -> Location | None:
        """Where ``content_hash`` was first notarized, or None."""
        return self._where.get(content_hash)

    def locations(self) -> Mapping[bytes, Location]:
        """Every notarized content hash and its first location (read-only view)."""
        return MappingProxyType(self._where)

    @classmethod
    def from_locations(
        cls, locations: Mapping[bytes, Location], height: int | None
    ) -> NotarizationState:
        """The state holding exactly ``locations``, last applied at ``height`` (a snapshot).

        The root is rebuilt over the leaves in ``(height, position)`` order (O(n log n) to sort,
        O(n) hashes), whatever the order of ``locations``.

        Raises:
            LedgerError: A hash is not 32 bytes, or a location lies above ``height`` (or its
                position is not a u64).
        """
        state = cls()
        for content_hash, loc in locations.items():
            if not _hash_ok(content_hash):
                raise LedgerError("a notarized hash is not 32 bytes")
            if height is None or not (_u64_ok(loc.height) and loc.height <= height):
                raise LedgerError(f"location {loc} is not below height {height}")
            if not _u64_ok(loc.position):
                raise LedgerError(f"location {loc}: the position is not a u64")
            state._where[content_hash] = loc
        # Sort keys ``u64 height || u64 position || hash`` order as (height, position, hash)
        # and compare as bytes, in C.
        pack = _U64_PAIR.pack
        keys = sorted([pack(loc.height, loc.position) + h for h, loc in state._where.items()])
        prefix, sha = _STATE_LEAF_HASH_PREFIX, hashlib.sha256
        state._frontier.extend(sha(prefix + k[16:] + k[:16]).digest() for k in keys)
        state._height = height
        return state

    def state_root(self) -> bytes:
        """The root over the mapping (see the class docstring); O(log n), cached."""
        return self._frontier.root()

    def preview_root(self, entries: Sequence[Entry], height: int) -> bytes:
        """The state root after applying ``entries`` at ``height``, leaving this state unchanged.

        Copies only the frontier (O(log n)), not the mapping.

        Raises:
            LedgerError: As :meth:`apply`.
        """
        self._check_height(height)
        where = self._where
        seen: set[bytes] = set()
        leaves: list[bytes] = []
        for position, e in enumerate(entries):
            content_hash = e.content_hash
            if content_hash in where or content_hash in seen:
                continue
            seen.add(content_hash)
            leaves.append(_state_leaf_hash(content_hash, height, position))
        if not leaves:
            return self._frontier.root()
        frontier = self._frontier.copy()
        frontier.extend(leaves)
        return frontier.root()


# --- proofs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryProof:
    """Everything a verifier needs offline to trust one entry.

    Attributes:
        entry: The notarized entry (its leaf is its encoding).
        position: Its index among the block's entries.
        entry_count: The number of entries in the block (the Merkle tree size).
        path: The RFC 6962 inclusion proof of the entry in ``header.entries_root``.
        header: The block's header.
        certificate: The block's commit certificate.
    """

    TAG: ClassVar[int] = 0x26
    entry: Entry
    position: int
    entry_count: int
    path: tuple[bytes, ...]
    header: BlockHeader
    certificate: tuple[CommitSig, ...]


def _write_proof(w: _Writer, p: EntryProof) -> None:
    w.u8(EntryProof.TAG)
    _write_entry(w, p.entry)
    w.u64(p.position)
    w.u64(p.entry_count)
    w.items(p.path, w.blob)
    _write_header(w, p.header)
    w.items(p.certificate, lambda s: _write_sig(w, s))


def _read_proof(r: _Reader) -> EntryProof:
    r.tag(EntryProof.TAG)
    entry, position, count = _read_entry(r), r.u64(), r.u64()
    path = r.items(r.blob)
    header = _read_header(r)
    return EntryProof(entry, position, count, path, header, r.items(lambda: _read_sig(r)))


def encode_entry_proof(proof: EntryProof) -> bytes:
    """The canonical encoding of an entry proof."""
    w = _Writer()
    _write_proof(w, proof)
    return w.getvalue()


def decode_entry_proof(data: bytes) -> EntryProof:
    """Decode an entry proof, refusing anything but its canonical encoding.

    Raises:
        MalformedFrame: The bytes are not a canonical proof.
        InvalidMessage: The entry breaks the :class:`Entry` rules.
    """
    return _decode(data, _read_proof, encode_entry_proof)


def prove(block: Block, position: int, *, tree: MerkleTree | None = None) -> EntryProof:
    """The proof of the entry at ``position`` among ``block``'s entries.

    Args:
        block: The block.
        position: The entry's position.
        tree: The Merkle tree of the block's entry leaves, if the caller keeps one (a store
            serving many proofs of one block); the path is then read from it instead of
            hashing every leaf again.

    Raises:
        IndexError: No entry at ``position``.
    """
    entries = block_entries(block)
    if not 0 <= position < len(entries):
        raise IndexError(f"position {position} outside 0..{len(entries) - 1}")
    if tree is not None:
        path = tree.inclusion_proof(position)
    else:
        path = inclusion_proof([e.leaf_hash for e in entries], position)
    return EntryProof(
        entries[position], position, len(entries), tuple(path), block.header, block.certificate
    )


def verify_entry_proof(
    proof: EntryProof,
    content_hash: bytes,
    *,
    chain_id: str,
    replicas: Mapping[str, VerifyKey],
    quorum: int,
    trusted_header: BlockHeader | None = None,
) -> str:
    """Check offline that ``content_hash`` was notarized in a committed block.

    Checks in order, answering the first that fails (one of :data:`PROOF_RESULTS`):

    1. ``hash mismatch``: the proof's entry is not for ``content_hash`` (the record changed).
    2. ``not in block``: the entry's leaf is not at ``position`` under ``header.entries_root``.
    3. ``bad certificate``: the header lacks ``quorum`` valid, distinct replica signatures.
    4. ``untrusted header``: ``trusted_header`` was given and the header differs from it.

    Never raises on a malformed proof. Every call verifies the certificate's signatures; a
    verifier checking many proofs (of the same blocks) uses :class:`ProofVerifier`, which gives
    the same answers and verifies each distinct signature once.

    Returns:
        ``"VALID"`` or the reason.
    """
    why = _check_entry(proof, content_hash)
    if why is not None:
        return why
    try:
        why = check_certificate(
            proof.header, proof.certificate, replicas, quorum, chain_id=chain_id
        )
    except LedgerError:  # a header field that cannot be encoded
        return "bad certificate"
    if why is not None:
        return "bad certificate"
    if trusted_header is not None and trusted_header != proof.header:
        return "untrusted header"
    return "VALID"


def _check_entry(proof: EntryProof, content_hash: bytes) -> str | None:
    """Checks 1 and 2 of :func:`verify_entry_proof`: None if they hold, else the reason."""
    if proof.entry.content_hash != content_hash:
        return "hash mismatch"
    if not verify_inclusion(
        proof.entry.leaf_hash,
        proof.position,
        proof.entry_count,
        list(proof.path),
        proof.header.entries_root,
    ):
        return "not in block"
    return None


_SignatureKey = tuple[bytes, str, bytes]  # (block_hash(header), replica, signature)

DEFAULT_SIGNATURE_CACHE = 4096
"""How many verified commit signatures a :class:`ProofVerifier` remembers by default (about a
thousand blocks' certificates)."""


class ProofVerifier:
    """Checks entry proofs for one membership, verifying each distinct commit signature once.

    :meth:`verify` answers exactly what :func:`verify_entry_proof` answers for the same chain,
    replica keys and quorum: every proof's certificate is checked in full (signers sorted and
    distinct, each a replica, at least ``quorum`` of them, every signature valid). The
    difference is the cost. A signature that verified is remembered in a bounded LRU cache as
    the triple (``block_hash(header)``, replica id, signature bytes); the same triple met again
    is not verified again. Proofs of one block share its header, and a replica's (deterministic
    Ed25519) signature on it is the same in every node's certificate, so checking many proofs
    of one block costs at most one verification per replica, and a proof of a block already
    seen costs its entry's leaf hash, its inclusion path and its header hash.

    A cached triple vouches only for that exact signature over that exact header hash (the
    signed bytes are ``BLOCK_DOMAIN || chain || block_hash(header)``, and the chain is fixed
    here), so a made-up header, another block's certificate or a certificate that differs in a
    single byte is still refused, and every proof found ``VALID`` carries a certificate that
    verifies on its own. Failed signatures are not cached.

    The membership is fixed at construction (the replica keys are copied), so a cache entry is
    always valid for it. Safe to share between threads.

    Args:
        chain_id: The chain.
        replicas: Replica id → verify key (the membership's replicas).
        quorum: Signatures needed, ``2f + 1``.
        max_cached: How many verified signatures to remember (least recently used dropped
            first); 0 disables the cache.

    Raises:
        LedgerError: ``max_cached`` is negative.

    Example::

        verifier = ProofVerifier(chain_id=m.chain_id, replicas=m.replicas, quorum=m.quorum)
        verdicts = [verifier.verify(p, h) for h, p in proofs]   # Ed25519 once per signature
    """

    def __init__(
        self,
        *,
        chain_id: str,
        replicas: Mapping[str, VerifyKey],
        quorum: int,
        max_cached: int = DEFAULT_SIGNATURE_CACHE,
    ) -> None:
        if max_cached < 0:
            raise LedgerError(f"max_cached must be >= 0, got {max_cached}")
        self.chain_id = chain_id
        self.quorum = quorum
        self.max_cached = max_cached
        self._replicas: Mapping[str, VerifyKey] = MappingProxyType(dict(replicas))
        self._verified: OrderedDict[_SignatureKey, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def replicas(self) -> Mapping[str, VerifyKey]:
        """The replica keys the certificates are checked against (read-only)."""
        return self._replicas

    @property
    def cached(self) -> int:
        """How many verified signatures are remembered now (at most ``max_cached``)."""
        return len(self._verified)

    def verify(
        self,
        proof: EntryProof,
        content_hash: bytes,
        *,
        trusted_header: BlockHeader | None = None,
    ) -> str:
        """Check ``proof`` as :func:`verify_entry_proof` does; ``"VALID"`` or the reason.

        Never raises on a malformed proof.
        """
        why = _check_entry(proof, content_hash)
        if why is not None:
            return why
        try:
            certified = self._certified(proof.header, proof.certificate)
        except LedgerError:  # a header field that cannot be encoded
            return "bad certificate"
        if not certified:
            return "bad certificate"
        if trusted_header is not None and trusted_header != proof.header:
            return "untrusted header"
        return "VALID"

    def _certified(self, header: BlockHeader, certificate: Sequence[CommitSig]) -> bool:
        # The rules of check_certificate, in its order; only the Ed25519 work is remembered.
        if self.quorum < 1:
            return False
        for a, b in pairwise(certificate):
            if a.replica >= b.replica:
                return False
        if len(certificate) < self.quorum:
            return False
        header_hash = block_hash(header)
        message = _domain(BLOCK_DOMAIN, self.chain_id) + header_hash
        for s in certificate:
            key = self._replicas.get(s.replica)
            if key is None:
                return False
            cacheable = type(s.replica) is str and type(s.signature) is bytes
            triple = (header_hash, s.replica, s.signature)
            if cacheable:
                with self._lock:
                    if triple in self._verified:
                        self._verified.move_to_end(triple)
                        continue
            if not key.verify(message, s.signature):
                return False
            if cacheable and self.max_cached:
                with self._lock:
                    self._verified[triple] = None
                    self._verified.move_to_end(triple)
                    while len(self._verified) > self.max_cached:
                        self._verified.popitem(last=False)
        return True


# --- decoding ---------------------------------------------------------------------------------


def _decode(data: bytes, read: Callable[[_Reader], T], encode: Callable[[T], bytes]) -> T:
    r = _Reader(bytes(data))
    item = read(r)
    r.done()
    try:
        again = encode(item)
    except LedgerError as e:
        raise MalformedFrame(f"decoded value does not re-encode: {e}") from e
    if again != data:
        raise MalformedFrame("not the canonical encoding")
    return item
