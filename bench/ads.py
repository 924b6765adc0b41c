"""Benchmark: the ADS refresh (issue 4: an incremental governance run with 1 % new rows within
5 % of the full run's time, so an ADS refresh after a small change must cost well under 0.4 s
on 1,000,000 lab results).

What runs, in one process on one DuckDB file (not timed: building the data):

- DWD written directly (DDL from ``medfabric.warehouse.ddl.schema_sql()``, the ``gov`` schema of
  governance): ``--rows`` lab results in ``--rows // 10`` lab reports, ``--rows // 5`` visits
  (10 % inpatient stays), ``--rows // 7`` diagnoses (a quarter chronic), ``--rows // 50`` exam
  reports, 5 hospitals, ``--rows // 20`` people, 180 days; a few quarantined rows in ``gov``.
- full: ``refresh_ads(full=True)``, every model rebuilt.
- nothing new: ``refresh_ads()`` again — the fixed cost (fingerprints of every input).
- appended (the usual case): 1 % new rows in every DWD table — a new day's visits, lab reports
  with their results, exams, diagnoses — then ``refresh_ads()``.
- scattered (worst case): 1 % of the existing rows of every table updated, lab reports and
  visits moved to another day, spread over every partition — then ``refresh_ads()``.
- check: the incremental tables equal a full rebuild (EXCEPT ALL both ways).

``--results-only``: DWD holds only the lab results, as after bench/govern.py (its lab reports,
visits and diagnoses are not simulated); the appended step adds 1 % lab results.

Times are wall-clock and, in brackets, the process's CPU time (all DuckDB threads): on a shared
machine the CPU time is the steadier figure.

Usage: .venv/bin/python bench/ads.py [--rows 1000000] [--out bench/out/ads] [--results-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from medfabric.governance.ads import AdsReport, models, refresh_ads
from medfabric.governance.compile import GOV_SCHEMA
from medfabric.governance.run import SCHEMA as GOV_DDL
from medfabric.standards import codes
from medfabric.warehouse import DuckDBEngine
from medfabric.warehouse.ddl import schema_sql

LINEAGE = "'H0', 'HIS', 'T', 'k', NULL, 'b', repeat('0', 64), 'bench'"
CHRONIC = ["E11.9", "I10", "I25.1", "J44.9", "N18.3", "I63.9"]
OTHER = ["J06.9", "K29.7", "M54.5", "R51"]
# every numeric lab item, equally often (as bench/govern.py does)
ITEMS = [i.code for i in codes.lab_items().values() if i.value_type == "N"]


def _r(seed: str, n: int) -> str:
    """A pseudo-random integer in [0, n) from the row number ``i`` and a seed."""
    return f"CAST(hash(i, '{seed}') % {n} AS BIGINT)"


def build_results_only(engine: DuckDBEngine, rows: int, start: int = 0) -> None:
    """Insert ``rows`` lab results of one hospital and nothing else, as bench/govern.py's DWD
    holds (its reports, visits and diagnoses are not simulated)."""
    items = "[" + ", ".join(f"'{x}'" for x in ITEMS) + "]"
    engine.execute(
        f"""INSERT INTO dwd.lab_result (lab_result_id, lab_report_id, person_id, institution_code,
    item_code, item_name, value_numeric, unit, _source_hospital, _source_system, _source_table,
    _source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version)
