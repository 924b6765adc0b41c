"""Keys and key files, Ed25519 signing, X25519 + AES-GCM sealing, envelope encryption,
RFC 6962 Merkle trees and proofs — over `cryptography` and `hashlib`, no policy.

Built by the gateway and ledger issues (3, 6). May use: nothing of medfabric.
"""

from medfabric.crypto.merkle import (
    MerkleError,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = ["MerkleError", "MerkleTree", "leaf_hash", "verify_consistency", "verify_inclusion"]
