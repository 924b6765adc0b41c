"""Render one hospital's planned visits into its four source databases.

For each visit, in time order: the HIS visit or admission, diagnoses, orders, prescriptions and
charges; the LIS request, specimen and results; the PACS request, study, series, instances (DICOM
files on disk) and report; the EMR documents. Defects are injected as rows are made, each one
recorded in the ground truth with the row's local key. Keys grow with time in every table, as a
real system's sequences do.

Values that must agree across hospitals (a person's lab baseline) come from a hash of the person
and item, not from the hospital's generator, so a result repeated elsewhere days later is close.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from medfabric.simulator import dicom, notes
from medfabric.simulator.dialects import DIALECTS, Dialect
from medfabric.simulator.plan import DAY, LocalPatient, PlannedVisit, Uniforms, to_datetime
from medfabric.simulator.profiles import Profile, profiles
from medfabric.simulator.writer import SystemWriter
from medfabric.standards import codes
from medfabric.standards.codes import LabItem

SYSTEMS = ("HIS", "LIS", "PACS", "EMR")
FLUSH_EVERY = 5_000  # visits between flushes: bounds memory on large regions

DEFECT_RATES: dict[str, float] = {
    "patient.missing_required": 0.003,
    "patient.out_of_range": 0.001,
    "visit.future_date": 0.001,
    "admission.discharge_before_admission": 0.03,
    "diagnosis.invalid_code": 0.002,
    "lab_result.out_of_range": 0.001,
    "lab_result.wrong_unit": 0.003,
    "lab_result.missing_required": 0.001,
    "lab_result.duplicate": 0.001,
}
EXAM_PRICE = {"CT": 320.0, "MR": 650.0, "XR": 90.0, "US": 140.0, "ENDO": 420.0, "ECG": 30.0}
# Profiles give order probabilities for a work-up; a routine outpatient follow-up orders less.
OUTPATIENT_ORDER_INTENSITY = 0.3
OUTPATIENT_EXAM_INTENSITY = 0.12
PROGRESS_NOTES = 2  # progress notes written in the first days of an admission
ROUTINE_ADMISSION_PANELS = {"CBC": 0.95, "LFT": 0.8, "RFT": 0.8, "ELEC": 0.7, "COAG": 0.6}


_P_OUT_OF_RANGE = DEFECT_RATES["lab_result.out_of_range"]
_P_WRONG_UNIT = _P_OUT_OF_RANGE + DEFECT_RATES["lab_result.wrong_unit"]
_P_MISSING = _P_WRONG_UNIT + DEFECT_RATES["lab_result.missing_required"]
_P_DUPLICATE = _P_MISSING + DEFECT_RATES["lab_result.duplicate"]


@dataclass(frozen=True, slots=True)
class _ItemSpec:
    """A lab item as one LIS reports it to one sex: unit, factor, decimals, reference text."""

    code: str
    item: LabItem
    name: str
    unit: str
    factor: float
    decimals: int
    ref: str
    lo: float | None
    hi: float | None
    other_unit: str
    other_factor: float


@dataclass(frozen=True, slots=True)
class HospitalSpec:
    index: int
    id: str
    name: str
    dialects: Mapping[str, str]  # system → dialect name
    root: Path  # the region folder being written
    seed: int
    write_dicom: bool = True

    @property
    def dir(self) -> Path:
        return self.root / self.id


@dataclass(slots=True)
class HospitalResult:
    id: str
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # system → table → rows
    defects: list[tuple[str, ...]] = field(default_factory=list)
    dicom_files: int = 0
    notes: int = 0
    note_facts: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def _hash_unit(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (stable across processes and runs)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


_NORMAL = NormalDist()
_Z_TABLE = tuple(_NORMAL.inv_cdf((i + 0.5) / 4096) for i in range(4096))


def _hash_z(person: int, item: str) -> float:
    """A standard-normal number fixed for a person and a lab item (the person's baseline)."""
    return _Z_TABLE[zlib.crc32(f"{person}|{item}".encode()) & 4095]


def _age(birth: date, at: date) -> int:
    return max(0, at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day)))


def department_name(std_name: str) -> str:
    """'内分泌专业' → '内分泌科', '呼吸内科专业' → '呼吸内科' (how hospitals name their clinics)."""
    name = std_name.removesuffix("专业")
    return name if name.endswith("科") else name + "科"


