"""Replaying a chain from genesis as an auditor does: every block is checked against its
predecessor, its transactions' signatures, its entries root, the state root recomputed by
executing the notarization contract, and its commit certificate; what it notarized is indexed.

Trusting nothing but the membership (the replicas' and institutions' public keys), a replay
that reaches the head proves the whole index: each content hash maps to the block and position
where it was first notarized, with the entry's index (storage address, data type, timestamp,
pseudonymous patient).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medfabric.ledger.blocks import (
    Block,
    BlockError,
    BlockHeader,
    EntryIndex,
    NotarizationState,
    block_entries,
    verify_block,
)
from medfabric.ledger.client import ClientError, LedgerClient
from medfabric.ledger.messages import LedgerError, Membership

__all__ = ["ChainReplay", "Notarized", "ReplayError", "replay_from"]


class ReplayError(LedgerError):
    """A block failed verification, or the chain could not be read; says which and why."""


@dataclass(frozen=True, slots=True)
class Notarized:
    """Where a content hash was first notarized, and its entry's index."""

    height: int
    position: int
    index: EntryIndex
    time: int  # the block's time, ms since the epoch


class ChainReplay:
    """Feed blocks in height order; each is verified before it is indexed.

    Args:
        membership: The chain's membership (keys of replicas and institutions).
    """

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.state = NotarizationState()
        self.head: BlockHeader | None = None
        self.index: dict[bytes, Notarized] = {}
        self.blocks = 0
        self.entries = 0

    def add(self, block: Block) -> None:
        """Verify ``block`` as the next one and index its new entries.

        Raises:
            ReplayError: The block does not verify; nothing of it is indexed.
        """
        entries = block_entries(block)
        try:
            root = self.state.preview_root(entries, block.header.height)
            m = self.membership
            verify_block(
                block,
                self.head,
                chain_id=m.chain_id,
                replicas=m.replicas,
                quorum=m.quorum,
                institutions=m.clients,
                state_root=root,
            )
        except (BlockError, LedgerError) as e:
            raise ReplayError(f"block {block.header.height} does not verify: {e}") from e
        self.state.apply(entries, block.header.height)
        for position, entry in enumerate(entries):
            if entry.content_hash not in self.index:
                self.index[entry.content_hash] = Notarized(
                    block.header.height, position, entry.index, block.header.time
                )
        self.head = block.header
        self.blocks += 1
        self.entries += len(entries)


def replay_from(
    client: LedgerClient, *, progress: Callable[[int, int], None] | None = None
) -> ChainReplay:
    """Fetch every block up to the current head through ``client`` and replay them.

    Args:
        progress: Called with (blocks done, blocks in all) after each block.

    Raises:
        ReplayError: A block is missing or does not verify, or no node answered.
    """
    replay = ChainReplay(client.membership)
    try:
        top = client.height()
    except ClientError as e:
        raise ReplayError(f"cannot read the chain: {e}") from e
    if top is None:
        return replay
    for height in range(top + 1):
        try:
            block = client.block(height)
        except ClientError as e:
            raise ReplayError(f"cannot read block {height}: {e}") from e
        if block is None:
            raise ReplayError(f"no node serves block {height} (head {top})")
        replay.add(block)
        if progress is not None:
            progress(height + 1, top + 1)
    return replay
