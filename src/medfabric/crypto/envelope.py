"""Envelope encryption for data at rest, and blind indexes for look-ups by identifier.

Two levels of keys: a :class:`MasterKey` (from a key file or an environment variable, never
stored with the data) wraps random :class:`DataKey` s; data keys encrypt fields. The wrapped data
keys are stored next to the data. Rotating the master key rewraps the data keys
(:func:`rewrap`) and leaves the encrypted data untouched.

Byte formats (``‖`` is concatenation; all lengths fixed except the field ciphertext)::

    wrapped data key, 72 bytes (WrappedKey.to_bytes):
        b"MFW1" ‖ master key id (8) ‖ nonce (12) ‖ AES-256-GCM(master, data key (32)) ‖ tag (16)
        associated data: b"MFW1" ‖ master key id

    encrypted field, len(plaintext) + 32 bytes (encrypt_field):
        b"MFE1" ‖ nonce (12) ‖ AES-256-GCM(data key, plaintext) ‖ tag (16)
        associated data: b"MFE1" ‖ nonce ‖ caller's aad

Invariants:

- Keys are 32 random bytes (AES-256). A master key's id is the first 8 bytes of
  ``HMAC-SHA256(master key, b"medfabric master key id v1")``, shown as 16 hex digits: it is
  derived, so it cannot be mislabelled, and it reveals nothing about the key. A wrapped key
  records the id of the master key that wrapped it, so :func:`unwrap` names the master key it
  needs instead of failing obscurely.
- Key wrapping is AES-256-GCM with a random nonce, not AES-KW (RFC 3394): GCM binds the format
  and master key id as associated data, has a 128-bit tag (AES-KW's integrity check is 64
  bits), and is the same primitive as the rest of the package. Random 96-bit nonces under one
  master key are safe for 2**32 wraps (NIST SP 800-38D §8.3), far beyond the number of data
  keys a region holds.
- Field encryption uses a random 96-bit nonce per field, so one data key must encrypt fewer
  than 2**32 fields (the same NIST bound); use one data key per table or per partition and
  rotate it well before that.
- ``aad`` should name where the field lives (table, column, row key): a ciphertext moved to
  another row or column then fails to decrypt instead of showing another patient's value.
- Decryption either returns the exact plaintext or raises :class:`EnvelopeError`.
- Key objects compare by identity and never show key material in ``repr`` or in messages.
- ``blind_index`` is a keyed hash (HMAC-SHA256) of the normalized value: equal identifiers give
  equal indexes under one key; without the key, nobody can test a guessed identifier against an
  index. The index key is a secret of its own, distinct from the master key, so that rotating
  the master key does not force re-indexing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medfabric.crypto.errors import EnvelopeError, KeyFileError
from medfabric.crypto.keys import StrPath, read_key_file, write_key_file

__all__ = [
    "FIELD_MAGIC",
    "FIELD_OVERHEAD",
    "KEY_ID_SIZE",
    "MIN_INDEX_KEY_SIZE",
    "SYMMETRIC_KEY_SIZE",
    "WRAPPED_KEY_SIZE",
    "WRAP_MAGIC",
    "DataKey",
    "MasterKey",
    "WrappedKey",
    "blind_index",
    "decrypt_field",
    "encrypt_field",
    "rewrap",
    "save_master_key",
    "unwrap",
    "wrap",
]

SYMMETRIC_KEY_SIZE = 32
"""Length in bytes of master and data keys (AES-256)."""

KEY_ID_SIZE = 8
"""Length in bytes of a master key id (16 hex digits)."""

NONCE_SIZE = 12
TAG_SIZE = 16

WRAP_MAGIC = b"MFW1"
"""First four bytes of a serialized wrapped key: format "MFW", version 1."""

WRAPPED_KEY_SIZE = len(WRAP_MAGIC) + KEY_ID_SIZE + NONCE_SIZE + SYMMETRIC_KEY_SIZE + TAG_SIZE
"""Length of a serialized wrapped key: 72 bytes."""

FIELD_MAGIC = b"MFE1"
"""First four bytes of an encrypted field: format "MFE", version 1."""

FIELD_OVERHEAD = len(FIELD_MAGIC) + NONCE_SIZE + TAG_SIZE
"""Bytes an encrypted field has beyond its plaintext: 32."""

MIN_INDEX_KEY_SIZE = 16
"""The shortest key :func:`blind_index` accepts (32 random bytes are recommended)."""

_KEY_ID_INFO = b"medfabric master key id v1"


def _check_key(secret: bytes, what: str) -> bytes:
    if not isinstance(secret, bytes | bytearray) or len(secret) != SYMMETRIC_KEY_SIZE:
        size = len(secret) if isinstance(secret, bytes | bytearray) else type(secret).__name__
        raise EnvelopeError(f"{what} must be {SYMMETRIC_KEY_SIZE} bytes, got {size}")
    return bytes(secret)


def _decode_base64_key(text: bytes, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != SYMMETRIC_KEY_SIZE:
        # The message never echoes the content: it may be a key that is merely mistyped.
        raise KeyFileError(
            f"{where} must hold the base64 of {SYMMETRIC_KEY_SIZE} random bytes "
            "(for example the output of `openssl rand -base64 32`)"
        )
    return raw


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MasterKey:
    """A 32-byte key that wraps data keys; its ``key_id`` (16 hex digits) is derived from it.

    Build one with :meth:`generate`, :meth:`from_file`, :meth:`from_env` or ``MasterKey(raw)``.

    Raises:
        EnvelopeError: The raw key is not 32 bytes.
    """

    _secret: bytes
    key_id: str = field(init=False)
    _aead: AESGCM = field(init=False)

    def __post_init__(self) -> None:
        secret = _check_key(self._secret, "a master key")
        digest = hmac.new(secret, _KEY_ID_INFO, hashlib.sha256).digest()
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "key_id", digest[:KEY_ID_SIZE].hex())
        object.__setattr__(self, "_aead", AESGCM(secret))

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random master key from the operating system's CSPRNG."""
        return cls(os.urandom(SYMMETRIC_KEY_SIZE))

    @classmethod
    def from_file(cls, path: StrPath, *, allow_insecure_permissions: bool = False) -> MasterKey:
        """Load a master key file: one line, the base64 of 32 bytes (``openssl rand -base64 32``).

        Args:
            path: The key file; it must grant nothing to group or others (``chmod 600``).
            allow_insecure_permissions: Skip the permission check (tests only).

        Returns:
            The master key.

        Raises:
            KeyFileError: The file is missing, accessible by group or others, or does not hold
                the base64 of 32 bytes. The message names the file.
        """
        data = read_key_file(
            path, secret=True, allow_insecure_permissions=allow_insecure_permissions
        )
        return cls(_decode_base64_key(data, f"key file {path}"))

    @classmethod
    def from_env(cls, var: str, *, environ: Mapping[str, str] | None = None) -> MasterKey:
        """Load a master key from an environment variable holding the base64 of 32 bytes.

        Args:
            var: The variable's name (settings name it, e.g. ``MEDFABRIC_MASTER_KEY``).
            environ: Where to look instead of ``os.environ`` (tests).

        Returns:
            The master key.

        Raises:
            KeyFileError: The variable is unset or empty, or does not hold the base64 of 32
                bytes. The message names the variable, never its value.
        """
        value = (os.environ if environ is None else environ).get(var, "")
        if not value.strip():
            raise KeyFileError(f"environment variable {var} is not set (the master key)")
        return cls(
            _decode_base64_key(value.encode("ascii", "replace"), f"environment variable {var}")
        )

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


