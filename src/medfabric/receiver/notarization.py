"""Checking ODS against the ledger: the notarization watch over landed batches, the verification
of one record, and the audit of many (docs/ledger.md, "Notarizing what the gateways send").

- :class:`NotarizationWatch` looks, for every landed batch not yet confirmed, for the ledger
  proofs of a sample of its records (recomputed from ODS, not taken from the batch): when every
  sampled record has a valid proof whose entry names this record's storage address, the batch
  is ``notarized`` and its block heights and notarization time (the block's time) are recorded;
  a batch still unconfirmed ``late_after`` seconds after it landed is flagged ``late``, and a
  proof that names another address is ``invalid``. A batch notarized after the bound keeps a
  ``late`` flag.
- :func:`verify_row` answers ``VALID`` for one ODS row version, or exactly what failed:
  ``ALTERED`` (its values no longer hash to the hash it landed with), ``NOT NOTARIZED``,
  ``INVALID PROOF`` (no node served a proof that verifies against the membership) or
  ``WRONG ADDRESS`` (the notarized entry names another record).
- :func:`audit` checks every row version of ODS (or of one table) against a full replay of the
  chain (``ledger/replay.py``), or a random sample of rows through per-record proofs, and lists
  every mismatch.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from medfabric.ledger.blocks import EntryProof, encode_entry_proof, storage_address
from medfabric.ledger.client import ClientError, LedgerClient, NotNotarized, read_cluster
from medfabric.ledger.cluster import ClusterError
from medfabric.ledger.replay import ReplayError, replay_from
from medfabric.receiver.verify import HashGroup, hash_groups
from medfabric.records import RecordError
from medfabric.records.sqlcanon import sql_literal
from medfabric.warehouse import WarehouseError
from medfabric.warehouse.ddl import quote
from medfabric.warehouse.engine import Engine

log = logging.getLogger("medfabric.receiver")

VERDICTS = ("VALID", "ALTERED", "NOT NOTARIZED", "INVALID PROOF", "WRONG ADDRESS")


class NotarizationError(Exception):
    """The ledger or the warehouse cannot be read as asked; the message says what to fix."""


def open_reader(cluster: Path, *, timeout: float = 30.0) -> LedgerClient:
    """A read-only ledger client for the cluster folder (proofs and blocks only).

    Raises:
        NotarizationError: The folder holds no valid cluster.
    """
    try:
        nodes, membership = read_cluster(cluster)
    except ClusterError as e:
        raise NotarizationError(f"ledger: {e} (check [ledger] dir in region.toml)") from None
    return LedgerClient(nodes, membership, timeout=timeout)


def _ms(at: int) -> datetime:
    return datetime.fromtimestamp(at / 1000, UTC)


@dataclass(frozen=True, slots=True)
class RowVerdict:
    """The answer for one ODS row version."""

    ods_table: str
    local_key: str
    version: int
    batch_id: str
    address: str
    stored_hash: str
    recomputed_hash: str
    verdict: str  # one of VERDICTS
    detail: str = ""
    proof: EntryProof | None = None

    @property
    def valid(self) -> bool:
        """Whether the record is exactly what was notarized."""
        return self.verdict == "VALID"


def _group_of(
    engine: Engine, ods_table: str, batch_id: str, groups: list[HashGroup] | None = None
) -> HashGroup:
    for g in groups if groups is not None else hash_groups(engine, ods_table):
        if g.ods_table == ods_table and batch_id in g.batch_ids:
            return g
    raise NotarizationError(f"batch {batch_id} of {ods_table} is not in ingest.batches")


def _known_table(engine: Engine, ods_table: str) -> None:
    found = engine.fetchall("SELECT 1 FROM ingest.ods_tables WHERE ods_table = ?", [ods_table])
    if not found:
        known = [r[0] for r in engine.fetchall("SELECT ods_table FROM ingest.ods_tables")]
        hint = ", ".join(sorted(known)[:8]) + (" …" if len(known) > 8 else "")
        raise NotarizationError(f"no ODS table {ods_table!r} (some: {hint or 'none'})")


def verify_row(
    engine: Engine,
    client: LedgerClient,
    ods_table: str,
    local_key: str,
    *,
    version: int | None = None,
    groups: list[HashGroup] | None = None,
) -> RowVerdict:
    """Recompute a row version's hash from ODS and check it against the ledger.

    Args:
        ods_table: The ODS table (e.g. ``H01__LIS__JY_JG``).
        local_key: The row's local key (its ``_local_key``).
        version: The version; the current one (or the last, for a deleted row) when None.
        groups: The table's hash groups when the caller already read them (an audit).

    Raises:
        NotarizationError: No such table or row, or the warehouse cannot be read.
    """
    try:
        _known_table(engine, ods_table)
        rows = engine.fetchall(
            f"SELECT _version, _batch_id, _hash FROM ods.{quote(ods_table)} "
            "WHERE _local_key = ? AND (? IS NULL OR _version = ?) ORDER BY _version DESC LIMIT 1",
            [local_key, version, version],
        )
        if not rows:
            which = "any version" if version is None else f"version {version}"
            raise NotarizationError(f"{ods_table} has no row {local_key!r} ({which})")
        ver, batch_id, stored = int(rows[0][0]), str(rows[0][1]), str(rows[0][2])
        group = _group_of(engine, ods_table, batch_id, groups)
        recomputed = str(
            engine.fetchall(
                f"SELECT {group.expression} FROM ods.{quote(ods_table)} "
                "WHERE _local_key = ? AND _version = ?",
                [local_key, ver],
            )[0][0]
        )
    except (WarehouseError, RecordError) as e:
        raise NotarizationError(f"cannot read {ods_table}: {e}") from None
    address = storage_address(group.hospital_id, group.system, group.source_table, local_key)
    base = (ods_table, local_key, ver, batch_id, address, stored, recomputed)
    if recomputed != stored:
        detail = (
            f"the row's values hash to {recomputed[:16]}… but it landed as {stored[:16]}…: "
            "it was changed after landing"
        )
        try:
            original = client.proof(bytes.fromhex(stored))
            detail += f"; the landed version is notarized in block {original.header.height}"
        except ClientError:
            pass
        return RowVerdict(*base, verdict="ALTERED", detail=detail)
    try:
        proof = client.proof(bytes.fromhex(recomputed))
    except NotNotarized:
        return RowVerdict(
            *base, verdict="NOT NOTARIZED", detail="no node holds an entry for this hash"
        )
    except ClientError as e:
        answers = "; ".join(f"{n}: {a}" for n, a in e.answers.items())
        return RowVerdict(*base, verdict="INVALID PROOF", detail=f"{e} ({answers})")
    if proof.entry.index.address != address:
        return RowVerdict(
            *base,
            verdict="WRONG ADDRESS",
            detail=f"the entry for this hash names {proof.entry.index.address!r}",
            proof=proof,
        )
    return RowVerdict(
        *base,
        verdict="VALID",
        detail=(
            f"block {proof.header.height}, entry {proof.position} of {proof.entry_count}, "
            f"{len(proof.certificate)} commit signatures, notarized {_ms(proof.header.time)}"
        ),
        proof=proof,
    )


# --- the audit --------------------------------------------------------------------------------


@dataclass
class AuditReport:
    """What :func:`audit` found."""

    mode: str  # full | sample
    checked: int = 0
    valid: int = 0
    blocks: int = 0
    entries: int = 0
    findings: list[RowVerdict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))

    def add(self, verdict: RowVerdict) -> None:
        """Count one answer; keep it if it is not VALID."""
        self.checked += 1
        self.counts[verdict.verdict] += 1
        if verdict.valid:
            self.valid += 1
        else:
            self.findings.append(verdict)


def _rows(engine: Engine, g: HashGroup) -> Iterator[tuple[str, int, str, str, str]]:
    """(local key, version, batch id, stored hash, recomputed hash) of a group's rows."""
    yield from engine.fetchall(
        f"SELECT _local_key, _version, _batch_id, _hash, {g.expression} "
        f"FROM ods.{quote(g.ods_table)} WHERE _batch_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY _local_key, _version",
        [list(g.batch_ids)],
    )


