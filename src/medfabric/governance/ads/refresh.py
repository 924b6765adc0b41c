"""Incremental, idempotent refresh of the ADS models (schema ``ads``) from DWD and ``gov``.

For each model (in file order) and each of its inputs, one ``GROUP BY`` computes the current
fingerprint of every partition — rows and the sum of ``hash(<the columns the model reads>)`` —
and compares it with the fingerprint stored at the last refresh (``ads._state__<model>``).
Only partitions whose fingerprint differs, appeared or disappeared are recomputed: their rows are
deleted and the model's body is run over the input rows of those partitions only. A partition
with no input left therefore loses its rows.

Invariants:
- after any refresh, each model's table equals what a full rebuild (``full=True``) gives from
  the same DWD (the tests check it after inserts, updates that move rows between partitions and
  deletes);
- a refresh with no change in the inputs writes nothing (idempotent);
- a model whose file changed (digest in ``ads._models``), or whose conditions file changed
  (``uses_conditions``), is rebuilt in full; a model whose ``requires`` tables are absent is
  skipped and its table dropped;
- a refresh is one transaction: readers see the ADS tables of the previous refresh until it
  commits, the tables always agree with one another, and a failure leaves everything as it was
  (one commit also costs less than one per model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from medfabric.governance.ads.conditions import Conditions, load_conditions
from medfabric.governance.ads.errors import AdsError
from medfabric.governance.ads.spec import SCHEMA, Model, models
from medfabric.standards.model import dwd_model
from medfabric.warehouse.engine import Engine, WarehouseError

__all__ = ["AdsReport", "ModelResult", "refresh_ads"]

Progress = Callable[[int, int, str], None]
_CONDITIONS = "_conditions"  # the row of ads._models that holds the conditions file's digest
_TODO = "_ads_todo"
_CURRENT = "_ads_current"


@dataclass(frozen=True, slots=True)
class ModelResult:
    """What a refresh did to one model.

    ``mode``: ``full`` (rebuilt), ``incremental`` (some partitions recomputed), ``unchanged`` or
    ``skipped`` (a required table is absent; ``note`` says which).
    """

    model: str
    mode: str
    partitions: int = 0  # partitions recomputed
    rows: int = 0  # rows of the table after the refresh
    seconds: float = 0.0
    note: str = ""


@dataclass
class AdsReport:
    """A refresh's results per model; ``fingerprint_seconds`` is the time spent computing the
    inputs' fingerprints (the fixed cost of an incremental refresh)."""

    started_at: datetime
    finished_at: datetime | None = None
    full: bool = False
    models: list[ModelResult] = field(default_factory=list)
    fingerprint_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def changed(self) -> list[str]:
        """Models whose table was written (rebuilt or partly recomputed)."""
        return [m.model for m in self.models if m.mode in ("full", "incremental")]


def _tables(engine: Engine) -> set[str]:
    """``schema.table`` of every table and view of the database (not temporary ones)."""
    rows = engine.fetchall(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE NOT temporary "
        "UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views() "
        "WHERE NOT temporary AND NOT internal"
    )
    return {str(r[0]) for r in rows}


def _ensure_schema(engine: Engine) -> None:
    engine.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    engine.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}._models "
        "(model VARCHAR PRIMARY KEY, digest VARCHAR NOT NULL, rebuilt_at TIMESTAMPTZ)"
    )


def _digests(engine: Engine) -> dict[str, str]:
    rows = engine.fetchall(f"SELECT model, digest FROM {SCHEMA}._models")
    return {str(m): str(d) for m, d in rows}


def _set_digest(engine: Engine, model: str, digest: str) -> None:
    engine.execute(f"DELETE FROM {SCHEMA}._models WHERE model = ?", [model])
    engine.execute(
        f"INSERT INTO {SCHEMA}._models VALUES (?, ?, ?)", [model, digest, datetime.now(UTC)]
    )


