"""Generate a whole region: plan, render each hospital (in worker processes), write the truth.

Output folder layout (``--out``)::

    region.json          manifest: options, seed, clock, key counters, hospitals, format version
    region.toml          settings for the generated hospitals (systems, URLs, dialects)
    H01/his.db lis.db pacs.db emr.db   one SQLite database per source system
    H01/dicom/...        DICOM files written by the PACS
    truth/               ground truth, kept apart from what a hospital would expose:
      persons.csv        the true people
      patients.csv       every local registration → person (with the variations applied)
      code_maps.csv      local code → standard code, per dialect and domain
      defects.csv        every injected defect with the row's local key
      repeat_tests.csv   the same test done at two hospitals within days
      note_facts/H01.csv what each EMR note states (character offsets)
      changes.csv        what each change tick inserted, updated and deleted

The folder is built beside its destination and renamed into place only when complete, so an
interrupted or failed run leaves nothing half-written; an existing region is replaced, and a
folder holding anything else is refused.
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing as mp
import os
import pickle
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from medfabric.simulator.dialects import DIALECTS, standard_codes
from medfabric.simulator.hospital import SYSTEMS, HospitalRenderer, HospitalResult, HospitalSpec
from medfabric.simulator.plan import RegionPlan, plan_region, to_seconds
from medfabric.simulator.profiles import profiles
from medfabric.simulator.schema import SYSTEM_TABLES

FORMAT_VERSION = 1
MANIFEST = "region.json"
DIALECT_ORDER = ("ruixin", "kangning", "yunhai")
HOSPITAL_NAMES = (
    "榕城第一人民医院",
    "闽江中心医院",
    "鼓山人民医院",
    "福新区中医院",
    "三坊医院",
    "乌山妇幼保健院",
    "晋安区第二医院",
    "马尾港口医院",
    "仓山区人民医院",
    "长乐滨海医院",
    "闽侯县总医院",
    "福清市医院",
)

ProgressFn = Callable[[str, int, int], None]


class SimulationError(Exception):
    """Bad simulator options or output folder; nothing was written."""


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    hospitals: int = 5
    patients: int = 20_000
    seed: int = 7
    shared_share: float = 0.30
    start_date: date = date(2025, 1, 1)
    days: int = 365
    out: Path = Path("var/region")
    workers: int = 2
    dicom: bool = True
    home_city: str = "350100"
    region_name: str = "榕城区域健康医疗大数据平台"

    def validate(self) -> None:
        """Raise SimulationError naming the first bad option."""
        checks = [
            (self.hospitals >= 1, f"--hospitals must be at least 1 (got {self.hospitals})"),
            (self.hospitals <= 60, f"--hospitals must be at most 60 (got {self.hospitals})"),
            (self.patients >= 1, f"--patients must be at least 1 (got {self.patients})"),
            (self.days >= 1, f"--days must be at least 1 (got {self.days})"),
            (
                0.0 <= self.shared_share <= 1.0,
                f"--shared-share must be between 0 and 1 (got {self.shared_share})",
            ),
            (self.workers >= 1, f"--workers must be at least 1 (got {self.workers})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SimulationError(msg)


@dataclass(slots=True)
class RegionSummary:
    out: Path
    hospitals: list[dict[str, Any]]
    people: int
    local_patients: int
    shared_people: int
    visits: int
    rows: dict[str, dict[str, int]]  # "H01/HIS" → table → rows
    defects: dict[str, int]
    repeats: int
    dicom_files: int
    notes: int
    note_facts: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def hospital_specs(opts: SimulationOptions, root: Path) -> list[HospitalSpec]:
    """Hospitals H01.. with their names and the dialect of each system (vendors rotate)."""
    specs = []
    for i in range(opts.hospitals):
        hid = f"H{i + 1:02d}"
        name = HOSPITAL_NAMES[i] if i < len(HOSPITAL_NAMES) else f"榕城第{i + 1}医院"
        dialects = {s: DIALECT_ORDER[(i + j) % len(DIALECT_ORDER)] for j, s in enumerate(SYSTEMS)}
        specs.append(HospitalSpec(i, hid, name, dialects, root, opts.seed, opts.dicom))
    return specs


def check_output(out: Path) -> None:
    """Refuse an output path that is a file or a non-empty folder that is not a region."""
    if out.exists() and not out.is_dir():
        raise SimulationError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise SimulationError(
            f"{out} is not empty and holds no {MANIFEST}: refusing to overwrite something that "
            "is not a region (choose another --out or empty it)"
        )


PLAN_DIR = ".plan"  # per-hospital plan slices, inside the folder being built


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What the rest of the run needs to know of the plan (the plan itself stays on disk)."""

    start: int
    end: int
    people: int
    local_patients: int
    shared_people: int
    visits: list[int]  # per hospital
    repeats: int


