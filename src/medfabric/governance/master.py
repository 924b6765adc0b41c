"""Master data (主数据): one record per institution, per (institution, standard department) and
per person of staff, with cross-references to every source row that speaks of it.

Built from what governance put in DWD and from ``region.toml``; stored in schema ``mdm``:

- ``mdm.institution``: one row per hospital, settings merged with what the sources say;
- ``mdm.department``: one row per (institution, standard department code);
- ``mdm.department_xref``: every DWD department (a source department) → its master record;
- ``mdm.department_queue``: source departments no code, name or synonym maps (never dropped);
- ``mdm.staff``: one row per person of staff (certificate number, else institution + code);
- ``mdm.staff_xref``: every staff-dictionary row and every staff code other tables use → its
  master record (NULL: a code no dictionary knows);
- ``mdm.department_standard`` and ``mdm.department_names``: the standard department list and
  the name rules (standard names, derived forms, synonyms) as used;
- ``mdm.refreshes``: one row per refresh with its counts (a log).

``dwd.institution`` has no source mapping (no hospital system sends its own registration), so
:func:`refresh_master` fills it from ``region.toml``: one row per configured hospital, whose
lineage columns name the region configuration as the source (:data:`CONFIG_SYSTEM`,
``_source_table`` ``region.toml``, ``_source_key`` the hospital id, ``_ods_content_hash`` the
SHA-256 of the hospital's canonical settings entry).

Invariants:
- Set-based: every master table is computed by one SQL statement from DWD, ``ingest`` and the
  rule tables; Python only loads the settings, the standard list and the synonyms file.
- Idempotent: a table is changed only by the rows that differ (``EXCEPT`` both ways), so a
  second refresh over the same data inserts and deletes nothing; ``mdm.refreshes`` is the only
  table that grows (a log).
- One transaction: a refresh either replaces every master table or none.
- Department mapping, in order: the code table's standard code (``code``); the normalized name
  equal to a standard name (``name``); a synonym of the synonyms file (``synonym``); a derived
  form of a standard name — ``呼吸内科专业`` → ``呼吸内科``, ``内分泌专业`` → ``内分泌科`` —
  unless two standard entries derive it (``derived``). Anything else goes to the queue.
"""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from medfabric.governance.run import GovernanceError
from medfabric.settings import HospitalSection, Settings
from medfabric.standards import codes
from medfabric.standards.model import dwd_model
from medfabric.warehouse.ddl import literal
from medfabric.warehouse.ddl import schema_sql as dwd_schema_sql
from medfabric.warehouse.engine import Engine
from medfabric.warehouse.ods import INGEST_SCHEMA
from medfabric.warehouse.ods import schema_sql as ods_schema_sql

__all__ = [
    "CONFIG_SYSTEM",
    "MDM_SCHEMA",
    "MDM_TABLES",
    "MasterDataError",
    "MasterReport",
    "TableChange",
    "department_name_rules",
    "department_synonyms",
    "normalize_name",
    "refresh_master",
]

MDM_SCHEMA = "mdm"
CONFIG_SYSTEM = "CONF"  # _source_system of rows taken from region.toml (the element is A..4)
CONFIG_TABLE = "region.toml"
CONFIG_MAPPING_VERSION = "region.toml/1"
SYNONYMS_FILE = Path(__file__).parent / "data" / "department_synonyms.csv"


class MasterDataError(GovernanceError):
    """The master-data rules are inconsistent (a synonym naming an unknown code, a name mapped
    twice); the message names the file, line and value."""


@dataclass(frozen=True, slots=True)
class TableChange:
    """What a refresh did to one table: rows after it, rows inserted and deleted (an update is
    one of each)."""

    table: str
    rows: int
    inserted: int
    deleted: int


@dataclass
class MasterReport:
    """The result of :func:`refresh_master`."""

    refreshed_at: datetime
    tables: list[TableChange] = field(default_factory=list)
    departments_queued: int = 0
    staff_codes_unresolved: int = 0

    @property
    def changed(self) -> int:
        """Rows inserted plus rows deleted over every table (0: the refresh changed nothing)."""
        return sum(t.inserted + t.deleted for t in self.tables)

    def table(self, name: str) -> TableChange:
        """The change of one table (``mdm.staff``, ``dwd.institution`` …)."""
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)


