"""The permissioned chain: transactions, blocks, per-record proofs, the PBFT replica (a pure
state machine), node runtime, client, contracts. Knows nothing of health data.

Built by issue 6. May use: crypto.
"""