class HospitalRenderer:
    """Writes one hospital. Use :meth:`render` with the hospital's plan slice."""

    def __init__(self, spec: HospitalSpec, *, as_of: int, counters: dict[str, int] | None = None):
        self.spec = spec
        self.as_of = as_of
        self.rng = np.random.default_rng([spec.seed, 100 + spec.index])
        self.d: dict[str, Dialect] = {s: DIALECTS[spec.dialects[s]] for s in SYSTEMS}
        self.counters: dict[str, int] = dict(counters or {})
        self.result = HospitalResult(spec.id)
        self.profiles = profiles()
        self.dx = codes.diagnoses()
        self.items = codes.lab_items()
        self.panels = codes.lab_panels()
        self.exams = codes.exam_items()
        self.drugs = codes.drugs()
        self.factors = codes.lab_unit_factors()
        self.per_day = {
            k: float(v.extra["per_day"]) for k, v in codes.value_domain("frequency").items()
        }
        self.items_by_panel: dict[str, list[str]] = {}
        for item in self.items.values():
            self.items_by_panel.setdefault(item.panel, []).append(item.code)
        self.writers: dict[str, SystemWriter] = {}
        self.patients: dict[int, LocalPatient] = {}
        self.depts: dict[str, int] = {}  # std dept code → dept key
        self.dept_names: dict[int, str] = {}
        self.staff: dict[int, list[tuple[int, str]]] = {}  # dept key → [(staff key, name)]
        self._since_flush = 0
        self._panel_cache: dict[tuple[str, str], list[_ItemSpec]] = {}
        uniforms = Uniforms(self.rng)
        self.u = uniforms.u  # bound methods: these run millions of times
        self.i = uniforms.i
        self._facts_file: Any = None
        self._facts: Any = None

    # --- keys and defects ---------------------------------------------------------------
    def key(self, space: str) -> int:
        n = self.counters.get(space, 0) + 1
        self.counters[space] = n
        return n

    def local_key(self, system: str, space: str, key: int) -> str:
        return str(self.d[system].format_key(space, key))

    def n(self) -> float:
        """A standard-normal number (quantized to 4096 levels, plenty for synthetic data)."""
        return _Z_TABLE[int(self.u() * 4096)]

    def defect(self, name: str) -> bool:
        return self.u() < DEFECT_RATES[name]

    def record_defect(
        self,
        system: str,
        table: str,
        space: str,
        key: int,
        column: str,
        kind: str,
        detail: str = "",
    ) -> None:
        self.result.defects.append(
            (
                self.spec.id,
                system,
                table,
                self.d[system].table_name(table),
                self.local_key(system, space, key),
                column,
                kind,
                detail,
            )
        )

    def add(self, system: str, table: str, values: tuple[Any, ...], updated: int | None) -> None:
        self.writers[system].buffers[table].add(values, updated)

    # --- set-up -------------------------------------------------------------------------
    def open(self, *, bulk: bool) -> None:
        self.spec.dir.mkdir(parents=True, exist_ok=True)
        for s in SYSTEMS:
            self.writers[s] = SystemWriter(
                self.spec.dir / f"{s.lower()}.db", self.d[s], s, bulk=bulk, peers=self.d
            )
        facts_path = self.spec.root / "truth" / "note_facts" / f"{self.spec.id}.csv"
        facts_path.parent.mkdir(parents=True, exist_ok=True)
        new = not facts_path.exists()
        self._facts_file = facts_path.open("a", encoding="utf-8", newline="")
        self._facts = csv.writer(self._facts_file)
        if new:
            self._facts.writerow(
                [
                    "hospital",
                    "doc_key",
                    "doc_type",
                    "kind",
                    "code",
                    "value",
                    "negated",
                    "start",
                    "end",
                ]
            )

    def close(self) -> HospitalResult:
        for s, w in self.writers.items():
            w.close()
            self.result.rows[s] = dict(w.rows_written)
        if self._facts_file is not None:
            self._facts_file.close()
        self.result.counters = dict(self.counters)
        return self.result

    def setup_departments(self, needed: list[str], created_at: int) -> None:
        """Departments and staff: every department the profiles need, lab and imaging."""
        domain = codes.value_domain("department")
        from medfabric.simulator.people import generate_people

        wanted = sorted(set(needed) | {"20", "30", "32"})
        staff_people = generate_people(
            self.rng, 8 * len(wanted), as_of=date(2000, 1, 1), first_index=900_000_000
        )
        si = 0
        titles = ("主任医师", "副主任医师", "主治医师", "住院医师")
        for code in wanted:
            k = self.key("department")
            self.depts[code] = k
            name = department_name(domain[code].name_zh)
            self.dept_names[k] = name
            self.add("HIS", "department", (k, code, name), created_at)
            members = []
            for j in range(self.i(3, 9)):
                p = staff_people[si % len(staff_people)]
                si += 1
                sk = self.key("staff")
                role = "technician" if code in ("30",) else "doctor"
                title = titles[j % 4] if role == "doctor" else "主管技师"
                self.add("HIS", "staff", (sk, p.name, p.sex, title, k, role), created_at)
                members.append((sk, p.name))
            self.staff[k] = members

    def load_departments(self) -> None:
        """Read back departments and staff of an existing hospital (for change ticks)."""
        his = self.d["HIS"]
        conn = self.writers["HIS"].conn
        inverse = {v: k for k, v in his.local_codes("dept").items()}

        def text(v: Any) -> str:
            return v.decode(his.text_encoding) if isinstance(v, bytes) else str(v)

        dt, st = his.table_name("department"), his.table_name("staff")
        c = [his.column_name("department", n) for n in ("dept_id", "dept_code", "dept_name")]
        for key, code, name in conn.execute(f'SELECT "{c[0]}", "{c[1]}", "{c[2]}" FROM "{dt}"'):
            k = his.parse_key("department", key)
            self.depts[inverse[code]] = k
            self.dept_names[k] = text(name)
            self.staff[k] = []
        c = [his.column_name("staff", n) for n in ("staff_id", "name", "dept_id")]
        for key, name, dept in conn.execute(f'SELECT "{c[0]}", "{c[1]}", "{c[2]}" FROM "{st}"'):
            self.staff[his.parse_key("department", dept)].append(
                (his.parse_key("staff", key), text(name))
            )

    def write_patients(self, patients: list[LocalPatient], created_at: int) -> None:
        for lp in patients:
            self.patients[lp.local_id] = lp
            r = lp.record
            name: str | None = r.name
            sex: str | None = r.sex
            birth = r.birth_date
            self.counters["patient"] = max(self.counters.get("patient", 0), lp.local_id)
            if self.defect("patient.missing_required"):
                col = "name" if self.rng.random() < 0.5 else "sex"
                name, sex = (None, sex) if col == "name" else (name, None)
                self.record_defect(
                    "HIS", "patient", "patient", lp.local_id, col, "missing_required"
                )
            elif self.defect("patient.out_of_range"):
                birth = date(1880 + self.i(0, 15), birth.month, min(birth.day, 28))
                self.record_defect(
                    "HIS",
                    "patient",
                    "patient",
                    lp.local_id,
                    "birth_date",
                    "out_of_range",
                    birth.isoformat(),
                )
            t = created_at - self.i(0, 3 * 365) * DAY
            self.add(
                "HIS",
                "patient",
                (
                    lp.local_id,
                    name,
                    sex,
                    birth,
                    r.id_type,
                    r.id_number,
                    r.nationality,
                    r.ethnicity,
                    r.marital_status,
                    r.phone,
                    r.address,
                    t,
                ),
                t,
            )
            if lp.duplicate_of is not None:
                self.record_defect(
                    "HIS",
                    "patient",
                    "patient",
                    lp.local_id,
                    "*",
                    "duplicate",
                    self.local_key("HIS", "patient", lp.duplicate_of),
                )

    # --- visits -------------------------------------------------------------------------
    def render(self, visits: list[PlannedVisit]) -> None:
        for v in visits:
            self.render_visit(v)
            self._since_flush += 1
            if self._since_flush >= FLUSH_EVERY:
                for w in self.writers.values():
                    w.flush()
                self._since_flush = 0

    def _doctor(self, dept: int) -> tuple[int, str]:
        members = self.staff[dept]
        return members[self.i(0, len(members))]

    def render_visit(self, v: PlannedVisit) -> None:

        lp = self.patients[v.patient]
        person = lp.record
        when = to_datetime(v.time)
        age = _age(person.birth_date, when.date())
        vprofiles = [self.profiles[self.dx[c].profile] for c in v.diagnoses]
        prof = vprofiles[0]
        dept = self.depts["20"] if v.kind == "2" else self.depts[prof.department]
        doctor, doctor_name = self._doctor(dept)
        self.counters["visit"] = max(self.counters.get("visit", 0), v.key)
        vk, t = v.key, v.time
        discharge: int | None = None
        if v.kind == "3":
            discharge = t + v.stay_days * DAY + self.i(-4, 4) * 3600
            if discharge >= self.as_of:
                discharge = None
        text_ctx = self._note_context_base(lp, age, when, dept, doctor_name, v)

        # Diagnoses
        for i, code in enumerate(v.diagnoses):
            dk = self.key("diagnosis")
            stored = code
            if self.defect("diagnosis.invalid_code"):
                stored = code.replace(".", "") + "X"
                self.record_defect(
                    "HIS", "diagnosis", "diagnosis", dk, "diag_code", "invalid_code", code
                )
            self.add(
                "HIS",
                "diagnosis",
                (
                    dk,
                    vk,
                    lp.local_id,
                    v.kind,
                    stored,
                    self.dx[code].name_zh,
                    "1" if i == 0 else "2",
                    t + 600,
                    doctor,
                ),
                t + 600,
            )

        # Lab panels
        wanted: dict[str, None] = dict.fromkeys(v.forced_panels)
        intensity = 1.0 if v.kind == "3" else OUTPATIENT_ORDER_INTENSITY
        for p in vprofiles:
            scale = intensity if p is prof else intensity * 0.3
            for code, prob in p.panels.items():
                if self.u() < prob * scale:
                    wanted[code] = None
        if v.kind == "3":
            for code, prob in ROUTINE_ADMISSION_PANELS.items():
                if code in self.panels and self.u() < prob:
                    wanted[code] = None
        lab_lines: list[tuple[str, str, str, str, str]] = []
        for panel in wanted:
            lab_lines += self._lab_panel(v, lp, vprofiles, panel, dept, doctor, doctor_name)

        # Exams
        exams: dict[str, None] = dict.fromkeys(v.forced_exams)
        exam_intensity = 1.0 if v.kind == "3" else OUTPATIENT_EXAM_INTENSITY
        for code, prob in prof.exams.items():
            if self.u() < prob * exam_intensity:
                exams[code] = None
        exam_lines: list[tuple[str, str, str]] = []
        for code in exams:
            exam_lines.append(self._exam(v, lp, vprofiles, code, doctor, doctor_name))

        # Drugs
        chosen: dict[str, None] = {}
        for p in vprofiles:
            if p.drugs:
                k = 1 + self.i(0, min(2, len(p.drugs))) if p is prof else 1
                first = self.i(0, len(p.drugs))
                for j in range(min(k, len(p.drugs))):
                    chosen[p.drugs[(first + j) % len(p.drugs)]] = None
        drug_lines = [self._prescription(v, lp, code, doctor) for code in chosen]

        # Registration / bed charges
        if v.kind in ("1", "2"):
            self._charge(
                v,
                lp,
                "registration",
                "GH",
                "挂号费" if v.kind == "1" else "急诊挂号费",
                1.0,
                (10.0, 25.0, 50.0)[self.i(0, 3)],
                t,
            )
        elif discharge is not None:
            days = max(1, v.stay_days)
            self._charge(v, lp, "bed", "CW", "床位费", float(days), 80.0, discharge)

        # Notes, then the visit row itself (its chief complaint comes from the note)
        complaint = self._documents(v, lp, text_ctx, lab_lines, exam_lines, drug_lines, discharge)
        visit_time = t
        if self.defect("visit.future_date"):
            visit_time = self.as_of + self.i(30, 400) * DAY
            self.record_defect(
                "HIS",
                "outpatient_visit" if v.kind != "3" else "admission",
                "visit",
                vk,
                "visit_time" if v.kind != "3" else "admit_time",
                "future_date",
                to_datetime(visit_time).isoformat(),
            )
        if v.kind in ("1", "2"):
            self.add(
                "HIS",
                "outpatient_visit",
                (vk, lp.local_id, v.kind, dept, doctor, visit_time, complaint),
                t,
            )
        else:
            if discharge is not None and self.defect("admission.discharge_before_admission"):
                discharge = t - self.i(2, 72) * 3600
                self.record_defect(
                    "HIS", "admission", "visit", vk, "discharge_time", "discharge_before_admission"
                )
            disposition = "1"
            if prof.key in ("mi", "cancer_lung", "cancer_liver", "stroke") and self.u() < 0.03:
                disposition = "5"
            elif self.u() < 0.05:
                disposition = "2" if self.u() < 0.5 else "4"
            bed = f"{self.i(1, 40):02d}-{self.i(1, 60):02d}"
            self.add(
                "HIS",
                "admission",
                (
                    vk,
                    lp.local_id,
                    dept,
                    doctor,
                    visit_time,
                    discharge,
                    disposition if discharge is not None else None,
                    bed,
                ),
                discharge or t,
            )

    # --- orders -------------------------------------------------------------------------
    def _order(
        self,
        v: PlannedVisit,
        lp: LocalPatient,
        kind: str,
        std_code: str,
        name: str,
        t: int,
        doctor: int,
    ) -> int:
        ok = self.key("medical_order")
        domain = {"LAB": "lab_panel", "EXAM": "exam", "DRUG": "drug"}[kind]
        local = self.d["HIS"].local_codes(domain)[std_code]
        self.add(
            "HIS", "medical_order", (ok, v.key, lp.local_id, kind, local, name, t, doctor, "3"), t
        )
        return ok

    def _charge(
        self,
        v: PlannedVisit,
        lp: LocalPatient,
        item_type: str,
        code: str,
        name: str,
        qty: float,
        price: float,
        t: int,
    ) -> None:
        ck = self.key("charge")
        self.add(
            "HIS",
            "charge",
            (ck, v.key, lp.local_id, item_type, code, name, qty, price, round(qty * price, 2), t),
            t,
        )

    def _panel_items(self, panel: str, sex: str) -> list[_ItemSpec]:
        """What the LIS reports for a panel to a patient of this sex (cached per panel, sex)."""
        key = (panel, sex)
        cached = self._panel_cache.get(key)
        if cached is not None:
            return cached
        lis = self.d["LIS"]
        out = []
        for code in self.items_by_panel.get(panel, []):
            item = self.items[code]
            lo, hi = item.reference_range(sex)
            if item.value_type == "N" and lo is None and hi is None:
                continue  # a sex-specific test (PSA) is not reported for the other sex
            units = self.factors.get(code, {})
            unit = lis.lab_unit(code, item.unit) if item.value_type == "N" else ""
            factor = units.get(unit, 1.0) if unit else 1.0
            # A value in a larger unit needs more decimals (creatinine 88 µmol/L = 1.00 mg/dL).
            decimals = max(0, item.decimals + round(math.log10(factor)))
            ref = item.ref_text
            if item.value_type == "N":
                ref = "-".join("" if b is None else f"{b / factor:.{decimals}f}" for b in (lo, hi))
            # The unit a mislabelled value is really in: one that changes the number (mEq/L
            # labelled mmol/L would be no defect at all).
            other = next(
                (u for u in units if u != unit and abs(units[u] / factor - 1) > 0.2), ""
            ) if item.value_type == "N" else ""  # fmt: skip
            out.append(
                _ItemSpec(code, item, item.name_zh, unit, factor, decimals, ref, lo, hi, other,
                          units.get(other, 1.0))
            )  # fmt: skip
        self._panel_cache[key] = out
        return out

    def _result_defect(self, key: int, column: str, kind: str, detail: str) -> None:
        self.record_defect("LIS", "lab_result", "lab_result", key, column, kind, detail)

    def _lab_value(
        self, lp: LocalPatient, spec: _ItemSpec, vprofiles: list[Profile]
    ) -> tuple[float | str | None, str]:
        """A value in the standard unit (or an ordinal word) and its abnormal flag."""
        item, item_code = spec.item, spec.code
        if item.value_type == "O":
            prob = max((p.positives.get(item_code, 0.0) for p in vprofiles), default=0.0)
            if self.u() < prob:
                w = self.u()
                return ("+" if w < 0.5 else "++" if w < 0.85 else "+++"), "A"
            return (item.ref_text or "阴性"), "N"
        lo, hi = spec.lo, spec.hi
        effect = next((p.effects[item_code] for p in vprofiles if item_code in p.effects), None)
        z = _hash_z(lp.person_index, item_code)
        if effect is not None:
            mean, sd = effect
            value = mean + sd * (0.7 * z + 0.5 * self.n())
        else:
            if lo is not None and hi is not None:
                center, sd = (lo + hi) / 2, (hi - lo) / 5
            elif hi is not None:
                center, sd = hi * 0.4, hi * 0.15
            elif lo is not None:
                center, sd = lo * 1.3, lo * 0.1
            else:
                center, sd = 1.0, 0.2
            value = center + sd * (0.8 * z + 0.4 * self.n())
        floor = 10.0**-item.decimals
        value = round(max(value, floor), item.decimals)
        flag = "N"
        if hi is not None and value > hi:
            flag = "HH" if value > hi * 3 and lo is not None else "H"
        elif lo is not None and value < lo:
            flag = "LL" if value < lo * 0.4 else "L"
        return value, flag

    def _lab_panel(
        self,
        v: PlannedVisit,
        lp: LocalPatient,
        vprofiles: list[Profile],
        panel: str,
        dept: int,
        doctor: int,
        doctor_name: str,
    ) -> list[tuple[str, str, str, str, str]]:

        pinfo = self.panels[panel]
        t0 = v.time + self.i(5, 40) * 60
        ok = self._order(v, lp, "LAB", panel, pinfo.name_zh, t0, doctor)
        rk = self.key("lab_request")
        self.add(
            "LIS",
            "lab_request",
            (
                rk,
                ok,
                lp.local_id,
                v.key,
                panel,
                pinfo.name_zh,
                t0,
                self.dept_names[dept],
                doctor_name,
            ),
            t0,
        )
        sk = self.key("specimen")
        collected = t0 + self.i(5, 60) * 60
        received = collected + self.i(10, 50) * 60
        self.add("LIS", "specimen", (sk, rk, pinfo.specimen, collected, received), received)
        reported = received + self.i(40, 240) * 60
        lines: list[tuple[str, str, str, str, str]] = []
        add = self.writers["LIS"].buffers["lab_result"].add
        pid = lp.local_id
        for spec in self._panel_items(panel, lp.record.sex):
            code = spec.code
            value, flag = self._lab_value(lp, spec, vprofiles)
            resk = self.key("lab_result")
            text: str | None
            # One draw decides the (mutually exclusive) defects of this result.
            r = self.u()
            if isinstance(value, float):
                shown = value / spec.factor
                if r < _P_OUT_OF_RANGE:
                    shown = -shown if self.u() < 0.3 else shown * 100
                    detail = f"{shown:.{spec.decimals}f}"
                    self._result_defect(resk, "value", "out_of_range", detail)
                elif r < _P_WRONG_UNIT and spec.other_unit:
                    shown = value / spec.other_factor
                    detail = f"value in {spec.other_unit}, labelled {spec.unit}"
                    self._result_defect(resk, "value", "wrong_unit", detail)
                text = f"{shown:.{spec.decimals}f}"
            else:
                text = value
            if _P_WRONG_UNIT <= r < _P_MISSING:
                text = None
                self._result_defect(resk, "value", "missing_required", "")
            row = (
                resk,
                rk,
                sk,
                pid,
                code,
                spec.name,
                text,
                spec.unit,
                spec.ref,
                flag,
                reported,
                "F",
            )
            add(row, reported)
            if _P_MISSING <= r < _P_DUPLICATE:
                dk = self.key("lab_result")
                add((dk, *row[1:]), reported)
                self._result_defect(dk, "*", "duplicate", self.local_key("LIS", "lab_result", resk))
            if text is not None:
                lines.append((code, spec.name, text, spec.unit, flag))
        self._charge(
            v, lp, "lab", panel, pinfo.name_zh, 1.0, round(20 + 180 * _hash_unit(panel), 0), t0
        )
        return lines

    def _exam(
        self,
        v: PlannedVisit,
        lp: LocalPatient,
        vprofiles: list[Profile],
        code: str,
        doctor: int,
        doctor_name: str,
    ) -> tuple[str, str, str]:

        exam = self.exams[code]
        t0 = v.time + self.i(10, 90) * 60
        ok = self._order(v, lp, "EXAM", code, exam.name_zh, t0, doctor)
        ek = self.key("exam_request")
        info = "、".join(self.dx[c].name_zh for c in v.diagnoses[:2])
        self.add(
            "PACS",
            "exam_request",
            (ek, ok, lp.local_id, v.key, code, exam.name_zh, t0, doctor_name, info),
            t0,
        )
        study_t = t0 + self.i(20, 24 * 60) * 60
        stk = self.key("study")
        hid = self.spec.id
        study_uid = dicom.make_uid("medfabric", self.spec.seed, hid, "study", stk)
        accession = f"{hid}{stk:09d}"[-16:]
        person = lp.record
        self.add(
            "PACS",
            "study",
            (
                stk,
                study_uid,
                accession,
                ek,
                lp.local_id,
                person.name,
                exam.modality,
                exam.body_part,
                study_t,
                exam.name_zh,
            ),
            study_t,
        )
        n_series = 2 if exam.modality in ("CT", "MR") and self.u() < 0.2 else 1
        for sn in range(1, n_series + 1):
            sek = self.key("series")
            series_uid = dicom.make_uid("medfabric", self.spec.seed, hid, "series", sek)
            desc = f"{exam.name_zh} 序列{sn}"
            self.add("PACS", "series", (sek, stk, series_uid, sn, exam.modality, desc), study_t)
            ik = self.key("instance")
            sop_uid = dicom.make_uid("medfabric", self.spec.seed, hid, "instance", ik)
            rel = f"{hid}/dicom/{stk:09d}/{sn}_1.dcm"
            size = 0
            if self.spec.write_dicom:
                size = dicom.write_instance(
                    dicom.InstanceSpec(
                        path=self.spec.root / rel,
                        patient_name=person.name or "",
                        patient_id=self.local_key("HIS", "patient", lp.local_id),
                        # a mistyped birth date can fall after the study: PACS leaves it out
                        birth_date=(
                            person.birth_date
                            if person.birth_date <= to_datetime(study_t).date()
                            else None
                        ),
                        sex={"1": "M", "2": "F"}.get(person.sex, "O"),
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_uid=sop_uid,
                        accession_number=accession,
                        modality=exam.modality,
                        study_description=exam.name_zh,
                        body_part=exam.body_part,
                        study_datetime=to_datetime(study_t),
                        institution_name=self.spec.name,
                        series_number=sn,
                        instance_number=1,
                        series_description=desc,
                        referring_physician=doctor_name,
                    ),
                    seed=ik,
                )
                self.result.dicom_files += 1
            self.add("PACS", "instance", (ik, sek, sop_uid, 1, rel, size), study_t)
        abnormal = self.u() < vprofiles[0].exam_abnormal
        findings, impression = notes.render_exam_report(
            exam.modality,
            exam.body_part,
            exam.name_zh,
            tuple(p.key for p in vprofiles),
            abnormal,
            self.rng,
        )
        rpk = self.key("exam_report")
        reported = study_t + self.i(30, 8 * 60) * 60
        radiologist = self._doctor(self.depts["32"])[1]
        self.add(
            "PACS",
            "exam_report",
            (rpk, ek, accession, findings, impression, int(abnormal), radiologist, reported, "F"),
            reported,
        )
        self._charge(
            v, lp, "exam", code, exam.name_zh, 1.0, EXAM_PRICE.get(exam.category, 100.0), t0
        )
        return code, exam.name_zh, impression

    def _prescription(
        self, v: PlannedVisit, lp: LocalPatient, code: str, doctor: int
    ) -> tuple[str, str, str, str]:

        drug = self.drugs[code]
        t0 = v.time + self.i(10, 60) * 60
        ok = self._order(v, lp, "DRUG", code, drug.name_zh, t0, doctor)
        chronic = self.dx[v.diagnoses[0]].chronic
        days = (14, 28, 30)[self.i(0, 3)] if chronic else self.i(3, 8)
        qty = round(days * self.per_day.get(drug.frequency, 1.0), 0)
        rk = self.key("prescription")
        dose = f"{drug.dose:g}"
        self.add(
            "HIS",
            "prescription",
            (
                rk,
                v.key,
                lp.local_id,
                ok,
                code,
                drug.name_zh,
                drug.dose,
                drug.unit,
                drug.frequency,
                days,
                qty,
                t0,
                doctor,
            ),
            t0,
        )
        self._charge(
            v, lp, "drug", code, drug.name_zh, qty, round(0.5 + 30 * _hash_unit(code), 2), t0
        )
        return code, drug.name_zh, f"{dose}{drug.unit}", drug.frequency

    # --- documents ----------------------------------------------------------------------
    def _note_context_base(
        self, lp: LocalPatient, age: int, when: Any, dept: int, doctor: str, v: PlannedVisit
    ) -> dict[str, Any]:

        fever = any(
            self.profiles[self.dx[c].profile].key in ("pneumonia", "urti", "uti", "infection_other")
            for c in v.diagnoses[:1]
        )
        temp = round((38.4 if fever else 36.6) + 0.3 * self.n(), 1)
        hyper = any(self.dx[c].profile == "hypertension" for c in v.diagnoses)
        sbp = int((152 if hyper else 122) + 10 * self.n())
        vitals = (temp, int(80 + 8 * self.n()), sbp, int(sbp * 0.62 + 5 * self.n()))
        return {
            "patient_name": lp.record.name or "",
            "sex": lp.record.sex,
            "age": age,
            "department": self.dept_names[dept],
            "doctor": doctor,
            "diagnoses": tuple((c, self.dx[c].name_zh, self.dx[c].profile) for c in v.diagnoses),
            "vitals": vitals,
        }

    def _documents(
        self,
        v: PlannedVisit,
        lp: LocalPatient,
        base: dict[str, Any],
        labs: list[tuple[str, str, str, str, str]],
        exams: list[tuple[str, str, str]],
        drugs: list[tuple[str, str, str, str]],
        discharge: int | None,
    ) -> str:
        docs: list[tuple[str, int, dict[str, Any]]] = []
        if v.kind in ("1", "2"):
            docs.append(
                (
                    "OPR",
                    v.time + 1200,
                    {"labs": tuple(labs), "exams": tuple(exams), "drugs": tuple(drugs)},
                )
            )
        else:
            admitted = to_datetime(v.time).date()
            docs.append(("ADM", v.time + 3 * 3600, {"admitted": admitted}))
            last = discharge if discharge is not None else self.as_of - 3600
            stay_days = max(1, (last - v.time) // DAY)
            for day in range(1, min(stay_days, PROGRESS_NOTES) + 1):
                docs.append(
                    (
                        "PRG",
                        v.time + day * DAY,
                        {
                            "admitted": admitted,
                            "day_of_stay": day,
                            "labs": tuple(labs) if day == 1 else (),
                            "exams": tuple(exams) if day == 1 else (),
                            "drugs": tuple(drugs) if day == 1 else (),
                        },
                    )
                )
            if discharge is not None:
                docs.append(
                    (
                        "DIS",
                        discharge,
                        {
                            "admitted": admitted,
                            "discharged": to_datetime(discharge).date(),
                            "labs": tuple(labs),
                            "exams": tuple(exams),
                            "drugs": tuple(drugs),
                        },
                    )
                )
        complaint = ""
        titles = {"OPR": "门诊病历", "ADM": "入院记录", "PRG": "病程记录", "DIS": "出院小结"}
        for doc_type, t, extra in docs:
            kw: dict[str, Any] = {"labs": (), "exams": (), "drugs": (), **base, **extra}
            ctx = notes.NoteContext(doc_type=doc_type, when=to_datetime(t), **kw)
            text, facts = notes.render_note(ctx, self.rng)
            dk = self.key("clinical_document")
            self.add(
                "EMR",
                "clinical_document",
                (dk, lp.local_id, v.key, doc_type, titles[doc_type], text, base["doctor"], t),
                t,
            )
            self.result.notes += 1
            local = self.local_key("EMR", "clinical_document", dk)
            hid = self.spec.id
            self._facts.writerows(
                (hid, local, doc_type, f.kind, f.code, f.value, int(f.negated), f.start, f.end)
                for f in facts
            )
            self.result.note_facts += len(facts)
            if not complaint:
                complaint = _section(text, "主诉")
        return complaint


def _section(text: str, header: str) -> str:
    """The first line after ``header：`` in a note (the chief complaint of an outpatient note)."""
    i = text.find(header + "：")
    if i < 0:
        return ""
    start = i + len(header) + 1
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)].strip()


def dialect_of(spec: HospitalSpec, system: str) -> Dialect:
    return DIALECTS[spec.dialects[system]]
