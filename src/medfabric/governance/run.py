"""Governance runs: ODS batches not yet processed → DWD rows, quarantine, duplicates, value issues
and the unmapped-code queue, per hospital and mapping entry.

A run takes every hospital system whose dialect has a source mapping and, for each entry of the
mapping (:class:`~medfabric.standards.mappings.TableMapping`), stages the source rows touched by
batches it has not processed yet (:mod:`medfabric.governance.compile`), then, in one
transaction per entry and hospital:

1. removes what earlier runs derived from those source rows (DWD rows, quarantine, duplicates,
   value issues, unmapped codes), so an update or a delete in the source shows in DWD;
2. quarantines staged rows whose required columns are NULL, with every reason;
3. keeps one row per DWD primary key — the most recently updated source row; ties go to the
   larger source address — and records the others as removed duplicates, also against rows
   already in DWD;
4. inserts the rest, records why any value was nulled, and queues unmapped codes;
5. marks the batches processed for this entry and mapping version.

Invariants: a batch is processed once per entry and mapping version, so re-running changes
nothing; a change of the mapping file or its code table changes the version, and the next run
re-derives every row of that mapping; per entry and hospital, current ODS rows (after ``where``)
= DWD rows + quarantined rows + removed duplicates (:meth:`Governor.reconcile`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from medfabric.governance.compile import GOV_SCHEMA, ods_columns_needed, stage_sql
from medfabric.governance.derive import derive_across, derive_rows
from medfabric.settings import Settings
from medfabric.standards import codes
from medfabric.standards._yaml import CatalogError
from medfabric.standards.mappings import SourceMapping, TableMapping, load_mapping, mappings
from medfabric.standards.model import Table, dwd_model
from medfabric.standards.sources import TableSpec, resolve_tables
from medfabric.warehouse.ddl import literal, qualified, quote, schema_sql
from medfabric.warehouse.engine import Engine, WarehouseError
from medfabric.warehouse.ods import CURRENT_SUFFIX, INGEST_SCHEMA, ODS_SCHEMA, ods_ref

__all__ = [
    "EntryResult",
    "GovernanceError",
    "Governor",
    "HospitalSource",
    "RunReport",
    "mapping_version",
    "sources_from_settings",
]


class GovernanceError(WarehouseError):
    """A mapping does not fit the ODS data it is applied to (e.g. a column it names is not
    there); the message names the mapping entry and the hospital."""


@dataclass(frozen=True, slots=True)
class HospitalSource:
    """One hospital system to govern: its hospital id, institution code, system and mapping."""

    hospital: str
    institution: str
    system: str
    mapping: SourceMapping


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What one entry did for one hospital in a run."""

    hospital: str
    entry: str
    dwd_table: str
    batches: int = 0
    staged: int = 0
    inserted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    skipped: str = ""  # why nothing was done (no ODS table yet, nothing new)