def save_master_key(master: MasterKey, path: StrPath, *, overwrite: bool = False) -> None:
    """Save a master key as one line of base64, mode ``0600``, atomically.

    Args:
        master: The key.
        path: The file to create; its folder must exist.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        KeyFileError: The file exists (and ``overwrite`` is false), or the folder is missing or
            not writable.
    """
    write_key_file(path, base64.b64encode(master._secret) + b"\n", overwrite=overwrite)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class DataKey:
    """A 32-byte AES-256-GCM key for fields; stored only wrapped (:func:`wrap`).

    Raises:
        EnvelopeError: The raw key is not 32 bytes.
    """

    _secret: bytes
    _aead: AESGCM = field(init=False)

    def __post_init__(self) -> None:
        secret = _check_key(self._secret, "a data key")
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_aead", AESGCM(secret))

    @classmethod
    def generate(cls) -> DataKey:
        """A new random data key from the operating system's CSPRNG."""
        return cls(os.urandom(SYMMETRIC_KEY_SIZE))

    def __repr__(self) -> str:
        return "DataKey(...)"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under a master key; safe to store next to the data.

    Attributes:
        master_key_id: ``key_id`` of the master key that wrapped it (16 hex digits).
        nonce: The 12-byte GCM nonce.
        ciphertext: The encrypted data key and its tag (48 bytes).

    Raises:
        EnvelopeError: A field has the wrong size.
    """

    master_key_id: str
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        try:
            key_id = bytes.fromhex(self.master_key_id)
        except (TypeError, ValueError):
            key_id = b""
        if len(key_id) != KEY_ID_SIZE or self.master_key_id != key_id.hex():
            raise EnvelopeError(f"master key id must be {2 * KEY_ID_SIZE} lowercase hex digits")
        if len(self.nonce) != NONCE_SIZE or len(self.ciphertext) != SYMMETRIC_KEY_SIZE + TAG_SIZE:
            raise EnvelopeError("wrapped key has a nonce or ciphertext of the wrong size")

    def to_bytes(self) -> bytes:
        """``b"MFW1" ‖ master key id (8) ‖ nonce (12) ‖ ciphertext and tag (48)``: 72 bytes."""
        return WRAP_MAGIC + bytes.fromhex(self.master_key_id) + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedKey:
        """Parse the output of :meth:`to_bytes` (authenticity is checked by :func:`unwrap`).

        Args:
            data: The 72 bytes, untrusted.

        Returns:
            The wrapped key.

        Raises:
            EnvelopeError: ``data`` is not 72 bytes or does not start with ``b"MFW1"``.
        """
        if len(data) != WRAPPED_KEY_SIZE:
            raise EnvelopeError(
                f"a wrapped key is {WRAPPED_KEY_SIZE} bytes, got {len(data)} (truncated?)"
            )
        if data[: len(WRAP_MAGIC)] != WRAP_MAGIC:
            raise EnvelopeError(f"not a wrapped key: starts with {bytes(data[:4])!r}")
        id_end = len(WRAP_MAGIC) + KEY_ID_SIZE
        return cls(
            data[len(WRAP_MAGIC) : id_end].hex(),
            data[id_end : id_end + NONCE_SIZE],
            data[id_end + NONCE_SIZE :],
        )


def _wrap_aad(master_key_id: str) -> bytes:
    return WRAP_MAGIC + bytes.fromhex(master_key_id)


def wrap(master: MasterKey, data_key: DataKey) -> WrappedKey:
    """Encrypt a data key under a master key (AES-256-GCM, master key id as associated data).

    Args:
        master: The master key.
        data_key: The data key to protect.

    Returns:
        The wrapped key, recording ``master.key_id``.
    """
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = master._aead.encrypt(nonce, data_key._secret, _wrap_aad(master.key_id))
    return WrappedKey(master.key_id, nonce, ciphertext)


def unwrap(master: MasterKey, wrapped: WrappedKey) -> DataKey:
    """Recover a data key wrapped by :func:`wrap`.

    Args:
        master: The master key that wrapped it.
        wrapped: The wrapped key, untrusted.

    Returns:
        The data key.

    Raises:
        EnvelopeError: ``wrapped`` names another master key, or it cannot be authenticated
            (altered bytes).
    """
    if wrapped.master_key_id != master.key_id:
        raise EnvelopeError(
            f"data key is wrapped under master key {wrapped.master_key_id}, "
            f"not under {master.key_id}"
        )
    try:
        secret = master._aead.decrypt(
            wrapped.nonce, wrapped.ciphertext, _wrap_aad(wrapped.master_key_id)
        )
    except InvalidTag as e:
        raise EnvelopeError(
            f"cannot unwrap data key under master key {master.key_id}: the wrapped key was altered"
        ) from e
    return DataKey(secret)


def rewrap(old_master: MasterKey, new_master: MasterKey, wrapped: WrappedKey) -> WrappedKey:
    """Move a wrapped data key from one master key to another (master key rotation).

    The data key itself does not change, so nothing it encrypted needs re-encrypting.

    Args:
        old_master: The master key that wrapped it.
        new_master: The master key to wrap it under.
        wrapped: The wrapped key.

    Returns:
        The data key wrapped under ``new_master`` (a fresh nonce).

    Raises:
        EnvelopeError: ``wrapped`` cannot be unwrapped with ``old_master``.
    """
    return wrap(new_master, unwrap(old_master, wrapped))


def encrypt_field(data_key: DataKey, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt one value with AES-256-GCM and a random nonce.

    Args:
        data_key: The data key.
        plaintext: The value's bytes.
        aad: Where the value lives (e.g. ``b"dwd.patient|id_no|<row key>"``), authenticated and
            not stored; :func:`decrypt_field` needs the same bytes.

    Returns:
        ``b"MFE1" ‖ nonce (12) ‖ ciphertext ‖ tag (16)``.
    """
    nonce = os.urandom(NONCE_SIZE)
    header = FIELD_MAGIC + nonce
    return header + data_key._aead.encrypt(nonce, plaintext, header + aad)


