"""Lineage: the chain from a DWD row back to the source system row it came from.

DWD row (its lineage columns and mapping version) → the exact ODS version it was derived from
(the version whose ``_hash`` equals the row's ``_ods_content_hash``) and the other versions of
that source record → the batch that brought it (``ingest.batches``, ``ingest.notarization``) →
the source system row (hospital, system, table, local key, source update time, payload), with
the governance runs that processed the batch and the governance events about that source row
(quarantine, duplicates, nulled values, unmapped codes).

Rows of ``dwd.institution`` come from ``region.toml`` (:mod:`medfabric.governance.master`), not
from ODS: their chain ends at the configuration entry.

Invariants:
- Read-only: :func:`lineage` never writes.
- A DWD row is found by its primary key (a composite key joined with ``/``) or by its source
  address ``hospital/SYSTEM/TABLE/local_key``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from medfabric.governance.compile import GOV_SCHEMA
from medfabric.governance.master import CONFIG_SYSTEM
from medfabric.governance.run import GovernanceError
from medfabric.standards.model import Table, dwd_model
from medfabric.warehouse.ddl import qualified, quote
from medfabric.warehouse.engine import Engine
from medfabric.warehouse.ods import INGEST_SCHEMA, ODS_META, ods_ref, ods_table_name

__all__ = [
    "BatchInfo",
    "GovernanceEvent",
    "Lineage",
    "LineageError",
    "OdsVersion",
    "ProcessedBy",
    "SourceRow",
    "lineage",
]

_META = frozenset(n for n, _ in ODS_META)


class LineageError(GovernanceError):
    """No lineage for the request: unknown DWD table, or no DWD row with that id (the message
    says whether the source row was quarantined, removed as a duplicate, or never landed)."""


@dataclass(frozen=True, slots=True)
class OdsVersion:
    """One version of the source record in its ODS table. ``derived`` marks the version the DWD
    row was derived from."""

    version: int
    op: str
    content_hash: str
    batch_id: str
    source_updated_at: datetime | None
    received_at: datetime
    valid_from: datetime
    valid_to: datetime | None
    derived: bool
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """The batch that brought the derived version (``ingest.batches``), with its notarization
    status when the receiver checked it on the ledger."""

    batch_id: str
    hospital_id: str
    system: str
    source_table: str
    seq: int
    row_count: int
    manifest_sha256: str
    received_at: datetime
    watermark_column: str | None
    watermark_from: str | None
    watermark_to: str | None
    max_source_updated_at: datetime | None
    notarization: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class SourceRow:
    """The source system row: where it lives and when the source last changed it."""

    hospital: str
    system: str
    table: str
    local_key: str
    source_updated_at: datetime | None

    @property
    def address(self) -> str:
        """``hospital/SYSTEM/TABLE/local_key``: the storage address notarized on the ledger."""
        return f"{self.hospital}/{self.system}/{self.table}/{self.local_key}"


@dataclass(frozen=True, slots=True)
class ProcessedBy:
    """A governance entry that processed the batch (``gov.processed``)."""

    entry: str
    ods_table: str
    mapping_version: str
    processed_at: datetime


@dataclass(frozen=True, slots=True)
class GovernanceEvent:
    """Something governance recorded about the source row: ``kind`` is ``quarantine``,
    ``duplicate`` (this row was removed), ``kept`` (another row was removed in its favour),
    ``value_issue`` or ``unmapped``."""

    kind: str
    dwd_table: str
    detail: str


@dataclass(frozen=True)
class Lineage:
    """The chain of one DWD row; see the module docstring."""

    dwd_table: str
    row_id: str
    row: Mapping[str, Any]
    mapping_version: str
    batch_id: str
    content_hash: str
    source: SourceRow
    from_config: bool
    ods_table: str | None = None
    versions: Sequence[OdsVersion] = ()
    batch: BatchInfo | None = None
    processed: Sequence[ProcessedBy] = ()
    events: Sequence[GovernanceEvent] = ()
    warnings: Sequence[str] = field(default_factory=tuple)

    @property
    def derived_version(self) -> OdsVersion | None:
        """The ODS version the row was derived from (None: from the configuration, or no
        version has the row's content hash any more)."""
        return next((v for v in self.versions if v.derived), None)

    def to_json(self) -> dict[str, Any]:
        """The chain as JSON-ready values (times ISO 8601, decimals as strings)."""
        out: dict[str, Any] = _plain(asdict(self))
        out["source"]["address"] = self.source.address
        derived = self.derived_version
        out["derived_version"] = None if derived is None else derived.version
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value


def _dicts(
    engine: Engine, sql: str, params: Sequence[object] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.fetch_arrow(sql, params).to_pylist()
    return [{k: _utc(v) for k, v in r.items()} for r in rows]


def _tables(engine: Engine, schema: str) -> set[str]:
    rows = engine.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
    )
    return {str(r[0]) for r in rows}


def _table(dwd_table: str) -> Table:
    tables = dwd_model().tables
    name = dwd_table.removeprefix("dwd.")
    if name not in tables:
        raise LineageError(f"unknown DWD table {dwd_table!r} (known: {', '.join(sorted(tables))})")
    return tables[name]


_ADDRESS = "_source_hospital || '/' || _source_system || '/' || _source_table || '/' || _source_key"


def _find_row(engine: Engine, table: Table, row_id: str) -> dict[str, Any] | None:
    if table.name not in _tables(engine, "dwd"):
        raise LineageError(f"the warehouse has no table dwd.{table.name} (no governance run yet)")
    pk = [quote(k) for k in table.primary_key]
    key = pk[0] if len(pk) == 1 else f"concat_ws('/', {', '.join(pk)})"
    rows = _dicts(
        engine,
        f"SELECT * FROM {qualified(table)} WHERE CAST({key} AS VARCHAR) = ? LIMIT 1",
        [row_id],
    )
    if not rows:
        rows = _dicts(
            engine, f"SELECT * FROM {qualified(table)} WHERE {_ADDRESS} = ? LIMIT 2", [row_id]
        )
    return rows[0] if rows else None


def _events(engine: Engine, source: SourceRow) -> list[GovernanceEvent]:
    have = _tables(engine, GOV_SCHEMA)
    addr = [source.hospital, source.system, source.table, source.local_key]
    mine = "hospital = ? AND source_system = ? AND source_table = ? AND source_key = ?"
    out: list[GovernanceEvent] = []
    if "quarantine" in have:
        for dwd, reasons, batch in engine.fetchall(
            f"SELECT dwd_table, reasons, batch_id FROM {GOV_SCHEMA}.quarantine WHERE {mine} "
            "ORDER BY quarantined_at",
            addr,
        ):
            out.append(GovernanceEvent("quarantine", dwd, f"{'; '.join(reasons)} (batch {batch})"))
    if "duplicates" in have:
        for dwd, table, key in engine.fetchall(
            f"SELECT dwd_table, kept_source_table, kept_source_key FROM {GOV_SCHEMA}.duplicates "
            f"WHERE {mine} ORDER BY found_at",
            addr,
        ):
            out.append(
                GovernanceEvent(
                    "duplicate", dwd,
                    f"removed: same primary key as {source.hospital}/{source.system}/{table}/"
                    f"{key}, which was kept",
                )
            )  # fmt: skip
        for dwd, system, table, key in engine.fetchall(
            f"""SELECT dwd_table, source_system, source_table, source_key
FROM {GOV_SCHEMA}.duplicates WHERE hospital = ? AND kept_source_table = ? AND kept_source_key = ?
ORDER BY found_at""",
            [source.hospital, source.table, source.local_key],
        ):
            out.append(
                GovernanceEvent(
                    "kept", dwd,
                    f"kept over {source.hospital}/{system}/{table}/{key} (same primary key)",
                )
            )  # fmt: skip
    if "value_issues" in have:
        for dwd, reason in engine.fetchall(
            f"SELECT dwd_table, reason FROM {GOV_SCHEMA}.value_issues WHERE {mine} ORDER BY 2",
            addr,
        ):
            out.append(GovernanceEvent("value_issue", dwd, str(reason)))
    if "unmapped_rows" in have:
        for dwd, dialect, domain, code in engine.fetchall(
            f"SELECT dwd_table, dialect, domain, code FROM {GOV_SCHEMA}.unmapped_rows "
            f"WHERE {mine} ORDER BY 3, 4",
            addr,
        ):
            out.append(
                GovernanceEvent(
                    "unmapped", dwd, f"{domain} code {code!r} not in the {dialect} code table"
                )
            )
    return out


def _not_found(engine: Engine, table: Table, row_id: str) -> LineageError:
    """The clearest error for a row id with no DWD row: what happened to that source row."""
    parts = row_id.split("/", 3)
    base = f"no row {row_id!r} in dwd.{table.name}"
    if len(parts) != 4:
        return LineageError(
            f"{base}; give its id (primary key {', '.join(table.primary_key)}) or its source "
            "address hospital/SYSTEM/TABLE/local_key"
        )
    source = SourceRow(parts[0], parts[1], parts[2], parts[3], None)
    events = _events(engine, source)
    gone = [e for e in events if e.kind in ("quarantine", "duplicate")]
    gone.sort(key=lambda e: e.dwd_table != table.name)
    if gone:
        e = gone[0]
        what = "was quarantined" if e.kind == "quarantine" else "was removed as a duplicate"
        return LineageError(
            f"{base}: source row {source.address} {what} by governance of dwd.{e.dwd_table}: "
            f"{e.detail}"
        )
    ods = ods_table_name(source.hospital, source.system, source.table)
    landed = engine.fetchall(
        f"SELECT ods_table FROM {INGEST_SCHEMA}.ods_tables WHERE ods_table = ?", [ods]
    ) if INGEST_SCHEMA in _schemas(engine) else []  # fmt: skip
    if not landed:
        return LineageError(f"{base}: no ODS table {ods} (nothing landed from that source table)")
    latest = engine.fetchall(
        f"SELECT _version, _op FROM {ods_ref(ods)} WHERE _local_key = ? ORDER BY _version DESC "
        "LIMIT 1",
        [source.local_key],
    )
    if not latest:
        return LineageError(f"{base}: ODS table {ods} has no record with key {source.local_key!r}")
    version, op = latest[0]
    if op == "delete":
        return LineageError(f"{base}: the source deleted it (ODS {ods} version {version})")
    return LineageError(
        f"{base}: ODS {ods} holds it (version {version}) but governance has not derived a "
        f"dwd.{table.name} row from it (not governed yet, or another DWD table's source)"
    )


def _schemas(engine: Engine) -> set[str]:
    rows = engine.fetchall("SELECT DISTINCT schema_name FROM information_schema.schemata")
    return {str(r[0]) for r in rows}


def lineage(engine: Engine, dwd_table: str, row_id: str) -> Lineage:
    """The chain of one DWD row back to its source system row.

    Args:
        engine: The warehouse.
        dwd_table: A DWD table, ``lab_result`` or ``dwd.lab_result``.
        row_id: The row's id (its primary key; a composite key joined with ``/``, e.g.
            ``H01/D000000018`` for a department) or its source address
            ``hospital/SYSTEM/TABLE/local_key``.

    Raises:
        LineageError: unknown table, or no such row (the message says what became of the source
            row: quarantined and why, removed as a duplicate, deleted, not governed, not landed).
        WarehouseError: the engine failed.
    """
    table = _table(dwd_table)
    row = _find_row(engine, table, row_id)
    if row is None:
        raise _not_found(engine, table, row_id)
    pk = "/".join(str(row[k]) for k in table.primary_key)
    source = SourceRow(
        str(row["_source_hospital"]), str(row["_source_system"]), str(row["_source_table"]),
        str(row["_source_key"]), row["_source_updated_at"],
    )  # fmt: skip
    own = {c.name: row[c.name] for c in table.columns if not c.lineage}
    common: dict[str, Any] = {
        "dwd_table": table.name,
        "row_id": pk,
        "row": own,
        "mapping_version": str(row["_mapping_version"]),
        "batch_id": str(row["_batch_id"]),
        "content_hash": str(row["_ods_content_hash"]),
        "source": source,
    }
    if source.system == CONFIG_SYSTEM:
        return Lineage(**common, from_config=True)
    ods = ods_table_name(source.hospital, source.system, source.table)
    warnings: list[str] = []
    versions: list[OdsVersion] = []
    if ods not in _tables(engine, "ods"):
        warnings.append(f"ODS table {ods} is missing: the source row cannot be shown")
    else:
        history = _dicts(
            engine,
            f"SELECT * FROM {ods_ref(ods)} WHERE _local_key = ? ORDER BY _version",
            [source.local_key],
        )
        same = [h for h in history if h["_hash"] == common["content_hash"]]
        chosen = next((h for h in same if h["_batch_id"] == common["batch_id"]), None)
        if chosen is None and same:
            chosen = same[-1]
        if chosen is None:
            warnings.append(
                f"no version of {source.address} in ODS {ods} has the row's content hash "
                f"{common['content_hash']}: the ODS record differs from what governance used"
            )
        for h in history:
            versions.append(
                OdsVersion(
                    version=int(h["_version"]), op=str(h["_op"]), content_hash=str(h["_hash"]),
                    batch_id=str(h["_batch_id"]), source_updated_at=h["_source_updated_at"],
                    received_at=h["_received_at"], valid_from=h["_valid_from"],
                    valid_to=h["_valid_to"], derived=h is chosen,
                    payload={k: v for k, v in h.items() if k not in _META},
                )
            )  # fmt: skip
        if chosen is not None and chosen["_valid_to"] is not None:
            warnings.append(
                f"the row was derived from version {chosen['_version']}, which is no longer the "
                "latest: the next governance run re-derives it"
            )
    batch_id = next((v.batch_id for v in versions if v.derived), common["batch_id"])
    return Lineage(
        **common,
        from_config=False,
        ods_table=ods,
        versions=tuple(versions),
        batch=_batch(engine, batch_id),
        processed=tuple(_processed(engine, source.hospital, batch_id)),
        events=tuple(_events(engine, source)),
        warnings=tuple(warnings),
    )


def _batch(engine: Engine, batch_id: str) -> BatchInfo | None:
    rows = _dicts(
        engine,
        f"""SELECT batch_id, hospital_id, system, source_table, seq, row_count, manifest_sha256,
    received_at, watermark_column, watermark_from, watermark_to, max_source_updated_at
FROM {INGEST_SCHEMA}.batches WHERE batch_id = ?""",
        [batch_id],
    )
    if not rows:
        return None
    notarized = _dicts(
        engine,
        f"""SELECT status, checked, found, first_height, last_height, notarized_at, late, detail,
    checked_at FROM {INGEST_SCHEMA}.notarization WHERE batch_id = ?""",
        [batch_id],
    )
    return BatchInfo(**rows[0], notarization=notarized[0] if notarized else None)


def _processed(engine: Engine, hospital: str, batch_id: str) -> list[ProcessedBy]:
    if "processed" not in _tables(engine, GOV_SCHEMA):
        return []
    rows = engine.fetch_arrow(
        f"""SELECT entry, ods_table, mapping_version, processed_at FROM {GOV_SCHEMA}.processed
WHERE hospital = ? AND batch_id = ? ORDER BY processed_at, entry""",
        [hospital, batch_id],
    ).to_pylist()
    return [ProcessedBy(**{k: _utc(v) for k, v in r.items()}) for r in rows]
