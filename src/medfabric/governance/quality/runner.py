"""Running the quality checks over the ``dwd`` and ``gov`` schemas, storing results in ``dq``.

Schema ``dq``::

    dq.runs(run_id, started_at, finished_at, rules_version, checks, passed, failed,
            not_applicable, seconds)
    dq.checks(run_id, check_id, kind, category, subcategory, dwd_table, columns, description,
              threshold, severity, origin)
    dq.results(run_id, run_at, hospital, dwd_table, check_id, category, subcategory, status,
               rows_checked, rows_failed, threshold, percent_failed, severity)
    dq.failures(run_id, check_id, hospital, dwd_table, row_id)

Invariants:
- One result per check × hospital of the region (hospitals with any ODS, DWD or quarantined
  row). ``status`` is ``not_applicable`` when the check saw no row of that hospital (no rows, or
  the column is never filled there), else ``fail`` when ``percent_failed > threshold``, else
  ``pass``.
- Work is set-based: one query for all the expression checks of a table (their joins
  merged), one per check that needs windows, one for everything governance set aside
  (quarantine, nulled values, removed duplicates). No Python loop over rows.
- ``row_id`` is the DWD primary key (single-key tables) or the source address
  ``hospital/SYSTEM/TABLE/local_key`` (composite keys, and rows governance set aside) — the same
  string for rows whose key is their address.
- A run is one transaction: its runs, checks, results and failures rows appear together.
  Failures are kept for the latest ``keep_failures`` runs; results for every run (the trend).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from medfabric.governance.quality.checks import (
    Check,
    code_rows,
    code_sex_rows,
    generate_checks,
    lab_limit_rows,
    lab_ratio_rows,
    lab_ref_rows,
    row_id,
)
from medfabric.governance.quality.rules import RuleSet, load_rules
from medfabric.standards.model import DwdModel, dwd_model
from medfabric.warehouse.ddl import literal, qualified
from medfabric.warehouse.engine import Engine, WarehouseError

DQ_SCHEMA = "dq"
STATUSES = ("pass", "fail", "not_applicable")

SCHEMA: tuple[str, ...] = (
    f"CREATE SCHEMA IF NOT EXISTS {DQ_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {DQ_SCHEMA}.runs (
    run_id INTEGER PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
    rules_version VARCHAR, checks INTEGER, passed INTEGER, failed INTEGER,
    not_applicable INTEGER, seconds DOUBLE)""",
    f"""CREATE TABLE IF NOT EXISTS {DQ_SCHEMA}.checks (
    run_id INTEGER NOT NULL, check_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    category VARCHAR NOT NULL, subcategory VARCHAR NOT NULL, dwd_table VARCHAR NOT NULL,
    columns VARCHAR[], description VARCHAR, threshold DOUBLE, severity VARCHAR,
    origin VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {DQ_SCHEMA}.results (
    run_id INTEGER NOT NULL, run_at TIMESTAMPTZ NOT NULL, hospital VARCHAR NOT NULL,
    dwd_table VARCHAR NOT NULL, check_id VARCHAR NOT NULL, category VARCHAR NOT NULL,
    subcategory VARCHAR NOT NULL, status VARCHAR NOT NULL, rows_checked BIGINT NOT NULL,
    rows_failed BIGINT NOT NULL, threshold DOUBLE NOT NULL, percent_failed DOUBLE,
    severity VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {DQ_SCHEMA}.failures (
    run_id INTEGER NOT NULL, check_id VARCHAR NOT NULL, hospital VARCHAR NOT NULL,
    dwd_table VARCHAR NOT NULL, row_id VARCHAR NOT NULL)""",
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check on one hospital's rows of one DWD table."""

    hospital: str
    dwd_table: str
    check_id: str
    category: str
    subcategory: str
    status: str
    rows_checked: int
    rows_failed: int
    threshold: float
    severity: str

    @property
    def percent_failed(self) -> float | None:
        """Failing rows as a percent of checked rows; None when nothing was checked."""
        return 100.0 * self.rows_failed / self.rows_checked if self.rows_checked else None


@dataclass(frozen=True, slots=True)
class QualityRun:
    """A finished run: its id, times, the checks it ran and one result per check × hospital.

    ``timings`` maps a step (a table's expression checks, a check id, ``gov``) to seconds.
    """

    run_id: int
    started_at: datetime
    finished_at: datetime
    checks: tuple[Check, ...]
    results: tuple[CheckResult, ...]
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """How many results have this status."""
        return sum(1 for r in self.results if r.status == status)


def ensure_schema(engine: Engine) -> None:
    """Create schema ``dq`` and its tables if missing."""
    for stmt in SCHEMA:
        engine.execute(stmt)


def _exists(engine: Engine, schema: str, table: str) -> bool:
    rows = engine.fetchall(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    )
    return bool(rows[0][0])