def _load_conditions(
    engine: Engine, conds: Conditions, stored: dict[str, str], present: set[str]
) -> None:
    """Replace the reference tables of the registry when the conditions file changed."""
    if (
        stored.get(_CONDITIONS) == conds.digest
        and {
            f"{SCHEMA}.chronic_condition",
            f"{SCHEMA}.chronic_condition_category",
            f"{SCHEMA}.chronic_indicator",
        }
        <= present
    ):
        return
    condition = pa.table(
        {
            "code": [c.code for c in conds.conditions],
            "name_zh": [c.name_zh for c in conds.conditions],
            "name_en": [c.name_en for c in conds.conditions],
        }
    )
    category = pa.table(
        {
            "condition_code": [c.code for c in conds.conditions for _ in c.categories],
            "category": [k for c in conds.conditions for k in c.categories],
        }
    )
    indicator = pa.table(
        {
            "condition_code": [c.code for c in conds.conditions for _ in c.indicators],
            "rank": pa.array(
                [n for c in conds.conditions for n, _ in enumerate(c.indicators, 1)], pa.int32()
            ),
            "item_code": [i.item for c in conds.conditions for i in c.indicators],
            "controlled_below": pa.array(
                [i.controlled_below for c in conds.conditions for i in c.indicators], pa.float64()
            ),
            "controlled_at_least": pa.array(
                [i.controlled_at_least for c in conds.conditions for i in c.indicators],
                pa.float64(),
            ),
        }
    )
    with engine.transaction():
        for name, data in (
            ("chronic_condition", condition),
            ("chronic_condition_category", category),
            ("chronic_indicator", indicator),
        ):
            engine.register("_ads_rows", data)
            try:
                engine.execute(
                    f"CREATE OR REPLACE TABLE {SCHEMA}.{name} AS SELECT * FROM _ads_rows"
                )
            finally:
                engine.unregister("_ads_rows")
        _set_digest(engine, _CONDITIONS, conds.digest)


def _drop(engine: Engine, model: Model) -> None:
    engine.execute(f"DROP TABLE IF EXISTS {model.table}")
    engine.execute(f"DROP TABLE IF EXISTS {model.state_table}")
    engine.execute(f"DELETE FROM {SCHEMA}._models WHERE model = ?", [model.name])


class _Refresher:
    def __init__(self, engine: Engine, report: AdsReport) -> None:
        self.engine = engine
        self.report = report
        self.rows: dict[str, str] = {}  # materialized input of the current model → temp table

    def fingerprint(self, model: Model) -> None:
        """``_ads_current``: the model's current fingerprints (input number, partition, n, h),
        in one statement (one scan per input)."""
        started = time.perf_counter()
        self.drop_rows()
        for n, i in enumerate(model.inputs):
            if i.materialize and i.name:
                table = f"_ads_rows{n}"
                self.engine.execute(
                    f"CREATE OR REPLACE TEMP TABLE {table} AS {model.materialize_sql(i)}"
                )
                self.rows[i.name] = table
        keys = ", ".join(f"CAST(_p{k} AS {t}) AS _p{k}" for k, (_, t) in enumerate(model.partition))
        parts = [
            f"SELECT {n} AS _i, {keys}, _n, _h FROM "
            f"({model.fingerprint_sql(i, self.rows.get(i.name or ''))})"
            for n, i in enumerate(model.inputs)
            if i.fingerprint
        ]
        self.engine.execute(
            f"CREATE OR REPLACE TEMP TABLE {_CURRENT} AS " + " UNION ALL ".join(parts)
        )
        self.report.fingerprint_seconds += time.perf_counter() - started

    def full(self, model: Model, digest: str) -> int:
        e = self.engine
        with e.transaction():
            e.execute(f"CREATE OR REPLACE TABLE {model.table} AS {model.body_sql(None, self.rows)}")
            have = {
                str(r[0])
                for r in e.fetchall(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [SCHEMA, model.name],
                )
            }
            missing = [c for c in model.partition_names if c not in have]
            if missing:
                raise AdsError(
                    f"{model.path.name}: the body returns no partition column {', '.join(missing)}"
                )
            e.execute(f"CREATE OR REPLACE TABLE {model.state_table} AS SELECT * FROM {_CURRENT}")
            _set_digest(e, model.name, digest)
        return int(
            e.fetchall(f"SELECT count(DISTINCT ({self._keys(model)})) FROM {_CURRENT}")[0][0]
        )

    @staticmethod
    def _keys(model: Model) -> str:
        return ", ".join(f"_p{k}" for k in range(len(model.partition)))

    def incremental(self, model: Model) -> int:
        e = self.engine
        k = range(len(model.partition))
        on = " AND ".join(["c._i = s._i", *(f"c._p{n} = s._p{n}" for n in k)])
        e.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_TODO} AS SELECT DISTINCT
    {", ".join(f"coalesce(c._p{n}, s._p{n}) AS _p{n}" for n in k)}
