"""Notarizing what the gateway sends: every record of every batch becomes a ledger entry, signed
by the hospital's key, so that anyone can later prove a record is exactly what the hospital
produced (docs/ledger.md, "Notarizing what the gateways send").

Per record the entry holds the content hash and an index: the storage address
``hospital/system/table/local_key``, the data type (the source table), a timestamp (the
record's source change time, else its extraction time, in ms) and a pseudonymous patient id —
``HMAC-SHA256(pseudonym key, local patient id)`` where the key is derived from the hospital's
signing key (:func:`pseudonym_key`), so only the hospital can compute it and no identifier is
ever on chain. Tables without a ``patient`` column in their extraction profile carry none.

Durability (the same rules as the outbox, ``state.py``): a batch's entries are written to
``notary_entries`` and the batch to ``notary`` in the transaction that records the batch in
``outbox``, so a batch is never sent without its entries queued. :meth:`Notary.run_pending`
notarizes queued batches oldest first, in transactions of ``tx_entries`` entries; a batch leaves
the queue (into ``notarized``) only once every transaction got ``f + 1`` matching replies. A
crash or an unreachable ledger retries the batch later (with back-off); entries already
notarized come back as duplicates, which the ledger accepts, so the effect is exactly once.
A transaction the replicas *refuse* (bad signature, unregistered hospital) stops that batch
with the reason; ``gateway status`` shows it and ``gateway notary-retry`` queues it again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medfabric.crypto import SigningKey
from medfabric.gateway.background import BackgroundRounds
from medfabric.gateway.state import GatewayState, backoff_delay, now_utc
from medfabric.ledger.blocks import Entry, EntryIndex, storage_address
from medfabric.ledger.client import ClientError, LedgerClient, read_cluster
from medfabric.ledger.cluster import ClusterError
from medfabric.ledger.messages import LedgerError

log = logging.getLogger("medfabric.gateway")

PSEUDONYM_CONTEXT = b"medfabric/patient-pseudonym-key/v1"


class NotaryError(Exception):
    """Notarization is configured but cannot work (no cluster, key not registered)."""


def pseudonym_key(signing_key: SigningKey) -> bytes:
    """The hospital's secret key for pseudonymous patient ids.

    Derived from its signing key (Ed25519 signatures are deterministic, and only the holder of
    the key can produce this one), so that no other key file has to be kept and backed up.
    Rotating the signing key therefore changes the pseudonyms of later entries.
    """
    return hashlib.sha256(signing_key.sign(PSEUDONYM_CONTEXT)).digest()


def pseudonymize(key: bytes, patient_ids: pa.Array | pa.ChunkedArray) -> pa.BinaryArray:
    """``HMAC-SHA256(key, UTF-8 of the id)`` per value; null or empty ids give empty bytes.

    Each distinct id is hashed once.
    """
    as_text = pc.cast(patient_ids, pa.string())
    if isinstance(as_text, pa.ChunkedArray):
        as_text = as_text.combine_chunks()
    distinct = pc.unique(as_text)
    digests = [
        b"" if v is None or v == "" else hmac.digest(key, v.encode("utf-8"), "sha256")
        for v in distinct.to_pylist()
    ]
    positions = pc.index_in(as_text, value_set=distinct)
    return pc.take(pa.array(digests, pa.binary()), positions)


def _epoch_ms(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps (naive ones read as UTC) as milliseconds since the epoch, truncated."""
    tz = getattr(column.type, "tz", None)
    ms = pc.cast(column, pa.timestamp("ms", tz=tz), safe=False)
    return pc.cast(ms, pa.int64())


