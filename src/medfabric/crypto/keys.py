"""Ed25519 signing keys, X25519 encryption keys, and the files that hold them.

Four thin, immutable wrappers over the ``cryptography`` objects:

- :class:`SigningKey` (Ed25519 private) signs; its :class:`VerifyKey` (Ed25519 public) verifies.
  A hospital signs its batch manifests and ledger transactions; ledger nodes sign PBFT messages.
- :class:`EncryptionKey` (X25519 private) and :class:`PublicEncryptionKey` (X25519 public) agree
  on shared secrets; ``sealing.py`` uses them to encrypt each batch for the region.

Invariants:

- Raw keys are 32 bytes: the RFC 8032 secret key (seed) or public key, the RFC 7748 scalar or
  u-coordinate. Anything else is refused with :class:`CryptoError` when the key is built.
- ``VerifyKey.verify`` answers untrusted input with ``True``/``False``: a bad, truncated or
  foreign signature is ``False``, never an exception.
- Public keys compare and hash by their 32 raw bytes; private keys compare by identity and never
  show key material in ``repr`` or in error messages.
- A fingerprint is the lowercase hex of the first 16 bytes of ``SHA-256(raw public key)``
  (32 hex digits). It names a key in logs, file names and configuration; 128 bits make an
  accidental clash impossible in practice, but trust decisions compare the full key.

Key files (the formats are part of the operator contract, see ``docs/crypto.md``):

- A private key file is PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``, or
  ``-----BEGIN ENCRYPTED PRIVATE KEY-----`` when saved with a passphrase, encrypted by
  ``cryptography``'s ``BestAvailableEncryption``), readable by ``openssl pkey``.
- A public key file is PEM SubjectPublicKeyInfo (``-----BEGIN PUBLIC KEY-----``), as
  ``openssl pkey -pubout`` writes it. PEM rather than raw base64 because the algorithm is named
  inside the file: a signing key can never be loaded where an encryption key is expected.
- Files are written atomically (a temporary file in the same folder, ``fsync``, then a rename,
  then an ``fsync`` of the folder), so a crash leaves the old file or the new one, never half a
  key and never a stray temporary file. Private key files are created with mode ``0600``; an
  existing file is never replaced unless ``overwrite=True``.
- Loading a private key file whose mode gives any access to group or others raises
  :class:`KeyFileError` asking for ``chmod 600`` (the check is made on the opened file, so a
  rename in between cannot slip past it). Loading fails with :class:`KeyFileError` naming the
  file for every other problem too: missing, too large, truncated, corrupted, wrong passphrase,
  passphrase missing or unexpected, wrong key type.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519

from medfabric.crypto.errors import CryptoError, KeyFileError

__all__ = [
    "KEY_SIZE",
    "MAX_KEY_FILE_SIZE",
    "SIGNATURE_SIZE",
    "EncryptionKey",
    "PublicEncryptionKey",
    "SigningKey",
    "StrPath",
    "VerifyKey",
    "load_private_key",
    "load_public_key",
    "read_key_file",
    "save_private_key",
    "save_public_key",
    "write_key_file",
]

KEY_SIZE = 32
"""Length in bytes of every raw Ed25519 and X25519 key, private or public."""

SIGNATURE_SIZE = 64
"""Length in bytes of an Ed25519 signature."""

MAX_KEY_FILE_SIZE = 64 * 1024
"""Key files larger than this are refused unread (a PEM key is a few hundred bytes)."""

StrPath: TypeAlias = str | os.PathLike[str]


def _check_raw(raw: bytes, what: str) -> bytes:
    if not isinstance(raw, bytes | bytearray) or len(raw) != KEY_SIZE:
        size = len(raw) if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise CryptoError(f"{what} must be {KEY_SIZE} bytes, got {size}")
    return bytes(raw)


def _fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).digest()[:16].hex()


class _RawPublicKey:
    """What both public-key kinds share: their 32 raw bytes, fingerprint and repr."""

    __slots__ = ()
    _raw: bytes

    def to_bytes(self) -> bytes:
        """The 32 raw bytes of the key (RFC 8032 / RFC 7748 encoding)."""
        return self._raw

    @property
    def fingerprint(self) -> str:
        """Hex of the first 16 bytes of ``SHA-256(raw key)``: 32 lowercase hex digits."""
        return _fingerprint(self._raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fingerprint={self.fingerprint!r})"


@dataclass(frozen=True, slots=True, repr=False)
class VerifyKey(_RawPublicKey):
    """An Ed25519 public key: checks signatures made by its :class:`SigningKey`.

    Build one with :meth:`from_bytes` (32 raw bytes, as carried in manifests and ledger
    messages), :func:`load_public_key`, or ``SigningKey.verify_key``.
    """

    _raw: bytes
    _key: ed25519.Ed25519PublicKey = field(compare=False, repr=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> VerifyKey:
        """Build a verify key from its 32 raw bytes (RFC 8032 encoding).

        Args:
            raw: The encoded public key.

        Returns:
            The verify key.

        Raises:
            CryptoError: ``raw`` is not 32 bytes.
        """
        raw = _check_raw(raw, "an Ed25519 public key")
        return cls(raw, ed25519.Ed25519PublicKey.from_public_bytes(raw))

    @classmethod
    def _adopt(cls, obj: object) -> VerifyKey | None:
        if isinstance(obj, ed25519.Ed25519PublicKey):
            return cls(obj.public_bytes_raw(), obj)
        return None

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check an Ed25519 signature (RFC 8032 §5.1.7, as OpenSSL implements it).

        Args:
            message: The signed bytes.
            signature: The 64-byte signature, untrusted.

        Returns:
            True if ``signature`` is this key's signature of ``message``; False for anything else
            (another message or key, altered or truncated signature), never an exception.
        """
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SigningKey:
    """An Ed25519 private key. Compares by identity; never shows its key material.

    Example:
        >>> key = SigningKey.generate()
        >>> key.verify_key.verify(b"manifest", key.sign(b"manifest"))
        True
    """

    _key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, secret: bytes) -> SigningKey:
        """Build a key from its 32-byte RFC 8032 secret key (the seed).

        Args:
            secret: The secret key. Meant for test vectors and key stores; files use
                :func:`save_private_key` / :func:`load_private_key`.

        Returns:
            The signing key.

        Raises:
            CryptoError: ``secret`` is not 32 bytes.
        """
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(_check_raw(secret, "a seed")))

    @classmethod
    def _adopt(cls, obj: object) -> SigningKey | None:
        return cls(obj) if isinstance(obj, ed25519.Ed25519PrivateKey) else None

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (pure Ed25519, deterministic).

        Args:
            message: The bytes to sign, whole (no pre-hashing).

        Returns:
            The 64-byte signature.
        """
        return self._key.sign(message)

    @property
    def verify_key(self) -> VerifyKey:
        """The public half of this key."""
        public = self._key.public_key()
        return VerifyKey(public.public_bytes_raw(), public)

    def __repr__(self) -> str:
        return f"SigningKey(verify_key={self.verify_key.fingerprint!r})"


@dataclass(frozen=True, slots=True, repr=False)
class PublicEncryptionKey(_RawPublicKey):
    """An X25519 public key: what a sender needs to seal a payload for its holder."""

    _raw: bytes
    _key: x25519.X25519PublicKey = field(compare=False, repr=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicEncryptionKey:
        """Build a public key from its 32 raw bytes (RFC 7748 u-coordinate).

        Args:
            raw: The encoded u-coordinate.

        Returns:
            The public key.

        Raises:
            CryptoError: ``raw`` is not 32 bytes.
        """
        raw = _check_raw(raw, "an X25519 public key")
        return cls(raw, x25519.X25519PublicKey.from_public_bytes(raw))

    @classmethod
    def _adopt(cls, obj: object) -> PublicEncryptionKey | None:
        if isinstance(obj, x25519.X25519PublicKey):
            return cls(obj.public_bytes_raw(), obj)
        return None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class EncryptionKey:
    """An X25519 private key. Compares by identity; never shows its key material."""

    _key: x25519.X25519PrivateKey

    @classmethod
    def generate(cls) -> EncryptionKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(x25519.X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, secret: bytes) -> EncryptionKey:
        """Build a key from its 32-byte RFC 7748 scalar (clamped when used, as the RFC says).

        Args:
            secret: The scalar. Meant for test vectors and key stores; files use
                :func:`save_private_key` / :func:`load_private_key`.

        Returns:
            The encryption key.

        Raises:
            CryptoError: ``secret`` is not 32 bytes.
        """
        return cls(x25519.X25519PrivateKey.from_private_bytes(_check_raw(secret, "a scalar")))

    @classmethod
    def _adopt(cls, obj: object) -> EncryptionKey | None:
        return cls(obj) if isinstance(obj, x25519.X25519PrivateKey) else None

    @property
    def public_key(self) -> PublicEncryptionKey:
        """The public half of this key."""
        public = self._key.public_key()
        return PublicEncryptionKey(public.public_bytes_raw(), public)

    def exchange(self, peer: PublicEncryptionKey) -> bytes:
        """The raw X25519 shared secret with ``peer`` (RFC 7748 §6.1). Hash it before use.

        Args:
            peer: The other party's public key, untrusted.

        Returns:
            The 32-byte shared secret.

        Raises:
            CryptoError: ``peer`` is a low-order point (the secret would be all zeros, which
                RFC 7748 §6.1 says to refuse).
        """
        try:
            return self._key.exchange(peer._key)
        except ValueError as e:
            raise CryptoError(
                "X25519 key agreement failed: the peer key is a low-order point"
            ) from e

    def __repr__(self) -> str:
        return f"EncryptionKey(public_key={self.public_key.fingerprint!r})"


PrivateKey: TypeAlias = SigningKey | EncryptionKey
PublicKey: TypeAlias = VerifyKey | PublicEncryptionKey
K = TypeVar("K", SigningKey, EncryptionKey)
P = TypeVar("P", VerifyKey, PublicEncryptionKey)

_LABELS: dict[type, str] = {
    SigningKey: "an Ed25519 signing key",
    VerifyKey: "an Ed25519 verify key",
    EncryptionKey: "an X25519 encryption key",
    PublicEncryptionKey: "an X25519 public encryption key",
    ed25519.Ed25519PrivateKey: "an Ed25519 signing key",
    ed25519.Ed25519PublicKey: "an Ed25519 verify key",
    x25519.X25519PrivateKey: "an X25519 encryption key",
    x25519.X25519PublicKey: "an X25519 public encryption key",
    ed448.Ed448PrivateKey: "an Ed448 key",
    ed448.Ed448PublicKey: "an Ed448 public key",
    x448.X448PrivateKey: "an X448 key",
    x448.X448PublicKey: "an X448 public key",
    ec.EllipticCurvePrivateKey: "an elliptic-curve (ECDSA/ECDH) key",
    ec.EllipticCurvePublicKey: "an elliptic-curve (ECDSA/ECDH) public key",
    rsa.RSAPrivateKey: "an RSA key",
    rsa.RSAPublicKey: "an RSA public key",
}


def _label(obj: object) -> str:
    for cls, label in _LABELS.items():
        if isinstance(obj, cls):
            return label
    return f"a key of type {type(obj).__name__}"


def write_key_file(
    path: StrPath, data: bytes, *, mode: int = 0o600, overwrite: bool = False
) -> None:
    """Write a key file atomically with exactly ``mode`` (the umask does not apply).

    The bytes go to a temporary file in the same folder (created ``0600``), which is fsynced and
    then renamed onto ``path`` (hard-linked when ``overwrite`` is false, so that a file created
    meanwhile by someone else is not replaced either); the folder is fsynced last. On any
    failure the temporary file is removed.

    Args:
        path: The file to write; its folder must exist.
        data: The file's content.
        mode: Permission bits of the new file.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        KeyFileError: The file exists (and ``overwrite`` is false), or the folder is missing or
            not writable.
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise KeyFileError(f"{target} already exists; refusing to overwrite a key file")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise KeyFileError(f"cannot create {target}: {e.strerror} ({target.parent})") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError as e:
                raise KeyFileError(
                    f"{target} already exists; refusing to overwrite a key file"
                ) from e
            tmp.unlink()
        # The new name (and the temporary name's removal) is durable only once the folder is.
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise KeyFileError(f"cannot write {target}: {e.strerror}") from e
    finally:
        tmp.unlink(missing_ok=True)