# Table name → (description, DDL body). The descriptions are what `catalog tables` shows.
MDM_TABLES: dict[str, tuple[str, str]] = {
    "institution": (
        "机构主数据：每家医院一行，region.toml 与源数据合并",
        """institution_id VARCHAR PRIMARY KEY, name VARCHAR, level VARCHAR,
    hospital_level VARCHAR, region_code VARCHAR, systems_configured VARCHAR[],
    systems_seen VARCHAR[], in_settings BOOLEAN NOT NULL, in_sources BOOLEAN NOT NULL,
    departments INTEGER NOT NULL, staff INTEGER NOT NULL, ods_tables INTEGER NOT NULL,
    first_received_at TIMESTAMPTZ, last_received_at TIMESTAMPTZ""",
    ),
    "department": (
        "科室主数据：每机构每标准诊疗科目一行",
        """department_id VARCHAR PRIMARY KEY, institution_id VARCHAR NOT NULL,
    standard_department_code VARCHAR NOT NULL, name VARCHAR NOT NULL, parent_code VARCHAR,
    local_names VARCHAR[] NOT NULL, source_departments INTEGER NOT NULL""",
    ),
    "department_xref": (
        "科室交叉引用：源科室（医院、系统、本地代码、名称）→ 科室主数据",
        """hospital VARCHAR NOT NULL, source_system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL, source_key VARCHAR NOT NULL, local_code VARCHAR NOT NULL,
    local_name VARCHAR, standard_department_code VARCHAR, match_method VARCHAR,
    department_id VARCHAR, PRIMARY KEY (hospital, source_system, source_table, source_key)""",
    ),
    "department_queue": (
        "未映射科室队列：代码表、名称规则和同义词都无法映射的源科室",
        """hospital VARCHAR NOT NULL, source_system VARCHAR NOT NULL,
    source_table VARCHAR NOT NULL, source_key VARCHAR NOT NULL, local_code VARCHAR NOT NULL,
    local_name VARCHAR, local_standard_code VARCHAR, reason VARCHAR NOT NULL,
    PRIMARY KEY (hospital, source_system, source_table, source_key)""",
    ),
    "staff": (
        "医务人员主数据：每人一行（执业证书编码，否则机构 + 工号）",
        """staff_id VARCHAR PRIMARY KEY, match_key VARCHAR NOT NULL,
    certificate_no VARCHAR, institution_id VARCHAR NOT NULL, staff_code VARCHAR NOT NULL,
    name VARCHAR, sex_code VARCHAR, professional_title VARCHAR, staff_category VARCHAR,
    department_id VARCHAR, institutions VARCHAR[] NOT NULL, source_rows INTEGER NOT NULL""",
    ),
    "staff_xref": (
        "医务人员交叉引用：工号字典行和其他表引用的工号 → 医务人员主数据",
        """staff_id VARCHAR, kind VARCHAR NOT NULL, hospital VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL, source_table VARCHAR NOT NULL, source_key VARCHAR,
    source_column VARCHAR, staff_code VARCHAR NOT NULL, rows BIGINT NOT NULL""",
    ),
    "department_standard": (
        "标准诊疗科目（医疗机构诊疗科目名录），主数据映射所用版本",
        """code VARCHAR PRIMARY KEY, name_zh VARCHAR NOT NULL, name_en VARCHAR NOT NULL,
    parent VARCHAR""",
    ),
    "department_names": (
        "科室名称规则：标准名称、派生名称和同义词 → 标准诊疗科目代码",
        """name VARCHAR PRIMARY KEY, standard_code VARCHAR NOT NULL, rule VARCHAR NOT NULL""",
    ),
    "refreshes": (
        "主数据刷新日志：每次刷新一行及其变更行数",
        """refreshed_at TIMESTAMPTZ NOT NULL, changed BIGINT NOT NULL,
    departments_queued BIGINT NOT NULL, staff_codes_unresolved BIGINT NOT NULL,
    detail JSON NOT NULL""",
    ),
}

# Natural keys used to delete rows that changed (columns never NULL, or compared NULL-safely).
_KEYS: dict[str, tuple[str, ...]] = {
    "institution": ("institution_id",),
    "department": ("department_id",),
    "department_xref": ("hospital", "source_system", "source_table", "source_key"),
    "department_queue": ("hospital", "source_system", "source_table", "source_key"),
    "staff": ("staff_id",),
    "staff_xref": (
        "kind",
        "hospital",
        "source_system",
        "source_table",
        "source_key",
        "source_column",
        "staff_code",
    ),
    "department_standard": ("code",),
    "department_names": ("name",),
}