def entry_rows(table: pa.Table, *, patient_column: str | None, key: bytes) -> pa.Table:
    """The ``notary_entries`` columns for a batch table (meta columns ``_local_key``,
    ``_hash``, ``_source_updated_at``, ``_extracted_at`` and the payload)."""
    n = table.num_rows
    if patient_column is not None and patient_column in table.column_names:
        patient = pseudonymize(key, table.column(patient_column))
    else:
        patient = pa.array([b""] * n, pa.binary())
    stamp = pc.coalesce(
        _epoch_ms(table.column("_source_updated_at")), _epoch_ms(table.column("_extracted_at"))
    )
    return pa.table(
        {
            "pos": pa.array(range(n), pa.int32()),
            "hash": table.column("_hash"),
            "local_key": table.column("_local_key"),
            "ts_ms": stamp,
            "patient": patient,
        }
    )


@dataclass
class NotaryReport:
    """What one notarization round did."""

    batches: int = 0
    entries: int = 0
    new: int = 0
    duplicates: int = 0
    refused: int = 0
    pending: int = 0
    error: str | None = None


def open_client(cluster: Path, hospital_id: str, key: SigningKey, timeout: float) -> LedgerClient:
    """A ledger client for the hospital, from the cluster's public description (cluster.toml,
    or a cluster folder; see ``read_cluster``).

    Raises:
        NotaryError: The folder is not a cluster, or the hospital is not one of its
            institutions with this key (``medfabric ledger init --hospital-keys`` registers
            the hospitals' keys).
    """
    try:
        nodes, membership = read_cluster(cluster)
        return LedgerClient(nodes, membership, hospital_id, key, timeout=timeout)
    except (ClusterError, ClientError) as e:
        raise NotaryError(
            f"ledger notarization: {e} (check [ledger] dir in region.toml; register the "
            "hospitals with `medfabric ledger init --hospital-keys KEYS_DIR`)"
        ) from None


class Notary:
    """Notarizes a gateway's queued batches (module docstring).

    Args:
        state: The gateway state (a thread's own view when run in a thread).
        client: The hospital's ledger client.
        tx_entries: Entries per ledger transaction.
        max_backoff: Longest wait between retries after a failure, in seconds.
    """

    def __init__(
        self,
        state: GatewayState,
        client: LedgerClient,
        *,
        tx_entries: int = 2_000,
        max_backoff: float = 300.0,
    ) -> None:
        self.state = state
        self.client = client
        self.tx_entries = tx_entries
        self.max_backoff = max_backoff

    def run_pending(
        self, *, force: bool = False, stop: threading.Event | None = None
    ) -> NotaryReport:
        """Notarize queued batches oldest first until none is left, one fails, or ``stop``.

        Args:
            force: Ignore the back-off schedule.
            stop: Checked between transactions.
        """
        report = NotaryReport()
        con = self.state.con
        rows = con.execute(
            "SELECT batch_id, system, source_table, rows, attempts, next_try "
            "FROM notary WHERE status = 'pending' ORDER BY seq"
        ).fetchall()
        now = now_utc()
        for i, (batch_id, system, table, nrows, attempts, next_try) in enumerate(rows):
            if stop is not None and stop.is_set():
                report.pending = len(rows) - i
                break
            if not force and next_try is not None and next_try > now:
                report.pending = len(rows) - i
                break
            entries = self._entries(batch_id, system, table)
            try:
                new, dup, refused = self._notarize(entries, stop)
            except (ClientError, LedgerError) as e:
                self._retry_later(batch_id, attempts, str(e))
                report.error = f"ledger: {e}"
                report.pending = len(rows) - i
                break
            if refused is not None:
                with self.state.transaction():
                    con.execute(
                        "UPDATE notary SET status = 'refused', last_error = ? WHERE batch_id = ?",
                        [refused[:1000], batch_id],
                    )
                report.refused += 1
                log.error(
                    "notarization-refused",
                    extra={"fields": {"batch_id": batch_id, "reason": refused}},
                )
                continue
            if new < 0:  # stopped between transactions
                report.pending = len(rows) - i
                break
            with self.state.transaction():
                con.execute(
                    "INSERT OR REPLACE INTO notarized SELECT batch_id, seq, system, "
                    "source_table, rows, ?, ?, created_at, ? FROM notary WHERE batch_id = ?",
                    [new, dup, now_utc(), batch_id],
                )
                con.execute("DELETE FROM notary_entries WHERE batch_id = ?", [batch_id])
                con.execute("DELETE FROM notary WHERE batch_id = ?", [batch_id])
            report.batches += 1
            report.entries += len(entries)
            report.new += new
            report.duplicates += dup
            log.info(
                "batch-notarized",
                extra={
                    "fields": {"batch_id": batch_id, "rows": nrows, "new": new, "duplicates": dup}
                },
            )
        return report

    def _entries(self, batch_id: str, system: str, table: str) -> list[Entry]:
        rows = self.state.con.execute(
            "SELECT hash, local_key, ts_ms, patient FROM notary_entries WHERE batch_id = ? "
            "ORDER BY pos",
            [batch_id],
        ).fetchall()
        hospital = self.state.hospital_id
        seen: set[bytes] = set()
        out: list[Entry] = []
        for hash_hex, local_key, ts_ms, patient in rows:
            content_hash = bytes.fromhex(hash_hex)
            if content_hash in seen:
                continue
            seen.add(content_hash)
            index = EntryIndex(
                storage_address(hospital, system, table, local_key),
                table,
                max(0, int(ts_ms)),
                bytes(patient or b""),
            )
            out.append(Entry(content_hash, index))
        return out

    def _notarize(
        self, entries: list[Entry], stop: threading.Event | None
    ) -> tuple[int, int, str | None]:
        """(new, duplicates, refusal reason); new = -1 when stopped part way."""
        new = dup = 0
        for at in range(0, len(entries), self.tx_entries):
            if stop is not None and stop.is_set():
                return -1, dup, None
            result = self.client.notarize(entries[at : at + self.tx_entries])
            if result.status != "notarized":
                return new, dup, result.reason
            new += result.new
            dup += result.duplicates
        return new, dup, None

    def _retry_later(self, batch_id: str, attempts: int, error: str) -> None:
        wait = backoff_delay(attempts, self.max_backoff)
        with self.state.transaction():
            self.state.con.execute(
                "UPDATE notary SET attempts = attempts + 1, next_try = ?, last_error = ? "
                "WHERE batch_id = ?",
                [now_utc() + timedelta(seconds=wait), error[:1000], batch_id],
            )
        log.warning(
            "notarization-deferred",
            extra={"fields": {"batch_id": batch_id, "retry_in_s": wait, "error": error}},
        )