def read_key_file(
    path: StrPath, *, secret: bool, allow_insecure_permissions: bool = False
) -> bytes:
    """Read a key file, refusing a secret one that group or others may access.

    Args:
        path: The file to read (symbolic links are followed; the target is checked).
        secret: The file holds secret material: its mode must grant nothing to group or others.
        allow_insecure_permissions: Skip the mode check (tests and throw-away keys only).

    Returns:
        The file's bytes.

    Raises:
        KeyFileError: The file is missing, unreadable, not a regular file, larger than
            :data:`MAX_KEY_FILE_SIZE`, or (``secret``) accessible by group or others — the
            message then says to run ``chmod 600``.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError as e:
        raise KeyFileError(f"key file {target} does not exist") from e
    except OSError as e:
        raise KeyFileError(f"cannot open key file {target}: {e.strerror}") from e
    try:
        # Checked on the open descriptor: the file read is the file whose mode was checked.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {target} is not a regular file")
        perms = stat.S_IMODE(st.st_mode)
        if secret and perms & 0o077 and not allow_insecure_permissions:
            raise KeyFileError(
                f"key file {target} is accessible by group or others (mode {perms:04o}); "
                f"run `chmod 600 {target}`"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {target}: {e.strerror}") from e
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"key file {target} is larger than {MAX_KEY_FILE_SIZE} bytes")
    return data


def save_private_key(
    key: PrivateKey, path: StrPath, *, passphrase: bytes | None, overwrite: bool = False
) -> None:
    """Save a private key as PKCS#8 PEM, mode ``0600``, atomically.

    Args:
        key: The signing or encryption key.
        path: The file to create; its folder must exist.
        passphrase: Encrypt the file with this passphrase (``BestAvailableEncryption``: PBES2,
            which in ``cryptography`` 50 is PBKDF2-HMAC-SHA256 with only 2048 rounds and
            AES-256-CBC — so use a long random passphrase), or None to write it unencrypted.
            Deliberately required, so that every caller decides.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        KeyFileError: The passphrase is empty, the file exists (and ``overwrite`` is false), or
            the folder is missing or not writable.
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    elif not passphrase:
        raise KeyFileError(f"empty passphrase for {path}; pass None for an unencrypted key file")
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    pem = key._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_key_file(path, pem, mode=0o600, overwrite=overwrite)


