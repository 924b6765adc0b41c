"""Metadata management (元数据管理): every table of the warehouse in one place — description,
owner, row count, freshness and, for one table, its columns.

The static part comes from the catalog and the configuration, so it is available without a
warehouse: DWD tables and columns from the standard model (data element, Chinese name,
type/format, privacy class), ODS tables from ``region.toml`` and the dialects' extraction
profiles (:mod:`medfabric.standards.sources`) and mappings, and the ``gov`` and ``mdm`` tables
from their declarations. With a warehouse, the tables that exist are added (ADS included) with
their row counts and freshness.

Owners: the ODS tables belong to the hospital and system that send them; every other schema
(DWD, ADS, gov, MDM) to :data:`PLATFORM_OWNER`. ``region.toml`` has no owner setting.

Freshness, per schema: ``latest_source_update`` is the latest ``_source_updated_at`` (ODS,
DWD); ``latest_batch_received`` the latest receipt of a batch the table holds rows of (ODS,
DWD); ``latest_governance`` the latest governance run (DWD, gov), the latest time governance
processed a batch of the table (ODS), or the latest master-data refresh (MDM).

Invariants: read-only; one query per table at most for its freshness, one for all row counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medfabric.governance.compile import GOV_SCHEMA
from medfabric.governance.master import MDM_SCHEMA, MDM_TABLES
from medfabric.settings import Settings
from medfabric.standards.mappings import TableMapping, mappings
from medfabric.standards.model import dwd_model
from medfabric.standards.sources import resolve_tables, source_profiles
from medfabric.warehouse.ddl import column_type, quote
from medfabric.warehouse.engine import Engine
from medfabric.warehouse.ods import CURRENT_SUFFIX, INGEST_SCHEMA, ODS_SCHEMA, ods_table_name

__all__ = [
    "PLATFORM_OWNER",
    "SCHEMAS",
    "ColumnInfo",
    "MetadataError",
    "TableInfo",
    "catalog_tables",
]

SCHEMAS = ("ods", "dwd", "ads", "gov", "mdm")
PLATFORM_OWNER = "区域平台数据治理组 (platform data-governance team)"

GOV_TABLES: dict[str, str] = {
    "code_map": "代码映射：各方言本地代码 → 标准代码（由映射代码表载入）",
    "unit_factor": "检验单位换算系数",
    "lab_item_unit": "检验项目标准单位",
    "processed": "治理处理记录：每个映射条目、医院、ODS 表和批次处理一次",
    "quarantine": "隔离区：缺少必填列的源记录及全部原因",
    "duplicates": "重复记录：与保留记录主键相同而被移除的源记录",
    "value_issues": "值问题：治理中被置空的值及原因",
    "unmapped_rows": "未映射代码队列：代码表未收录的本地代码及其源记录",
    "runs": "治理运行日志：每次运行一行",
}

ODS_META_DESCRIPTIONS: dict[str, str] = {
    "_batch_id": "带来此版本的批次标识（ingest.batches）",
    "_seq": "记录在批次中的序号",
    "_local_key": "源记录本地主键",
    "_op": "upsert 或 delete",
    "_has_payload": "记录是否带内容（硬删除不带）",
    "_hash": "记录内容哈希（SHA-256，前置机计算并上链存证）",
    "_source_updated_at": "源记录更新日期时间",
    "_extracted_at": "前置机抽取时间",
    "_received_at": "区域平台接收时间",
    "_valid_from": "此版本生效时间",
    "_valid_to": "此版本失效时间（NULL：当前版本）",
    "_version": "版本号（每个本地主键从 1 递增）",
}


class MetadataError(ValueError):
    """A request names an unknown schema or table; the message lists the known ones."""


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One column: its type and what it means (the data element, when there is one)."""

    name: str
    type: str
    description: str
    element: str | None = None
    name_zh: str | None = None
    data_type: str | None = None
    format: str | None = None
    privacy: str | None = None
    value_domain: str | None = None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """One table of the catalog. ``rows`` is its COUNT(*) (every version for ODS) and
    ``current_rows`` the latest, not deleted versions (ODS only); both None without a
    warehouse or when the table does not exist yet (``in_warehouse``)."""

    schema: str
    name: str
    description: str
    owner: str
    in_warehouse: bool
    rows: int | None = None
    current_rows: int | None = None
    latest_source_update: datetime | None = None
    latest_batch_received: datetime | None = None
    latest_governance: datetime | None = None
    columns: tuple[ColumnInfo, ...] = ()

    @property
    def qualified(self) -> str:
        """``schema.name``."""
        return f"{self.schema}.{self.name}"


