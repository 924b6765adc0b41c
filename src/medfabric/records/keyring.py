"""Where the keys of provenance live: one folder, one file per key, private keys mode 0600.

Layout of a keys folder (``[gateway] keys_dir`` / ``[receiver] keys_dir`` in region.toml)::

    region/seal.key   region/seal.pub     X25519: gateways seal batch payloads for the region
    region/sign.key   region/sign.pub     Ed25519: the region signs downlink messages
    hospitals/H01.key hospitals/H01.pub   Ed25519: hospital H01 signs its batch manifests

A gateway's machine needs only its own ``hospitals/<id>.key`` and the two ``region/*.pub``; the
receiver needs ``region/seal.key``, ``region/sign.key`` (to publish) and every
``hospitals/<id>.pub`` (the registry of gateways it accepts). Private key files may be
passphrase-protected; the passphrase comes from an environment variable, never from a file of
the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfabric.crypto import (
    EncryptionKey,
    KeyFileError,
    PublicEncryptionKey,
    SigningKey,
    VerifyKey,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)


@dataclass(frozen=True, slots=True)
class Keyring:
    """The key files under one folder, loaded on demand."""

    root: Path
    passphrase: bytes | None = None

    def _path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def hospital_signing_key(self, hospital_id: str) -> SigningKey:
        """The hospital's private signing key (gateway side)."""
        return load_private_key(
            self._path("hospitals", f"{hospital_id}.key"), self.passphrase, kind=SigningKey
        )

    def hospital_verify_key(self, hospital_id: str) -> VerifyKey | None:
        """The registered public key of a hospital, or None if it is not registered."""
        path = self._path("hospitals", f"{hospital_id}.pub")
        if not path.exists():
            return None
        return load_public_key(path, kind=VerifyKey)

    def registered_hospitals(self) -> list[str]:
        """Hospital ids with a registered public key."""
        folder = self._path("hospitals")
        return sorted(p.stem for p in folder.glob("*.pub")) if folder.is_dir() else []

    def region_seal_public(self) -> PublicEncryptionKey:
        """The region's public sealing key (gateway side)."""
        return load_public_key(self._path("region", "seal.pub"), kind=PublicEncryptionKey)

    def region_seal_key(self) -> EncryptionKey:
        """The region's private sealing key (receiver side)."""
        return load_private_key(
            self._path("region", "seal.key"), self.passphrase, kind=EncryptionKey
        )

    def region_verify_key(self) -> VerifyKey:
        """The region's public downlink-signing key (gateway side)."""
        return load_public_key(self._path("region", "sign.pub"), kind=VerifyKey)

    def region_signing_key(self) -> SigningKey:
        """The region's private downlink-signing key (receiver / operator side)."""
        return load_private_key(self._path("region", "sign.key"), self.passphrase, kind=SigningKey)


def init_keys(root: Path, hospital_ids: list[str], *, passphrase: bytes | None) -> list[Path]:
    """Create every missing key of the layout; existing keys are kept, never overwritten.

    Returns:
        The files created, in creation order.
    Raises:
        KeyFileError: a folder is not writable, or half of a pair exists (a ``.pub`` without
            its ``.key``): the message names it, and nothing is replaced.
    """
    created: list[Path] = []

    def pair(key_path: Path, make: type[SigningKey] | type[EncryptionKey]) -> None:
        pub_path = key_path.with_suffix(".pub")
        if key_path.exists():
            if not pub_path.exists():
                key: SigningKey | EncryptionKey
                if make is SigningKey:
                    key = load_private_key(key_path, passphrase, kind=SigningKey)
                else:
                    key = load_private_key(key_path, passphrase, kind=EncryptionKey)
                public = key.verify_key if isinstance(key, SigningKey) else key.public_key
                save_public_key(public, pub_path)
                created.append(pub_path)
            return
        if pub_path.exists():
            raise KeyFileError(
                f"{pub_path} exists without its private key {key_path.name}; "
                "restore the private key or remove the public one"
            )
        key_path.parent.mkdir(parents=True, exist_ok=True)
        new = make.generate()
        save_private_key(new, key_path, passphrase=passphrase)
        public = new.verify_key if isinstance(new, SigningKey) else new.public_key
        save_public_key(public, pub_path)
        created.extend([key_path, pub_path])

    pair(root / "region" / "seal.key", EncryptionKey)
    pair(root / "region" / "sign.key", SigningKey)
    for hospital_id in hospital_ids:
        pair(root / "hospitals" / f"{hospital_id}.key", SigningKey)
    return created