def decrypt_field(data_key: DataKey, token: bytes, aad: bytes) -> bytes:
    """Decrypt and authenticate a value made by :func:`encrypt_field`.

    Args:
        data_key: The data key that encrypted it.
        token: The encrypted field, untrusted.
        aad: The ``aad`` given to :func:`encrypt_field`.

    Returns:
        The plaintext.

    Raises:
        EnvelopeError: ``token`` is truncated, not in the ``MFE1`` format, or cannot be
            authenticated (wrong data key or ``aad``, any byte altered).
    """
    if len(token) < FIELD_OVERHEAD:
        raise EnvelopeError(
            f"encrypted field is truncated: {len(token)} bytes, at least {FIELD_OVERHEAD} needed"
        )
    if token[: len(FIELD_MAGIC)] != FIELD_MAGIC:
        raise EnvelopeError(
            f"not an encrypted field: starts with {bytes(token[:4])!r}, expected {FIELD_MAGIC!r}"
        )
    header_end = len(FIELD_MAGIC) + NONCE_SIZE
    header = token[:header_end]
    try:
        return data_key._aead.decrypt(header[len(FIELD_MAGIC) :], token[header_end:], header + aad)
    except InvalidTag as e:
        raise EnvelopeError(
            "cannot decrypt field: wrong data key, wrong aad, or altered bytes"
        ) from e


