"""The exception tree of ``medfabric.crypto``.

::

    CryptoError                 base of every error this package raises on purpose
    ├── KeyFileError            a key could not be loaded or saved (file or environment variable)
    ├── SealError               a sealed payload could not be opened (or sealed)
    ├── EnvelopeError           a wrapped key or an encrypted field could not be opened
    └── MerkleError             a Merkle proof or root was asked for out of range (merkle.py)

Invariants:

- Verification of untrusted input does not raise for *bad* input where a yes/no answer exists
  (``VerifyKey.verify``, ``verify_inclusion``): it returns ``False``. Decryption raises, because
  there is no plaintext to return, and it never returns unauthenticated bytes.
- Messages name the file, variable or format at fault and never contain key material.
"""

from __future__ import annotations

__all__ = ["CryptoError", "EnvelopeError", "KeyFileError", "SealError"]


class CryptoError(Exception):
    """Base of the errors raised by ``medfabric.crypto``."""


class KeyFileError(CryptoError):
    """A key could not be loaded from, or saved to, its file or environment variable.

    The message names the file (or variable) and says what to do: wrong passphrase, wrong key
    type, truncated or corrupted file, permissions too open (``chmod 600``), file exists.
    """


class SealError(CryptoError):
    """A sealed payload could not be opened: wrong key, wrong ``aad`` or ``context``, altered
    or truncated bytes, an unknown format; or a payload is too large to seal.
    """


class EnvelopeError(CryptoError):
    """A wrapped data key or an encrypted field could not be opened (wrong key, wrong ``aad``,
    altered or truncated bytes, unknown format), or a key has the wrong size.
    """