# --- the static part ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OdsSource:
    hospital: str
    hospital_name: str | None
    system: str
    table: str
    dialect: str | None
    key: tuple[str, ...]
    entries: tuple[TableMapping, ...]  # the mapping entries reading this table as main table
    joined: tuple[tuple[str, TableMapping], ...]  # (alias, entry) of entries joining it


def _ods_sources(settings: Settings) -> dict[str, _OdsSource]:
    shipped = mappings()  # parsed once: each load validates whole files
    out: dict[str, _OdsSource] = {}
    for h in settings.hospitals:
        for system, spec in h.systems.items():
            mapping = shipped.get(spec.dialect) if spec.dialect is not None else None
            for t in resolve_tables(spec.dialect, system, spec.tables):
                entries = tuple(
                    tm
                    for tm in (mapping.tables if mapping is not None else ())
                    if tm.source.system == system and tm.source.table == t.name
                )
                joined = tuple(
                    (j.alias, tm)
                    for tm in (mapping.tables if mapping is not None else ())
                    for j in tm.joins
                    if tm.source.system == system and j.table.table == t.name
                    and j.table.system == system
                )  # fmt: skip
                name = ods_table_name(h.id, system, t.name)
                out[name] = _OdsSource(
                    h.id, h.name, system, t.name, spec.dialect, t.key, entries, joined
                )
    return out


def _ods_description(src: _OdsSource) -> str:
    vendor = ""
    if src.dialect is not None and src.dialect in source_profiles():
        vendor = source_profiles()[src.dialect].vendor
    who = f"{src.hospital} {src.hospital_name}" if src.hospital_name else src.hospital
    dialect = f"{vendor}（{src.dialect}）" if src.dialect else "未知方言"
    feeds = sorted({f"dwd.{tm.dwd}" for tm in src.entries})
    text = f"{who} {src.system} 源表 {src.table}，{dialect}；贴源，保留全部版本"
    if src.key:
        text += f"；主键 {', '.join(src.key)}"
    if feeds:
        text += f"；治理到 {', '.join(feeds)}"
    joins = sorted({f"dwd.{tm.dwd}" for _, tm in src.joined} - set(feeds))
    if joins:
        text += f"；关联治理到 {', '.join(joins)}"
    return text


def _ods_owner(src: _OdsSource | None, hospital: str, system: str) -> str:
    name = src.hospital_name if src is not None else None
    return f"{hospital} {name} · {system}" if name else f"{hospital} · {system}"


def _dwd_columns(name: str) -> tuple[ColumnInfo, ...]:
    out = []
    for c in dwd_model().tables[name].columns:
        e = c.element
        ref = f" → {c.references[0]}.{c.references[1]}" if c.references else ""
        out.append(
            ColumnInfo(
                name=c.name, type=column_type(e), description=f"{e.name_en}{ref}",
                element=e.identifier, name_zh=e.name_zh, data_type=e.data_type, format=e.format,
                privacy=e.privacy, value_domain=e.value_domain,
            )
        )  # fmt: skip
    return tuple(out)


def _ods_columns(src: _OdsSource | None, physical: Sequence[tuple[str, str]]) -> list[ColumnInfo]:
    model = dwd_model().tables
    targets: dict[str, list[tuple[str, str]]] = {}
    if src is not None:
        for tm in src.entries:
            for col, cm in tm.columns.items():
                for source_col in cm.source_columns:
                    if "." not in source_col:
                        targets.setdefault(source_col, []).append((tm.dwd, col))
        for alias, tm in src.joined:
            for col, cm in tm.columns.items():
                for source_col in cm.source_columns:
                    if source_col.startswith(alias + "."):
                        targets.setdefault(source_col[len(alias) + 1 :], []).append((tm.dwd, col))
    out = []
    for name, typ in physical:
        if name in ODS_META_DESCRIPTIONS:
            out.append(ColumnInfo(name, typ, ODS_META_DESCRIPTIONS[name]))
            continue
        goes = targets.get(name, [])
        if not goes:
            key = src is not None and name in src.key
            out.append(ColumnInfo(name, typ, "源列（主键）" if key else "源列（未映射到 DWD）"))
            continue
        table, col = goes[0]
        e = model[table].column(col).element
        more = "".join(f", dwd.{t}.{c}" for t, c in goes[1:])
        out.append(
            ColumnInfo(
                name, typ, f"→ dwd.{table}.{col}{more}", element=e.identifier,
                name_zh=e.name_zh, data_type=e.data_type, format=e.format, privacy=e.privacy,
                value_domain=e.value_domain,
            )
        )  # fmt: skip
    return out