@dataclass
class RunReport:
    """A run's results per entry and hospital, and the errors that stopped an entry."""

    started_at: datetime
    finished_at: datetime | None = None
    entries: list[EntryResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def total(self, attribute: str) -> int:
        """The sum of one counter (``inserted``, ``quarantined`` …) over the entries."""
        return sum(int(getattr(e, attribute)) for e in self.entries)


def sources_from_settings(settings: Settings) -> tuple[list[HospitalSource], list[str]]:
    """The hospital systems of ``region.toml`` to govern, and a note for each system left out
    (no mapping). A system's own ``mapping`` file wins over its dialect's shipped mapping; a
    system with neither is not governed. The institution code is the hospital id.

    Raises:
        CatalogError: A shipped or configured mapping is invalid, or a configured mapping maps a
            table of the system that its gateway does not extract.
    """
    shipped = mappings()
    own: dict[Path, SourceMapping] = {}
    out: list[HospitalSource] = []
    notes: list[str] = []
    for h in settings.hospitals:
        for system, spec in h.systems.items():
            if spec.mapping is not None:
                if spec.mapping not in own:
                    own[spec.mapping] = load_mapping(spec.mapping)
                mapping = own[spec.mapping]
                _check_extracted(mapping, h.id, system, spec.dialect, spec.tables)
            elif spec.dialect is not None and spec.dialect in shipped:
                mapping = shipped[spec.dialect]
            else:
                what = "no dialect" if spec.dialect is None else f"dialect {spec.dialect!r}"
                notes.append(
                    f"{h.id} {system}: {what} and no mapping file; not governed "
                    '(give the system a mapping = "FILE.yaml", docs/mapping.md)'
                )
                continue
            out.append(HospitalSource(h.id, h.id, system, mapping))
    return out, notes


def _check_extracted(
    mapping: SourceMapping,
    hospital: str,
    system: str,
    dialect: str | None,
    tables: Mapping[str, TableSpec],
) -> None:
    """Every table a configured mapping reads from ``system`` is one its gateway extracts."""
    extracted = {t.name for t in resolve_tables(dialect, system, tables)}
    for tm in mapping.tables:
        read = [tm.source, *(j.table for j in tm.joins)]
        for ref in read:
            if ref.system == system and ref.table not in extracted:
                raise CatalogError(
                    f"{mapping.path}: {tm.location or tm.dwd}: {hospital} {system} does not "
                    f"extract table {ref.table} (extracted: {', '.join(sorted(extracted))})"
                )


def mapping_version(mapping: SourceMapping) -> str:
    """``<version>+<digest>``: the file's declared version and a digest of the mapping file and
    its code table, so that any edit of either re-derives the mapping's rows."""
    digest = hashlib.sha256(mapping.path.read_bytes())
    for domain in sorted(mapping.code_table):
        for local, standard in sorted(mapping.code_table[domain].items()):
            digest.update(f"\n{domain},{local},{standard}".encode())
    return f"{mapping.version}+{digest.hexdigest()[:12]}"


def _feeds(sources: Sequence[HospitalSource]) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Per hospital: DWD table → the (system, table) sources its mappings feed it from."""
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for s in sources:
        tables = out.setdefault(s.hospital, {})
        for tm in s.mapping.tables:
            if tm.source.system == s.system:
                tables.setdefault(tm.dwd, []).append((tm.source.system, tm.source.table))
    return out


def _where_sql(tm: TableMapping) -> str:
    """The entry's ``where`` over the main table aliased ``m`` (empty without one)."""
    return " AND ".join(
        f"CAST(m.{quote(c)} AS VARCHAR) IN ({', '.join(literal(v) for v in vs)})"
        for c, vs in tm.where
    )


def entry_ids(mapping: SourceMapping) -> list[str]:
    """A stable id per entry: ``dwd<-SYSTEM.TABLE`` (``#2``… when one repeats)."""
    seen: dict[str, int] = {}
    out = []
    for tm in mapping.tables:
        base = f"{tm.dwd}<-{tm.source}"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


_SOURCE = "dwd_table VARCHAR, hospital VARCHAR, source_system VARCHAR, source_table VARCHAR, "
_SOURCE += "source_key VARCHAR"

SCHEMA: tuple[str, ...] = (
    f"CREATE SCHEMA IF NOT EXISTS {GOV_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.code_map (
    dialect VARCHAR NOT NULL, domain VARCHAR NOT NULL, local_code VARCHAR NOT NULL,
    standard_code VARCHAR NOT NULL, PRIMARY KEY (dialect, domain, local_code))""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.unit_factor (
    item VARCHAR NOT NULL, unit VARCHAR NOT NULL, factor DOUBLE NOT NULL,
    PRIMARY KEY (item, unit))""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.lab_item_unit (
    item VARCHAR NOT NULL PRIMARY KEY, unit VARCHAR NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.processed (
    entry VARCHAR NOT NULL, hospital VARCHAR NOT NULL, ods_table VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL, mapping_version VARCHAR NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.quarantine ({_SOURCE},
    batch_id VARCHAR, ods_content_hash VARCHAR, mapping_version VARCHAR,
    reasons VARCHAR[] NOT NULL, quarantined_at TIMESTAMPTZ NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.duplicates ({_SOURCE},
    kept_source_table VARCHAR, kept_source_key VARCHAR, batch_id VARCHAR,
    found_at TIMESTAMPTZ NOT NULL, kind VARCHAR NOT NULL DEFAULT 'exact')""",
    # Warehouses governed before near-duplicates were removed lack the kind.
    f"ALTER TABLE {GOV_SCHEMA}.duplicates ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'exact'",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.value_issues ({_SOURCE},
    reason VARCHAR NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.unmapped_rows ({_SOURCE},
    dialect VARCHAR NOT NULL, domain VARCHAR NOT NULL, code VARCHAR NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {GOV_SCHEMA}.runs (
    started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, entries INTEGER,
    inserted BIGINT, quarantined BIGINT, duplicates BIGINT, errors INTEGER)""",
)

_DERIVED = ("quarantine", "duplicates", "value_issues", "unmapped_rows")


class Governor:
    """Runs governance on one warehouse (``engine``: the warehouse that holds ODS).

    Args:
        engine: The warehouse.
        progress: Called after each entry and hospital with (done, total, what), for a progress
            bar; optional.
    """

    def __init__(
        self, engine: Engine, *, progress: Callable[[int, int, str], None] | None = None
    ) -> None:
        self.engine = engine
        self.progress = progress

    # --- set-up --------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the DWD and ``gov`` schemas if missing, and load the unit factors and each
        lab item's standard unit."""
        have = {
            str(r[0])
            for r in self.engine.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dwd'"
            )
        }
        if not set(dwd_model().tables) <= have:  # the DDL (with its comments) once
            for stmt in schema_sql():
                self.engine.execute(stmt)
        for stmt in SCHEMA:
            self.engine.execute(stmt)
        rows = [
            (item, unit, factor)
            for item, units in codes.lab_unit_factors().items()
            for unit, factor in units.items()
        ]
        units = [(code, item.unit) for code, item in codes.lab_items().items() if item.unit]
        with self.engine.transaction():
            self._replace("unit_factor", ("item", "unit", "factor"), rows)
            self._replace("lab_item_unit", ("item", "unit"), units)

    def _replace(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[object]],
        where: str = "",
    ) -> None:
        """Replace the rows of ``gov.<table>`` (those matching ``where``) in one statement."""
        data = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
        self.engine.execute(f"DELETE FROM {GOV_SCHEMA}.{table} {where}")
        self.engine.register("gov_rows", data)
        try:
            if rows:
                self.engine.execute(
                    f"INSERT INTO {GOV_SCHEMA}.{table} SELECT {', '.join(columns)} FROM gov_rows"
                )
        finally:
            self.engine.unregister("gov_rows")

    def load_codes(self, mapping: SourceMapping) -> None:
        """Replace the dialect's rows of ``gov.code_map`` with the mapping's code table."""
        rows = [
            (mapping.dialect, domain, local, standard)
            for domain, table in sorted(mapping.code_table.items())
            for local, standard in sorted(table.items())
        ]
        with self.engine.transaction():
            self._replace(
                "code_map",
                ("dialect", "domain", "local_code", "standard_code"),
                rows,
                f"WHERE dialect = {literal(mapping.dialect)}",
            )

    # --- a run ---------------------------------------------------------------------------------

    def run(self, sources: Sequence[HospitalSource]) -> RunReport:
        """Govern every new ODS batch of ``sources``; see the module docstring."""
        report = RunReport(datetime.now(UTC))
        self.ensure_schema()
        for mapping in {s.mapping.dialect: s.mapping for s in sources}.values():
            self.load_codes(mapping)
        work = [
            (s, tm, entry)
            for s in sources
            for tm, entry in zip(s.mapping.tables, entry_ids(s.mapping), strict=True)
            if tm.source.system == s.system
        ]
        feeds = _feeds(sources)
        versions = {s.mapping.path: mapping_version(s.mapping) for s in sources}
        present = self._ods_tables()
        for done, (source, tm, entry) in enumerate(work, start=1):
            try:
                report.entries.append(
                    self._entry(
                        source, tm, entry, feeds[source.hospital],
                        versions[source.mapping.path], present,
                    )
                )  # fmt: skip
            except GovernanceError as e:
                report.errors.append(str(e))
            if self.progress is not None:
                self.progress(done, len(work), f"{source.hospital} {entry}")
        if report.entries:
            derive_across(self.engine)
        report.finished_at = datetime.now(UTC)
        self.engine.execute(
            f"INSERT INTO {GOV_SCHEMA}.runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                report.started_at, report.finished_at, len(report.entries),
                report.total("inserted"), report.total("quarantined"),
                report.total("duplicates"), len(report.errors),
            ],
        )  # fmt: skip
        return report

    def _ods_tables(self) -> set[str]:
        rows = self.engine.fetchall(f"SELECT ods_table FROM {INGEST_SCHEMA}.ods_tables")
        return {str(r[0]) for r in rows}

    def _columns(self, ods_table: str) -> set[str]:
        rows = self.engine.fetchall(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [ODS_SCHEMA, ods_table],
        )
        return {str(r[0]) for r in rows}

    def _entry(
        self,
        source: HospitalSource,
        tm: TableMapping,
        entry: str,
        feeds: Mapping[str, Sequence[tuple[str, str]]],
        version: str,
        present: set[str],
    ) -> EntryResult:
        h = source.hospital
        where = f"{source.mapping.path.name}: {entry}, hospital {h}"
        staged = stage_sql(
            tm, source.mapping, h, institution=source.institution,
            changed="gov_changed", mapping_version=version, present=frozenset(present),
            feeds=feeds,
        )  # fmt: skip
        missing = [t for t in (staged.main_ods, *staged.joined_ods) if t not in present]
        if missing:
            return EntryResult(h, entry, tm.dwd, skipped=f"no ODS table {', '.join(missing)} yet")
        names = ["m", *(j.alias for j in tm.joins)]
        aliases = dict(zip(names, [staged.main_ods, *staged.joined_ods], strict=True))
        for alias, needed in ods_columns_needed(tm).items():
            absent = sorted(needed - self._columns(aliases[alias]))
            if absent:
                raise GovernanceError(
                    f"{where}: ODS table {aliases[alias]} has no column {', '.join(absent)}"
                )
        new = self._new_batches(entry, h, version, [staged.main_ods, *staged.joined_ods])
        if not any(new.values()):
            return EntryResult(h, entry, tm.dwd, skipped="nothing new")
        self._changed_keys(tm, staged.main_ods, staged.joined_ods, new)
        try:
            with self.engine.transaction():
                counts = self._apply(tm, source, entry, staged.sql, version, new)
        except WarehouseError as e:
            raise GovernanceError(f"{where}: {e}") from e
        finally:
            self.engine.execute("DROP TABLE IF EXISTS gov_changed")
            self.engine.execute("DROP TABLE IF EXISTS gov_stage")
            self.engine.execute("DROP TABLE IF EXISTS gov_ok")
            self.engine.execute("DROP TABLE IF EXISTS gov_mine")
        return EntryResult(h, entry, tm.dwd, sum(len(b) for b in new.values()), *counts)

    def _new_batches(
        self, entry: str, hospital: str, version: str, tables: list[str]
    ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for table in tables:
            rows = self.engine.fetchall(
                f"""SELECT DISTINCT _batch_id FROM {ods_ref(table)} WHERE _batch_id NOT IN (
    SELECT batch_id FROM {GOV_SCHEMA}.processed
    WHERE entry = ? AND hospital = ? AND ods_table = ? AND mapping_version = ?)
ORDER BY 1""",
                [entry, hospital, table, version],
            )
            out[table] = [str(r[0]) for r in rows]
        return out

    def _changed_keys(
        self, tm: TableMapping, main: str, joined: tuple[str, ...], new: dict[str, list[str]]
    ) -> None:
        """``gov_changed``: main keys touched by a new batch of the main or a joined table."""

        def batches(table: str) -> str:
            return ", ".join(literal(b) for b in new[table]) or "NULL"

        parts = [f"SELECT _local_key FROM {ods_ref(main)} WHERE _batch_id IN ({batches(main)})"]
        for j, table in zip(tm.joins, joined, strict=True):
            if not new[table]:
                continue
            cond = " AND ".join(
                f"CAST(m.{quote(a)} AS VARCHAR) = CAST(j.{quote(b)} AS VARCHAR)" for a, b in j.on
            )
            parts.append(
                f"SELECT m._local_key FROM {ods_ref(main + CURRENT_SUFFIX)} m "
                f"JOIN {ods_ref(table)} j ON {cond} WHERE j._batch_id IN ({batches(table)})"
            )
        self.engine.execute("CREATE OR REPLACE TEMP TABLE gov_changed AS " + " UNION ".join(parts))

    def _apply(
        self,
        tm: TableMapping,
        source: HospitalSource,
        entry: str,
        sql: str,
        version: str,
        new: dict[str, list[str]],
    ) -> tuple[int, int, int, int]:
        e = self.engine
        table = dwd_model().tables[tm.dwd]
        dwd = qualified(table)
        h, system, src_table = source.hospital, tm.source.system, tm.source.table
        # The keys this entry owns among the changed ones: another entry may feed the same DWD
        # table from the same source table with another ``where`` (diagnoses split by visit
        # type); its rows are not ours to remove. A key gone from the source is everyone's.
        current = ods_ref(f"{h}__{system}__{src_table}{CURRENT_SUFFIX}")
        filters = _where_sql(tm)
        if filters:
            e.execute(
                f"""CREATE OR REPLACE TEMP TABLE gov_mine AS SELECT _local_key FROM gov_changed
WHERE _local_key NOT IN (SELECT _local_key FROM {current})
   OR _local_key IN (SELECT m._local_key FROM {current} m WHERE {filters})"""
            )
        else:
            e.execute("CREATE OR REPLACE TEMP TABLE gov_mine AS SELECT _local_key FROM gov_changed")
        changed = "IN (SELECT _local_key FROM gov_mine)"
        e.execute(
            f"DELETE FROM {dwd} WHERE _source_hospital = {literal(h)} AND _source_system = "
            f"{literal(system)} AND _source_table = {literal(src_table)} AND _source_key {changed}"
        )
        for derived in _DERIVED:
            e.execute(
                f"DELETE FROM {GOV_SCHEMA}.{derived} WHERE dwd_table = {literal(tm.dwd)} AND "
                f"hospital = {literal(h)} AND source_system = {literal(system)} AND "
                f"source_table = {literal(src_table)} AND source_key {changed}"
            )
        e.execute(f"CREATE OR REPLACE TEMP TABLE gov_stage AS {sql}")
        staged = int(e.fetchall("SELECT count(*) FROM gov_stage")[0][0])
        now = datetime.now(UTC)
        src_cols = "_source_hospital, _source_system, _source_table, _source_key"
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.quarantine SELECT {literal(tm.dwd)}, {src_cols},
    _batch_id, _ods_content_hash, _mapping_version,
    list_transform(_missing, c -> 'missing required ' || c) || _reasons, ?
FROM gov_stage WHERE len(_missing) > 0""",
            [now],
        )
        quarantined = int(
            e.fetchall("SELECT count(*) FROM gov_stage WHERE len(_missing) > 0")[0][0]
        )
        pk = [quote(k) for k in table.primary_key]
        newest = "coalesce({a}._source_updated_at, TIMESTAMP '0001-01-01')"
        address = "({a}._source_table || '/' || {a}._source_key)"
        e.execute(
            f"""CREATE OR REPLACE TEMP TABLE gov_ok AS SELECT *, row_number() OVER (
    PARTITION BY {", ".join(pk)}
    ORDER BY {newest.format(a="gov_stage")} DESC, {address.format(a="gov_stage")} DESC) AS _rk
FROM gov_stage WHERE len(_missing) = 0"""
        )
        same = " AND ".join(f"a.{k} = b.{k}" for k in pk)
        wins = (
            f"({newest.format(a='a')} > {newest.format(a='b')} OR ({newest.format(a='a')} = "
            f"{newest.format(a='b')} AND {address.format(a='a')} > {address.format(a='b')}))"
        )
        dup_cols = "a._source_hospital, a._source_system, a._source_table, a._source_key"
        # Duplicates among the staged rows, then against rows already in DWD (both ways).
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.duplicates SELECT {literal(tm.dwd)}, {dup_cols},
    b._source_table, b._source_key, a._batch_id, ?, 'exact'
FROM gov_ok a JOIN gov_ok b ON {same} AND b._rk = 1 WHERE a._rk > 1""",
            [now],
        )
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.duplicates SELECT {literal(tm.dwd)}, {dup_cols},
    b._source_table, b._source_key, a._batch_id, ?, 'exact'
