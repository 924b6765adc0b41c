"""The permissioned chain: transactions, blocks, per-record proofs, the PBFT replica (a pure
state machine), node runtime, client, contracts. Knows nothing of health data.

Built by issue 6. May use: crypto.
"""

from medfabric.ledger.messages import (
    REASONS,
    Checkpoint,
    Commit,
    FetchState,
    FrameError,
    FrameReader,
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
    encode_frame,
    frame,
    open_frame,
    sign,
)

__all__ = [
    "REASONS",
    "Checkpoint",
    "Commit",
    "FetchState",
    "FrameError",
    "FrameReader",
    "LedgerError",
    "Membership",
    "Message",
    "NewView",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Reply",
    "Request",
    "Signed",
    "StateChunk",
    "ViewChange",
    "encode_frame",
    "frame",
    "open_frame",
    "sign",
]
