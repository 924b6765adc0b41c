"""Benchmark: end-to-end ingest from a source table to ODS (targets: ≥ 100,000 records/s end to
end, ≥ 30 % of the raw ceiling, peak memory ≤ 1.5 GiB per process, an incremental cycle with
1 % changed rows on a 1,000,000-row source in ≤ 10 s).

Measures, in one run and on the same SQLite file (one ``ruixin`` LIS table ``LAB_RESULT``):

- the raw ceiling (baseline): the fastest plain copy of the rows into a fresh DuckDB file —
  DuckDB's sqlite extension, ``ATTACH … (TYPE sqlite)`` and ``CREATE TABLE … AS SELECT``, no
  hashing, signing or network (best of three, in a child process);
- end to end (the target): the receiver runs in its own process (``medfabric receiver serve``,
  as in production); this process opens ``Gateway(settings, "H01")`` and times one full
  ``cycle`` (extract, serialize, hash, sign, encrypt, spool, send over loopback HTTP; the
  receiver verifies and lands). ODS must then hold every row (``/v1/status`` and DuckDB);
- the split of that work: a second hospital H02 reading the same file, run as two timed steps
  (``extract`` then ``send_pending``) into its own ODS table;
- peak resident memory of the gateway process (``ru_maxrss``; source generation and the ceiling
  run in child processes so they do not count) and of the receiver process (``VmHWM``);
- an incremental cycle after 1 % of the rows changed (new value, later change time): it must
  send exactly the changed rows.

Usage: .venv/bin/python bench/ingest.py [--rows 1000000] [--out bench/out/ingest]
       [--batch-rows 50000] [--profile]  (a few minutes with the defaults)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import duckdb
import httpx

from medfabric.gateway import Gateway
from medfabric.gateway.sources import _duckdb_sqlite_extension
from medfabric.records.keyring import init_keys
from medfabric.settings import Settings, parse_settings

TABLE = "LAB_RESULT"
HOSPITALS = ("H01", "H02")  # H01: the headline single cycle; H02: the same rows, two steps
CEILING_RUNS = 3

E2E_TARGET_PER_S = 100_000
RATIO_TARGET = 0.30
MEMORY_TARGET_BYTES = int(1.5 * 2**30)
INCREMENTAL_TARGET_S = 10.0

# code, name, unit, reference range, low, high
LAB_ITEMS = [
    ("WBC", "白细胞计数", "10^9/L", "3.5-9.5", 3.5, 9.5),
    ("RBC", "红细胞计数", "10^12/L", "4.3-5.8", 4.3, 5.8),
    ("HGB", "血红蛋白", "g/L", "130-175", 130.0, 175.0),
    ("PLT", "血小板计数", "10^9/L", "125-350", 125.0, 350.0),
    ("GLU", "葡萄糖", "mmol/L", "3.9-6.1", 3.9, 6.1),
    ("ALT", "丙氨酸氨基转移酶", "U/L", "9-50", 9.0, 50.0),
    ("AST", "天门冬氨酸氨基转移酶", "U/L", "15-40", 15.0, 40.0),
    ("CREA", "肌酐", "umol/L", "57-111", 57.0, 111.0),
    ("UREA", "尿素", "mmol/L", "3.1-8.0", 3.1, 8.0),
    ("TC", "总胆固醇", "mmol/L", "0-5.2", 0.0, 5.2),
    ("TG", "甘油三酯", "mmol/L", "0-1.7", 0.0, 1.7),
    ("K", "钾", "mmol/L", "3.5-5.3", 3.5, 5.3),
    ("NA", "钠", "mmol/L", "137-147", 137.0, 147.0),
    ("CRP", "C反应蛋白", "mg/L", "0-10", 0.0, 10.0),
    ("HBA1C", "糖化血红蛋白", "%", "4.0-6.0", 4.0, 6.0),
    ("TBIL", "总胆红素", "umol/L", "0-23", 0.0, 23.0),
]

DDL = f"""CREATE TABLE {TABLE} (
    RESULT_ID TEXT PRIMARY KEY,
    REQUEST_ID TEXT,
    SPECIMEN_ID TEXT,
    PATIENT_ID TEXT,
    ITEM_CODE TEXT,
    ITEM_NAME TEXT,
    RESULT_VALUE TEXT,
    UNITS TEXT,
    REF_RANGE TEXT,
    ABNORMAL_INDICATOR TEXT,
    REPORTED_AT TEXT,
    STATUS TEXT,
    LAST_UPDATE_TIME TEXT,
    VALID_FLAG TEXT
)"""

TS = "%Y-%m-%d %H:%M:%S"
START = datetime(2025, 1, 1, 8, 0, 0)
CHANGED_AT = "2026-01-15 09:30:00"  # later than every generated change time


# --- source, settings, ceiling (the first and last run in child processes) --------------------


def _rows(n: int, seed: int) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    patients = max(1, n // 40)
    for i in range(n):
        code, name, unit, ref, lo, hi = LAB_ITEMS[i % len(LAB_ITEMS)]
        span = hi - lo
        value = rng.uniform(lo - 0.2 * span, hi + 0.2 * span)
        flag = "H" if value > hi else ("L" if value < lo else "N")
        reported = START + timedelta(seconds=i * 20)
        updated = reported + timedelta(seconds=rng.randrange(3600))
        yield (
            f"R{i:010d}", f"LR{i // 8:09d}", f"SP{i // 8:09d}",
            f"P{rng.randrange(patients):08d}", code, name, f"{value:.2f}", unit, ref, flag,
            reported.strftime(TS), "F", updated.strftime(TS), "1",
        )  # fmt: skip


def make_source(path: str, n: int, seed: int) -> float:
    """The SQLite source with ``n`` rows; returns seconds."""
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute(DDL)
    con.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * 14)})", _rows(n, seed))
    con.commit()
    con.close()
    return time.perf_counter() - t0


def ceiling_copy(source: str, target_dir: str, runs: int) -> tuple[float, int, int]:
    """Best seconds of ``runs`` plain copies into a fresh DuckDB file, rows, peak RSS (bytes)."""
    ext = _duckdb_sqlite_extension()
    best = float("inf")
    rows = 0
    for i in range(runs):
        path = Path(target_dir) / f"ceiling-{i}.duckdb"
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        con = duckdb.connect(str(path))
        con.execute("SET enable_progress_bar = false")
        con.execute(f"LOAD '{ext}'")
        con.execute(f"ATTACH '{source}' AS src (TYPE sqlite, READ_ONLY)")
        con.execute(f"CREATE TABLE t AS SELECT * FROM src.{TABLE}")
        con.close()  # includes the checkpoint: the rows are on disk
        best = min(best, time.perf_counter() - t0)
        con = duckdb.connect(str(path), read_only=True)
        row = con.execute("SELECT count(*) FROM t").fetchone()
        rows = int(row[0]) if row else 0
        con.close()
        path.unlink()
    return best, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh (spawned) process: its memory never counts as ours."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a TOML basic string


def region_toml(out: Path, source: Path, port: int, batch_rows: int) -> str:
    """region.toml: the hospitals read LAB_RESULT of one ruixin LIS; everything under ``out``."""
    lines = [
        "[region]", f"data_dir = {_toml_value(out / 'var')}", "",
        "[gateway]", f"receiver_url = {_toml_value(f'http://127.0.0.1:{port}')}",
        f"dir = {_toml_value(out / 'gateway')}", f"keys_dir = {_toml_value(out / 'keys')}",
        f"batch_rows = {batch_rows}", "send_timeout = 600", "",
        "[receiver]", f"listen = {_toml_value(f'127.0.0.1:{port}')}",
        f"warehouse = {_toml_value(out / 'warehouse' / 'warehouse.duckdb')}",
        f"keys_dir = {_toml_value(out / 'keys')}", "max_body_mb = 1024", "",
    ]  # fmt: skip
    for h in HOSPITALS:
        lines += [
            "[[hospitals]]", f'id = "{h}"', f'name = "基准医院{h}"', "",
            "[hospitals.systems.LIS]", f"url = {_toml_value(f'sqlite:///{source}')}",
            'dialect = "ruixin"',
            "tables.LAB_TEST_MASTER = { enabled = false }",
            "tables.LAB_SPECIMEN = { enabled = false }", "",
        ]  # fmt: skip
    return "\n".join(lines)


# --- the receiver in its own process ---------------------------------------------------------


class Receiver:
    """``medfabric receiver serve`` as a child process."""

    def __init__(self, config: Path, url: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MEDFABRIC_KEY_PASSPHRASE"}
        cmd = [
            sys.executable, "-m", "medfabric", "receiver", "serve", "--config", str(config),
            "--log-level", "warning",
        ]  # fmt: skip
        self.url = url
        self.log = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self._log.close()
                raise SystemExit(f"receiver exited ({self.proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("receiver did not answer /healthz within 60 s")
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/status", timeout=120)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def peak_rss(self) -> int:
        """VmHWM of the receiver process, in bytes."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the receiver process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down, the intake closes
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ods_table_of(status: dict[str, Any], hospital: str) -> str:
    for t in status["tables"]:
        if t["hospital_id"] == hospital and t["source_table"] == TABLE:
            return str(t["ods_table"])
    raise SystemExit(f"the receiver has no ODS table for {hospital}.LIS.{TABLE}: {status}")


