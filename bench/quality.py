"""Benchmark: the data-quality run (issue 4 targets: the demo region, ~180k DWD rows, in a few
seconds; 1,000,000 lab results well under 10 s).

What runs, in one process on a copy of a governed warehouse (``--warehouse``; e.g. the demo's,
or one built by ``tests/governance/regionkit.py``):

- set-up (not timed): ``dwd.lab_result`` is grown to ``--lab-rows`` rows by copying its rows
  under new ids (``…#k``), every other table as it is;
- the figure: ``run_quality`` with the shipped rules (every check of the model and the rules
  file, results and row-level failures stored in schema ``dq``), best of ``--repeat``;
- the baseline (same run, best of 3): one plain scan copying every DWD table
  (``CREATE TEMP TABLE … AS SELECT *``) — what reading the data once costs.

Usage: .venv/bin/python bench/quality.py --warehouse W.duckdb [--lab-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from medfabric.governance.quality.runner import run_quality
from medfabric.standards.model import dwd_model
from medfabric.warehouse import DuckDBEngine
from medfabric.warehouse.ddl import qualified, quote

TARGET_S = 10.0


def _grow(engine: DuckDBEngine, rows: int) -> int:
    have = int(engine.fetchall("SELECT count(*) FROM dwd.lab_result")[0][0])
    table = dwd_model().tables["lab_result"]
    copies = max(0, -(-rows // max(have, 1)) - 1)
    cols = [c.name for c in table.columns]
    # Copies differ in item_name (no check reads it) so that they are not near-duplicates of
    # their original: the near-duplicate check must find nothing new.
    renamed = {
        "lab_result_id": "lab_result_id || '#' || k",
        "_source_key": "_source_key || '#' || k",
        "item_name": "item_name || '#' || k",
    }
    select = ", ".join(renamed.get(c, quote(c)) for c in cols)
    if copies:
        engine.execute(
            f"INSERT INTO {qualified(table)} SELECT {select} FROM {qualified(table)}, "
            f"range(1, {copies + 1}) r(k)"
        )
    engine.execute(
        f"DELETE FROM {qualified(table)} WHERE lab_result_id IN (SELECT lab_result_id FROM "
        f"{qualified(table)} ORDER BY lab_result_id DESC LIMIT greatest(0, (SELECT count(*) "
        f"FROM {qualified(table)}) - {rows}))"
    )
    return int(engine.fetchall("SELECT count(*) FROM dwd.lab_result")[0][0])


def _baseline(engine: DuckDBEngine) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for t in dwd_model().tables.values():
            engine.execute(
                f"CREATE OR REPLACE TEMP TABLE bench_copy AS SELECT * FROM {qualified(t)}"
            )
        best = min(best, time.perf_counter() - t0)
    engine.execute("DROP TABLE IF EXISTS bench_copy")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, required=True, help="a governed warehouse file")
    ap.add_argument("--lab-rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.duckdb"
        shutil.copyfile(args.warehouse, path)
        engine = DuckDBEngine(path)
        try:
            labs = _grow(engine, args.lab_rows)
            total = sum(
                int(engine.fetchall(f"SELECT count(*) FROM {qualified(t)}")[0][0])
                for t in dwd_model().tables.values()
            )
            base = _baseline(engine)
            best, run = float("inf"), None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                run = run_quality(engine)
                best = min(best, time.perf_counter() - t0)
            assert run is not None
            failures = int(engine.fetchall(
                "SELECT count(*) FROM dq.failures WHERE run_id = ?", [run.run_id]
            )[0][0])  # fmt: skip
        finally:
            engine.close()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}")
    print(f"DWD rows: {total:,} (lab results {labs:,}); checks {len(run.checks)}; "
          f"results {len(run.results):,}; failures stored {failures:,}")  # fmt: skip
    print(f"quality run (best of {args.repeat}): {best:.2f} s "
          f"({'within' if best <= TARGET_S else 'OVER'} the {TARGET_S:.0f} s target)")  # fmt: skip
    print(
        f"baseline (copy every DWD table once, best of 3): {base:.2f} s → ratio {best / base:.1f}x"
    )
    slowest = sorted(run.timings.items(), key=lambda kv: -kv[1])[:6]
    print("slowest steps: " + "; ".join(f"{k} {v:.2f} s" for k, v in slowest))


if __name__ == "__main__":
    main()