def _has_column(engine: Engine, schema: str, table: str, column: str) -> bool:
    rows = engine.fetchall(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        [schema, table, column],
    )
    return bool(rows[0][0])


def _temp(engine: Engine, name: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
          types: Sequence[pa.DataType]) -> None:  # fmt: skip
    data = pa.table(
        {c: pa.array([r[i] for r in rows], type=t) for i, (c, t) in
         enumerate(zip(columns, types, strict=True))}
    )  # fmt: skip
    engine.register(f"{name}_src", data)
    try:
        engine.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_src")
    finally:
        engine.unregister(f"{name}_src")


def _helpers(engine: Engine, rules: RuleSet, model: DwdModel, run_at: datetime) -> None:
    s, f = pa.string(), pa.float64()
    engine.execute("CREATE OR REPLACE TEMP TABLE dq_ctx AS SELECT CAST(? AS TIMESTAMP) AS run_at",
                   [run_at.astimezone(UTC).replace(tzinfo=None)])  # fmt: skip
    _temp(engine, "dq_codes", ("domain", "code"), list(code_rows(model)), (s, s))
    _temp(engine, "dq_code_sex", ("system", "code", "sex"), list(code_sex_rows()), (s, s, s))
    _temp(engine, "dq_lab_ref", ("item", "lo_m", "hi_m", "lo_f", "hi_f", "floor"),
          list(lab_ref_rows()), (s, f, f, f, f, f))  # fmt: skip
    _temp(engine, "dq_lab_limits", ("rule_id", "item", "min_v", "max_v"),
          list(lab_limit_rows(rules)), (s, s, f, f))  # fmt: skip
    _temp(engine, "dq_lab_ratio", ("item", "r"), list(lab_ratio_rows()), (s, f))


def _hospitals(engine: Engine, model: DwdModel, has_gov: bool, has_ingest: bool) -> list[str]:
    parts = [f"SELECT DISTINCT _source_hospital FROM {qualified(t)}" for t in model.tables.values()]
    if has_gov:
        parts.append("SELECT DISTINCT hospital FROM gov.quarantine")
    if has_ingest:
        parts.append("SELECT DISTINCT hospital_id FROM ingest.ods_tables")
    rows = engine.fetchall(" UNION ".join(parts) + " ORDER BY 1")
    return [str(r[0]) for r in rows if r[0] is not None]


Counts = dict[tuple[str, str], list[int]]  # (check id, hospital) → [checked, failed]


def _add(counts: Counts, rows: list[tuple[object, ...]]) -> None:
    for check_id, hospital, checked, failed in rows:
        slot = counts.setdefault((str(check_id), str(hospital)), [0, 0])
        slot[0] += int(checked)  # type: ignore[call-overload]
        slot[1] += int(failed)  # type: ignore[call-overload]


def _collect(engine: Engine, run_id: int, counts: Counts, check_of: str) -> None:
    """Count and store the failures of temp table ``dq_eval(check_id, hospital, dwd_table,
    row_id, failed)``."""
    _add(counts, engine.fetchall(
        f"SELECT {check_of}, hospital, count(failed), count(*) FILTER (WHERE failed) "
        "FROM dq_eval GROUP BY ALL"
    ))  # fmt: skip
    engine.execute(
        f"INSERT INTO {DQ_SCHEMA}.failures SELECT {run_id}, {check_of}, hospital, dwd_table, "
        "row_id FROM dq_eval WHERE failed"
    )


def _run_table_exprs(engine: Engine, run_id: int, model: DwdModel, table: str,
                     checks: list[Check], counts: Counts) -> None:  # fmt: skip
    """All the expression checks of one table in one pass: a wide temp table with one boolean
    per check, counted per hospital in one query; only rows failing something are unpivoted
    into failures."""
    t = model.tables[table]
    names = [f"c{i}" for i in range(len(checks))]
    cols = ", ".join(f"({c.expr}) AS {n}" for c, n in zip(checks, names, strict=True))
    joins = " ".join(dict.fromkeys(j for c in checks for j in c.joins))
    engine.execute(
        f"CREATE OR REPLACE TEMP TABLE dq_wide AS SELECT t._source_hospital AS hospital, "
        f"{row_id(t)} AS row_id, {cols} FROM {qualified(t)} t {joins}"
    )
    aggs = ", ".join(f"count({n}), count(*) FILTER (WHERE {n})" for n in names)
    for row in engine.fetchall(f"SELECT hospital, {aggs} FROM dq_wide GROUP BY hospital"):
        hospital = row[0]
        _add(counts, [
            (c.id, hospital, row[1 + 2 * i], row[2 + 2 * i]) for i, c in enumerate(checks)
        ])  # fmt: skip
    ids = " ".join(
        f"WHEN {literal(n)} THEN {literal(c.id)}" for c, n in zip(checks, names, strict=True)
    )
    any_failed = " OR ".join(f"coalesce({n}, false)" for n in names)
    engine.execute(
        f"INSERT INTO {DQ_SCHEMA}.failures SELECT {run_id}, CASE name {ids} END, hospital, "
        f"{literal(table)}, row_id FROM (SELECT * FROM dq_wide WHERE {any_failed}) "
        f"UNPIVOT (failed FOR name IN ({', '.join(names)})) WHERE failed"
    )


