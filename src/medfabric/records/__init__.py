"""The canonical record, its canonical serialization and content hash (golden vectors),
the batch manifest and its Merkle root: the provenance format every stage agrees on.

Built by the gateway issue (3). May use: crypto.
"""
