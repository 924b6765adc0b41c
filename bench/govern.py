"""Benchmark: governance ODS → DWD → ADS (issue 4 targets: 1,000,000 ODS rows in ≤ 60 s and ≤ 5× the
ceiling of a plain DuckDB ``INSERT … SELECT`` of the same rows; an incremental run with 1 % new
rows in ≤ 5 % of the full run's time).

What runs, in one process on one DuckDB file:

- ODS: ``--rows`` lab results of one hospital in the ``ruixin`` layout (``H01__LIS__LAB_RESULT``),
  landed through ``OdsStore.land`` in batches of 100,000 (not timed). The values are realistic:
  real lab item codes, 20 % of numeric results in a conventional unit (mg/dL …), 5 % qualitative
  results (阴性), full-width characters and stray spaces in names, a few unmapped item codes.
- the full run (the figure): ``Governor.run`` with the shipped ``ruixin`` mapping (all entries;
  only the lab-result entry has data): staging query (trim, NFKC, code tables, unit conversion,
  typing, length checks), quarantine, duplicates, value issues, unmapped queue, insert.
  Then the ADS refresh (``refresh_ads``: every theme's partitions whose input changed), timed
  as part of the run.
- the ceiling (baseline, same run, best of 3): ``INSERT INTO`` an empty copy of
  ``dwd.lab_result`` ``SELECT`` the same current ODS rows with plain casts and no cleaning,
  mapping or checks.
- the incremental run: 1 % new rows (``--rows // 100``) landed as one more batch, then
  ``Governor.run`` and ``refresh_ads`` again.

Usage: .venv/bin/python bench/govern.py [--rows 1000000] [--out bench/out/govern]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from medfabric.governance.ads.refresh import refresh_ads
from medfabric.governance.run import Governor, HospitalSource
from medfabric.standards import codes
from medfabric.standards.mappings import mappings
from medfabric.warehouse import DuckDBEngine, LandingBatch, OdsStore

TARGET_S = 60.0
TARGET_RATIO = 5.0
TARGET_INCREMENTAL = 0.05
COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, "VARCHAR")
    for name in (
        "RESULT_ID", "REQUEST_ID", "SPECIMEN_ID", "PATIENT_ID", "ITEM_CODE", "ITEM_NAME",
        "RESULT_VALUE", "UNITS", "REF_RANGE", "ABNORMAL_INDICATOR", "REPORTED_AT", "STATUS",
    )
)  # fmt: skip


def _batch(batch_id: str, start: int, count: int, seq: int, rng: random.Random) -> LandingBatch:
    items = [i for i in codes.lab_items().values() if i.value_type == "N"]
    units = codes.lab_unit_factors()
    flags = ["N", "H", "L", "HH", "LL", "A"]
    t0 = datetime(2025, 1, 1, 8, 0)
    cols: dict[str, list[str | None]] = {name: [] for name, _ in COLUMNS}
    keys, hashes, updated = [], [], []
    for n in range(start, start + count):
        item = items[n % len(items)]
        key = f"R{n:09d}"
        value = round(rng.uniform(1, 200), 2)
        unit = item.unit
        others = [u for u in units.get(item.code, {}) if u != item.unit]
        if others and rng.random() < 0.2:
            unit = rng.choice(others)
        text = "阴性" if rng.random() < 0.05 else f" {value} "
        code = item.code if rng.random() > 0.001 else f"X{n % 7}"
        name = item.name_zh if n % 10 else f" {item.name_zh.replace('A', 'Ａ')}  "
        at = t0 + timedelta(minutes=n // 50)
        row = [
            key, f"Q{n // 8:09d}", f"S{n // 8:09d}", f"P{rng.randrange(50_000):09d}", code,
            name, text, unit, "3.9-6.1", rng.choice(flags), at.strftime("%Y-%m-%d %H:%M:%S"), "F",
        ]  # fmt: skip
        for (column, _), v in zip(COLUMNS, row, strict=True):
            cols[column].append(v)
        keys.append(key)
        hashes.append(hashlib.sha256(key.encode() + str(seq).encode()).hexdigest())
        updated.append(at)
    received = datetime(2025, 2, 1, tzinfo=UTC) + timedelta(minutes=seq)
    data: dict[str, pa.Array] = {
        "_seq": pa.array(range(count), pa.int64()),
        "_local_key": pa.array(keys, pa.string()),
        "_op": pa.array(["upsert"] * count, pa.string()),
        "_has_payload": pa.array([True] * count),
        "_source_updated_at": pa.array(updated, pa.timestamp("us")),
        "_extracted_at": pa.array([received] * count, pa.timestamp("us", tz="UTC")),
        "_hash": pa.array(hashes, pa.string()),
        **{name: pa.array(values, pa.string()) for name, values in cols.items()},
    }
    return LandingBatch(
        batch_id=batch_id,
        manifest_sha256=hashlib.sha256(batch_id.encode()).hexdigest(),
        hospital_id="H01", system="LIS", source_table="LAB_RESULT", seq=seq, columns=COLUMNS,
        key_columns=("RESULT_ID",), watermark_column=None, watermark_from=None,
        watermark_to=None, received_at=received, rows=pa.table(data),
    )  # fmt: skip


def _ceiling(engine: DuckDBEngine) -> float:
    engine.execute("DROP TABLE IF EXISTS bench_ceiling")
    engine.execute("CREATE TABLE bench_ceiling AS SELECT * FROM dwd.lab_result LIMIT 0")
    t = time.perf_counter()
    engine.execute(
        """INSERT INTO bench_ceiling (lab_result_id, lab_report_id, person_id, institution_code,
    item_code, item_name, value_numeric, unit, value_text, value_as_sent, unit_as_sent,
    reference_range, abnormal_flag, _source_hospital, _source_system, _source_table,
    _source_key, _source_updated_at, _batch_id, _ods_content_hash, _mapping_version)