SELECT 'X/' || i, 'R/' || (i // 10), 'P/' || {_r("p", 50_000)}, 'H01',
    {items}[1 + {_r("it", len(ITEMS))}], 'item', 4 + {_r("val", 600)} / 100.0, 'u',
    {LINEAGE} FROM range({start}, {start + rows}) t(i)"""
    )


def build(engine: DuckDBEngine, rows: int, start: int = 0, day0: int = 0, days: int = 180) -> None:
    """Insert ``rows`` lab results and the proportional other tables, ids from ``start``."""
    reports, visits, diagnoses, exams = rows // 10, rows // 5, rows // 7, rows // 50
    people = max(100, (start + rows) // 20)

    def ts(seed: str) -> str:
        return (
            f"TIMESTAMP '2025-01-01' + INTERVAL ({day0} + {_r(seed, days)}) DAY "
            f"+ INTERVAL ({_r(seed + 'm', 600)} + 480) MINUTE"
        )

    hosp = f"'H0' || (1 + {_r('h', 5)})"
    person = f"'P/' || {_r('p', people)}"
    e = engine.execute
    e(
        f"""INSERT INTO dwd.visit (visit_id, person_id, institution_code, visit_type_code,
    department_code, standard_department_code, visit_at, admitted_at, discharged_at,
    _source_hospital, _source_system, _source_table, _source_key, _source_updated_at,
    _batch_id, _ods_content_hash, _mapping_version)
SELECT 'V/' || i, {person}, {hosp}, CASE WHEN {_r("t", 10)} = 0 THEN '3' ELSE '1' END,
    'D' || {_r("d", 20)}, '03.0' || {_r("d", 9)}, {ts("v")},
    CASE WHEN {_r("t", 10)} = 0 THEN {ts("v")} END,
    CASE WHEN {_r("t", 10)} = 0 THEN {ts("v")} + INTERVAL ({_r("los", 20)} - 1) DAY END,
    {LINEAGE} FROM range({start // 5}, {start // 5 + visits}) t(i)"""
    )
    e(
        f"""INSERT INTO dwd.lab_report (lab_report_id, person_id, institution_code, panel_code,
    panel_name, requested_at, collected_at, reported_at, _source_hospital, _source_system,
    _source_table, _source_key, _source_updated_at, _batch_id, _ods_content_hash,
    _mapping_version)
SELECT 'R/' || i, {person}, {hosp}, 'PANEL' || {_r("pn", 12)}, 'panel', {ts("r")},
    {ts("r")} + INTERVAL ({_r("c", 60)}) MINUTE,
    {ts("r")} + INTERVAL ({_r("c", 60)} + 30 + {_r("tat", 600)}) MINUTE,
    {LINEAGE} FROM range({start // 10}, {start // 10 + reports}) t(i)"""
    )
    items = "[" + ", ".join(f"'{x}'" for x in ITEMS) + "]"
    e(
        f"""INSERT INTO dwd.lab_result (lab_result_id, lab_report_id, person_id, institution_code,
    item_code, item_name, value_numeric, unit, _source_hospital, _source_system, _source_table,
    _source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version)
SELECT 'X/' || i, 'R/' || (i // 10), r.person_id, r.institution_code,
    {items}[1 + {_r("it", len(ITEMS))}], 'item', 4 + {_r("val", 600)} / 100.0, 'u',
    {LINEAGE} FROM range({start}, {start + rows}) t(i)
JOIN dwd.lab_report r ON r.lab_report_id = 'R/' || (i // 10)"""
    )
    codes = "[" + ", ".join(f"'{x}'" for x in CHRONIC + OTHER * 5) + "]"
    e(
        f"""INSERT INTO dwd.diagnosis (diagnosis_id, visit_id, person_id, institution_code,
    diagnosis_code, diagnosed_at, _source_hospital, _source_system, _source_table, _source_key,
    _source_updated_at, _batch_id, _ods_content_hash, _mapping_version)
SELECT 'G/' || i, v.visit_id, v.person_id, v.institution_code,
    {codes}[1 + {_r("dx", len(CHRONIC) + 5 * len(OTHER))}],
    CASE WHEN {_r("dn", 3)} = 0 THEN NULL ELSE v.visit_at END, {LINEAGE}
FROM range({start // 7}, {start // 7 + diagnoses}) t(i)
JOIN dwd.visit v ON v.visit_id = 'V/' || (i * 7 // 5)"""
    )
    e(
        f"""INSERT INTO dwd.exam_report (exam_report_id, person_id, institution_code,
    exam_item_name, modality, requested_at, reported_at, _source_hospital, _source_system,
    _source_table, _source_key, _source_updated_at, _batch_id, _ods_content_hash,
    _mapping_version)
SELECT 'E/' || i, {person}, {hosp}, 'exam', ['CT', 'MR', 'US', 'DX'][1 + {_r("mo", 4)}],
    {ts("e")}, {ts("e")} + INTERVAL (10 + {_r("et", 2000)}) MINUTE, {LINEAGE}
FROM range({start // 50}, {start // 50 + exams}) t(i)"""
    )


def scatter(engine: DuckDBEngine) -> None:
    """Update 1 % of the rows of every table, spread over all partitions; move some reports
    and visits to another day; delete a few lab results."""
    e = engine.execute
    e(
        "UPDATE dwd.lab_result SET value_numeric = value_numeric + 0.1 "
        "WHERE hash(lab_result_id) % 100 = 7"
    )
    e("DELETE FROM dwd.lab_result WHERE hash(lab_result_id, 'del') % 1000 = 3")
    e(
        "UPDATE dwd.lab_report SET reported_at = reported_at + INTERVAL 1 DAY "
        "WHERE hash(lab_report_id) % 100 = 7"
    )
    e("UPDATE dwd.visit SET visit_at = visit_at - INTERVAL 2 DAY WHERE hash(visit_id) % 100 = 7")
    e("UPDATE dwd.diagnosis SET diagnosed_at = NULL WHERE hash(diagnosis_id) % 100 = 7")
    e("UPDATE dwd.exam_report SET modality = 'CT' WHERE hash(exam_report_id) % 100 = 7")


def same_as_full(path: Path, work: Path) -> bool:
    """Whether every ADS table equals a full rebuild made on a copy of the file."""
    copy = work / "full.duckdb"
    shutil.copyfile(path, copy)
    with DuckDBEngine(copy) as other:
        refresh_ads(other, full=True)
    with DuckDBEngine(path) as engine:
        engine.execute(f"ATTACH '{copy}' AS f (READ_ONLY)")
        try:
            for m in models():
                if not engine.fetchall(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = 'ads' "
                    "AND table_name = ? AND table_catalog <> 'f'",
                    [m.name],
                ):
                    continue
                for a, b in ((m.table, f"f.{m.table}"), (f"f.{m.table}", m.table)):
                    n = engine.fetchall(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})")[0][
                        0
                    ]
                    if n:
                        print(f"  {m.name}: {n} rows differ")
                        return False
        finally:
            engine.execute("DETACH f")
    return True


