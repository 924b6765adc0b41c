"""Change ticks: advance a generated region's clock by whole days.

A tick does what a day does to real hospital systems, so that incremental extraction can be
tested: new visits with their orders, results, studies and notes (and a few new patients);
updates to existing rows (a patient's new phone, a corrected lab result, a stopped order, an
amended report), each with its change-tracking column moved forward; deletions (a cancelled
prescription, a refunded charge) recorded as the dialect records them — a status flag, or a hard
delete; and a few late-arriving rows whose change time lies before the tick started.
Every change is appended to ``truth/changes.csv``.

New rows are written in bulk transactions; the updates and deletions of a hospital run in one
transaction per database, committed together; the manifest (clock, counters) is written last,
so a tick that fails part-way leaves the clock where it was.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from medfabric.simulator.dialects import DIALECTS, Dialect
from medfabric.simulator.hospital import SYSTEMS, HospitalRenderer, HospitalSpec
from medfabric.simulator.people import Person, generate_people
from medfabric.simulator.plan import (
    DAY,
    LocalPatient,
    PlannedVisit,
    Uniforms,
    _age,
    _diagnoses_for,
    _DiagnosisSampler,
    _visit_kind,
    to_seconds,
)
from medfabric.simulator.region import MANIFEST, SimulationError, load_manifest
from medfabric.simulator.schema import TABLE_BY_NAME, key_space

NEW_PATIENT_SHARE = 0.03  # of a tick's visits, made by people the hospital has not seen
PHONE_CHANGES = 0.002  # of registered patients per day
RESULT_CORRECTIONS = 0.003  # of recent results per day
ORDER_STOPS = 0.002
REPORT_AMENDMENTS = 0.01
RX_CANCELLATIONS = 0.004
CHARGE_REFUNDS = 0.002
LATE_ARRIVALS = 0.01  # of the tick's new results
VISITS_PER_PATIENT_YEAR = 1.45  # as generated: about 1.45 visits per registration a year


@dataclass(slots=True)
class TickSummary:
    out: Path
    tick: int
    days: int
    clock: str
    changes: dict[str, dict[str, int]]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _person_from_row(r: dict[str, str]) -> Person:
    return Person(
        person_id=r["person_id"],
        name=r["name"],
        sex=r["sex"],
        birth_date=date.fromisoformat(r["birth_date"]),
        id_type=r["id_type"] or None,
        id_number=r["id_number"] or None,
        nationality=r["nationality"],
        ethnicity=r["ethnicity"] or None,
        marital_status=r["marital_status"],
        phone=r["phone"] or None,
        address=r["address"],
        region_code=r["region_code"],
        kind=r["kind"],
    )


class _Changes:
    def __init__(self, tick: int) -> None:
        self.tick = tick
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        hid: str,
        system: str,
        table: str,
        d: Dialect,
        local_key: Any,
        op: str,
        detail: str = "",
    ) -> None:
        self.rows.append(
            (self.tick, hid, system, table, d.table_name(table), local_key, op, detail)
        )


def tick_region(out: Path, *, days: int = 1) -> TickSummary:
    """Advance the region in ``out`` by ``days`` days.

    Raises:
        SimulationError: ``out`` is not a region, or ``days`` < 1.
    """
    if days < 1:
        raise SimulationError(f"--days must be at least 1 (got {days})")
    out = out.resolve()
    manifest = load_manifest(out)
    tick = int(manifest["ticks"]) + 1
    start = int(manifest["clock"])
    end = start + days * DAY
    seed = int(manifest["seed"])
    rng = np.random.default_rng([seed, 7000 + tick])
    truth = out / "truth"
    person_rows = _read_csv(truth / "persons.csv")
    people = [_person_from_row(r) for r in person_rows]
    index_of = {p.person_id: i for i, p in enumerate(people)}
    chronic = [tuple(r["chronic"].split()) for r in person_rows]
    patient_rows = _read_csv(truth / "patients.csv")
    changes = _Changes(tick)
    sampler = _DiagnosisSampler()
    new_people: list[Person] = []
    new_patient_rows: list[tuple[Any, ...]] = []
    for h in manifest["hospitals"]:
        spec = HospitalSpec(
            index=int(h["id"][1:]) - 1,
            id=h["id"],
            name=h["name"],
            dialects=h["dialects"],
            root=out,
            seed=seed + 1000 * tick,
            write_dicom=bool(manifest["options"]["dicom"]),
        )
        h["counters"] = _tick_hospital(
            spec,
            h["counters"],
            rng,
            start,
            end,
            people,
            index_of,
            chronic,
            patient_rows,
            sampler,
            changes,
            new_people,
            new_patient_rows,
        )
    _append_csv(
        truth / "persons.csv",
        [
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
                hid,
                "",
            )
            for p, hid in new_people_with_hospital(new_people, new_patient_rows)
        ],
    )
    _append_csv(truth / "patients.csv", new_patient_rows)
    _append_csv(truth / "changes.csv", changes.rows)
    manifest["clock"] = end
    manifest["clock_iso"] = date.fromordinal(date(1970, 1, 1).toordinal() + end // DAY).isoformat()
    manifest["ticks"] = tick
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), "utf-8")
    per: dict[str, Counter[str]] = {}
    for row in changes.rows:
        per.setdefault(row[1], Counter())[str(row[6]).split("_")[0]] += 1
    return TickSummary(out, tick, days, manifest["clock_iso"], {k: dict(v) for k, v in per.items()})


def new_people_with_hospital(
    people: list[Person], patient_rows: list[tuple[Any, ...]]
) -> list[tuple[Person, str]]:
    hosp = {r[2]: r[0] for r in patient_rows}
    return [(p, hosp[p.person_id]) for p in people]


def _append_csv(path: Path, rows: list[tuple[Any, ...]]) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def _tick_hospital(
    spec: HospitalSpec,
    counters: dict[str, int],
    rng: np.random.Generator,
    start: int,
    end: int,
    people: list[Person],
    index_of: dict[str, int],
    chronic: list[tuple[str, ...]],
    patient_rows: list[dict[str, str]],
    sampler: _DiagnosisSampler,
    changes: _Changes,
    new_people: list[Person],
    new_patient_rows: list[tuple[Any, ...]],
) -> dict[str, int]:
    his = DIALECTS[spec.dialects["HIS"]]
    before = dict(counters)
    renderer = HospitalRenderer(spec, as_of=end, counters=counters)
    renderer.open(bulk=False)
    renderer.load_departments()
    locals_: list[LocalPatient] = []
    for r in patient_rows:
        if r["hospital"] != spec.id:
            continue
        pi = index_of[r["person_id"]]
        record = replace(
            people[pi],
            name=r["name"],
            sex=r["sex"],
            birth_date=date.fromisoformat(r["birth_date"]),
            id_number=r["id_number"] or None,
            phone=r["phone"] or None,
        )
        lp = LocalPatient(
            spec.index,
            his.parse_key("patient", r["local_patient_id"]),
            pi,
            record,
            tuple(r["variations"].split()),
        )
        locals_.append(lp)
        renderer.patients[lp.local_id] = lp
    rate = len(locals_) * VISITS_PER_PATIENT_YEAR / 365
    n_visits = max(1, int(rng.poisson(rate * (end - start) / DAY)))
    n_new = int(rng.binomial(n_visits, NEW_PATIENT_SHARE))
    as_of = date.fromordinal(date(1970, 1, 1).toordinal() + end // DAY)
    if n_new:
        tick_day = date.fromordinal(date(1970, 1, 1).toordinal() + start // DAY)
        fresh = generate_people(rng, n_new, as_of=tick_day, first_index=len(people) + 1)
        fresh_lps = []
        for p in fresh:
            pid = f"P{len(people) + 1:08d}"
            p = replace(p, person_id=pid)
            index_of[pid] = len(people)
            people.append(p)
            chronic.append(())
            new_people.append(p)
            lp = LocalPatient(spec.index, counters.get("patient", 0) + 1, len(people) - 1, p, ())
            counters["patient"] = lp.local_id
            fresh_lps.append(lp)
            new_patient_rows.append(
                (
                    spec.id,
                    his.format_keys("patient", [lp.local_id])[0],
                    pid,
                    p.name,
                    p.sex,
                    p.birth_date.isoformat(),
                    p.id_number or "",
                    p.phone or "",
                    "",
                    "",
                )
            )
        renderer.write_patients(fresh_lps, start + int(rng.integers(0, end - start)))
        locals_ += fresh_lps
    candidates = [lp for lp in locals_ if lp.duplicate_of is None]
    uni = Uniforms(rng)
    visits = []
    for _ in range(n_visits):
        lp = candidates[int(rng.integers(0, len(candidates)))]
        person = lp.record
        age = _age(person.birth_date, as_of)
        dx = _diagnoses_for(uni, sampler, person, chronic[lp.person_index], age)
        prof = sampler.profile(dx[0])
        kind = _visit_kind(uni, prof)
        stay = int(rng.integers(prof.stay[0], prof.stay[1] + 1)) if kind == "3" else 0
        born = max(person.birth_date, people[lp.person_index].birth_date)
        t = max(start + int(rng.integers(0, end - start)), to_seconds(born) + DAY)
        if t >= end:
            continue
        visits.append(PlannedVisit(t, lp.local_id, kind, dx, stay))
    visits.sort(key=lambda v: (v.time, v.patient))
    base = counters.get("visit", 0)
    for i, v in enumerate(visits, start=1):
        v.key = base + i
    renderer.render(visits)
    for w in renderer.writers.values():
        w.flush()
    _record_inserts(spec, renderer, before, visits, changes)
    conns = [w.conn for w in renderer.writers.values()]
    for conn in conns:
        conn.execute("BEGIN")
    try:
        _updates_and_deletes(spec, renderer, before, rng, start, end, changes)
    except BaseException:
        for conn in conns:
            conn.execute("ROLLBACK")
        raise
    for conn in conns:
        conn.execute("COMMIT")
    result = renderer.close()
    return result.counters


def _record_inserts(
    spec: HospitalSpec,
    renderer: HospitalRenderer,
    before: dict[str, int],
    visits: list[PlannedVisit],
    changes: _Changes,
) -> None:
    kinds = {v.key: v.kind for v in visits}
    for space, now in renderer.counters.items():
        for key in range(before.get(space, 0) + 1, now + 1):
            if space == "visit":
                table = "admission" if kinds.get(key) == "3" else "outpatient_visit"
            else:
                table = space
            system = TABLE_BY_NAME[table].system
            d = renderer.d[system]
            changes.add(spec.id, system, table, d, d.format_keys(space, [key])[0], "insert")


def _updates_and_deletes(
    spec: HospitalSpec,
    renderer: HospitalRenderer,
    before: dict[str, int],
    rng: np.random.Generator,
    start: int,
    end: int,
    changes: _Changes,
) -> None:
    days = (end - start) // DAY

    def stamp() -> int:
        return start + int(rng.integers(0, end - start))

    def sample(space: str, rate: float, window: int | None = None) -> list[int]:
        top = before.get(space, 0)
        low = max(1, top - window) if window else 1
        if top < low:
            return []
        n = int(rng.binomial(top - low + 1, min(1.0, rate * days)))
        return sorted({int(k) for k in rng.integers(low, top + 1, size=n)})

    for key in sample("patient", PHONE_CHANGES):
        phone = (
            f"1{int(rng.choice([38, 39, 58, 59, 86, 88, 77, 99]))}{int(rng.integers(0, 10**8)):08d}"
        )
        _update(
            spec,
            renderer,
            "HIS",
            "patient",
            key,
            {"phone": phone},
            stamp(),
            changes,
            "phone changed",
        )
    for key in sample("lab_result", RESULT_CORRECTIONS, window=20_000):
        _correct_result(spec, renderer, key, stamp(), changes)
    for key in sample("medical_order", ORDER_STOPS, window=50_000):
        _update(
            spec,
            renderer,
            "HIS",
            "medical_order",
            key,
            {"status": "4"},
            stamp(),
            changes,
            "order stopped",
        )
    for key in sample("exam_report", REPORT_AMENDMENTS, window=5_000):
        _update(
            spec,
            renderer,
            "PACS",
            "exam_report",
            key,
            {"status": "C"},
            stamp(),
            changes,
            "report amended",
        )
    for key in sample("prescription", RX_CANCELLATIONS, window=50_000):
        _delete(spec, renderer, "HIS", "prescription", key, stamp(), changes, "cancelled")
    for key in sample("charge", CHARGE_REFUNDS, window=100_000):
        _delete(spec, renderer, "HIS", "charge", key, stamp(), changes, "refunded")
    # Late arrivals: rows of this tick committed with a change time before the tick began.
    lis = renderer.d["LIS"]
    new_results = range(before.get("lab_result", 0) + 1, renderer.counters.get("lab_result", 0) + 1)
    conn = renderer.writers["LIS"].conn
    table = TABLE_BY_NAME["lab_result"]
    for key in new_results:
        if rng.random() < LATE_ARRIVALS:
            late = start - int(rng.integers(10, 180)) * 60
            local = lis.format_keys("lab_result", [key])[0]
            conn.execute(
                f'UPDATE "{lis.table_name("lab_result")}" SET "{lis.updated_column}" = ? '
                f'WHERE "{lis.column_name("lab_result", table.key)}" = ?',
                (lis.format_datetimes([late])[0], local),
            )
            changes.add(
                spec.id,
                "LIS",
                "lab_result",
                lis,
                local,
                "insert_late",
                "change time before the tick began",
            )


def _where(d: Dialect, table: str) -> str:
    return f'"{d.column_name(table, TABLE_BY_NAME[table].key)}" = ?'


def _update(
    spec: HospitalSpec,
    renderer: HospitalRenderer,
    system: str,
    table: str,
    key: int,
    values: dict[str, Any],
    when: int,
    changes: _Changes,
    detail: str,
) -> None:
    d = renderer.d[system]
    t = TABLE_BY_NAME[table]
    local = d.format_keys(key_space(table), [key])[0]
    sets, params = [], []
    for col, v in values.items():
        column = t.columns[t.index(col)]
        domain = column.code_domain
        stored = d.local_codes(domain).get(v, v) if domain else v
        sets.append(f'"{d.column_name(table, col)}" = ?')
        params.append(stored)
    sets.append(f'"{d.updated_column}" = ?')
    params.append(d.format_datetimes([when])[0])
    live = ""
    if d.flag_column:
        live = f' AND "{d.flag_column}" = ?'
        params_tail = [local, d.flag_live]
    else:
        params_tail = [local]
    cur = renderer.writers[system].conn.execute(
        f'UPDATE "{d.table_name(table)}" SET {", ".join(sets)} WHERE {_where(d, table)}{live}',
        (*params, *params_tail),
    )
    if cur.rowcount:
        changes.add(spec.id, system, table, d, local, "update", detail)


def _correct_result(
    spec: HospitalSpec, renderer: HospitalRenderer, key: int, when: int, changes: _Changes
) -> None:
    d = renderer.d["LIS"]
    local = d.format_keys("lab_result", [key])[0]
    vcol = d.column_name("lab_result", "value")
    row = (
        renderer.writers["LIS"]
        .conn.execute(
            f'SELECT "{vcol}" FROM "{d.table_name("lab_result")}" WHERE {_where(d, "lab_result")}',
            (local,),
        )
        .fetchone()
    )
    if row is None or row[0] is None:
        return
    try:
        text = str(row[0])
        decimals = len(text.split(".")[1]) if "." in text else 0
        new = f"{float(text) * 1.08:.{decimals}f}"
    except ValueError:
        new = "阴性" if row[0] != "阴性" else "+"
    _update(
        spec,
        renderer,
        "LIS",
        "lab_result",
        key,
        {"value": new, "status": "C"},
        when,
        changes,
        f"corrected {row[0]} → {new}",
    )


def _delete(
    spec: HospitalSpec,
    renderer: HospitalRenderer,
    system: str,
    table: str,
    key: int,
    when: int,
    changes: _Changes,
    detail: str,
) -> None:
    d = renderer.d[system]
    local = d.format_keys(key_space(table), [key])[0]
    conn = renderer.writers[system].conn
    if d.delete_mode == "hard":
        cur = conn.execute(
            f'DELETE FROM "{d.table_name(table)}" WHERE {_where(d, table)}', (local,)
        )
    else:
        cur = conn.execute(
            f'UPDATE "{d.table_name(table)}" SET "{d.flag_column}" = ?, "{d.updated_column}" = ? '
            f'WHERE {_where(d, table)} AND "{d.flag_column}" = ?',
            (d.flag_deleted, d.format_datetimes([when])[0], local, d.flag_live),
        )
    if cur.rowcount:
        changes.add(spec.id, system, table, d, local, "delete", f"{detail} ({d.delete_mode})")


__all__ = ["SYSTEMS", "TickSummary", "tick_region"]