SELECT 'H01/LIS/LAB_RESULT/' || RESULT_ID, 'H01/LIS/LAB_TEST_MASTER/' || REQUEST_ID,
    'H01/HIS/PAT_MASTER_INDEX/' || PATIENT_ID, 'H01', ITEM_CODE, ITEM_NAME,
    TRY_CAST(RESULT_VALUE AS DECIMAL(14,4)), UNITS, RESULT_VALUE, RESULT_VALUE, UNITS,
    REF_RANGE, ABNORMAL_INDICATOR, 'H01', 'LIS', 'LAB_RESULT', _local_key,
    _source_updated_at, _batch_id, _hash, 'ceiling'
FROM ods."H01__LIS__LAB_RESULT__current\""""
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out/govern"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    print(f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    engine = DuckDBEngine(args.out / "warehouse.duckdb")
    store = OdsStore(engine)
    rng = random.Random(7)
    t = time.perf_counter()
    step = 100_000
    for seq, start in enumerate(range(0, args.rows, step), start=1):
        store.land(_batch(f"b{seq}", start, min(step, args.rows - start), seq, rng))
    print(f"ODS: {args.rows:,} lab results landed in {time.perf_counter() - t:.1f} s (not timed)")
    ruixin = mappings()["ruixin"]
    sources = [HospitalSource("H01", "H01", s, ruixin) for s in ("HIS", "LIS")]
    governor = Governor(engine)
    governor.ensure_schema()
    t = time.perf_counter()
    full = governor.run(sources)
    t_dwd = time.perf_counter() - t
    ads = refresh_ads(engine)
    t_full = time.perf_counter() - t
    [entry] = [e for e in full.entries if e.staged]
    print(
        f"full run: {t_full:.2f} s = {args.rows / t_full:,.0f} rows/s (ODS → DWD {t_dwd:.2f} s, "
        f"ADS refresh {t_full - t_dwd:.2f} s, {len(ads.changed())} models written); "
        f"inserted {entry.inserted:,}, quarantined {entry.quarantined:,}, "
        f"duplicates {entry.duplicates:,}; errors {full.errors}"
    )
    t_ceiling = min(_ceiling(engine) for _ in range(3))
    print(f"ceiling (plain INSERT … SELECT, best of 3): {t_ceiling:.2f} s")
    new = args.rows // 100
    store.land(_batch("inc", args.rows, new, 99, rng))
    t = time.perf_counter()
    inc = governor.run(sources)
    t_inc_dwd = time.perf_counter() - t
    refresh_ads(engine)
    t_inc = time.perf_counter() - t
    [inc_entry] = [e for e in inc.entries if e.staged]
    balanced = all(r["balanced"] for r in governor.reconcile(sources))
    print(
        f"incremental run ({new:,} new rows): {t_inc:.2f} s (ODS → DWD {t_inc_dwd:.2f} s, ADS "
        f"{t_inc - t_inc_dwd:.2f} s); staged {inc_entry.staged:,}"
    )
    print(f"reconciled (ODS = DWD + quarantined + duplicates): {balanced}")
    engine.close()
    ratio = t_full / t_ceiling if t_ceiling else float("inf")
    rows = [
        (f"full run, {args.rows:,} rows", f"{t_full:.1f} s", f"≤ {TARGET_S:.0f} s",
         t_full <= TARGET_S),
        ("full run / ceiling", f"{ratio:.1f}×", f"≤ {TARGET_RATIO:.0f}×", ratio <= TARGET_RATIO),
        ("incremental (1 %) / full", f"{t_inc / t_full:.1%}", f"≤ {TARGET_INCREMENTAL:.0%}",
         t_inc / t_full <= TARGET_INCREMENTAL),
    ]  # fmt: skip
    print(f"\n{'figure':34}{'measured':>12}{'target':>10}  met?")
    for name, measured, target, met in rows:
        print(f"{name:34}{measured:>12}{target:>10}  {'yes' if met else 'NOT met'}")
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "rows": args.rows, "full_s": t_full, "full_dwd_s": t_dwd,
                "full_ads_s": t_full - t_dwd, "ceiling_s": t_ceiling, "ratio": ratio,
                "incremental_dwd_s": t_inc_dwd,
                "incremental_rows": new, "incremental_s": t_inc, "inserted": entry.inserted,
                "quarantined": entry.quarantined, "duplicates": entry.duplicates,
                "balanced": balanced,
            },
            indent=1,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