def schema_sql() -> list[str]:
    """The statements creating schema ``mdm`` and its tables (idempotent)."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {MDM_SCHEMA}"]
    for name, (description, body) in MDM_TABLES.items():
        out.append(f"CREATE TABLE IF NOT EXISTS {MDM_SCHEMA}.{name} (\n    {body}\n)")
        out.append(f"COMMENT ON TABLE {MDM_SCHEMA}.{name} IS {literal(description)}")
    return out


# --- rules (pure) --------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """A department name as the rules compare it: NFKC, no white space, upper case."""
    return "".join(unicodedata.normalize("NFKC", name).split()).upper()


def _derived(name_zh: str) -> set[str]:
    base = name_zh.removesuffix("专业")
    out = {base}
    if not base.endswith("科"):
        out.add(base + "科")
    return out - {name_zh}


def department_synonyms(path: Path = SYNONYMS_FILE) -> dict[str, str]:
    """The synonyms file: normalized local name → standard department code.

    Raises:
        MasterDataError: a code not in the standard list, a name listed twice, or a name that
            is itself a standard name of another code; the message names the file and line.
    """
    standard = codes.value_domain("department")
    exact = {normalize_name(e.name_zh): e.code for e in standard.values()}
    out: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path.name}:{line}"
            name, code = normalize_name(row.get("name") or ""), (row.get("standard_code") or "")
            if not name:
                raise MasterDataError(f"{where}: empty name")
            if code not in standard:
                raise MasterDataError(f"{where}: {code!r} is not in the standard department list")
            if name in out:
                raise MasterDataError(f"{where}: {row['name']!r} is listed twice")
            if exact.get(name, code) != code:
                raise MasterDataError(
                    f"{where}: {row['name']!r} is the standard name of {exact[name]}, not {code}"
                )
            out[name] = code
    return out


def department_name_rules(path: Path = SYNONYMS_FILE) -> list[tuple[str, str, str]]:
    """Every name rule as (normalized name, standard code, rule), rule being ``name`` (a
    standard name), ``synonym`` (the synonyms file) or ``derived`` (a standard name without
    ``专业``, with ``科`` appended when missing — only when one entry derives it); earlier
    rules win."""
    standard = codes.value_domain("department")
    rules: dict[str, tuple[str, str]] = {
        normalize_name(e.name_zh): (e.code, "name") for e in standard.values()
    }
    for name, code in department_synonyms(path).items():
        rules.setdefault(name, (code, "synonym"))
    derived: dict[str, set[str]] = {}
    for e in standard.values():
        for name in _derived(e.name_zh):
            derived.setdefault(normalize_name(name), set()).add(e.code)
    for name, found in derived.items():
        if len(found) == 1:
            rules.setdefault(name, (next(iter(found)), "derived"))
    return sorted((n, c, r) for n, (c, r) in rules.items())


def _hospital_level(level: str) -> str | None:
    for digit, prefix in (("3", "三级"), ("2", "二级"), ("1", "一级")):
        if level.startswith(prefix):
            return digit
    return None


def _hospital_hash(h: HospitalSection) -> str:
    """SHA-256 of the hospital's settings entry (sorted keys, UTF-8): its content hash."""
    record = {
        "id": h.id,
        "name": h.name,
        "level": h.level,
        "systems": {s: spec.dialect for s, spec in sorted(h.systems.items())},
    }
    text = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- SQL -----------------------------------------------------------------------------------------

_NORM = "upper(regexp_replace({x}, '\\s+', '', 'g'))"


def _staff_code_columns() -> list[tuple[str, str]]:
    """(DWD table, column) of every column carrying a staff code, but the staff table's key."""
    out = []
    for table in dwd_model().tables.values():
        for c in table.columns:
            if c.element.identifier == "DE99.04.001.00" and table.name != "staff":
                out.append((table.name, c.name))
    return out


def _department_xref_sql() -> str:
    norm = _NORM.format(x="d.department_name")
    return f"""SELECT d._source_hospital AS hospital, d._source_system AS source_system,
    d._source_table AS source_table, d._source_key AS source_key,
    d.department_code AS local_code, d.department_name AS local_name,
    coalesce(s.code, n.standard_code) AS standard_department_code,
    CASE WHEN s.code IS NOT NULL THEN 'code' ELSE n.rule END AS match_method,
    CASE WHEN coalesce(s.code, n.standard_code) IS NOT NULL
         THEN d.institution_code || '/' || coalesce(s.code, n.standard_code) END AS department_id
FROM dwd.department d
LEFT JOIN {MDM_SCHEMA}.department_standard s ON s.code = d.standard_department_code
LEFT JOIN {MDM_SCHEMA}.department_names n ON n.name = {norm}"""