def _run_one(engine: Engine, run_id: int, model: DwdModel, check: Check, counts: Counts) -> None:
    t = model.tables[check.table]
    if check.sql is not None:
        inner = check.sql
    else:
        inner = (
            f"SELECT t._source_hospital AS hospital, {row_id(t)} AS row_id, ({check.expr}) AS "
            f"failed FROM {qualified(t)} t {' '.join(check.joins)}"
        )
    engine.execute(
        f"CREATE OR REPLACE TEMP TABLE dq_eval AS SELECT {literal(check.id)} AS check_id, "
        f"hospital, {literal(check.table)} AS dwd_table, row_id, failed FROM ({inner})"
    )
    _collect(engine, run_id, counts, "check_id")


_ADDRESS = "(g.hospital || '/' || g.source_system || '/' || g.source_table || '/' || g.source_key)"


def _gov_sql(checks: Sequence[Check], dup_kind: bool) -> str:
    """(check_id, hospital, dwd_table, row_id, failed) for what governance set aside:
    quarantined rows against each required column of their table, nulled values against the
    format or value domain of their column, removed duplicates against uniqueness."""
    near = {c.table: c.id for c in checks if c.kind == "near_duplicate"}
    dup_check = "g.dwd_table || '.primary_key.unique'"
    if dup_kind and near:
        cases = " ".join(f"WHEN {literal(t)} THEN {literal(i)}" for t, i in near.items())
        dup_check = (
            f"CASE WHEN g.kind = 'near' THEN CASE g.dwd_table {cases} ELSE {dup_check} END "
            f"ELSE {dup_check} END"
        )
    return f"""SELECT k.check_id, g.hospital, g.dwd_table, {_ADDRESS} AS row_id,
    list_contains(g.reasons, 'missing required ' || k.col) AS failed
FROM gov.quarantine g JOIN dq_required k ON k.dwd_table = g.dwd_table
UNION ALL
SELECT g.dwd_table || '.' || split_part(g.reason, ':', 1) || CASE WHEN
    starts_with(g.reason, split_part(g.reason, ':', 1) || ': unmapped ') THEN '.value_domain'
    ELSE '.format' END, g.hospital, g.dwd_table, {_ADDRESS}, true
FROM gov.value_issues g
UNION ALL
SELECT {dup_check}, g.hospital, g.dwd_table, {_ADDRESS}, true FROM gov.duplicates g"""