def profiled(fn: Any, enabled: bool) -> tuple[Any, str]:
    """``fn()`` and, if enabled, the top 10 cumulative entries of its profile."""
    if not enabled:
        return fn(), ""
    prof = cProfile.Profile()
    out = prof.runcall(fn)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(10)
    return out, text.getvalue()


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out/ingest"))
    ap.add_argument("--batch-rows", type=int, default=125_000, help="[gateway] batch_rows")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile the headline cycle")
    args = ap.parse_args()
    n: int = args.rows
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("gateway", "warehouse", "keys", "var", "scratch"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("source.db", "region.toml", "receiver.log", "results.json"):
        (out / name).unlink(missing_ok=True)
    (out / "scratch").mkdir()

    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }
    print(
        f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"DuckDB {machine['duckdb']}; {n:,} source rows, batch_rows {args.batch_rows:,}"
    )

    source = out / "source.db"
    t_gen = in_child(make_source, str(source), n, args.seed)
    print(f"source generated in {t_gen:.1f} s ({source.stat().st_size / 2**20:.0f} MiB)")

    t_ceiling, ceiling_rows, ceiling_rss = in_child(
        ceiling_copy, str(source), str(out / "scratch"), CEILING_RUNS
    )
    assert ceiling_rows == n, f"ceiling copied {ceiling_rows} rows, expected {n}"
    ceiling_rate = n / t_ceiling
    print(f"ceiling: {t_ceiling:.2f} s (best of {CEILING_RUNS}), {ceiling_rate:,.0f} rows/s")

    port = free_port()
    toml_text = region_toml(out, source, port, args.batch_rows)
    config = out / "region.toml"
    config.write_text(toml_text, "utf-8")
    settings: Settings = parse_settings(tomllib.loads(toml_text), source=str(config))
    init_keys(settings.gateway.keys_dir, list(HOSPITALS), passphrase=None)

    receiver = Receiver(config, f"http://127.0.0.1:{port}", out / "receiver.log")
    results: dict[str, Any] = {"machine": machine, "rows": n, "batch_rows": args.batch_rows}
    try:
        # 1. The headline: one full cycle of H01.
        gw = Gateway(settings, "H01")
        cpu0 = (_own_cpu(), receiver.cpu_seconds())
        t0 = time.perf_counter()
        report, profile_text = profiled(
            lambda: gw.cycle(force_send=True, downlink=False), args.profile
        )
        t_e2e = time.perf_counter() - t0
        cpu_gw, cpu_rx = _own_cpu() - cpu0[0], receiver.cpu_seconds() - cpu0[1]
        print(
            f"H01 cycle CPU: gateway {cpu_gw:.1f} s, receiver {cpu_rx:.1f} s "
            f"({(cpu_gw + cpu_rx) / (t_e2e * (os.cpu_count() or 1)):.0%} of the machine)"
        )
        assert not report.errors, report.errors
        assert report.records == n, f"H01 spooled {report.records} records, expected {n}"
        assert report.send.rows == n and report.send.pending == 0, report.send
        e2e_rate = n / t_e2e
        print(f"H01 full cycle: {t_e2e:.2f} s, {e2e_rate:,.0f} records/s")

        # 2. The split: H02, same rows, extract then send.
        gw2 = Gateway(settings, "H02")
        t0 = time.perf_counter()
        ext = gw2.extract()
        t_extract = time.perf_counter() - t0
        assert not ext.errors and ext.records == n, (ext.errors, ext.records)
        spool_bytes = sum(b.bytes for t in ext.tables for b in t.batches)
        batches = sum(len(t.batches) for t in ext.tables)
        t0 = time.perf_counter()
        sent = gw2.uplink.send_pending(force=True)
        t_send = time.perf_counter() - t0
        assert sent.rows == n and sent.pending == 0, sent
        gw2.state.write_snapshot()
        gw2.close()
        print(f"H02 extract {t_extract:.2f} s + send {t_send:.2f} s ({batches} batches)")

        status = receiver.status()
        ods_h01 = ods_table_of(status, "H01")
        ods_h02 = ods_table_of(status, "H02")
        assert status["current_rows"][ods_h01] == n, status["current_rows"]
        assert status["current_rows"][ods_h02] == n, status["current_rows"]
        assert not status["rejections"], status["rejections"]

        # 3. Incremental: 1 % of H01's source rows change (H02 reads the same file but is not
        #    run again).
        con = sqlite3.connect(source)
        cur = con.execute(
            f"UPDATE {TABLE} SET RESULT_VALUE = RESULT_VALUE || '1', LAST_UPDATE_TIME = ? "
            "WHERE rowid % 100 = 0",
            [CHANGED_AT],
        )
        changed = cur.rowcount
        con.commit()
        con.close()
        t0 = time.perf_counter()
        inc = gw.cycle(force_send=True, downlink=False, deletes=False)
        t_inc = time.perf_counter() - t0
        assert not inc.errors, inc.errors
        modes = sorted({t.mode for t in inc.tables})
        rows_read = sum(t.rows_read for t in inc.tables)
        assert inc.records == changed, f"incremental spooled {inc.records}, changed {changed}"
        assert inc.send.rows == changed, inc.send
        gw.close()
        print(
            f"H01 incremental: {changed:,} changed rows, {rows_read:,} read ({', '.join(modes)}),"
            f" {inc.records:,} sent in {t_inc:.2f} s"
        )

        status = receiver.status()
        assert status["current_rows"][ods_h01] == n, status["current_rows"]
        gateway_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        receiver_rss = receiver.peak_rss()
    finally:
        receiver.stop()

    # The independent count, in the warehouse itself.
    wh = duckdb.connect(str(settings.receiver.warehouse), read_only=True)
    try:
        counts = {}
        for name in (ods_h01, ods_h02):
            row = wh.execute(
                f"SELECT count(*) FILTER (WHERE _valid_to IS NULL AND _op = 'upsert'), count(*) "
                f'FROM ods."{name}"'
            ).fetchone()
            assert row is not None
            counts[name] = (int(row[0]), int(row[1]))
    finally:
        wh.close()
    assert counts[ods_h01] == (n, n + changed), counts
    assert counts[ods_h02] == (n, n), counts
    wh_bytes = sum(p.stat().st_size for p in settings.receiver.warehouse.parent.iterdir())

    ratio = e2e_rate / ceiling_rate
    results.update(
        {
            "source_generation_s": t_gen,
            "ceiling_s": t_ceiling,
            "ceiling_rows_per_s": ceiling_rate,
            "ceiling_peak_rss_bytes": ceiling_rss,
            "e2e_s": t_e2e,
            "e2e_cpu_s": {"gateway": cpu_gw, "receiver": cpu_rx},
            "e2e_records_per_s": e2e_rate,
            "e2e_ratio_to_ceiling": ratio,
            "split_extract_s": t_extract,
            "split_send_s": t_send,
            "split_batches": batches,
            "spool_bytes": spool_bytes,
            "warehouse_bytes": wh_bytes,
            "gateway_peak_rss_bytes": gateway_rss,
            "receiver_peak_rss_bytes": receiver_rss,
            "incremental_changed_rows": changed,
            "incremental_rows_read": rows_read,
            "incremental_records_sent": inc.records,
            "incremental_s": t_inc,
            "ods_counts": {k: {"current": c, "versions": v} for k, (c, v) in counts.items()},
        }
    )

    mib = 2**20
    gib = 2**30
    print()
    print(f"{'':46}{'figure':>18}   baseline (same run)")
    print(
        f"{'raw ceiling: sqlite → DuckDB, plain copy':46}{ceiling_rate:>12,.0f} rows/s"
        f"   {t_ceiling:.2f} s, best of {CEILING_RUNS}"
    )
    print(
        f"{'end to end, one full cycle (H01)':46}{e2e_rate:>10,.0f} records/s"
        f"   {t_e2e:.2f} s; {ratio:.1%} of the ceiling"
    )
    print(
        f"{'  extract + hash + sign + seal + spool (H02)':46}{n / t_extract:>10,.0f} records/s"
        f"   {t_extract:.2f} s, {batches} batches, {spool_bytes / mib:.0f} MiB spooled"
    )
    print(
        f"{'  send, verify, land over loopback (H02)':46}{n / t_send:>10,.0f} records/s"
        f"   {t_send:.2f} s; extract + send {t_extract + t_send:.2f} s"
    )
    print(
        f"{'incremental cycle, 1 % changed (H01)':46}{t_inc:>16.2f} s"
        f"   {changed:,} changed, {rows_read:,} read, {inc.records:,} sent"
    )
    print(
        f"{'peak RSS, gateway process':46}{gateway_rss / mib:>14,.0f} MiB"
        f"   ceiling's process {ceiling_rss / mib:,.0f} MiB"
    )
    print(f"{'peak RSS, receiver process':46}{receiver_rss / mib:>14,.0f} MiB")
    print(f"{'ODS after the runs (DuckDB count)':46}{counts[ods_h01][0]:>14,} rows")

    checks = [
        ("end-to-end records/s", f"{e2e_rate:,.0f}", f"≥ {E2E_TARGET_PER_S:,}",
         e2e_rate >= E2E_TARGET_PER_S),
        ("end to end / raw ceiling", f"{ratio:.1%}", f"≥ {RATIO_TARGET:.0%}",
         ratio >= RATIO_TARGET),
        ("peak RSS gateway", f"{gateway_rss / gib:.2f} GiB", "≤ 1.5 GiB",
         gateway_rss <= MEMORY_TARGET_BYTES),
        ("peak RSS receiver", f"{receiver_rss / gib:.2f} GiB", "≤ 1.5 GiB",
         receiver_rss <= MEMORY_TARGET_BYTES),
        ("incremental cycle, 1 % changed", f"{t_inc:.2f} s", f"≤ {INCREMENTAL_TARGET_S:.0f} s",
         t_inc <= INCREMENTAL_TARGET_S),
    ]  # fmt: skip
    if n != 1_000_000:
        print(f"\n(targets are stated for 1,000,000 rows; this run has {n:,})")
    print()
    print(f"{'figure':34}{'measured':>16}{'target':>14}   met?")
    for name, measured, target, met in checks:
        print(f"{name:34}{measured:>16}{target:>14}   {'yes' if met else 'NO'}")
    results["targets"] = [
        {"figure": name, "measured": m, "target": t, "met": met} for name, m, t, met in checks
    ]
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")
    print(f"\nfigures written to {out / 'results.json'}")
    if profile_text:
        print("\nprofile of the H01 full cycle (top 10 cumulative):")
        print(profile_text)
    shutil.rmtree(out / "scratch", ignore_errors=True)


if __name__ == "__main__":
    main()