def _slice_path(root: Path, index: int) -> Path:
    return root / PLAN_DIR / f"{index:03d}.pickle"


def run_plan(opts: SimulationOptions, root: Path) -> PlanSummary:
    """Plan the region, write the plan's truth files and one plan slice per hospital.

    Run in its own process for large regions: the plan's memory is returned to the system
    when that process ends, and each hospital worker later loads only its own slice.
    """
    plan = plan_region(
        seed=opts.seed,
        hospitals=opts.hospitals,
        patients_per_hospital=opts.patients,
        shared_share=opts.shared_share,
        start=opts.start_date,
        days=opts.days,
        home_city=opts.home_city,
    )
    specs = hospital_specs(opts, root)
    write_plan_truth(root, plan, specs)
    (root / PLAN_DIR).mkdir(exist_ok=True)
    for i in range(plan.hospitals):
        with _slice_path(root, i).open("wb") as f:
            pickle.dump((plan.start, plan.end, plan.patients[i], plan.visits[i]), f, protocol=5)
    return PlanSummary(
        start=plan.start,
        end=plan.end,
        people=len(plan.people),
        local_patients=sum(len(p) for p in plan.patients),
        shared_people=sum(1 for h in plan.homes if len(h) > 1),
        visits=[len(v) for v in plan.visits],
        repeats=len(plan.repeats),
    )


def _plan_in_child(opts: SimulationOptions, root: Path) -> PlanSummary:
    # An executor, not a Pool: a child killed by the kernel (out of memory) raises
    # BrokenProcessPool here instead of leaving the parent waiting forever.
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as ex:
        try:
            return ex.submit(run_plan, opts, root).result()
        except BrokenProcessPool as exc:
            raise SimulationError("the planning process died (out of memory?)") from exc


# Worker state, set before the pool forks: the specs and a shared progress counter.
_SPECS: list[HospitalSpec] = []
_PROGRESS: Any = None


def _render_hospital(index: int) -> HospitalResult:
    spec = _SPECS[index]
    with _slice_path(spec.root, index).open("rb") as f:
        start, end, patients, visits = pickle.load(f)
    renderer = HospitalRenderer(spec, as_of=end)
    renderer.open(bulk=True)
    needed = sorted({p.department for p in profiles().values()})
    renderer.setup_departments(needed, start - 400 * 86_400)
    renderer.write_patients(patients, start)
    step = 500
    for i in range(0, len(visits), step):
        renderer.render(visits[i : i + step])
        if _PROGRESS is not None:
            with _PROGRESS.get_lock():
                _PROGRESS.value += len(visits[i : i + step])
    return renderer.close()


