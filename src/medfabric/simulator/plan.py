"""Region-level plan: who exists, which hospitals hold which copy of whom, and every visit.

The plan is made once, in one process, from one seeded generator, before any hospital is
written; hospital writers only render it. That keeps the cross-hospital facts coherent — a
person's chronic conditions are the same in every hospital, and the "same test repeated at
another hospital within days" cases exist on both sides — and keeps the region deterministic
for a seed whatever the number of worker processes.

Times are integer seconds since 1970-01-01 in Beijing local time (naive); dialects format them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from medfabric.simulator.people import Person, generate_people, vary_person
from medfabric.simulator.profiles import Profile, profiles
from medfabric.standards import codes

DAY = 86_400
EPOCH = date(1970, 1, 1)
_EPOCH_DT = datetime(1970, 1, 1)

SHARED_EXTRA_HOSPITALS = (1, 2)  # a shared person visits 1 or 2 more hospitals ...
SHARED_EXTRA_WEIGHTS = (0.7, 0.3)  # ... with these chances
LOCAL_COPY_VARIED = 0.7  # chance that a non-home hospital's copy differs from the truth
DUPLICATE_REGISTRATION = 0.005  # defect: same person registered twice in one hospital
REPEAT_SHARE = 0.35  # chance a shared person has a test repeated at another hospital
# Profiles state how often a condition needs admission when it is being worked up; over a
# year of visits (follow-ups included) admissions are rarer: about 6% of visits here.
ADMISSION_SCALE = 0.5
CHRONIC_VISIT = 0.6  # chance a visit of a chronically ill person is for a chronic condition


def to_seconds(d: date | datetime) -> int:
    """Naive local date/time → plan seconds."""
    if isinstance(d, datetime):
        return (d.date() - EPOCH).days * DAY + d.hour * 3600 + d.minute * 60 + d.second
    return (d - EPOCH).days * DAY


def to_datetime(seconds: int) -> datetime:
    """Plan seconds → naive local datetime."""
    return _EPOCH_DT + timedelta(seconds=seconds)


@dataclass(slots=True)
class LocalPatient:
    """One hospital's registration of a person (its own copy of the demographics)."""

    hospital: int
    local_id: int
    person_index: int
    record: Person
    variations: tuple[str, ...]
    duplicate_of: int | None = None


@dataclass(slots=True)
class PlannedVisit:
    time: int
    patient: int  # local_id
    kind: str  # visit_type code: '1' outpatient, '2' emergency, '3' inpatient
    diagnoses: tuple[str, ...]  # ICD-10, principal first
    stay_days: int = 0
    forced_panels: tuple[str, ...] = ()
    forced_exams: tuple[str, ...] = ()
    key: int = 0  # visit key, set when the hospital's visits are sorted


@dataclass(frozen=True, slots=True)
class RepeatCase:
    """Ground truth: the same test done at two hospitals a few days apart."""

    person_id: str
    item_kind: str  # 'lab_panel' | 'exam'
    item_code: str
    first_hospital: int
    first_visit: PlannedVisit
    second_hospital: int
    second_visit: PlannedVisit


@dataclass(slots=True)
class RegionPlan:
    hospitals: int
    start: int
    end: int
    people: list[Person]
    chronic: list[tuple[str, ...]]
    homes: list[tuple[int, ...]]  # hospitals of each person, home first
    patients: list[list[LocalPatient]] = field(default_factory=list)
    visits: list[list[PlannedVisit]] = field(default_factory=list)
    repeats: list[RepeatCase] = field(default_factory=list)


class Uniforms:
    """Uniform draws from a numpy generator, taken in blocks (scalar numpy calls are slow).

    Deterministic for the generator's state; the generator itself stays usable for vector draws.
    """

    __slots__ = ("_buf", "_i", "rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._buf: list[float] = []
        self._i = 0

    def u(self) -> float:
        """A number in [0, 1)."""
        if self._i >= len(self._buf):
            self._buf = self.rng.random(4096).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]

    def i(self, low: int, high: int) -> int:
        """An integer in [low, high)."""
        return low + int(self.u() * (high - low))


class _DiagnosisSampler:
    """Draws ICD-10 codes by prevalence weight, respecting sex and the profile's age range."""

    def __init__(self) -> None:
        self.profiles = profiles()
        dx = list(codes.diagnoses().values())
        self.by_code = {d.code: d for d in dx}
        self.pools: dict[tuple[bool, str], tuple[list[str], list[float]]] = {}
        for chronic in (True, False):
            for sex in ("1", "2"):
                allowed = [
                    d
                    for d in dx
                    if d.chronic == chronic and d.sex in ("A", "M" if sex == "1" else "F")
                ]
                cum = list(itertools.accumulate(float(d.weight) for d in allowed))
                self.pools[(chronic, sex)] = ([d.code for d in allowed], cum)

    def profile(self, code: str) -> Profile:
        return self.profiles[self.by_code[code].profile]

    def fits(self, code: str, age: int) -> bool:
        lo, hi = self.profile(code).age
        return lo <= age <= hi

    def draw(self, rng: Uniforms, chronic: bool, sex: str, age: int) -> str | None:
        names, cum = self.pools[(chronic, sex if sex in ("1", "2") else "1")]
        for _ in range(6):
            i = bisect.bisect_right(cum, rng.u() * cum[-1])
            code = names[min(i, len(names) - 1)]
            if self.fits(code, age):
                return code
        return None