def load_private_key(
    path: StrPath,
    passphrase: bytes | None,
    *,
    kind: type[K],
    allow_insecure_permissions: bool = False,
) -> K:
    """Load a private key saved by :func:`save_private_key` (or ``openssl genpkey``).

    Args:
        path: The PKCS#8 PEM file.
        passphrase: Its passphrase, or None for an unencrypted file. A passphrase given for an
            unencrypted file is an error, so that a key thought protected but stored in the
            clear gets noticed.
        kind: ``SigningKey`` or ``EncryptionKey``: the key the caller expects to find.
        allow_insecure_permissions: Skip the ``0600`` check (tests only).

    Returns:
        The key, of type ``kind``.

    Raises:
        KeyFileError: The file is missing, accessible by group or others, truncated or
            corrupted, encrypted without a passphrase given, not encrypted but a passphrase
            given, the passphrase is wrong, or it holds another type of key. The message names
            the file.
    """
    target = Path(path)
    data = read_key_file(target, secret=True, allow_insecure_permissions=allow_insecure_permissions)
    try:
        obj = serialization.load_pem_private_key(data, passphrase)
    except TypeError as e:
        # cryptography signals a passphrase mismatch (given vs. needed) with TypeError.
        if passphrase is None:
            raise KeyFileError(f"key file {target} is encrypted; its passphrase is needed") from e
        raise KeyFileError(
            f"key file {target} is not encrypted, but a passphrase was given; "
            "re-save it with the passphrase, or pass None"
        ) from e
    except ValueError as e:
        if passphrase is not None and b"ENCRYPTED PRIVATE KEY" in data:
            raise KeyFileError(
                f"cannot decrypt key file {target}: wrong passphrase, or the file is corrupted"
            ) from e
        raise KeyFileError(
            f"key file {target} is not a PKCS#8 PEM private key (truncated or corrupted?)"
        ) from e
    except UnsupportedAlgorithm as e:
        raise KeyFileError(f"key file {target} holds a key of an unsupported type") from e
    key = kind._adopt(obj)
    if key is None:
        raise KeyFileError(f"key file {target} holds {_label(obj)}, expected {_label_of(kind)}")
    return key