@contextlib.contextmanager
def _building(out: Path) -> Iterator[Path]:
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def simulate_region(opts: SimulationOptions, progress: ProgressFn | None = None) -> RegionSummary:
    """Generate a region into ``opts.out``; see the module docstring for the layout.

    Raises:
        SimulationError: invalid options or an output folder that is not a region.
    """
    opts.validate()
    out = opts.out.resolve()
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with _building(out) as tmp:
        if progress:
            progress("plan", 0, 1)
        summary = _plan_in_child(opts, tmp) if opts.workers > 1 else run_plan(opts, tmp)
        timings["plan"] = time.perf_counter() - t0
        specs = hospital_specs(opts, tmp)
        total_visits = sum(summary.visits)
        if progress:
            progress("plan", 1, 1)
            progress("visits", 0, total_visits)
        t1 = time.perf_counter()
        results = _render_all(specs, opts.workers, summary.visits, progress)
        timings["hospitals"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        shutil.rmtree(tmp / PLAN_DIR)
        summary_defects = write_render_truth(tmp, specs, results)
        final_specs = hospital_specs(opts, out)
        write_manifest(tmp, opts, summary.end, final_specs, results)
        write_region_toml(tmp, opts, final_specs)
        timings["truth"] = time.perf_counter() - t2
    rows: dict[str, dict[str, int]] = {}
    for spec, res in zip(specs, results, strict=True):
        for system, tables in res.rows.items():
            rows[f"{spec.id}/{system}"] = tables
    return RegionSummary(
        out=out,
        hospitals=[{"id": s.id, "name": s.name, "dialects": dict(s.dialects)} for s in specs],
        people=summary.people,
        local_patients=summary.local_patients,
        shared_people=summary.shared_people,
        visits=total_visits,
        rows=rows,
        defects=summary_defects,
        repeats=summary.repeats,
        dicom_files=sum(r.dicom_files for r in results),
        notes=sum(r.notes for r in results),
        note_facts=sum(r.note_facts for r in results),
        seconds=time.perf_counter() - t0,
        timings=timings,
    )


def _render_all(
    specs: list[HospitalSpec],
    workers: int,
    visits: list[int],
    progress: ProgressFn | None,
) -> list[HospitalResult]:
    global _SPECS, _PROGRESS
    _SPECS = specs
    total = sum(visits)
    try:
        if workers <= 1 or len(specs) == 1:
            _PROGRESS = None
            results = []
            done = 0
            for i in range(len(specs)):
                results.append(_render_hospital(i))
                done += visits[i]
                if progress:
                    progress("visits", done, total)
            return results
        ctx = mp.get_context("fork")
        _PROGRESS = ctx.Value("q", 0)
        # Largest hospitals first, so the last round is not one big hospital on one core.
        order = sorted(range(len(specs)), key=lambda i: -visits[i])
        by_index: dict[int, HospitalResult] = {}
        with ProcessPoolExecutor(min(workers, len(specs)), mp_context=ctx) as ex:
            futures = {ex.submit(_render_hospital, i): i for i in order}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in finished:
                    try:
                        by_index[futures[f]] = f.result()
                    except BrokenProcessPool as exc:
                        raise SimulationError(
                            f"the worker writing {specs[futures[f]].id} died (out of memory?)"
                        ) from exc
                if progress:
                    progress("visits", int(_PROGRESS.value), total)
        if progress:
            progress("visits", total, total)
        return [by_index[i] for i in range(len(specs))]
    finally:
        _SPECS, _PROGRESS = [], None


def _write_csv(path: Path, header: list[str], rows: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_plan_truth(root: Path, plan: RegionPlan, specs: list[HospitalSpec]) -> None:
    """Truth that comes from the plan: persons, registrations, repeated tests."""
    truth = root / "truth"
    _write_csv(
        truth / "persons.csv",
        [
            "person_id",
            "name",
            "sex",
            "birth_date",
            "id_type",
            "id_number",
            "nationality",
            "ethnicity",
            "marital_status",
            "phone",
            "address",
            "region_code",
            "kind",
            "hospitals",
            "chronic",
        ],
        (
            (
                p.person_id,
                p.name,
                p.sex,
                p.birth_date.isoformat(),
                p.id_type or "",
                p.id_number or "",
                p.nationality,
                p.ethnicity or "",
                p.marital_status,
                p.phone or "",
                p.address,
                p.region_code,
                p.kind,
                " ".join(specs[h].id for h in homes),
                " ".join(chronic),
            )
            for p, homes, chronic in zip(plan.people, plan.homes, plan.chronic, strict=True)
        ),
    )
    rows = []
    for spec, patients in zip(specs, plan.patients, strict=True):
        his = DIALECTS[spec.dialects["HIS"]]
        keys = his.format_keys("patient", [lp.local_id for lp in patients])
        for lp, key in zip(patients, keys, strict=True):
            r = lp.record
            dup = his.format_keys("patient", [lp.duplicate_of])[0] if lp.duplicate_of else ""
            rows.append(
                (
                    spec.id,
                    key,
                    plan.people[lp.person_index].person_id,
                    r.name,
                    r.sex,
                    r.birth_date.isoformat(),
                    r.id_number or "",
                    r.phone or "",
                    " ".join(lp.variations),
                    dup,
                )
            )
    _write_csv(
        truth / "patients.csv",
        [
            "hospital",
            "local_patient_id",
            "person_id",
            "name",
            "sex",
            "birth_date",
            "id_number",
            "phone",
            "variations",
            "duplicate_of",
        ],
        rows,
    )
    rep_rows = []
    for c in plan.repeats:
        a, b = specs[c.first_hospital], specs[c.second_hospital]
        fmt_a = DIALECTS[a.dialects["HIS"]].format_keys("visit", [c.first_visit.key])[0]
        fmt_b = DIALECTS[b.dialects["HIS"]].format_keys("visit", [c.second_visit.key])[0]
        gap_h = (c.second_visit.time - c.first_visit.time) / 3600
        rep_rows.append(
            (c.person_id, c.item_kind, c.item_code, a.id, fmt_a, b.id, fmt_b, f"{gap_h / 24:.2f}")
        )
    _write_csv(
        truth / "repeat_tests.csv",
        [
            "person_id",
            "item_kind",
            "item_code",
            "first_hospital",
            "first_visit",
            "second_hospital",
            "second_visit",
            "days_apart",
        ],
        rep_rows,
    )


def write_render_truth(
    root: Path, specs: list[HospitalSpec], results: list[HospitalResult]
) -> dict[str, int]:
    """Truth that comes from rendering: code maps, defects; returns defect counts by kind."""
    truth = root / "truth"
    code_rows = []
    for name in sorted({d for s in specs for d in s.dialects.values()}):
        dialect = DIALECTS[name]
        for domain in _domains():
            for std, local in dialect.local_codes(domain).items():
                code_rows.append((name, domain, local, std))
        for item, unit in sorted(dialect.unit_overrides.items()):
            code_rows.append((name, "lab_unit", f"{item}:{unit}", item))
    _write_csv(
        truth / "code_maps.csv", ["dialect", "domain", "local_code", "standard_code"], code_rows
    )
    defects = [d for r in results for d in r.defects]
    _write_csv(
        truth / "defects.csv",
        ["hospital", "system", "table", "source_table", "local_key", "column", "defect", "detail"],
        defects,
    )
    _write_csv(
        truth / "changes.csv",
        ["tick", "hospital", "system", "table", "source_table", "local_key", "op", "detail"],
        [],
    )
    return dict(Counter(d[6] for d in defects))


def _domains() -> list[str]:
    out = []
    for tables in SYSTEM_TABLES.values():
        for t in tables:
            for c in t.columns:
                if c.code_domain and c.code_domain not in out:
                    out.append(c.code_domain)
    for extra in ("drug", "exam", "lab_panel"):
        if extra not in out:
            out.append(extra)
    return [d for d in out if standard_codes(d)]


def write_manifest(
    root: Path,
    opts: SimulationOptions,
    clock: int,
    specs: list[HospitalSpec],
    results: list[HospitalResult],
) -> None:
    manifest = {
        "format": "medfabric-region",
        "format_version": FORMAT_VERSION,
        "name": opts.region_name,
        "home_city": opts.home_city,
        "seed": opts.seed,
        "options": {
            "hospitals": opts.hospitals,
            "patients": opts.patients,
            "shared_share": opts.shared_share,
            "start_date": opts.start_date.isoformat(),
            "days": opts.days,
            "dicom": opts.dicom,
        },
        "clock": clock,
        "clock_iso": date.fromordinal(date(1970, 1, 1).toordinal() + clock // 86_400).isoformat(),
        "ticks": 0,
        "hospitals": [
            {"id": s.id, "name": s.name, "dialects": dict(s.dialects), "counters": r.counters}
            for s, r in zip(specs, results, strict=True)
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), "utf-8")


def write_region_toml(root: Path, opts: SimulationOptions, specs: list[HospitalSpec]) -> None:
    lines = [
        "# Generated by `medfabric simulate`: the hospitals of this synthetic region and their",
        "# source systems. Point the gateway at this file (see docs/simulator.md).",
        "[region]",
        f'name = "{opts.region_name}"',
        f'code = "{opts.home_city}"',
        "",
    ]
    if specs:
        final = specs[0].dir.parent
        lines += [
            "# Gateways and receiver keep their state beside the region (see docs/gateway.md).",
            "[gateway]",
            'receiver_url = "http://127.0.0.1:8470"',
            f'dir = "{final / "gateway"}"',
            f'keys_dir = "{final / "keys"}"',
            "",
            "[receiver]",
            'listen = "127.0.0.1:8470"',
            f'warehouse = "{final / "warehouse" / "warehouse.duckdb"}"',
            f'keys_dir = "{final / "keys"}"',
            "",
            "# Notarization on the ledger (docs/ledger.md): uncomment once a cluster exists, e.g.",
            f"# `medfabric ledger init --dir {final / 'ledger'} --hospital-keys {final / 'keys'}`.",
            "# [ledger]",
            f'# dir = "{final / "ledger"}"',
            "",
        ]
    for s in specs:
        lines += ["[[hospitals]]", f'id = "{s.id}"', f'name = "{s.name}"', ""]
        for system in SYSTEMS:
            url = "sqlite:///" + str(s.dir / f"{system.lower()}.db")
            lines += [
                f"[hospitals.systems.{system}]",
                f'url = "{url}"',
                f'dialect = "{s.dialects[system]}"',
                "",
            ]
    (root / "region.toml").write_text("\n".join(lines), "utf-8")


def load_manifest(out: Path) -> dict[str, Any]:
    """The manifest of an existing region; SimulationError when ``out`` is not a region."""
    path = out / MANIFEST
    if not path.is_file():
        raise SimulationError(f"{out} is not a region (no {MANIFEST}); run `medfabric simulate`")
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    if data.get("format") != "medfabric-region" or data.get("format_version") != FORMAT_VERSION:
        raise SimulationError(f"{path}: not a medfabric region manifest of format {FORMAT_VERSION}")
    return data


__all__ = [
    "RegionSummary",
    "SimulationError",
    "SimulationOptions",
    "check_output",
    "load_manifest",
    "simulate_region",
    "to_seconds",
]