def _age(birth: date, at: date) -> int:
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _shares(n_hospitals: int, shared_share: float) -> float:
    mean_extra = sum(
        k * w for k, w in zip(SHARED_EXTRA_HOSPITALS, SHARED_EXTRA_WEIGHTS, strict=True)
    )
    return 1.0 + shared_share * mean_extra if n_hospitals > 1 else 1.0


def plan_region(
    *,
    seed: int,
    hospitals: int,
    patients_per_hospital: int,
    shared_share: float,
    start: date,
    days: int,
    home_city: str,
) -> RegionPlan:
    """Plan a region: people, each hospital's registrations, and every visit.

    Args:
        patients_per_hospital: the number of local patient registrations per hospital (on
            average; the share of people visiting several hospitals makes the number of
            distinct people smaller than ``hospitals × patients_per_hospital``).
    """
    rng = np.random.default_rng([seed, 1])
    sampler = _DiagnosisSampler()
    end_day = start.toordinal() + days
    as_of = date.fromordinal(end_day)
    n_people = max(1, round(hospitals * patients_per_hospital / _shares(hospitals, shared_share)))
    people = generate_people(rng, n_people, as_of=as_of, home_city=home_city)
    plan = RegionPlan(
        hospitals=hospitals,
        start=to_seconds(start),
        end=to_seconds(as_of),
        people=people,
        chronic=[],
        homes=[],
        patients=[[] for _ in range(hospitals)],
        visits=[[] for _ in range(hospitals)],
    )
    uni = Uniforms(rng)
    _assign_hospitals(plan, uni, shared_share, as_of)
    _assign_chronic(plan, uni, sampler, as_of)
    _plan_visits(plan, uni, sampler, as_of)
    _plan_repeats(plan, rng, sampler)
    for hv in plan.visits:
        hv.sort(key=lambda v: (v.time, v.patient))
        for i, v in enumerate(hv, start=1):
            v.key = i
    return plan


def _assign_hospitals(plan: RegionPlan, uni: Uniforms, share: float, as_of: date) -> None:
    h = plan.hospitals
    n = len(plan.people)
    rng = uni.rng
    home = rng.integers(0, h, size=n)
    shared = rng.random(n) < (share if h > 1 else 0.0)
    extra = rng.choice(SHARED_EXTRA_HOSPITALS, size=n, p=SHARED_EXTRA_WEIGHTS)
    next_id = [1] * h
    for i, person in enumerate(plan.people):
        hs = [int(home[i])]
        if shared[i]:
            others = [x for x in range(h) if x != hs[0]]
            k = min(int(extra[i]), len(others))
            hs += [int(x) for x in rng.choice(others, size=k, replace=False)]
        plan.homes.append(tuple(hs))
        for j, hosp in enumerate(hs):
            record = person
            kinds: tuple[str, ...] = ()
            if j > 0 and uni.u() < LOCAL_COPY_VARIED:
                record, kinds = vary_person(rng, person, as_of=as_of)
            plan.patients[hosp].append(LocalPatient(hosp, next_id[hosp], i, record, kinds))
            next_id[hosp] += 1
    # Duplicate registrations (a defect): appended after everyone so keys of others are stable.
    for hosp in range(h):
        dups: list[LocalPatient] = []
        for lp in plan.patients[hosp]:
            if uni.u() < DUPLICATE_REGISTRATION:
                record, kinds = vary_person(rng, plan.people[lp.person_index], as_of=as_of)
                dups.append(
                    LocalPatient(hosp, next_id[hosp], lp.person_index, record, kinds, lp.local_id)
                )
                next_id[hosp] += 1
        plan.patients[hosp].extend(dups)


def _assign_chronic(
    plan: RegionPlan, uni: Uniforms, sampler: _DiagnosisSampler, as_of: date
) -> None:
    rng = uni.rng
    for person in plan.people:
        age = _age(person.birth_date, as_of)
        k = min(4, int(rng.poisson(max(0.0, (age - 20) / 25.0))))
        chosen: list[str] = []
        for _ in range(k):
            code = sampler.draw(uni, True, person.sex, age)
            if code is not None and code not in chosen:
                chosen.append(code)
        plan.chronic.append(tuple(chosen))


