"""Reading the ADS themes: headline figures for the demo and the top rows of each theme's
tables for the CLI. Read-only; a model not refreshed yet is simply absent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medfabric.governance.ads.conditions import load_conditions
from medfabric.governance.ads.spec import SCHEMA, THEMES, models
from medfabric.warehouse.engine import Engine

__all__ = ["ThemeTable", "headline", "theme_tables"]

# The order a theme's rows are shown in: the busiest partitions first.
_ORDER = {
    "visits_daily": "visit_date DESC, visits DESC",
    "inpatient_monthly": "month DESC, level DESC, discharges DESC",
    "lab_daily": "report_date DESC, reports DESC",
    "exam_daily": "report_date DESC, exams DESC",
    "chronic_registry": "first_diagnosed_at DESC NULLS LAST, person_id",
    "chronic_summary": "patients DESC, institution_code",
    "dq_current": "quarantined + values_nulled + unmapped_rows DESC, hospital, dwd_table",
    "dq_runs": "run_at DESC, hospital, dwd_table",
    "dq_checks": "run_at DESC, hospital, dwd_table, category = '*' DESC, category",
}


@dataclass(frozen=True, slots=True)
class ThemeTable:
    """The first rows of one ADS table: name, description, column names, rows, total rows."""

    name: str
    description: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    total: int


def _present(engine: Engine) -> set[str]:
    rows = engine.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]
    )
    return {str(r[0]) for r in rows}


def theme_tables(engine: Engine, theme: str | None = None, limit: int = 10) -> list[ThemeTable]:
    """The refreshed tables of ``theme`` (one of :data:`THEMES`; all when None), each with its
    first ``limit`` rows.

    Raises:
        ValueError: ``theme`` is not a theme.
    """
    if theme is not None and theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; one of {', '.join(THEMES)}")
    present = _present(engine)
    out = []
    for m in models():
        if (theme is not None and m.theme != theme) or m.name not in present:
            continue
        data = engine.fetch_arrow(
            f"SELECT * FROM {m.table} ORDER BY {_ORDER.get(m.name, '1')} LIMIT {int(limit)}"
        )
        total = int(engine.fetchall(f"SELECT count(*) FROM {m.table}")[0][0])
        columns = tuple(data.column_names)
        rows = [tuple(r[c] for c in columns) for r in data.to_pylist()]
        out.append(ThemeTable(m.name, m.description, columns, rows, total))
    return out


def _one(engine: Engine, sql: str) -> tuple[Any, ...]:
    rows = engine.fetchall(sql)
    return rows[0] if rows else ()


def headline(engine: Engine) -> list[tuple[str, str]]:
    """A handful of headline figures (label, value) from the refreshed ADS tables, for the demo:
    visits in the last 30 days of data, average length of stay, lab and exam turnaround (the
    median over every report, read from DWD), chronic
    patients, diabetics and their HbA1c control, standing data-quality findings, the latest
    quality score. Figures whose table is absent are left out.

    "Last 30 days" ends at the latest day of the data (not today, so a simulated past region
    still shows its figures) with at least half the median daily visits (a stray record dated
    months ahead does not move it).
    """
    present = _present(engine)
    out: list[tuple[str, str]] = []
    if "visits_daily" in present:
        # The window ends at the latest day with at least half the median daily visits, so
        # that a stray record dated months ahead (a source defect) does not empty it.
        last, visits = _one(
            engine,
            f"""WITH days AS (
    SELECT visit_date, sum(visits) AS n FROM {SCHEMA}.visits_daily GROUP BY ALL),
last AS (
    SELECT max(visit_date) AS d FROM days WHERE n >= (SELECT median(n) / 2 FROM days))