def audit(
    engine: Engine,
    client: LedgerClient,
    *,
    ods_table: str | None = None,
    sample: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> AuditReport:
    """Check ODS row versions against the ledger and report every mismatch.

    Args:
        ods_table: Only this table (default: every ODS table).
        sample: Check this many random row versions through per-record proofs; None checks
            every version against a full, verified replay of the chain.
        progress: Called with (phase, done, total).

    Raises:
        NotarizationError: The chain does not replay (a block fails verification), or the
            warehouse or the ledger cannot be read.
    """
    try:
        if ods_table is not None:
            _known_table(engine, ods_table)
        groups = list(hash_groups(engine, ods_table))
        if sample is not None:
            return _audit_sample(engine, client, groups, sample, progress)
        try:
            replay = replay_from(
                client,
                progress=None if progress is None else lambda d, t: progress("blocks", d, t),
            )
        except ReplayError as e:
            raise NotarizationError(f"the chain does not verify: {e}") from None
        report = AuditReport("full", blocks=replay.blocks, entries=replay.entries)
        for done, g in enumerate(groups, 1):
            for key, ver, batch_id, stored, recomputed in _rows(engine, g):
                address = storage_address(g.hospital_id, g.system, g.source_table, key)
                base = (g.ods_table, key, int(ver), batch_id, address, stored, recomputed)
                if recomputed != stored:
                    report.add(RowVerdict(*base, "ALTERED", "changed after landing"))
                    continue
                found = replay.index.get(bytes.fromhex(recomputed))
                if found is None:
                    report.add(RowVerdict(*base, "NOT NOTARIZED", "not in the replayed chain"))
                elif found.index.address != address:
                    report.add(
                        RowVerdict(*base, "WRONG ADDRESS", f"entry names {found.index.address}")
                    )
                else:
                    report.add(RowVerdict(*base, "VALID", f"block {found.height}"))
            if progress is not None:
                progress("rows", done, len(groups))
        return report
    except (WarehouseError, RecordError) as e:
        raise NotarizationError(f"cannot read ODS: {e}") from None


def _audit_sample(
    engine: Engine,
    client: LedgerClient,
    groups: list[HashGroup],
    sample: int,
    progress: Callable[[str, int, int], None] | None,
) -> AuditReport:
    report = AuditReport("sample")
    tables = sorted({g.ods_table for g in groups})
    if not tables:
        return report
    union = " UNION ALL ".join(
        f"SELECT {sql_literal(t)} AS t, _local_key, _version FROM ods.{quote(t)}" for t in tables
    )
    picks = [
        (str(t), str(k), int(v))
        for t, k, v in engine.fetchall(
            f"SELECT * FROM ({union}) USING SAMPLE reservoir({int(sample)} ROWS)"
        )
    ]
    for done, (table, key, ver) in enumerate(picks, 1):
        report.add(verify_row(engine, client, table, key, version=ver, groups=groups))
        if progress is not None:
            progress("rows", done, len(picks))
    return report


# --- the watch over landed batches ------------------------------------------------------------


@dataclass
class WatchReport:
    """What one pass of the watch did."""

    checked: int = 0
    notarized: int = 0
    pending: int = 0
    late: int = 0
    invalid: int = 0
    error: str | None = None


class NotarizationWatch:
    """Confirms landed batches on the ledger (module docstring).

    Args:
        engine: The warehouse (the receiver's engine, shared with intake).
        client: A ledger client (read-only is enough).
        late_after: Seconds after landing before an unconfirmed batch is flagged.
        sample: Records checked per batch (all of a smaller batch).
    """

    def __init__(
        self, engine: Engine, client: LedgerClient, *, late_after: int, sample: int
    ) -> None:
        self.engine = engine
        self.client = client
        self.late_after = timedelta(seconds=late_after)
        self.sample = sample

    def check(self, now: datetime | None = None) -> WatchReport:
        """One pass over the batches not yet confirmed (oldest first)."""
        report = WatchReport()
        at = now if now is not None else datetime.now(UTC)
        todo = self.engine.fetchall(
            "SELECT b.batch_id, b.hospital_id, b.system, b.source_table, b.ods_table, "
            "b.received_at, n.status FROM ingest.batches b LEFT JOIN ingest.notarization n "
            "USING (batch_id) WHERE b.landed > 0 AND (n.status IS NULL OR n.status IN "
            "('pending', 'late')) ORDER BY b.received_at, b.seq"
        )
        for batch_id, hospital, system, table, ods, received_at, previous in todo:
            try:
                status = self._check_batch(
                    batch_id, hospital, system, table, ods, received_at, previous, at
                )
            except ClientError as e:
                report.error = f"ledger: {e}"
                log.warning("notarization-check-failed", extra={"fields": {"error": str(e)}})
                break
            report.checked += 1
            setattr(report, status, getattr(report, status) + 1)
        return report

    def _check_batch(
        self,
        batch_id: str,
        hospital: str,
        system: str,
        table: str,
        ods: str,
        received_at: datetime,
        previous: str | None,
        now: datetime,
    ) -> str:
        rows = self.engine.fetchall(
            f"SELECT _local_key, _hash FROM ods.{quote(ods)} WHERE _batch_id = ? "
            "ORDER BY hash(_hash || ?) LIMIT ?",
            [batch_id, batch_id, self.sample],
        )
        heights: list[int] = []
        times: list[int] = []
        missing = 0
        detail = ""
        for key, stored in rows:
            try:
                proof = self.client.proof(bytes.fromhex(stored))
            except NotNotarized:
                missing += 1
                continue
            address = storage_address(hospital, system, table, key)
            if proof.entry.index.address != address:
                detail = f"the entry of {key} names {proof.entry.index.address}"
                self._record(batch_id, hospital, ods, "invalid", len(rows), 0, [], [], now,
                             False, detail)  # fmt: skip
                log.error(
                    "notarization-invalid",
                    extra={"fields": {"batch_id": batch_id, "detail": detail}},
                )
                return "invalid"
            heights.append(proof.header.height)
            times.append(proof.header.time)
        found = len(rows) - missing
        overdue = now - received_at > self.late_after
        if missing == 0 and rows:
            late = _ms(max(times)) - received_at > self.late_after or previous == "late"
            self._record(batch_id, hospital, ods, "notarized", len(rows), found, heights, times,
                         now, late, "")  # fmt: skip
            return "notarized"
        status = "late" if overdue else "pending"
        detail = f"{missing} of {len(rows)} sampled records not notarized yet"
        self._record(batch_id, hospital, ods, status, len(rows), found, heights, times, now,
                     overdue, detail)  # fmt: skip
        if status == "late" and previous != "late":
            log.warning(
                "notarization-late",
                extra={"fields": {"batch_id": batch_id, "received_at": received_at.isoformat()}},
            )
        return status

    def _record(
        self,
        batch_id: str,
        hospital: str,
        ods: str,
        status: str,
        checked: int,
        found: int,
        heights: list[int],
        times: list[int],
        now: datetime,
        late: bool,
        detail: str,
    ) -> None:
        self.engine.execute(
            "INSERT OR REPLACE INTO ingest.notarization VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch_id, hospital, ods, status, checked, found,
                min(heights) if heights else None, max(heights) if heights else None,
                _ms(max(times)) if times else None, late, detail or None, now,
            ],
        )  # fmt: skip