def save_public_key(key: PublicKey, path: StrPath, *, overwrite: bool = False) -> None:
    """Save a public key as PEM SubjectPublicKeyInfo, mode ``0644``, atomically.

    Args:
        key: The verify key or public encryption key.
        path: The file to create; its folder must exist.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        KeyFileError: The file exists (and ``overwrite`` is false), or the folder is missing or
            not writable.
    """
    pem = key._key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_key_file(path, pem, mode=0o644, overwrite=overwrite)


def load_public_key(path: StrPath, *, kind: type[P]) -> P:
    """Load a public key saved by :func:`save_public_key` (or ``openssl pkey -pubout``).

    Args:
        path: The PEM SubjectPublicKeyInfo file. Its permissions are not checked.
        kind: ``VerifyKey`` or ``PublicEncryptionKey``: the key the caller expects to find.

    Returns:
        The key, of type ``kind``.

    Raises:
        KeyFileError: The file is missing, truncated or corrupted, or holds another type of key.
    """
    target = Path(path)
    data = read_key_file(target, secret=False)
    try:
        obj = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise KeyFileError(
            f"key file {target} is not a PEM public key (truncated or corrupted?)"
        ) from e
    except UnsupportedAlgorithm as e:
        raise KeyFileError(f"key file {target} holds a key of an unsupported type") from e
    key = kind._adopt(obj)
    if key is None:
        raise KeyFileError(f"key file {target} holds {_label(obj)}, expected {_label_of(kind)}")
    return key


def _label_of(kind: type) -> str:
    return _LABELS.get(kind, kind.__name__)
