"""Building and running the receiver from settings; publishing downlink messages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from medfabric.receiver.app import create_app
from medfabric.receiver.intake import Intake, Registry, open_intake
from medfabric.records.keyring import Keyring
from medfabric.records.messages import DownlinkMessage, sign_downlink
from medfabric.settings import Settings


class ReceiverError(Exception):
    """The receiver cannot start or act as asked; the message says what to fix."""


def build_intake(settings: Settings, *, passphrase: bytes | None = None) -> Intake:
    """The intake over the configured warehouse, with the registered hospitals' keys."""
    r = settings.receiver
    keyring = Keyring(r.keys_dir, passphrase)
    try:
        region_key = keyring.region_seal_key()
        registry = Registry(
            {h: k for h in keyring.registered_hospitals() if (k := keyring.hospital_verify_key(h))}
        )
    except Exception as e:  # KeyFileError names the file
        raise ReceiverError(f"{e} (run `medfabric keys init` to create the keys)") from None
    if Path(r.warehouse).stem.lower() in ("ods", "ingest", "dwd", "ads"):
        raise ReceiverError(
            f"receiver.warehouse: the file name {Path(r.warehouse).name} clashes with a schema "
            "name inside it (DuckDB names the catalog after the file); use e.g. warehouse.duckdb"
        )
    Path(r.warehouse).parent.mkdir(parents=True, exist_ok=True)
    return open_intake(
        str(r.warehouse), registry=registry, region_key=region_key, max_body=r.max_body_mb << 20
    )


def build_app(settings: Settings, *, passphrase: bytes | None = None) -> tuple[FastAPI, Intake]:
    """The application and its intake (close the intake's store when done)."""
    intake = build_intake(settings, passphrase=passphrase)
    keyring = Keyring(settings.receiver.keys_dir, passphrase)
    try:
        verify = keyring.region_verify_key()
    except Exception:  # no downlink signing key installed: publishing is refused
        verify = None
    app = create_app(intake, region_verify_key=verify, clock_skew=settings.receiver.clock_skew)
    return app, intake


def serve(settings: Settings, *, passphrase: bytes | None = None, log_level: str = "info") -> None:
    """Run the receiver until interrupted."""
    app, intake = build_app(settings, passphrase=passphrase)
    host, port = settings.receiver.listen.rsplit(":", 1)
    try:
        uvicorn.run(app, host=host, port=int(port), log_level=log_level, access_log=False)
    finally:
        intake.close()
        intake.store.engine.close()


def publish(
    settings: Settings,
    hospital_id: str,
    *,
    kind: str,
    title: str,
    body: dict[str, Any],
    passphrase: bytes | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Sign a downlink message with the region's key and queue it at the running receiver."""
    settings.hospital(hospital_id)
    key = Keyring(settings.receiver.keys_dir, passphrase).region_signing_key()
    msg = DownlinkMessage(hospital_id, kind, title, datetime.now(UTC).isoformat(), body)
    data, sig = sign_downlink(msg, key)
    url = f"http://{settings.receiver.listen}"
    with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
        r = client.post(
            f"/v1/downlink/{hospital_id}",
            content=json.dumps(
                {
                    "message": base64.b64encode(data).decode(),
                    "signature": base64.b64encode(sig).decode(),
                }
            ),
        )
    if r.status_code != 200:
        raise ReceiverError(f"publishing failed: HTTP {r.status_code} {r.text[:300]}")
    return int(r.json()["id"])