SELECT max(last.d), sum(n) FILTER (WHERE visit_date > last.d - 30 AND visit_date <= last.d)
FROM days, last""",
        ) or (None, None)
        if last is not None:
            total = _one(engine, f"SELECT sum(visits) FROM {SCHEMA}.visits_daily")[0]
            out.append(("visits", f"{int(total):,}"))
            out.append((f"visits, 30 days to {last}", f"{int(visits or 0):,}"))
    if "inpatient_monthly" in present:
        discharges, los, negative = _one(
            engine,
            f"""SELECT sum(discharges), sum(los_days_total) / nullif(sum(stays_measured), 0),
    sum(negative_stays) FROM {SCHEMA}.inpatient_monthly WHERE level = 'hospital'""",
        ) or (None, None, None)
        if discharges:
            out.append(("discharges", f"{int(discharges):,}"))
            out.append(
                (
                    "average length of stay",
                    "n/a"
                    if los is None
                    else f"{float(los):.1f} days"
                    + (f" ({int(negative)} negative stays left out)" if negative else ""),
                )
            )
    for name, what, n, source, start in (
        ("lab_daily", "lab", "reports", "dwd.lab_report", "collected_at"),
        ("exam_daily", "exam", "exams", "dwd.exam_report", "requested_at"),
    ):
        if name not in present:
            continue
        total = _one(engine, f"SELECT sum({n}) FROM {SCHEMA}.{name}")[0]
        if not total:
            continue
        out.append((f"{what} reports", f"{int(total):,}"))
        # A median of daily medians is no median: this one is read from DWD (one column pair).
        tat = _one(
            engine,
            f"SELECT median(date_diff('second', {start}, reported_at) / 60.0) "
            f"FROM {source} WHERE {start} <= reported_at",
        )[0]
        if tat is not None:
            out.append(
                (f"{what} turnaround, {start.removesuffix('_at')} → reported, median",
                 f"{float(tat):.0f} min")
            )  # fmt: skip
    if "chronic_registry" in present:
        out.extend(_chronic(engine))
    if "dq_current" in present:
        q, v, u = _one(
            engine,
            f"SELECT sum(quarantined), sum(values_nulled), sum(unmapped_codes) "
            f"FROM {SCHEMA}.dq_current",
        ) or (None, None, None)
        out.append(
            (
                "quality: quarantined rows / values nulled / unmapped codes",
                f"{int(q or 0):,} / {int(v or 0):,} / {int(u or 0):,}",
            )
        )
    if "dq_checks" in present:
        run, score = _one(
            engine,
            f"""SELECT run_id, sum(checks_passed) / nullif(sum(checks_passed + checks_failed), 0)
FROM {SCHEMA}.dq_checks WHERE category = '*' GROUP BY run_id ORDER BY max(run_at) DESC LIMIT 1""",
        ) or (None, None)
        if run is not None and score is not None:
            out.append((f"quality score, run {run}", f"{float(score):.1%}"))
    return out


def _chronic(engine: Engine) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    patients = _one(engine, f"SELECT count(DISTINCT person_id) FROM {SCHEMA}.chronic_registry")
    out.append(("patients in the chronic registry", f"{int(patients[0]):,}"))
    conditions = {c.code: c for c in load_conditions().conditions}
    diabetes = conditions.get("diabetes")
    if diabetes is None:
        return out
    n, measured, controlled = _one(
        engine,
        f"""SELECT count(*), count(indicator_value), count(*) FILTER (WHERE controlled)
FROM {SCHEMA}.chronic_registry WHERE condition_code = 'diabetes'""",
    )
    out.append(("diabetics", f"{int(n):,}"))
    if diabetes.indicators:
        key = diabetes.indicators[0]
        target = (
            f" < {key.controlled_below:g}"
            if key.controlled_below is not None
            else f" ≥ {key.controlled_at_least:g}"
            if key.controlled_at_least is not None
            else ""
        )
        share = f"{controlled / measured:.0%}" if measured else "n/a"
        out.append(
            (f"diabetics with {key.item} measured / {key.item}{target}", f"{measured:,} / {share}")
        )
    return out