def notarization_summary(engine: Engine) -> dict[str, object]:
    """Counts per status (batches landed without a check yet count as ``unchecked``) and the
    late or invalid batches, for ``/v1/status`` and the CLI."""
    counts = dict(
        engine.fetchall(
            "SELECT coalesce(n.status, 'unchecked'), count(*) FROM ingest.batches b "
            "LEFT JOIN ingest.notarization n USING (batch_id) WHERE b.landed > 0 GROUP BY 1"
        )
    )
    flagged = [
        {
            "batch_id": r[0],
            "hospital_id": r[1],
            "ods_table": r[2],
            "status": r[3],
            "first_height": r[4],
            "last_height": r[5],
            "notarized_at": None if r[6] is None else r[6].isoformat(),
            "detail": r[7],
        }
        for r in engine.fetchall(
            "SELECT batch_id, hospital_id, ods_table, status, first_height, last_height, "
            "notarized_at, detail FROM ingest.notarization WHERE late OR status = 'invalid' "
            "ORDER BY checked_at DESC LIMIT 50"
        )
    ]
    return {"batches": counts, "flagged": flagged}


def verdict_json(v: RowVerdict) -> dict[str, object]:
    """A verdict as JSON (the proof as base64 of its canonical encoding, for offline checks)."""
    out: dict[str, object] = {
        "ods_table": v.ods_table,
        "local_key": v.local_key,
        "version": v.version,
        "batch_id": v.batch_id,
        "address": v.address,
        "stored_hash": v.stored_hash,
        "recomputed_hash": v.recomputed_hash,
        "verdict": v.verdict,
        "detail": v.detail,
    }
    if v.proof is not None:
        out["block"] = v.proof.header.height
        out["position"] = v.proof.position
        out["proof"] = base64.b64encode(encode_entry_proof(v.proof)).decode("ascii")
    return out


def audit_json(report: AuditReport, *, limit: int = 1000) -> dict[str, object]:
    """An audit report as JSON, with at most ``limit`` findings listed."""
    return {
        "mode": report.mode,
        "checked": report.checked,
        "valid": report.valid,
        "blocks": report.blocks,
        "entries": report.entries,
        "counts": report.counts,
        "findings": [
            {k: val for k, val in verdict_json(f).items() if k != "proof"}
            for f in report.findings[:limit]
        ],
        "findings_total": len(report.findings),
    }