def _static(settings: Settings, sources: dict[str, _OdsSource]) -> dict[tuple[str, str], TableInfo]:
    out: dict[tuple[str, str], TableInfo] = {}
    for t in dwd_model().tables.values():
        out["dwd", t.name] = TableInfo("dwd", t.name, t.description, PLATFORM_OWNER, False)
    for name, src in sources.items():
        out["ods", name] = TableInfo(
            "ods", name, _ods_description(src), _ods_owner(src, src.hospital, src.system), False
        )
    for name, desc in GOV_TABLES.items():
        out["gov", name] = TableInfo("gov", name, desc, PLATFORM_OWNER, False)
    for name, (desc, _) in MDM_TABLES.items():
        out["mdm", name] = TableInfo("mdm", name, desc, PLATFORM_OWNER, False)
    return out


# --- the warehouse part ---------------------------------------------------------------------------


def _one(engine: Engine, sql: str, params: Sequence[object] | None = None) -> tuple[Any, ...]:
    rows = engine.fetch_arrow(sql, params).to_pylist()
    values = tuple(rows[0].values()) if rows else ()
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for v in values)


def _present(engine: Engine) -> dict[tuple[str, str], str]:
    """(schema, table) → comment, for every table and view of the catalog's schemas."""
    rows = engine.fetchall(
        """SELECT schema_name, table_name, coalesce(comment, '') FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name IN ('ods', 'dwd', 'ads', 'gov', 'mdm')
UNION ALL
SELECT schema_name, view_name, coalesce(comment, '') FROM duckdb_views()
WHERE database_name = current_database() AND schema_name = 'ads' AND NOT internal"""
    )
    return {(str(s), str(t)): str(c) for s, t, c in rows}


def _physical_columns(engine: Engine, schema: str, table: str) -> list[tuple[str, str]]:
    rows = engine.fetchall(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    )
    return [(str(n), str(t)) for n, t in rows]


