"""Sealing a payload for the holder of an X25519 key (the gateway seals each batch for the region).

A sealed payload is readable only with the recipient's :class:`EncryptionKey`; the sender needs
only the recipient's public key and keeps nothing (an ephemeral key pair per payload, in the
manner of HPKE's base mode and libsodium's sealed boxes, built here from ``cryptography``
primitives).

Construction, for one payload::

    e, E       = fresh X25519 key pair (ephemeral), R = recipient public key
    shared     = X25519(e, R)                                  (RFC 7748; all-zero refused)
    key        = HKDF-SHA256(ikm  = shared,                    (RFC 5869)
                             salt = E ‖ R,
                             info = b"medfabric seal v1" ‖ context,
                             length = 32)
    nonce      = 12 random bytes
    header     = b"MFS1" ‖ E ‖ nonce
    sealed     = header ‖ AES-256-GCM(key, nonce, plaintext, aad = header ‖ aad)

Byte format of ``sealed`` (all lengths fixed except the ciphertext)::

    offset  size  field
    0       4     magic and version: ASCII "MFS1"
    4       32    E, the ephemeral X25519 public key (RFC 7748 u-coordinate, little-endian)
    36      12    GCM nonce
    48      n     ciphertext (n = plaintext length)
    48+n    16    GCM tag

so ``len(sealed) == len(plaintext) + 64`` (:data:`OVERHEAD`).

Invariants:

- ``open_sealed`` either returns the exact plaintext that was sealed for this key with the same
  ``aad`` and ``context``, or raises :class:`SealError`; it never returns unauthenticated bytes.
  Every byte of the output is authenticated: the header is part of the GCM associated data and
  ``E`` is also in the HKDF salt. This matters because X25519 ignores the top bit of a
  u-coordinate, so a flipped bit there would otherwise give the same shared secret.
- ``context`` separates keys (it enters HKDF): the same plaintext sealed for two batch ids can
  never be opened as each other. ``aad`` is authenticated but not encrypted or stored: the
  opener must supply the same bytes (for instance the signed manifest's hash).
- The GCM key is fresh for every payload (a new ephemeral key), so a nonce can never repeat
  under one key; the random nonce is defence in depth.
- Plaintexts are limited to :data:`MAX_PLAINTEXT_SIZE` (1 GiB), and sealed inputs to that plus
  :data:`OVERHEAD`: the whole payload is held in memory (no streaming), and AES-GCM through
  ``cryptography`` takes at most 2**31 - 1 bytes per call. Larger batches must be split.
- The sender is not authenticated by sealing: anyone holding the public key can seal. The
  batch manifest is signed separately with the hospital's Ed25519 key.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from medfabric.crypto.errors import CryptoError, SealError
from medfabric.crypto.keys import KEY_SIZE, EncryptionKey, PublicEncryptionKey

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_PLAINTEXT_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "open_sealed",
    "seal",
]

MAGIC = b"MFS1"
"""First four bytes of every sealed payload: format "MFS", version 1."""

NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = len(MAGIC) + KEY_SIZE + NONCE_SIZE
"""Magic, ephemeral public key and nonce: 48 bytes."""

OVERHEAD = HEADER_SIZE + TAG_SIZE
"""Bytes a sealed payload has beyond its plaintext: 64."""

MAX_PLAINTEXT_SIZE = 1 << 30
"""The largest plaintext :func:`seal` accepts: 1 GiB."""

_INFO = b"medfabric seal v1"


def _aead(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> AESGCM:
    key = HKDF(
        algorithm=SHA256(), length=32, salt=ephemeral + recipient, info=_INFO + context
    ).derive(shared)
    return AESGCM(key)


def seal(
    recipient: PublicEncryptionKey, plaintext: bytes, *, aad: bytes = b"", context: bytes = b""
) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``recipient``'s private key can read it.

    Args:
        recipient: The recipient's X25519 public key (for batches: the region's).
        plaintext: The payload, at most :data:`MAX_PLAINTEXT_SIZE` bytes.
        aad: Bytes authenticated with the payload but not stored in it; the opener must give
            the same.
        context: Bytes that enter the key derivation (for batches: the batch id), so that a
            payload sealed for one context cannot be opened under another.

    Returns:
        ``b"MFS1" ‖ ephemeral public key (32) ‖ nonce (12) ‖ ciphertext ‖ tag (16)``.

    Raises:
        SealError: ``plaintext`` is too large, or ``recipient`` is a low-order point.

    Example:
        >>> region = EncryptionKey.generate()
        >>> sealed = seal(region.public_key, b"batch", context=b"H01-000042")
        >>> open_sealed(region, sealed, context=b"H01-000042")
        b'batch'
    """
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise SealError(
            f"payload of {len(plaintext)} bytes is over the {MAX_PLAINTEXT_SIZE}-byte limit; "
            "split it"
        )
    ephemeral = EncryptionKey.generate()
    ephemeral_public = ephemeral.public_key.to_bytes()
    try:
        shared = ephemeral.exchange(recipient)
    except CryptoError as e:
        raise SealError("cannot seal for this recipient key: it is a low-order point") from e
    aead = _aead(shared, ephemeral_public, recipient.to_bytes(), context)
    nonce = os.urandom(NONCE_SIZE)
    header = MAGIC + ephemeral_public + nonce
    return header + aead.encrypt(nonce, plaintext, header + aad)


def open_sealed(
    key: EncryptionKey, sealed: bytes, *, aad: bytes = b"", context: bytes = b""
) -> bytes:
    """Decrypt and authenticate a payload made by :func:`seal`.

    Args:
        key: The recipient's X25519 private key.
        sealed: The sealed bytes, untrusted.
        aad: The ``aad`` given to :func:`seal`.
        context: The ``context`` given to :func:`seal`.

    Returns:
        The plaintext.

    Raises:
        SealError: ``sealed`` is truncated, too large, not in the ``MFS1`` format, or cannot be
            authenticated (wrong key, wrong ``aad`` or ``context``, any byte altered).
    """
    if len(sealed) < OVERHEAD:
        raise SealError(
            f"sealed payload is truncated: {len(sealed)} bytes, the format needs at least "
            f"{OVERHEAD}"
        )
    magic = bytes(sealed[: len(MAGIC)])
    if magic != MAGIC:
        if magic[:3] == MAGIC[:3]:
            raise SealError(f"sealed payload has unsupported version {magic!r}; expected {MAGIC!r}")
        raise SealError(f"not a sealed payload: starts with {magic!r}, expected {MAGIC!r}")
    if len(sealed) > MAX_PLAINTEXT_SIZE + OVERHEAD:
        raise SealError(f"sealed payload of {len(sealed)} bytes is over the size limit")
    view = memoryview(sealed)
    header = bytes(view[:HEADER_SIZE])
    ephemeral_public = header[len(MAGIC) : len(MAGIC) + KEY_SIZE]
    nonce = header[len(MAGIC) + KEY_SIZE :]
    try:
        shared = key.exchange(PublicEncryptionKey.from_bytes(ephemeral_public))
    except CryptoError as e:
        raise SealError("cannot open sealed payload: its ephemeral key is invalid") from e
    aead = _aead(shared, ephemeral_public, key.public_key.to_bytes(), context)
    try:
        # The ciphertext is passed as a view: no copy of a large payload before decryption.
        return aead.decrypt(nonce, view[HEADER_SIZE:], header + aad)
    except InvalidTag as e:
        raise SealError(
            "cannot open sealed payload: wrong key, wrong aad or context, or altered bytes"
        ) from e
