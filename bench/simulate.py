"""Benchmark: generate 5 hospitals × 100,000 patient registrations (issue target ≤ 3 min, ≤ 2 GiB).

Runs `medfabric simulate` in a child process and samples the proportional resident memory
(PSS) of that process and all its workers every 0.1 s (peak of the sum = what the machine
holds). The baseline, in the same run and on the same disk, is the floor of the I/O:
bulk-inserting the same number of rows (same column count, pre-built tuples) into SQLite,
which a generator that also has to make the rows can only approach.

Usage: .venv/bin/python bench/simulate.py [--hospitals 5] [--patients 100000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree_rss_kib(root_pid: int) -> int:
    """Proportional resident memory (PSS) of a process and its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            # Pss shares pages among the processes that map them (forked workers share the
            # plan with their parent copy-on-write), so the sum is what the machine holds.
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_simulator(args: argparse.Namespace, out: Path) -> tuple[float, int, str]:
    cmd = [
        sys.executable, "-m", "medfabric.cli.main", "simulate",
        "--hospitals", str(args.hospitals), "--patients", str(args.patients),
        "--seed", "7", "--out", str(out), "--workers", str(args.workers),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed ({proc.returncode}):\n{output}")
    return elapsed, peak, output


def count_rows(out: Path) -> tuple[int, int, int]:
    rows = cols = tables = 0
    for db in out.glob("H*/*.db"):
        conn = sqlite3.connect(db)
        for (name,) in conn.execute("select name from sqlite_master where type='table'"):
            rows += conn.execute(f'select count(*) from "{name}"').fetchone()[0]
            cols += len(conn.execute(f'select * from "{name}" limit 0').description)
            tables += 1
        conn.close()
    return rows, cols // max(tables, 1), tables


def baseline_insert(rows: int, width: int, folder: Path) -> float:
    """Seconds to bulk-insert ``rows`` pre-built rows of ``width`` columns into SQLite."""
    conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    cols = ", ".join(f"c{i} TEXT" for i in range(width))
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {cols})")
    row = tuple(f"value-{i}" for i in range(width))
    sql = f"INSERT INTO t VALUES (?, {', '.join('?' for _ in range(width))})"
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    batch = 50_000
    for start in range(0, rows, batch):
        conn.executemany(sql, ((i, *row) for i in range(start, min(rows, start + batch))))
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hospitals", type=int, default=5)
    p.add_argument("--patients", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the generated region")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-", dir=args.out.parent if args.out else None))
    out = args.out or work / "region"
    try:
        elapsed, peak_kib, output = run_simulator(args, out)
        rows, width, tables = count_rows(out)
        dicom = sum(1 for _ in out.glob("H*/dicom/*/*.dcm"))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        base = baseline_insert(rows, width, work)
        manifest = json.loads((out / "region.json").read_text("utf-8"))
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "hospitals": args.hospitals,
            "patients_per_hospital": args.patients,
            "workers": args.workers,
            "seconds": round(elapsed, 1),
            "peak_pss_mib": round(peak_kib / 1024),
            "rows": rows,
            "tables": tables,
            "rows_per_second": round(rows / elapsed),
            "dicom_files": dicom,
            "output_mib": round(size / 2**20),
            "baseline_sqlite_bulk_insert_seconds": round(base, 1),
            "ratio_to_baseline": round(elapsed / base, 1),
            "clock": manifest["clock_iso"],
        }
        print(output.strip().splitlines()[-1] if output.strip() else "")
        print(json.dumps(result, indent=2))
        ok_t, ok_m = elapsed <= 180, peak_kib <= 2 * 2**20
        print(
            f"target ≤ 180 s: {'met' if ok_t else 'NOT met'} ({elapsed:.0f} s); "
            f"target ≤ 2 GiB: {'met' if ok_m else 'NOT met'} ({peak_kib / 2**20:.2f} GiB)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
