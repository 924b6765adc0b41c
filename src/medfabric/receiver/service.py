"""Building and running the receiver from settings; publishing downlink messages."""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from medfabric.ledger.client import LedgerClient
from medfabric.receiver.app import create_app
from medfabric.receiver.intake import Intake, Registry, open_intake
from medfabric.receiver.notarization import NotarizationError, NotarizationWatch, open_reader
from medfabric.records.keyring import Keyring
from medfabric.records.messages import DownlinkMessage, sign_downlink
from medfabric.settings import Settings

log = logging.getLogger("medfabric.receiver")


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


def ledger_reader(settings: Settings) -> LedgerClient | None:
    """A read-only client of the configured ledger, or None when none is configured.

    Raises:
        ReceiverError: ``[ledger] dir`` is not a cluster folder.
    """
    if settings.ledger.dir is None:
        return None
    try:
        return open_reader(settings.ledger.dir, timeout=float(settings.ledger.timeout))
    except NotarizationError as e:
        raise ReceiverError(str(e)) from None


def build_app(
    settings: Settings, *, passphrase: bytes | None = None, ledger: LedgerClient | None = None
) -> tuple[FastAPI, Intake]:
    """The application and its intake (close the intake's store when done)."""
    intake = build_intake(settings, passphrase=passphrase)
    keyring = Keyring(settings.receiver.keys_dir, passphrase)
    try:
        verify = keyring.region_verify_key()
    except Exception:  # no downlink signing key installed: publishing is refused
        verify = None
    app = create_app(
        intake, region_verify_key=verify, clock_skew=settings.receiver.clock_skew, ledger=ledger
    )
    return app, intake


class WatchThread:
    """Runs the notarization watch every ``[ledger] check_every`` seconds until stopped."""

    def __init__(self, watch: NotarizationWatch, every: float) -> None:
        self.watch = watch
        self.every = every
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notarization-watch", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def close(self) -> None:
        """Stop after the current pass."""
        self.stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                report = self.watch.check()
            except Exception:  # a bug must not end the watch: log it and try again later
                log.exception("notarization watch pass failed")
                continue
            if report.checked:
                log.info(
                    "notarization watch: %d checked, %d notarized, %d pending, %d late, "
                    "%d invalid%s",
                    report.checked, report.notarized, report.pending, report.late,
                    report.invalid, f" ({report.error})" if report.error else "",
                )  # fmt: skip


def serve(settings: Settings, *, passphrase: bytes | None = None, log_level: str = "info") -> None:
    """Run the receiver until interrupted (with the notarization watch when a ledger is
    configured)."""
    ledger = ledger_reader(settings)
    app, intake = build_app(settings, passphrase=passphrase, ledger=ledger)
    host, port = settings.receiver.listen.rsplit(":", 1)
    watch = None
    if ledger is not None:
        watch = WatchThread(
            NotarizationWatch(
                intake.store.engine,
                ledger,
                late_after=settings.ledger.late_after,
                sample=settings.ledger.sample,
            ),
            float(settings.ledger.check_every),
        )
        watch.start()
    try:
        uvicorn.run(app, host=host, port=int(port), log_level=log_level, access_log=False)
    finally:
        if watch is not None:
            watch.close()
        if ledger is not None:
            ledger.close()
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