def _department_queue_sql() -> str:
    return f"""SELECT x.hospital, x.source_system, x.source_table, x.source_key, x.local_code,
    x.local_name, d.standard_department_code AS local_standard_code,
    CASE WHEN d.standard_department_code IS NOT NULL
         THEN 'code ' || d.standard_department_code || ' is not in the standard list and '
         ELSE 'no standard code from the code table and ' END
    || CASE WHEN x.local_name IS NULL THEN 'no name'
            ELSE 'name ' || x.local_name || ' matches no standard name or synonym' END AS reason
FROM {MDM_SCHEMA}.department_xref x
JOIN dwd.department d ON d._source_hospital = x.hospital AND d._source_system = x.source_system
    AND d._source_table = x.source_table AND d._source_key = x.source_key
WHERE x.department_id IS NULL"""


def _department_sql() -> str:
    return f"""SELECT x.department_id, d.institution_code AS institution_id,
    x.standard_department_code, s.name_zh AS name, s.parent AS parent_code,
    list_sort(list_distinct(list(x.local_name) FILTER (WHERE x.local_name IS NOT NULL)))
        AS local_names,
    count(*)::INTEGER AS source_departments
FROM {MDM_SCHEMA}.department_xref x
JOIN dwd.department d ON d._source_hospital = x.hospital AND d._source_system = x.source_system
    AND d._source_table = x.source_table AND d._source_key = x.source_key
JOIN {MDM_SCHEMA}.department_standard s ON s.code = x.standard_department_code
WHERE x.department_id IS NOT NULL
GROUP BY ALL"""


_STAFF_KEY = (
    "CASE WHEN nullif(trim(certificate_no), '') IS NOT NULL THEN 'cert:' || trim(certificate_no) "
    "ELSE institution_code || '/' || staff_code END"
)


def _staff_sql() -> str:
    # The record's attributes come from the most recently updated dictionary row (ties: the
    # larger source address), so a person working in two hospitals has one stable record.
    order = "(coalesce(s._source_updated_at, TIMESTAMP '0001-01-01'), s._address)"
    return f"""WITH s AS (
    SELECT *, {_STAFF_KEY} AS _key,
        _source_hospital || '/' || _source_system || '/' || _source_table || '/' || _source_key
            AS _address
    FROM dwd.staff
)
SELECT s._key AS staff_id,
    CASE WHEN s._key LIKE 'cert:%' THEN 'certificate' ELSE 'institution+staff_code' END
        AS match_key,
    arg_max(nullif(trim(s.certificate_no), ''), {order}) AS certificate_no,
    arg_max(s.institution_code, {order}) AS institution_id,
    arg_max(s.staff_code, {order}) AS staff_code,
    arg_max(s.name, {order}) AS name,
    arg_max(s.sex_code, {order}) AS sex_code,
    arg_max(s.professional_title, {order}) AS professional_title,
    arg_max(s.staff_category, {order}) AS staff_category,
    arg_max(x.department_id, {order}) AS department_id,
    list_sort(list_distinct(list(s.institution_code))) AS institutions,
    count(*)::INTEGER AS source_rows
FROM s
LEFT JOIN dwd.department d ON d.institution_code = s.institution_code
    AND d.department_code = s.department_code
LEFT JOIN {MDM_SCHEMA}.department_xref x ON x.hospital = d._source_hospital
    AND x.source_system = d._source_system AND x.source_table = d._source_table
    AND x.source_key = d._source_key
GROUP BY s._key"""


def _staff_xref_sql() -> str:
    parts = [
        f"""SELECT {_STAFF_KEY} AS staff_id, 'dictionary' AS kind, _source_hospital AS hospital,
    _source_system AS source_system, _source_table AS source_table, _source_key AS source_key,
    NULL::VARCHAR AS source_column, staff_code, 1::BIGINT AS rows
FROM dwd.staff"""
    ]
    # A code used elsewhere is the staff code of the institution the row belongs to; it
    # resolves to the master record of that institution's dictionary row.
    for table, column in _staff_code_columns():
        parts.append(
            f"""SELECT k.staff_id, 'reference', r._source_hospital, r._source_system,
    r._source_table, NULL, '{table}.{column}', r."{column}", count(*)
FROM dwd."{table}" r
LEFT JOIN (SELECT institution_code, staff_code, {_STAFF_KEY} AS staff_id FROM dwd.staff) k
    ON k.institution_code = r.institution_code AND k.staff_code = r."{column}"
WHERE r."{column}" IS NOT NULL
GROUP BY ALL"""
        )
    return "\nUNION ALL\n".join(parts)