class BackgroundNotary(BackgroundRounds):
    """Runs a :class:`Notary` in a thread during a cycle, woken by each spooled batch, like the
    background sender (``runner.py``); :meth:`finish` drains what is queued and stops.

    A failed round (a slow or briefly unreachable ledger) is retried within the cycle up to
    ``retries`` times with a growing pause; the batch's own back-off is recorded for later
    cycles.
    """

    def __init__(self, notary: Notary, *, force: bool, retries: int = 4) -> None:
        super().__init__(notary.state, "gateway-notary")
        self.notary = notary
        self.force = force
        self.retries = retries
        self.report = NotaryReport()

    def finish(self, *, wait: bool = True) -> NotaryReport:
        """No more batches are coming: notarize what is queued (or, with ``wait=False``, stop
        after the current transaction), then return the report.

        Raises:
            BaseException: whatever stopped the thread (re-raised here).
        """
        self._finish(stop=not wait)
        return self.report

    def _round(self) -> bool:
        failures = 0
        while True:
            rep = self.notary.run_pending(force=self.force or failures > 0, stop=self._stop)
            for name in ("batches", "entries", "new", "duplicates", "refused"):
                setattr(self.report, name, getattr(self.report, name) + getattr(rep, name))
            self.report.pending = rep.pending
            self.report.error = rep.error
            if self._stop.is_set():
                return False
            if rep.error is None:
                return not rep.pending  # pending: back-off not due (without force)
            failures += 1
            if failures > self.retries or self._stop.wait(min(2.0**failures, 30.0)):
                return False
