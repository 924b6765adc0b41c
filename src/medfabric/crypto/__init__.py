"""Keys and key files, Ed25519 signing, X25519 + AES-GCM sealing, envelope encryption,
RFC 6962 Merkle trees and proofs — over `cryptography` and `hashlib`, no policy.

Built by the gateway and ledger issues (3, 6). May use: nothing of medfabric.
"""

from medfabric.crypto.envelope import (
    DataKey,
    MasterKey,
    WrappedKey,
    blind_index,
    decrypt_field,
    encrypt_field,
    rewrap,
    save_master_key,
    unwrap,
    wrap,
)
from medfabric.crypto.errors import CryptoError, EnvelopeError, KeyFileError, SealError
from medfabric.crypto.keys import (
    EncryptionKey,
    PublicEncryptionKey,
    SigningKey,
    VerifyKey,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from medfabric.crypto.merkle import (
    MerkleError,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from medfabric.crypto.sealing import open_sealed, seal

__all__ = [
    "CryptoError",
    "DataKey",
    "EncryptionKey",
    "EnvelopeError",
    "KeyFileError",
    "MasterKey",
    "MerkleError",
    "MerkleTree",
    "PublicEncryptionKey",
    "SealError",
    "SigningKey",
    "VerifyKey",
    "WrappedKey",
    "blind_index",
    "decrypt_field",
    "encrypt_field",
    "leaf_hash",
    "load_private_key",
    "load_public_key",
    "open_sealed",
    "rewrap",
    "save_master_key",
    "save_private_key",
    "save_public_key",
    "seal",
    "unwrap",
    "verify_consistency",
    "verify_inclusion",
    "wrap",
]
