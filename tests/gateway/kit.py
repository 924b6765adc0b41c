"""Shared test kit: a small simulated region with keys, a receiver (in-process or on loopback),
gateways, and an independent check that ODS equals the sources."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import uvicorn
from fastapi.testclient import TestClient
from tests.simulator.regionkit import make_region

from medfabric.gateway import Gateway
from medfabric.receiver import build_app
from medfabric.records import CanonicalRecord, content_hash
from medfabric.records.keyring import init_keys
from medfabric.records.sqlcanon import local_key_text
from medfabric.settings import Settings, load_settings, parse_settings
from medfabric.standards.sources import resolve_tables

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TINY = {"hospitals": 3, "patients": 120, "seed": 5, "days": 60, "dicom": False}


def build_template(root: Path, **kw: Any) -> Path:
    """A simulated region with keys, built once per session and copied per test."""
    make_region(root, **{**TINY, **kw})
    settings = load_settings(root / "region.toml")
    init_keys(root / "keys", [h.id for h in settings.hospitals], passphrase=None)
    return root


@dataclass
class Env:
    """One test's region copy: settings pointing into it."""

    root: Path
    settings: Settings

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "warehouse.duckdb"


def copy_region(template: Path, dest: Path, *, port: int = 8470, **gateway: Any) -> Env:
    """Copy the template region and rewrite its settings for ``dest`` (and a receiver port)."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("gateway", "warehouse"))
    text = (dest / "region.toml").read_text("utf-8").replace(str(template), str(dest))
    text = text.replace("127.0.0.1:8470", f"127.0.0.1:{port}")
    (dest / "region.toml").write_text(text, "utf-8")
    import tomllib

    data = tomllib.loads(text)
    data["gateway"].update(gateway)
    return Env(dest, parse_settings(data))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def in_process_receiver(env: Env) -> Iterator[TestClient]:
    """The receiver app behind a TestClient (an httpx.Client) — no sockets."""
    app, intake = build_app(env.settings)
    client = TestClient(app, base_url=env.settings.gateway.receiver_url)
    try:
        yield client
    finally:
        client.close()
        intake.close()
        intake.store.engine.close()


@contextmanager
def loopback_receiver(env: Env) -> Iterator[str]:
    """The receiver served by uvicorn on 127.0.0.1 in a thread."""
    app, intake = build_app(env.settings)
    host, port = env.settings.receiver.listen.rsplit(":", 1)
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("receiver did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        intake.close()
        intake.store.engine.close()


def gateway(env: Env, hospital: str, client: Any = None) -> Gateway:
    return Gateway(env.settings, hospital, client=client)


# --- the independent check: Python encoder over the SQLite sources vs ODS --------------------


def _value(v: Any, declared: str, encoded: bool) -> Any:
    if v is None:
        return None
    t = declared.upper()
    if encoded:
        return v.decode("gb18030") if isinstance(v, bytes) else v
    if "INT" in t:
        return int(v)
    if "TEXT" in t or "CHAR" in t:
        return str(v)
    if "REAL" in t:
        return float(v)
    if "BLOB" in t:
        return bytes(v) if not isinstance(v, str) else v.encode()
    raise AssertionError(f"unexpected declared type {declared}")


def expected_hashes(env: Env, hospital: str, system: str) -> dict[str, dict[str, str]]:
    """Source table → local key → content hash, computed with the Python encoder from the
    SQLite file (the deletes a flag marks are ``delete`` records)."""
    h = env.settings.hospital(hospital)
    sec = h.systems[system]  # type: ignore[index]
    path = sec.url.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    out: dict[str, dict[str, str]] = {}
    for spec in resolve_tables(sec.dialect, system, sec.tables):
        info = con.execute(f'PRAGMA table_info("{spec.name}")').fetchall()
        names = [r[1] for r in info]
        declared = {r[1]: r[2] for r in info}
        hashes: dict[str, str] = {}
        for row in con.execute(f'SELECT * FROM "{spec.name}"'):
            values = dict(zip(names, row, strict=True))
            payload = {n: _value(values[n], declared[n], n in spec.encoded_columns) for n in names}
            key = local_key_text([payload[k] for k in spec.key])
            op = "upsert"
            if (
                spec.delete.mode == "flag"
                and str(values[spec.delete.column]) == spec.delete.deleted
            ):
                op = "delete"
            updated = None
            if spec.track is not None and values[spec.track.column] is not None:
                raw = values[spec.track.column]
                if spec.track.format == "epoch_ms":
                    updated = EPOCH + timedelta(milliseconds=int(raw))
                else:
                    updated = datetime.strptime(str(raw), spec.track.format)
            rec = CanonicalRecord(
                hospital_id=hospital, system=system, table=spec.name, local_key=key, op=op,
                source_updated_at=updated, extracted_at=datetime(2026, 1, 1), payload=payload,
            )  # fmt: skip
            hashes[key] = content_hash(rec)
        out[spec.name] = hashes
    con.close()
    return out


def ods_current(env: Env, hospital: str, system: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Source table → local key → (op, hash) of the latest version in ODS."""
    con = duckdb.connect(str(env.warehouse))
    out: dict[str, dict[str, tuple[str, str]]] = {}
    try:
        for name, src in con.execute(
            "SELECT ods_table, source_table FROM ingest.ods_tables "
            "WHERE hospital_id = ? AND system = ?",
            [hospital, system],
        ).fetchall():
            rows = con.execute(
                f'SELECT _local_key, _op, _hash FROM ods."{name}" WHERE _valid_to IS NULL'
            ).fetchall()
            out[src] = {k: (op, h) for k, op, h in rows}
    finally:
        con.close()
    return out


def duplicate_versions(env: Env) -> int:
    """Consecutive versions of one key with equal hashes (must be none)."""
    con = duckdb.connect(str(env.warehouse))
    total = 0
    try:
        for (name,) in con.execute("SELECT ods_table FROM ingest.ods_tables").fetchall():
            row = con.execute(
                f"SELECT count(*) FROM (SELECT _hash, lag(_hash) OVER (PARTITION BY _local_key "
                f'ORDER BY _version) AS prev FROM ods."{name}") WHERE _hash = prev'
            ).fetchone()
            total += int(row[0]) if row else 0
    finally:
        con.close()
    return total


def assert_ods_equals_sources(env: Env, hospital: str) -> int:
    """Every source row is in ODS as its latest version with the Python encoder's hash; every
    key ODS holds as live exists in the source. Returns rows compared."""
    compared = 0
    for system in env.settings.hospital(hospital).systems:
        expected = expected_hashes(env, hospital, system)
        landed = ods_current(env, hospital, system)
        for table, keys in expected.items():
            got = landed.get(table, {})
            for key, h in keys.items():
                assert key in got, f"{hospital}.{system}.{table} key {key} missing from ODS"
                assert got[key][1] == h, f"{hospital}.{system}.{table} key {key}: hash differs"
            live = {k for k, (op, _) in got.items() if op == "upsert" or k in keys}
            extra = live - set(keys)
            assert not extra, (
                f"{hospital}.{system}.{table}: ODS has keys the source lost: {sorted(extra)[:5]}"
            )
            compared += len(keys)
    return compared