def blind_index(key: bytes, value: str) -> str:
    """A keyed, deterministic index of an identifier, for equality look-ups on encrypted data.

    The value is normalized first: Unicode NFC, then leading and trailing whitespace removed
    (Python's ``str.strip()``, which includes the full-width space U+3000 and U+00A0). Case,
    inner whitespace and everything else are kept: domain rules (upper-casing the check letter
    of an ID card number, removing dashes from a phone number) belong to the caller.

    Args:
        key: The index key, at least :data:`MIN_INDEX_KEY_SIZE` bytes (32 random bytes
            recommended), kept secret and distinct from the master key.
        value: The identifier.

    Returns:
        ``HMAC-SHA256(key, UTF-8(normalized value))`` as 64 lowercase hex digits.

    Raises:
        EnvelopeError: ``key`` is shorter than :data:`MIN_INDEX_KEY_SIZE` bytes.

    Example:
        >>> k = bytes(32)
        >>> blind_index(k, "  林秀英 ") == blind_index(k, "林秀英")
        True
    """
    if len(key) < MIN_INDEX_KEY_SIZE:
        raise EnvelopeError(f"a blind index key must be at least {MIN_INDEX_KEY_SIZE} bytes")
    normalized = unicodedata.normalize("NFC", value).strip()
    return hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()