FROM {_CURRENT} c FULL OUTER JOIN {model.state_table} s ON {on}
WHERE c._n IS DISTINCT FROM s._n OR c._h IS DISTINCT FROM s._h"""
        )
        todo = int(e.fetchall(f"SELECT count(*) FROM {_TODO}")[0][0])
        if not todo:
            return 0
        with e.transaction():
            e.execute(f"DELETE FROM {model.table} WHERE {model.in_todo(_TODO, model.table)}")
            e.execute(f"INSERT INTO {model.table} BY NAME {model.body_sql(_TODO, self.rows)}")
            same = " AND ".join(f"_t._p{n} = s._p{n}" for n in k)
            e.execute(
                f"DELETE FROM {model.state_table} s WHERE EXISTS "
                f"(SELECT 1 FROM {_TODO} _t WHERE {same})"
            )
            same = " AND ".join(f"_t._p{n} = c._p{n}" for n in k)
            e.execute(
                f"INSERT INTO {model.state_table} SELECT * FROM {_CURRENT} c WHERE EXISTS "
                f"(SELECT 1 FROM {_TODO} _t WHERE {same})"
            )
        return todo

    def drop_rows(self) -> None:
        for table in self.rows.values():
            self.engine.execute(f"DROP TABLE IF EXISTS {table}")
        self.rows.clear()

    def close(self) -> None:
        self.drop_rows()
        for table in (_CURRENT, _TODO):
            self.engine.execute(f"DROP TABLE IF EXISTS {table}")


def refresh_ads(
    engine: Engine,
    *,
    full: bool = False,
    progress: Progress | None = None,
    conditions: Path | None = None,
) -> AdsReport:
    """Bring every ADS model up to date with DWD and ``gov``; see the module docstring.

    Args:
        engine: The warehouse holding the DWD schema (and ``gov``; ``dq`` when present).
        full: Rebuild every model from scratch instead of recomputing changed partitions.
        progress: Called after each model with (done, total, model name), for a progress bar.
        conditions: The chronic-conditions file (default: the shipped one).

    Returns:
        What was done per model, and the time spent on fingerprints.

    Raises:
        AdsError: the conditions file or a model file is invalid, or a model's SQL failed (the
            message names it); nothing is written.

    Example::

        report = refresh_ads(engine)           # after each governance run
        report.changed()                       # ['visits_daily', 'lab_daily', …]
    """
    conds = load_conditions(conditions)
    shipped = models()
    report = AdsReport(datetime.now(UTC), full=full)
    worker = _Refresher(engine, report)
    try:
        with engine.transaction():
            _ensure_schema(engine)
            stored = _digests(engine)
            present = _tables(engine)
            missing = sorted(f"dwd.{t}" for t in dwd_model().tables if f"dwd.{t}" not in present)
            if missing:
                raise AdsError(
                    f"no DWD table {', '.join(missing)}: run governance (medfabric govern run) "
                    "before refreshing ADS"
                )
            _load_conditions(engine, conds, stored, present)
            names = {m.name for m in shipped}
            for gone in sorted(set(stored) - names - {_CONDITIONS}):  # a model file was removed
                engine.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{gone}")
                engine.execute(f"DROP TABLE IF EXISTS {SCHEMA}._state__{gone}")
                engine.execute(f"DELETE FROM {SCHEMA}._models WHERE model = ?", [gone])
            for done, model in enumerate(shipped, start=1):
                result = _refresh_one(worker, model, conds, stored, present, full)
                report.models.append(result)
                if result.mode != "skipped":
                    present.update((model.table, model.state_table))
                if progress is not None:
                    progress(done, len(shipped), model.name)
    finally:
        worker.close()
    report.finished_at = datetime.now(UTC)
    return report


def _refresh_one(
    worker: _Refresher,
    model: Model,
    conds: Conditions,
    stored: dict[str, str],
    present: set[str],
    full: bool,
) -> ModelResult:
    e = worker.engine
    started = time.perf_counter()
    absent = [t for t in model.requires if t not in present]
    if absent:
        if model.name in stored or model.table in present or model.state_table in present:
            _drop(e, model)
        return ModelResult(model.name, "skipped", note=f"no table {', '.join(absent)}")
    digest = model.digest + (f"+{conds.digest}" if model.uses_conditions else "")
    rebuild = (
        full
        or stored.get(model.name) != digest
        or model.table not in present
        or model.state_table not in present
    )
    try:
        worker.fingerprint(model)
        if rebuild:
            mode, partitions = "full", worker.full(model, digest)
        else:
            partitions = worker.incremental(model)
            mode = "incremental" if partitions else "unchanged"
        rows = int(e.fetchall(f"SELECT count(*) FROM {model.table}")[0][0])
    except AdsError:
        raise
    except WarehouseError as err:
        raise AdsError(f"ADS model {model.name} ({model.path.name}): {err}") from err
    return ModelResult(model.name, mode, partitions, rows, time.perf_counter() - started)