def _institution_sql() -> str:
    i = INGEST_SCHEMA
    return f"""WITH seen AS (
    SELECT t.hospital_id, list_sort(list_distinct(list(t.system))) AS systems_seen,
        count(*)::INTEGER AS ods_tables
    FROM {i}.ods_tables t GROUP BY 1
), received AS (
    SELECT hospital_id, min(received_at) AS first_received_at,
        max(received_at) AS last_received_at
    FROM {i}.batches GROUP BY 1
), depts AS (
    SELECT institution_id, count(*)::INTEGER AS n FROM {MDM_SCHEMA}.department GROUP BY 1
), people AS (
    SELECT institution_id, count(*)::INTEGER AS n FROM {MDM_SCHEMA}.staff GROUP BY 1
)
SELECT coalesce(c.institution_id, seen.hospital_id) AS institution_id, c.name, c.level,
    c.hospital_level, c.region_code, c.systems_configured, seen.systems_seen,
    c.institution_id IS NOT NULL AS in_settings, seen.hospital_id IS NOT NULL AS in_sources,
    coalesce(depts.n, 0) AS departments, coalesce(people.n, 0) AS staff,
    coalesce(seen.ods_tables, 0) AS ods_tables,
    received.first_received_at, received.last_received_at
FROM mdm_config c
FULL OUTER JOIN seen ON seen.hospital_id = c.institution_id
LEFT JOIN received ON received.hospital_id = coalesce(c.institution_id, seen.hospital_id)
LEFT JOIN depts ON depts.institution_id = coalesce(c.institution_id, seen.hospital_id)
LEFT JOIN people ON people.institution_id = coalesce(c.institution_id, seen.hospital_id)"""


_DWD_INSTITUTION = """SELECT institution_id AS institution_code, name AS institution_name,
    NULL::VARCHAR AS credit_code, NULL::VARCHAR AS licence_no, NULL::VARCHAR AS category,
    hospital_level, NULL::VARCHAR AS region_code, NULL::VARCHAR AS address,
    NULL::INTEGER AS approved_beds, NULL::VARCHAR AS telephone,
    institution_id AS _source_hospital, ? AS _source_system, ? AS _source_table,
    institution_id AS _source_key, NULL::TIMESTAMP AS _source_updated_at, ? AS _batch_id,
    content_hash AS _ods_content_hash, ? AS _mapping_version
FROM mdm_config"""


# --- the refresh ---------------------------------------------------------------------------------


def _ensure(engine: Engine) -> None:
    have = {
        str(r[0])
        for r in engine.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dwd'"
        )
    }
    if not set(dwd_model().tables) <= have:
        for stmt in dwd_schema_sql():
            engine.execute(stmt)
    for stmt in ods_schema_sql():
        engine.execute(stmt)
    for stmt in schema_sql():
        engine.execute(stmt)


def _sync(
    engine: Engine, target: str, keys: Sequence[str], select: str, params: list[object] | None
) -> TableChange:
    """Make ``target`` hold exactly the rows of ``select``, touching only the rows that differ."""
    engine.execute(f"CREATE OR REPLACE TEMP TABLE mdm_new AS SELECT * FROM ({select})", params)
    engine.execute(
        f"CREATE OR REPLACE TEMP TABLE mdm_gone AS SELECT * FROM {target} EXCEPT "
        "SELECT * FROM mdm_new"
    )
    engine.execute(
        f"CREATE OR REPLACE TEMP TABLE mdm_add AS SELECT * FROM mdm_new EXCEPT "
        f"SELECT * FROM {target}"
    )
    match = " AND ".join(f't."{k}" IS NOT DISTINCT FROM g."{k}"' for k in keys)
    engine.execute(f"DELETE FROM {target} t USING mdm_gone g WHERE {match}")
    engine.execute(f"INSERT INTO {target} SELECT * FROM mdm_add")
    deleted = int(engine.fetchall("SELECT count(*) FROM mdm_gone")[0][0])
    inserted = int(engine.fetchall("SELECT count(*) FROM mdm_add")[0][0])
    rows = int(engine.fetchall(f"SELECT count(*) FROM {target}")[0][0])
    for t in ("mdm_new", "mdm_gone", "mdm_add"):
        engine.execute(f"DROP TABLE IF EXISTS {t}")
    return TableChange(target, rows, inserted, deleted)