def _visit_time(rng: Uniforms, plan: RegionPlan, kind: str, born: date) -> int:
    # Nobody visits before being born (newborns are days old; a copy may carry a wrong date).
    first = max(plan.start // DAY, to_seconds(born) // DAY + 1)
    day = rng.i(min(first, plan.end // DAY - 1), plan.end // DAY)
    # Emergencies come at any hour; clinics and admissions in working hours.
    sec = rng.i(0, DAY) if kind == "2" else rng.i(8 * 3600, 17 * 3600)
    return day * DAY + sec


def _visit_kind(rng: Uniforms, prof: Profile) -> str:
    u = rng.u()
    admission = prof.inpatient * ADMISSION_SCALE
    if u < admission:
        return "3"
    if u < admission + prof.emergency:
        return "2"
    return "1"


def _diagnoses_for(
    rng: Uniforms,
    sampler: _DiagnosisSampler,
    person: Person,
    chronic: Sequence[str],
    age: int,
) -> tuple[str, ...]:
    if chronic and rng.u() < CHRONIC_VISIT:
        principal = chronic[rng.i(0, len(chronic))]
    else:
        principal = sampler.draw(rng, False, person.sex, age) or (
            chronic[0] if chronic else "Z00.0"
        )
    secondary = [c for c in chronic if c != principal][:2]
    return (principal, *secondary)


def _plan_visits(plan: RegionPlan, uni: Uniforms, sampler: _DiagnosisSampler, as_of: date) -> None:
    rng = uni.rng
    for hosp, patients in enumerate(plan.patients):
        by_original: dict[int, LocalPatient] = {}
        for lp in patients:
            if lp.duplicate_of is not None:
                by_original[lp.duplicate_of] = lp
        for lp in patients:
            if lp.duplicate_of is not None:
                continue
            person = plan.people[lp.person_index]
            chronic = plan.chronic[lp.person_index]
            age = _age(person.birth_date, as_of)
            lam = 0.15 + 0.2 * len(chronic) + (0.15 if age >= 65 else 0.0)
            n = 1 + min(11, int(rng.poisson(lam)))
            dup = by_original.get(lp.local_id)
            for j in range(n):
                dx = _diagnoses_for(uni, sampler, person, chronic, age)
                prof = sampler.profile(dx[0])
                kind = _visit_kind(uni, prof)
                stay = uni.i(prof.stay[0], prof.stay[1] + 1) if kind == "3" else 0
                # A duplicate registration gets some of the visits (the clerk did not find them).
                patient = dup.local_id if dup is not None and j % 2 == 1 else lp.local_id
                copy = dup.record if dup is not None and patient == dup.local_id else lp.record
                born = max(person.birth_date, copy.birth_date)
                plan.visits[hosp].append(
                    PlannedVisit(_visit_time(uni, plan, kind, born), patient, kind, dx, stay)
                )


def _plan_repeats(plan: RegionPlan, rng: np.random.Generator, sampler: _DiagnosisSampler) -> None:
    if plan.hospitals < 2:
        return
    first_visit: dict[tuple[int, int], PlannedVisit] = {}
    local_of: dict[tuple[int, int], int] = {}
    record_of: dict[tuple[int, int], Person] = {}
    for hosp, patients in enumerate(plan.patients):
        for lp in patients:
            if lp.duplicate_of is None:
                local_of[(hosp, lp.person_index)] = lp.local_id
                record_of[(hosp, lp.person_index)] = lp.record
        for v in plan.visits[hosp]:
            first_visit.setdefault((hosp, v.patient), v)
    for pi, hs in enumerate(plan.homes):
        if len(hs) < 2 or rng.random() >= REPEAT_SHARE or plan.people[pi].kind == "newborn":
            continue
        a, b = hs[0], hs[1]
        va = first_visit.get((a, local_of[(a, pi)]))
        if va is None:
            continue
        prof = sampler.profile(va.diagnoses[0])
        panels = [c for c, p in prof.panels.items() if p >= 0.2] or ["CBC"]
        exams = [c for c, p in prof.exams.items() if p >= 0.1]
        use_exam = bool(exams) and rng.random() < 0.4
        code = str(rng.choice(exams if use_exam else panels))
        gap = int(rng.integers(1, 8)) * DAY + int(rng.integers(-3, 4)) * 3600
        ta = va.time if va.time + gap < plan.end else max(plan.start, plan.end - gap - DAY)
        lb = local_of[(b, pi)]
        copies = (record_of[(a, pi)], record_of[(b, pi)], plan.people[pi])
        born = max(to_seconds(c.birth_date) for c in copies) + DAY
        if ta < born:
            continue
        va.time = ta
        t = ta + gap
        kind = "exam" if use_exam else "lab_panel"
        if use_exam:
            va.forced_exams = (*va.forced_exams, code)
        else:
            va.forced_panels = (*va.forced_panels, code)
        vb = PlannedVisit(
            t,
            lb,
            "1",
            va.diagnoses,
            0,
            (code,) if not use_exam else (),
            (code,) if use_exam else (),
        )
        plan.visits[b].append(vb)
        plan.repeats.append(RepeatCase(plan.people[pi].person_id, kind, code, a, va, b, vb))
