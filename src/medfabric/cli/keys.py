"""``medfabric keys``: create and list the region's and hospitals' keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.crypto import CryptoError, PublicEncryptionKey, VerifyKey, load_public_key
from medfabric.records.keyring import init_keys

app = typer.Typer(help="Keys of the region and of each hospital's gateway.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Keys folder (default: [gateway] keys_dir).")
]


def passphrase(env: str) -> bytes | None:
    """The key-file passphrase from the environment variable named in settings, if set."""
    value = os.environ.get(env)
    return value.encode() if value else None


@app.command("init")
def init(
    config: ConfigOpt = None,
    directory: DirOpt = None,
    hospital: Annotated[
        list[str] | None, typer.Option("--hospital", help="Only these hospitals (repeatable).")
    ] = None,
) -> None:
    """Create every missing key (region sealing and signing keys, one signing key per
    hospital); existing keys are never replaced."""
    settings = settings_or_fail(config)
    root = directory or settings.gateway.keys_dir
    ids = hospital or [h.id for h in settings.hospitals]
    try:
        created = init_keys(root, ids, passphrase=passphrase(settings.keys.passphrase_env))
    except CryptoError as e:
        fail(str(e))
    for path in created:
        console.print(f"created {path}")
    console.print(f"[green]{len(created)} file(s) created[/] in {root}; {len(ids)} hospital(s)")


@app.command("show")
def show(config: ConfigOpt = None, directory: DirOpt = None) -> None:
    """List the public keys in the keys folder with their fingerprints."""
    settings = settings_or_fail(config)
    root = directory or settings.gateway.keys_dir
    table = Table("key", "file", "fingerprint")
    entries: list[tuple[str, Path, type[VerifyKey] | type[PublicEncryptionKey]]] = [
        ("region sealing (X25519)", root / "region" / "seal.pub", PublicEncryptionKey),
        ("region downlink signing (Ed25519)", root / "region" / "sign.pub", VerifyKey),
    ]
    entries += [
        (f"hospital {p.stem} (Ed25519)", p, VerifyKey)
        for p in sorted((root / "hospitals").glob("*.pub"))
    ]
    for label, path, kind in entries:
        try:
            fp = (
                load_public_key(path, kind=VerifyKey).fingerprint
                if kind is VerifyKey
                else load_public_key(path, kind=PublicEncryptionKey).fingerprint
            )
        except CryptoError as e:
            fp = f"[red]{e}[/]"
        table.add_row(label, str(path), fp)
    console.print(table)