def _config_table(settings: Settings) -> pa.Table:
    hs = settings.hospitals
    return pa.table(
        {
            "institution_id": pa.array([h.id for h in hs], pa.string()),
            "name": pa.array([h.name for h in hs], pa.string()),
            "level": pa.array([h.level for h in hs], pa.string()),
            "hospital_level": pa.array([_hospital_level(h.level) for h in hs], pa.string()),
            "region_code": pa.array([settings.region.code] * len(hs), pa.string()),
            "systems_configured": pa.array(
                [
                    sorted(f"{s}:{spec.dialect or 'tables'}" for s, spec in h.systems.items())
                    for h in hs
                ],
                pa.list_(pa.string()),
            ),
            "content_hash": pa.array([_hospital_hash(h) for h in hs], pa.string()),
        }
    )


def refresh_master(engine: Engine, settings: Settings) -> MasterReport:
    """Recompute the master data (schema ``mdm``) and ``dwd.institution`` from DWD, ``ingest``
    and ``settings``, in one transaction; see the module docstring.

    Call it after each governance run. A second call over the same data changes nothing
    (``report.changed == 0``).

    Raises:
        MasterDataError: the synonyms file is inconsistent.
        WarehouseError: the engine failed; nothing was changed.
    """
    report = MasterReport(datetime.now(UTC))
    rules = department_name_rules()
    standard = codes.value_domain("department")
    std = pa.table(
        {
            "code": [e.code for e in standard.values()],
            "name_zh": [e.name_zh for e in standard.values()],
            "name_en": [e.name_en for e in standard.values()],
            "parent": [e.extra.get("parent") or None for e in standard.values()],
        }
    )
    names = pa.table(
        {
            "name": [r[0] for r in rules],
            "standard_code": [r[1] for r in rules],
            "rule": [r[2] for r in rules],
        }
    )
    m = MDM_SCHEMA
    with engine.transaction():
        _ensure(engine)
        engine.register("mdm_config", _config_table(settings))
        engine.register("mdm_std", std)
        engine.register("mdm_rules", names)
        try:
            steps: list[tuple[str, str, str, list[object] | None]] = [
                (f"{m}.department_standard", "department_standard", "SELECT * FROM mdm_std", None),
                (f"{m}.department_names", "department_names", "SELECT * FROM mdm_rules", None),
                (f"{m}.department_xref", "department_xref", _department_xref_sql(), None),
                (f"{m}.department_queue", "department_queue", _department_queue_sql(), None),
                (f"{m}.department", "department", _department_sql(), None),
                (f"{m}.staff", "staff", _staff_sql(), None),
                (f"{m}.staff_xref", "staff_xref", _staff_xref_sql(), None),
                (f"{m}.institution", "institution", _institution_sql(), None),
            ]
            for target, key, sql, params in steps:
                report.tables.append(_sync(engine, target, _KEYS[key], sql, params))
            report.tables.append(
                _sync(
                    engine, "dwd.institution", ("institution_code",), _DWD_INSTITUTION,
                    [CONFIG_SYSTEM, CONFIG_TABLE, CONFIG_TABLE, CONFIG_MAPPING_VERSION],
                )
            )  # fmt: skip
        finally:
            for name in ("mdm_config", "mdm_std", "mdm_rules"):
                engine.unregister(name)
        report.departments_queued = report.table(f"{m}.department_queue").rows
        report.staff_codes_unresolved = int(
            engine.fetchall(
                f"SELECT count(DISTINCT (hospital, staff_code)) FROM {m}.staff_xref "
                "WHERE staff_id IS NULL"
            )[0][0]
        )
        detail = {t.table: [t.rows, t.inserted, t.deleted] for t in report.tables}
        engine.execute(
            f"INSERT INTO {m}.refreshes VALUES (?, ?, ?, ?, ?)",
            [
                report.refreshed_at, report.changed, report.departments_queued,
                report.staff_codes_unresolved, json.dumps(detail),
            ],
        )  # fmt: skip
    return report