def _counts(engine: Engine, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    if not tables:
        return {}
    parts = [f"SELECT ? AS s, ? AS t, count(*) AS n FROM {quote(s)}.{quote(t)}" for s, t in tables]
    params: list[object] = [x for st in tables for x in st]
    rows = engine.fetchall(" UNION ALL ".join(parts), params)
    return {(str(s), str(t)): int(n) for s, t, n in rows}


def _freshness(
    engine: Engine, schema: str, table: str, present: set[tuple[str, str]]
) -> dict[str, Any]:
    ref = f"{quote(schema)}.{quote(table)}"
    out: dict[str, Any] = {}
    if schema == "ods":
        up, received = _one(engine, f"SELECT max(_source_updated_at), max(_received_at) FROM {ref}")
        out["latest_source_update"], out["latest_batch_received"] = up, received
        if (GOV_SCHEMA, "processed") in present:
            out["latest_governance"] = _one(
                engine,
                f"SELECT max(processed_at) FROM {GOV_SCHEMA}.processed WHERE ods_table = ?",
                [table],
            )[0]
    elif schema == "dwd":
        up, received = _one(
            engine,
            f"""SELECT (SELECT max(_source_updated_at) FROM {ref}),
    (SELECT max(received_at) FROM {INGEST_SCHEMA}.batches
     WHERE batch_id IN (SELECT DISTINCT _batch_id FROM {ref}))""",
        )
        out["latest_source_update"], out["latest_batch_received"] = up, received
    if schema in ("dwd", "gov") and (GOV_SCHEMA, "runs") in present:
        out["latest_governance"] = _one(engine, f"SELECT max(finished_at) FROM {GOV_SCHEMA}.runs")[
            0
        ]
    if schema == "mdm" and (MDM_SCHEMA, "refreshes") in present:
        out["latest_governance"] = _one(
            engine, f"SELECT max(refreshed_at) FROM {MDM_SCHEMA}.refreshes"
        )[0]
    return out


def _ods_registry(engine: Engine) -> dict[str, tuple[str, str, str]]:
    rows = engine.fetchall(
        f"SELECT ods_table, hospital_id, system, source_table FROM {INGEST_SCHEMA}.ods_tables"
    )
    return {str(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}


def catalog_tables(
    engine: Engine | None,
    settings: Settings,
    *,
    schema: str | None = None,
    table: str | None = None,
) -> list[TableInfo]:
    """The tables of the catalog, ordered by schema (ods, dwd, ads, gov, mdm) and name.

    Args:
        engine: The warehouse, or None for the static part only (no counts, no freshness).
        settings: The region's settings (hospitals and their systems, for ODS).
        schema: Only this schema (one of :data:`SCHEMAS`).
        table: Only this table, ``name`` or ``schema.name``; its columns are filled in.

    Raises:
        MetadataError: unknown schema, or no (or more than one) table of that name.
        WarehouseError: the engine failed.
    """
    if schema is not None and schema not in SCHEMAS:
        raise MetadataError(f"unknown schema {schema!r} (known: {', '.join(SCHEMAS)})")
    if table is not None and "." in table:
        prefix, table = table.split(".", 1)
        if schema is not None and prefix != schema:
            raise MetadataError(f"table {prefix}.{table} is not in schema {schema!r}")
        if prefix not in SCHEMAS:
            raise MetadataError(f"unknown schema {prefix!r} (known: {', '.join(SCHEMAS)})")
        schema = prefix
    sources = _ods_sources(settings)
    infos = _static(settings, sources)
    present: dict[tuple[str, str], str] = {}
    if engine is not None:
        present = _present(engine)
        registry = _ods_registry(engine) if (INGEST_SCHEMA, "ods_tables") in _ingest(engine) else {}
        for s, t in present:
            if s == ODS_SCHEMA and t.endswith(CURRENT_SUFFIX):
                continue
            old = infos.get((s, t))
            if old is None:
                if s == ODS_SCHEMA:
                    h, system, src_table = registry.get(t, ("?", "?", t))
                    desc = f"{h} {system} 源表 {src_table}（未在 region.toml 配置）；贴源"
                    owner = _ods_owner(None, h, system)
                else:
                    desc, owner = present[s, t], PLATFORM_OWNER
                old = TableInfo(s, t, desc, owner, False)
            infos[s, t] = TableInfo(**{**_fields(old), "in_warehouse": True})
    chosen = [
        i
        for i in infos.values()
        if (schema is None or i.schema == schema) and (table is None or i.name == table)
    ]
    if table is not None and len(chosen) != 1:
        if not chosen:
            raise MetadataError(
                f"no table {table!r}" + (f" in schema {schema}" if schema else "")
                + " (see `medfabric catalog tables` for the list)"
            )  # fmt: skip
        names = ", ".join(i.qualified for i in chosen)
        raise MetadataError(f"{table!r} is ambiguous: {names}; give schema.table")
    order = {s: n for n, s in enumerate(SCHEMAS)}
    chosen.sort(key=lambda i: (order[i.schema], i.name))
    if engine is None:
        if table is not None:
            chosen = [_with_columns(chosen[0], None, sources)]
        return chosen
    existing = [(i.schema, i.name) for i in chosen if i.in_warehouse]
    counts = _counts(engine, existing)
    current = _counts(
        engine, [(s, t + CURRENT_SUFFIX) for s, t in existing if s == ODS_SCHEMA]
    )  # fmt: skip
    out = []
    here = set(present)
    for i in chosen:
        if not i.in_warehouse:
            out.append(i)
            continue
        fields = _fields(i)
        fields["rows"] = counts[i.schema, i.name]
        if i.schema == ODS_SCHEMA:
            fields["current_rows"] = current.get((i.schema, i.name + CURRENT_SUFFIX))
        fields.update(_freshness(engine, i.schema, i.name, here))
        info = TableInfo(**fields)
        if table is not None:
            info = _with_columns(info, engine, sources)
        out.append(info)
    return out


def _ingest(engine: Engine) -> set[tuple[str, str]]:
    rows = engine.fetchall(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ?",
        [INGEST_SCHEMA],
    )
    return {(str(s), str(t)) for s, t in rows}


def _fields(info: TableInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in TableInfo.__slots__}


def _with_columns(
    info: TableInfo,
    engine: Engine | None,
    sources: dict[str, _OdsSource],
) -> TableInfo:
    fields = _fields(info)
    if info.schema == "dwd" and info.name in dwd_model().tables:
        fields["columns"] = _dwd_columns(info.name)
    elif engine is not None and info.in_warehouse:
        physical = _physical_columns(engine, info.schema, info.name)
        if info.schema == ODS_SCHEMA:
            fields["columns"] = tuple(_ods_columns(sources.get(info.name), physical))
        else:
            fields["columns"] = tuple(ColumnInfo(n, t, "") for n, t in physical)
    return TableInfo(**fields)