def run_quality(
    engine: Engine,
    *,
    rules: RuleSet | None = None,
    model: DwdModel | None = None,
    now: datetime | None = None,
    keep_failures: int = 3,
) -> QualityRun:
    """Run every check (model + rules) on the warehouse and store the run in schema ``dq``.

    Args:
        engine: the warehouse holding ``dwd`` (and, when governed, ``gov`` and ``ingest``).
        rules: the rules (the shipped file by default).
        model: the DWD model (the catalog's by default).
        now: the run's time (``run`` in rules, "future"), default the wall clock.
        keep_failures: row-level failures are kept for this many latest runs.

    Returns:
        The run with one result per check × hospital.

    Raises:
        RulesError: the shipped rules file is invalid (when ``rules`` is not given).
        WarehouseError: the warehouse has no DWD tables, or a query failed (the message
            carries the SQL).
    """
    m = dwd_model() if model is None else model
    rs = load_rules(model=m) if rules is None else rules
    started = datetime.now(UTC) if now is None else now.astimezone(UTC)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    if not _exists(engine, "dwd", next(iter(m.tables))):
        raise WarehouseError("no DWD tables in this warehouse: run `medfabric govern run` first")
    ensure_schema(engine)
    has_ingest = _exists(engine, "ingest", "batches")
    has_gov = _exists(engine, "gov", "quarantine")
    dup_kind = has_gov and _has_column(engine, "gov", "duplicates", "kind")
    checks = generate_checks(rs, m, has_arrival=has_ingest)
    known = {c.id: c for c in checks}
    counts: Counts = {}
    with engine.transaction():
        run_id = int(engine.fetchall(f"SELECT coalesce(max(run_id), 0) + 1 FROM {DQ_SCHEMA}.runs")
                     [0][0])  # fmt: skip
        _helpers(engine, rs, m, started)
        hospitals = _hospitals(engine, m, has_gov, has_ingest)
        for table in m.tables:
            simple = [c for c in checks if c.table == table and c.sql is None]
            if simple:
                t0 = time.perf_counter()
                _run_table_exprs(engine, run_id, m, table, simple, counts)
                timings[f"{table} ({len(simple)} checks)"] = time.perf_counter() - t0
        for c in checks:
            if c.sql is not None:
                t0 = time.perf_counter()
                _run_one(engine, run_id, m, c, counts)
                timings[c.id] = time.perf_counter() - t0
        if has_gov:
            t0 = time.perf_counter()
            required = [(c.id, c.table, c.columns[0]) for c in checks if c.kind == "required"]
            _temp(engine, "dq_required", ("check_id", "dwd_table", "col"), required,
                  (pa.string(),) * 3)  # fmt: skip
            _temp(engine, "dq_known", ("check_id",), [(i,) for i in known], (pa.string(),))
            engine.execute(
                "CREATE OR REPLACE TEMP TABLE dq_eval AS SELECT * FROM ("
                + _gov_sql(checks, dup_kind)
                + ") x WHERE x.check_id IN (SELECT check_id FROM dq_known)"
            )
            _collect(engine, run_id, counts, "check_id")
            timings["gov (quarantine, nulled values, duplicates)"] = time.perf_counter() - t0
        results = tuple(_results(checks, hospitals, counts))
        finished = datetime.now(UTC) if now is None else started
        seconds = time.perf_counter() - clock
        _store(engine, run_id, started, finished, rs, checks, results, seconds)
        engine.execute(
            f"DELETE FROM {DQ_SCHEMA}.failures WHERE run_id <= ?", [run_id - keep_failures]
        )
        for name in ("dq_ctx", "dq_codes", "dq_code_sex", "dq_lab_ref", "dq_lab_limits",
                     "dq_lab_ratio", "dq_wide", "dq_eval", "dq_required", "dq_known"):  # fmt: skip
            engine.execute(f"DROP TABLE IF EXISTS {name}")
    return QualityRun(run_id, started, finished, tuple(checks), results, timings)


def _status(checked: int, failed: int, threshold: float) -> str:
    if checked == 0:
        return "not_applicable"
    return "fail" if 100.0 * failed / checked > threshold else "pass"


def _results(checks: Sequence[Check], hospitals: Sequence[str], counts: Counts
             ) -> list[CheckResult]:  # fmt: skip
    out = []
    for c in checks:
        for h in hospitals:
            checked, failed = counts.get((c.id, h), (0, 0))
            out.append(CheckResult(
                h, c.table, c.id, c.category, c.subcategory,
                _status(checked, failed, c.threshold), checked, failed, c.threshold, c.severity,
            ))  # fmt: skip
    return out


def _store(
    engine: Engine, run_id: int, started: datetime, finished: datetime, rules: RuleSet,
    checks: Sequence[Check], results: Sequence[CheckResult], seconds: float,
) -> None:  # fmt: skip
    status = [r.status for r in results]
    engine.execute(
        f"INSERT INTO {DQ_SCHEMA}.runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, started, finished, rules.version, len(checks), status.count("pass"),
         status.count("fail"), status.count("not_applicable"), seconds],
    )  # fmt: skip
    s, f = pa.string(), pa.float64()
    _temp(
        engine, "dq_checks_src",
        ("check_id", "kind", "category", "subcategory", "dwd_table", "columns", "description",
         "threshold", "severity", "origin"),
        [(c.id, c.kind, c.category, c.subcategory, c.table, list(c.columns), c.description,
          c.threshold, c.severity, c.origin) for c in checks],
        (s, s, s, s, s, pa.list_(s), s, f, s, s),
    )  # fmt: skip
    engine.execute(f"INSERT INTO {DQ_SCHEMA}.checks SELECT {run_id}, * FROM dq_checks_src")
    _temp(
        engine, "dq_results_src",
        ("hospital", "dwd_table", "check_id", "category", "subcategory", "status",
         "rows_checked", "rows_failed", "threshold", "percent_failed", "severity"),
        [(r.hospital, r.dwd_table, r.check_id, r.category, r.subcategory, r.status,
          r.rows_checked, r.rows_failed, r.threshold, r.percent_failed, r.severity)
         for r in results],
        (s, s, s, s, s, s, pa.int64(), pa.int64(), f, f, s),
    )  # fmt: skip
    engine.execute(
        f"INSERT INTO {DQ_SCHEMA}.results SELECT {run_id}, ?, hospital, dwd_table, check_id, "
        "category, subcategory, status, rows_checked, rows_failed, threshold, percent_failed, "
        "severity FROM dq_results_src",
        [started],
    )
    engine.execute("DROP TABLE IF EXISTS dq_checks_src")
    engine.execute("DROP TABLE IF EXISTS dq_results_src")
