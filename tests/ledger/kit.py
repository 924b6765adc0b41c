"""Shared builders for the ledger tests: fixed keys, entries, institution transactions and
certified blocks (real signatures, fixed seeds, so that failures replay identically)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from medfabric.crypto.keys import SigningKey, VerifyKey
from medfabric.ledger.blocks import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockHeader,
    CommitSig,
    Entry,
    EntryIndex,
    NotarizationState,
    NotarizeTx,
    block_hash,
    entries_root,
    sign_block,
    sign_tx,
    storage_address,
)
from medfabric.ledger.messages import Membership

CHAIN = "medfabric-test"
REPLICA_KEYS = {f"node-{i}": SigningKey.from_bytes(bytes([i + 1]) * 32) for i in range(4)}
REPLICAS: dict[str, VerifyKey] = {r: k.verify_key for r, k in REPLICA_KEYS.items()}
QUORUM = 3
INST_KEYS = {h: SigningKey.from_bytes(bytes([0x40 + i]) * 32) for i, h in enumerate(["h1", "h2"])}
INSTITUTIONS: dict[str, VerifyKey] = {h: k.verify_key for h, k in INST_KEYS.items()}


def h(n: int) -> bytes:
    """A content hash named by a number."""
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def entry(n: int, patient: bytes = b"") -> Entry:
    """The entry notarizing ``h(n)``."""
    address = storage_address("h1", "HIS", "visits", f"k/{n}")
    return Entry(h(n), EntryIndex(address, "visit", 1_700_000_000_000 + n, patient))


def tx(numbers: list[int], institution: str = "h1", nonce: int = 0) -> NotarizeTx:
    """A transaction of ``institution`` notarizing ``h(n)`` for each number."""
    return sign_tx(
        institution, nonce, [entry(n) for n in numbers], INST_KEYS[institution], chain_id=CHAIN
    )


def certify(
    header: BlockHeader, signers: Sequence[str] = ("node-0", "node-1", "node-2")
) -> tuple[CommitSig, ...]:
    """A commit certificate of ``signers`` (sorted, as a certificate must be)."""
    return tuple(
        sign_block(header, REPLICA_KEYS[r], replica=r, chain_id=CHAIN) for r in sorted(signers)
    )


def make_block(
    previous: BlockHeader | None,
    txs: list[NotarizeTx],
    state: NotarizationState,
    *,
    advance: bool = False,
) -> Block:
    """The certified block after ``previous``; its state root is ``state`` after its entries.

    ``state`` is left unchanged unless ``advance`` (then the entries are applied to it).
    """
    height = 0 if previous is None else previous.height + 1
    entries = [e for t in txs for e in t.entries]
    header = BlockHeader(
        height=height,
        previous_hash=GENESIS_PREVIOUS_HASH if previous is None else block_hash(previous),
        entries_root=entries_root(entries),
        state_root=state.preview_root(entries, height),
        view=0,
        proposer="node-0",
        time=1000 + height,
    )
    if advance:
        state.apply(entries, height)
    return Block(header, tuple(txs), certify(header))


# --- PBFT messages ----------------------------------------------------------------------------

MESSAGE_CHAIN = "test-chain"
CLIENT_KEYS = {
    name: SigningKey.from_bytes(bytes([0x40 + i]) * 32)
    for i, name in enumerate(["clinic-a", "clinic-b"])
}
KEYS = {**REPLICA_KEYS, **CLIENT_KEYS}
OUTSIDER = SigningKey.from_bytes(b"\x77" * 32)
"""A key no membership knows."""


def membership(chain: str = MESSAGE_CHAIN, **options: int) -> Membership:
    """The 4 replicas and 2 clients above, as a membership of ``chain``."""
    return Membership(
        chain,
        {r: k.verify_key for r, k in REPLICA_KEYS.items()},
        {c: k.verify_key for c, k in CLIENT_KEYS.items()},
        **options,
    )