def _line(label: str, wall: float, cpu: float, report: AdsReport) -> None:
    touched = ", ".join(
        f"{m.model} {m.partitions} ({m.seconds:.3f} s)"
        for m in report.models
        if m.mode == "incremental"
    )
    print(
        f"{label:<28} {wall:7.3f} s [cpu {cpu:6.3f} s]   fingerprints "
        f"{report.fingerprint_seconds:6.3f} s" + (f"   recomputed: {touched}" if touched else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out/ads"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--results-only", action="store_true")
    args = ap.parse_args()
    rows: int = args.rows
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    path = args.out / "warehouse.duckdb"
    figures: dict[str, float] = {}
    with DuckDBEngine(path, threads=args.threads) as engine:
        for stmt in (*schema_sql(), *GOV_DDL):
            engine.execute(stmt)
        engine.execute(
            f"INSERT INTO {GOV_SCHEMA}.runs VALUES (TIMESTAMPTZ '2025-07-01 00:00:00+00', "
            "TIMESTAMPTZ '2025-07-01 00:01:00+00', 1, 0, 3, 0, 0)"
        )
        engine.execute(
            f"INSERT INTO {GOV_SCHEMA}.quarantine SELECT 'lab_result', 'H01', 'LIS', 'T', "
            "'k' || i, 'b', NULL, 'bench', ['missing required person_id'], "
            "TIMESTAMPTZ '2025-07-01 00:00:30+00' FROM range(3) t(i)"
        )
        t = time.perf_counter()
        if args.results_only:
            build_results_only(engine, rows)
        else:
            build(engine, rows)
        print(f"built {rows:,} lab results (and the rest) in {time.perf_counter() - t:.1f} s")

        def append() -> None:
            if args.results_only:
                build_results_only(engine, rows // 100, start=rows)
            else:
                build(engine, rows // 100, start=rows, day0=180, days=1)

        steps: list[tuple[str, str, Callable[[], None] | None, bool]] = [
            ("full rebuild", "full", None, True),
            ("incremental, nothing new", "nothing", None, False),
            ("incremental, 1 % appended", "appended", append, False),
        ]
        if not args.results_only:
            steps.append(
                ("incremental, 1 % scattered", "scattered", lambda: scatter(engine), False)
            )
        for label, key, change, full in steps:
            if change is not None:
                change()
            wall, cpu = time.perf_counter(), time.process_time()
            report = refresh_ads(engine, full=full)
            figures[f"{key}_s"] = time.perf_counter() - wall
            figures[f"{key}_cpu_s"] = time.process_time() - cpu
            figures[f"{key}_fingerprint_s"] = report.fingerprint_seconds
            _line(label, figures[f"{key}_s"], figures[f"{key}_cpu_s"], report)
    equal = same_as_full(path, args.out)
    print(f"incremental tables equal a full rebuild: {equal}")
    print(
        f"appended / full: {figures['appended_s'] / figures['full_s']:.1%} "
        f"(cpu {figures['appended_cpu_s'] / figures['full_cpu_s']:.1%})"
    )
    (args.out / "figures.json").write_text(
        json.dumps(
            {
                "rows": rows, "results_only": args.results_only, "equal_to_full": equal,
                **figures,
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
            },
            indent=1,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
