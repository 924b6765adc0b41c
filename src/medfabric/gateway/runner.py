"""The gateway of one hospital: its schedule, one cycle, status, quarantine handling.

A cycle, per due system: read every configured table (incremental, or full when the table is
new or a resync is pending; then a key comparison for hard deletes when that is due), spool the
changes, send the outbox, fetch the downlink when due, write ``status.json``. One table's
failure (a missing column, an unreadable value) is logged and shown in status; the others go on.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from medfabric.gateway.background import BackgroundRounds
from medfabric.gateway.extract import Extractor, TableRun
from medfabric.gateway.faults import crash_point_from_env
from medfabric.gateway.notary import (
    BackgroundNotary,
    Notary,
    NotaryError,
    NotaryReport,
    open_client,
    pseudonym_key,
)
from medfabric.gateway.sources import SourceError, SourceReader, open_reader
from medfabric.gateway.state import GatewayState, StateError, now_utc
from medfabric.gateway.uplink import SendReport, Uplink
from medfabric.records import RecordError
from medfabric.records.keyring import Keyring
from medfabric.settings import Settings
from medfabric.standards.sources import SourceTable, resolve_tables

log = logging.getLogger("medfabric.gateway")


class GatewayError(Exception):
    """The gateway cannot start or act as asked; the message says what to fix."""


@dataclass
class SystemPlan:
    """One source system of the hospital as the gateway reads it."""

    system: str
    url: str
    interval: int
    tables: list[SourceTable]


@dataclass
class CycleReport:
    """What one cycle did, for the CLI and the demo."""

    tables: list[TableRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    send: SendReport = field(default_factory=SendReport)
    notary: NotaryReport | None = None  # None when notarization is off
    downlink: int = 0
    seconds: float = 0.0

    @property
    def records(self) -> int:
        """Records spooled in this cycle."""
        return sum(t.records for t in self.tables)


def plan_systems(settings: Settings, hospital_id: str) -> list[SystemPlan]:
    """The systems and tables of a hospital, from region.toml and the dialect profiles."""
    hospital = settings.hospital(hospital_id)
    if not hospital.systems:
        raise GatewayError(f"hospital {hospital_id} has no systems configured in region.toml")
    plans = []
    for system, sec in hospital.systems.items():
        try:
            tables = resolve_tables(sec.dialect, system, sec.tables)
        except Exception as e:  # CatalogError, with the table named
            raise GatewayError(f"hospitals.{hospital_id}.systems.{e}") from None
        interval = sec.interval if sec.interval is not None else settings.gateway.interval
        plans.append(SystemPlan(system, sec.url, interval, tables))
    return plans


def _nothing() -> None:
    return None


class BackgroundSender(BackgroundRounds):
    """Sends the outbox from a thread while extraction spools, so that this process and the
    receiver work at the same time (a cycle takes about the longer of the two, not their sum).

    Ordering and the acknowledgement rules are those of :meth:`Uplink.send_pending`; each batch
    is visible to the sender only once its outbox row is committed. After a failed send (the
    receiver down, a back-off not yet due) the sender stops for this cycle and the batches wait
    in the spool, as they would without it.
    """

    def __init__(self, uplink: Uplink, *, force: bool) -> None:
        super().__init__(uplink.state, "gateway-sender")
        self.uplink = uplink
        self.force = force
        self.report = SendReport()

    def finish(self) -> SendReport:
        """No more batches are coming: send what is left, stop, and return the round's report.

        Raises:
            BaseException: whatever stopped the sender thread (re-raised here).
        """
        self._finish()
        return self.report

    def _round(self) -> bool:
        rep = self.uplink.send_pending(force=self.force)
        self.report.sent += rep.sent
        self.report.rows += rep.rows
        self.report.quarantined += rep.quarantined
        if rep.error is not None or rep.pending:
            self.report.error = rep.error
            return False
        return True


class Gateway:
    """One hospital's gateway: state, keys, readers, extractor, uplink."""

    def __init__(
        self,
        settings: Settings,
        hospital_id: str,
        *,
        client: httpx.Client | None = None,
        passphrase: bytes | None = None,
        fast_sqlite: bool = True,
    ) -> None:
        self.settings = settings
        self.hospital_id = hospital_id
        self.plans = plan_systems(settings, hospital_id)
        g = settings.gateway
        keyring = Keyring(g.keys_dir, passphrase)
        try:
            signing = keyring.hospital_signing_key(hospital_id)
            region_public = keyring.region_seal_public()
            region_verify = keyring.region_verify_key()
        except Exception as e:  # KeyFileError names the file
            raise GatewayError(f"{e} (run `medfabric keys init` to create the keys)") from None
        ledger = settings.ledger
        ledger_client = None
        if ledger.dir is not None and ledger.notarize:
            try:
                ledger_client = open_client(ledger.dir, hospital_id, signing, float(ledger.timeout))
            except NotaryError as e:
                raise GatewayError(str(e)) from None
        self.crash_point = crash_point_from_env()
        self.state = GatewayState(g.dir / hospital_id, hospital_id)
        self.extractor = Extractor(
            hospital_id,
            self.state,
            signing,
            region_public,
            batch_rows=g.batch_rows,
            overlap_seconds=g.overlap,
            crash_point=self.crash_point,
        )
        self.uplink = Uplink(
            self.state,
            receiver_url=g.receiver_url,
            signing_key=signing,
            region_verify_key=region_verify,
            timeout=float(g.send_timeout),
            max_backoff=float(g.max_backoff),
            client=client,
            crash_point=self.crash_point,
        )
        self.notary: Notary | None = None
        if ledger_client is not None:
            self.notary = Notary(
                self.state,
                ledger_client,
                tx_entries=ledger.tx_entries,
                max_backoff=float(g.max_backoff),
            )
            self.extractor.notary_key = pseudonym_key(signing)
        self.fast_sqlite = fast_sqlite
        self._readers: dict[str, SourceReader] = {}
        self._next_due: dict[str, datetime] = {}
        self._last_downlink: datetime | None = None

    def close(self) -> None:
        """Close readers, the HTTP client and the state (checkpointed)."""
        for r in self._readers.values():
            r.close()
        self.uplink.close()
        if self.notary is not None:
            self.notary.client.close()
        self.state.close()

    def _reader(self, plan: SystemPlan) -> SourceReader:
        if plan.system not in self._readers:
            self._readers[plan.system] = open_reader(
                plan.url, system=plan.system, fast_sqlite=self.fast_sqlite
            )
        return self._readers[plan.system]

    # --- one cycle ---------------------------------------------------------------------------

    def extract(
        self, systems: list[str] | None = None, *, full: bool = False, deletes: bool | None = None
    ) -> CycleReport:
        """Read the given systems (all when None) and spool their changes.

        Args:
            full: a full resync of every table (only changed rows are still sent).
            deletes: force (True) or skip (False) the hard-delete key comparison; None follows
                the ``delete_scan_every`` schedule.
        """
        report = CycleReport()
        started = time.monotonic()
        every = timedelta(seconds=self.settings.gateway.delete_scan_every)
        for plan in self.plans:
            if systems is not None and plan.system not in systems:
                continue
            try:
                reader = self._reader(plan)
            except SourceError as e:
                report.errors.append(str(e))
                log.error(
                    "source-unavailable", extra={"fields": {"system": plan.system, "error": str(e)}}
                )
                continue
            for spec in plan.tables:
                st = self.state.table_state(plan.system, spec.name)
                scan = deletes
                if scan is None:
                    scan = st.last_delete_scan is None or now_utc() - st.last_delete_scan >= every
                try:
                    run = self.extractor.run_table(
                        reader, plan.system, spec, full=full, delete_scan=scan
                    )
                except (SourceError, RecordError) as e:
                    report.errors.append(str(e))
                    self.state.update_table(plan.system, spec.name, last_error=str(e)[:1000])
                    log.error(
                        "table-failed",
                        extra={
                            "fields": {"system": plan.system, "table": spec.name, "error": str(e)}
                        },
                    )
                    continue
                report.tables.append(run)
                if run.records or run.schema_warning:
                    log.info(
                        "table-read",
                        extra={
                            "fields": {
                                "system": plan.system,
                                "table": spec.name,
                                "mode": run.mode,
                                "rows_read": run.rows_read,
                                "records": run.records,
                                "deletes": run.deletes,
                            }
                        },
                    )
        report.seconds = time.monotonic() - started
        return report

    def cycle(
        self,
        systems: list[str] | None = None,
        *,
        full: bool = False,
        deletes: bool | None = None,
        force_send: bool = False,
        downlink: bool = True,
        wait_notary: bool = True,
    ) -> CycleReport:
        """Extract, send and notarize, fetch the downlink, write status.

        Args:
            wait_notary: Wait until every queued batch is notarized (or the ledger failed);
                with False, notarization stops after its current transaction once the batches
                are sent, and the rest waits for the next cycle.
        """
        started = time.monotonic()
        sender = BackgroundSender(self._thread_uplink(), force=force_send)
        notary = None
        if self.notary is not None:
            notary = BackgroundNotary(
                Notary(
                    self.state.for_thread(),
                    self.notary.client,
                    tx_entries=self.notary.tx_entries,
                    max_backoff=self.notary.max_backoff,
                ),
                force=force_send,
            )

        def spooled() -> None:
            sender.wake()
            if notary is not None:
                notary.wake()

        self.extractor.on_spooled = spooled
        sender.start()
        if notary is not None:
            notary.start()
        notary_report = None
        try:
            report = self.extract(systems, full=full, deletes=deletes)
        finally:
            self.extractor.on_spooled = _nothing
            try:
                report_send = sender.finish()
            finally:
                if notary is not None:
                    notary_report = notary.finish(wait=wait_notary)
        report.notary = notary_report
        row = self.state.con.execute("SELECT count(*) FROM outbox").fetchone()
        report_send.pending = int(row[0]) if row else 0
        report.send = report_send
        if downlink:
            try:
                report.downlink = self.uplink.fetch_downlink()
                self._last_downlink = now_utc()
            except httpx.HTTPError as e:
                report.errors.append(f"downlink: {e}")
        self.state.write_snapshot()
        report.seconds = time.monotonic() - started
        return report

    def _thread_uplink(self) -> Uplink:
        """An uplink for the background sender: its own state connection, the shared client."""
        g = self.settings.gateway
        return Uplink(
            self.state.for_thread(),
            receiver_url=g.receiver_url,
            signing_key=self.uplink.signing_key,
            region_verify_key=self.uplink.region_verify_key,
            max_backoff=float(g.max_backoff),
            client=self.uplink.client,
            crash_point=self.crash_point,
        )

    # --- the schedule ------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, *, max_cycles: int | None = None) -> int:
        """Run the schedule until ``stop`` is set (or SIGTERM/SIGINT); returns cycles done."""
        stop = stop or threading.Event()
        previous: dict[signal.Signals, Any] = {}

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("stopping", extra={"fields": {"signal": signum}})
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, _stop)
        log.info("gateway-started", extra={"fields": {"systems": [p.system for p in self.plans]}})
        cycles = 0
        try:
            while not stop.is_set():
                now = now_utc()
                due = [p.system for p in self.plans if self._next_due.get(p.system, now) <= now]
                if due:
                    for p in self.plans:
                        if p.system in due:
                            self._next_due[p.system] = now + timedelta(seconds=p.interval)
                    fetch = self._last_downlink is None or now - self._last_downlink >= timedelta(
                        seconds=self.settings.gateway.downlink_every
                    )
                    report = self.cycle(due, downlink=fetch)
                    cycles += 1
                    log.info(
                        "cycle-done",
                        extra={
                            "fields": {
                                "systems": due,
                                "records": report.records,
                                "sent": report.send.sent,
                                "pending": report.send.pending,
                                "errors": len(report.errors),
                                "seconds": round(report.seconds, 2),
                            }
                        },
                    )
                    if max_cycles is not None and cycles >= max_cycles:
                        break
                else:
                    # Between cycles: keep draining a spool that the receiver refused earlier.
                    pending = self.state.con.execute("SELECT count(*) FROM outbox").fetchone()
                    if pending and pending[0]:
                        self.uplink.send_pending()
                        self.state.write_snapshot()
                    if self.notary is not None:
                        queued = self.state.con.execute(
                            "SELECT count(*) FROM notary WHERE status = 'pending'"
                        ).fetchone()
                        if queued and queued[0]:
                            self.notary.run_pending(stop=stop)
                            self.state.write_snapshot()
                wake = min(self._next_due.values(), default=now_utc())
                stop.wait(max(0.2, min(5.0, (wake - now_utc()).total_seconds())))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("gateway-stopped", extra={"fields": {"cycles": cycles}})
        return cycles

    # --- operator actions --------------------------------------------------------------------

    def quarantine_retry(self, batch_id: str) -> None:
        """Move a quarantined batch back to the outbox (after the cause was fixed)."""
        con = self.state.con
        row = con.execute(
            "SELECT seq, system, source_table, file, rows FROM quarantine WHERE batch_id = ?",
            [batch_id],
        ).fetchone()
        if row is None:
            raise GatewayError(f"no quarantined batch {batch_id!r}")
        seq, system, table, file, rows = row
        src = self.state.quarantine_dir / file
        size = src.stat().st_size
        src.replace(self.state.spool / file)
        with self.state.transaction():
            con.execute("DELETE FROM quarantine WHERE batch_id = ?", [batch_id])
            con.execute(
                "INSERT INTO outbox (batch_id, seq, system, source_table, file, rows, bytes, "
                "created_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [batch_id, seq, system, table, file, rows, size, now_utc()],
            )
        self.state.write_snapshot()

    def quarantine_drop(self, batch_id: str) -> str:
        """Discard a quarantined batch and schedule a full resync of its table, so that the
        rows it carried are read and sent again (nothing is lost). Returns the table."""
        con = self.state.con
        row = con.execute(
            "SELECT system, source_table, file FROM quarantine WHERE batch_id = ?", [batch_id]
        ).fetchone()
        if row is None:
            raise GatewayError(f"no quarantined batch {batch_id!r}")
        system, table, file = row
        ki = self.state.ensure_key_index(system, table)
        with self.state.transaction():
            # Forget the key index entirely: the resync compares against nothing and re-sends
            # every row; the receiver drops those it already holds (same hash as its latest).
            con.execute(f"DELETE FROM {ki}")
            con.execute("DELETE FROM quarantine WHERE batch_id = ?", [batch_id])
            self.state.update_table(system, table, full_pending=True)
        (self.state.quarantine_dir / file).unlink(missing_ok=True)
        self.state.write_snapshot()
        return f"{system}.{table}"

    def resync(self, system: str, table: str | None = None) -> list[str]:
        """Schedule a full read of a system's tables (or one table) at the next cycle."""
        names = []
        for plan in self.plans:
            if plan.system != system:
                continue
            for spec in plan.tables:
                if table is None or spec.name == table:
                    self.state.table_state(system, spec.name)
                    self.state.update_table(system, spec.name, full_pending=True)
                    names.append(f"{system}.{spec.name}")
        if not names:
            raise GatewayError(f"no configured table {system}.{table or '*'}")
        return names


def open_state_for_status(settings: Settings, hospital_id: str) -> dict[str, Any]:
    """The status of a hospital's gateway: from its state when no gateway runs, else from the
    ``status.json`` the running gateway writes after every cycle."""
    settings.hospital(hospital_id)
    root: Path = settings.gateway.dir / hospital_id
    if not (root / "state.duckdb").exists():
        raise GatewayError(f"no gateway state for {hospital_id} under {root} (never run?)")
    try:
        state = GatewayState(root, hospital_id)
    except StateError:
        from medfabric.gateway.state import read_status_snapshot

        snap = read_status_snapshot(root)
        if snap is None:
            raise GatewayError(
                f"the gateway of {hospital_id} is running and wrote no status yet"
            ) from None
        snap["live"] = True
        return snap
    try:
        snap = state.snapshot()
    finally:
        state.close()
    snap["live"] = False
    return snap