FROM {dwd} a JOIN gov_ok b ON {same} AND b._rk = 1 WHERE NOT {wins}""",
            [now],
        )
        e.execute(
            f"""DELETE FROM {dwd} WHERE ({", ".join(pk)}) IN (
    SELECT ({", ".join("b." + k for k in pk)}) FROM {dwd} a JOIN gov_ok b
    ON {same} AND b._rk = 1 WHERE NOT {wins})"""
        )
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.duplicates SELECT {literal(tm.dwd)}, {dup_cols},
    b._source_table, b._source_key, a._batch_id, ?, 'exact'
FROM gov_ok a JOIN {dwd} b ON {same} WHERE a._rk = 1""",
            [now],
        )
        e.execute(
            f"""UPDATE gov_ok SET _rk = 0 WHERE _rk = 1 AND ({", ".join(pk)}) IN (
    SELECT ({", ".join("b." + k for k in pk)}) FROM {dwd} b)"""
        )
        self._near_duplicates(table, dwd, now)
        derive_rows(e, tm.dwd, "gov_ok")
        duplicates = int(e.fetchall("SELECT count(*) FROM gov_ok WHERE _rk <> 1")[0][0])
        columns = ", ".join(quote(c.name) for c in table.columns)
        e.execute(f"INSERT INTO {dwd} ({columns}) SELECT {columns} FROM gov_ok WHERE _rk = 1")
        inserted = int(e.fetchall("SELECT count(*) FROM gov_ok WHERE _rk = 1")[0][0])
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.value_issues SELECT {literal(tm.dwd)}, {src_cols},
    unnest(_reasons) FROM gov_ok WHERE _rk = 1 AND len(_reasons) > 0"""
        )
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.unmapped_rows SELECT {literal(tm.dwd)}, {src_cols},
    {literal(source.mapping.dialect)}, u.domain, u.code
FROM (SELECT *, unnest(_unmapped) AS u FROM gov_stage WHERE len(_unmapped) > 0)"""
        )
        for ods_table, batches in new.items():
            for batch in batches:
                e.execute(
                    f"INSERT INTO {GOV_SCHEMA}.processed VALUES (?, ?, ?, ?, ?, ?)",
                    [entry, h, ods_table, batch, version, now],
                )
        return staged, inserted, quarantined, duplicates

    def _near_duplicates(self, table: Table, dwd: str, now: datetime) -> None:
        """Mark (``_rk = -1``) and record the staged rows that repeat a fact already in DWD or
        staged before them: the same business key and the same value in every other column of
        the table, within the hospital, under another primary key. The first registered row is
        kept (earliest source update, then shortest and smallest source key); a row already in
        DWD is always kept."""
        if not table.business_key:
            return
        e = self.engine
        pk = [quote(k) for k in table.primary_key]
        own = [
            quote(c.name)
            for c in table.columns
            if not c.lineage and c.name not in table.primary_key
        ]
        filled = " AND ".join(f"{quote(k)} IS NOT NULL" for k in table.business_key)
        keys = ", ".join(f"g.{k}" for k in pk)
        same = " AND ".join(f"d.{c} IS NOT DISTINCT FROM g.{c}" for c in own)
        other = " OR ".join(f"d.{k} <> g.{k}" for k in pk)
        bk = " AND ".join(f"d.{quote(k)} = g.{quote(k)}" for k in table.business_key)
        order = (
            "coalesce(_source_updated_at, TIMESTAMP '0001-01-01'), length(_source_key), _source_key"
        )
        e.execute(
            f"""CREATE OR REPLACE TEMP TABLE gov_near AS
SELECT {keys}, min(d._source_table) AS kept_table, min(d._source_key) AS kept_key
FROM gov_ok g JOIN {dwd} d ON {bk} AND d._source_hospital = g._source_hospital
WHERE g._rk = 1 AND ({other}) AND {same} GROUP BY ALL"""
        )
        e.execute(
            f"""INSERT INTO gov_near SELECT {", ".join(pk)}, kept_table, kept_key FROM (
    SELECT {", ".join(pk)}, row_number() OVER w AS _nk,
        first_value(_source_table) OVER w AS kept_table,
        first_value(_source_key) OVER w AS kept_key
    FROM gov_ok WHERE _rk = 1 AND {filled}
    WINDOW w AS (PARTITION BY {", ".join(own)} ORDER BY {order}))
WHERE _nk > 1 AND ({", ".join(pk)}) NOT IN (SELECT ({", ".join(pk)}) FROM gov_near)"""
        )
        match = " AND ".join(f"n.{k} = g.{k}" for k in pk)
        e.execute(
            f"""INSERT INTO {GOV_SCHEMA}.duplicates SELECT {literal(table.name)},
    g._source_hospital, g._source_system, g._source_table, g._source_key,
    n.kept_table, n.kept_key, g._batch_id, ?, 'near'
FROM gov_ok g JOIN gov_near n ON {match} WHERE g._rk = 1""",
            [now],
        )
        e.execute(
            f"""UPDATE gov_ok SET _rk = -1 WHERE _rk = 1 AND ({", ".join(pk)}) IN (
    SELECT ({", ".join(pk)}) FROM gov_near)"""
        )
        e.execute("DROP TABLE gov_near")

    # --- reading -------------------------------------------------------------------------------

    def unmapped(self) -> list[tuple[str, str, str, str, int]]:
        """The unmapped-code queue: (hospital, dialect, domain, local code, rows), most rows
        first."""
        rows = self.engine.fetchall(
            f"""SELECT hospital, dialect, domain, code, count(*) FROM {GOV_SCHEMA}.unmapped_rows
GROUP BY ALL ORDER BY 5 DESC, 1, 2, 3, 4"""
        )
        return [(str(a), str(b), str(c), str(d), int(n)) for a, b, c, d, n in rows]

    def reconcile(self, sources: Sequence[HospitalSource]) -> list[dict[str, object]]:
        """Per entry and hospital: current ODS rows in, DWD rows, quarantined, duplicates, and
        whether in = DWD + quarantined + duplicates."""
        out: list[dict[str, object]] = []
        present = self._ods_tables()
        for s in sources:
            for tm, entry in zip(s.mapping.tables, entry_ids(s.mapping), strict=True):
                if tm.source.system != s.system:
                    continue
                main = f"{s.hospital}__{tm.source.system}__{tm.source.table}"
                if main not in present:
                    continue
                current = ods_ref(main + CURRENT_SUFFIX)
                filters = _where_sql(tm)
                ods_in = int(
                    self.engine.fetchall(
                        f"SELECT count(*) FROM {current} m"
                        + (f" WHERE {filters}" if filters else "")
                    )[0][0]
                )
                # Rows of this entry: from its source table, and (with a where) whose source
                # row matches it.
                keys = (
                    f" AND {{k}} IN (SELECT m._local_key FROM {current} m WHERE {filters})"
                    if filters
                    else ""
                )
                mine = (
                    f"hospital = {literal(s.hospital)} AND source_table = "
                    f"{literal(tm.source.table)} AND dwd_table = {literal(tm.dwd)}"
                ) + keys.format(k="source_key")
                dwd = qualified(dwd_model().tables[tm.dwd])
                n_dwd = int(
                    self.engine.fetchall(
                        f"SELECT count(*) FROM {dwd} WHERE _source_hospital = ? AND "
                        "_source_table = ?" + keys.format(k="_source_key"),
                        [s.hospital, tm.source.table],
                    )[0][0]
                )
                n_q = int(
                    self.engine.fetchall(
                        f"SELECT count(*) FROM {GOV_SCHEMA}.quarantine WHERE {mine}"
                    )[0][0]
                )
                n_d = int(
                    self.engine.fetchall(
                        f"SELECT count(*) FROM {GOV_SCHEMA}.duplicates WHERE {mine}"
                    )[0][0]
                )
                out.append(
                    {
                        "hospital": s.hospital, "entry": entry, "ods_in": ods_in, "dwd": n_dwd,
                        "quarantined": n_q, "duplicates": n_d,
                        "balanced": ods_in == n_dwd + n_q + n_d,
                    }
                )  # fmt: skip
        return out
