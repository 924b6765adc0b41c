"""Synthetic EMR text: outpatient notes, admission notes, progress notes, discharge summaries,
and the findings/impression text of exam reports.

The phrasing lives in ``data/note_phrases.yaml`` (loaded and pre-parsed once, on first use);
this module only assembles it.  A note comes back with the facts it states, so a later text
extraction stage can be scored against the truth.

Invariants
----------
* ``render_note(ctx, rng)`` returns ``(text, facts)``; for every fact ``text[f.start:f.end]`` is
  the surface form of the statement, and facts come in text order without overlap:
  - diagnosis / exam: the Chinese name, verbatim;
  - lab: name, an optional separator (space, nothing or ：), the value text and the unit (a
    unit starting with a digit is written ``×10^9/L``); the flag arrow (↑ ↓ ↑↑ ↓↓) follows
    *outside* the span; ``f.value`` is the value text;
  - drug: from the name through the frequency (dose and possibly route inside);
    ``f.value`` is ``"<dose> <frequency code>"``;
  - vital: the bare number, equal to ``f.value`` (code temperature / pulse / sbp / dbp);
  - symptom: the phrase-file term itself (``f.code``).
* Every diagnosis, lab, drug and exam in the context is stated at least once, and every such
  statement is a fact.  Facts other than symptoms only carry codes taken from the context;
  symptom facts carry terms of the phrase file.
* No diagnosis absent from the context is stated as present.  Diseases the past history
  *denies* (否认高血压、糖尿病病史 ...) are never ones the context carries; those denials are not
  facts (they have no code in the context).  Exam impressions are copied from the context
  verbatim (newlines folded to ；, trailing 。 dropped) and are not checked.
* A negated fact (``negated=True``) is a symptom preceded in its clause (no ，。；：or newline in
  between) by a denial cue: 无, 否认, 不伴, 未 (未诉/未再).  Denial lists never contain a
  symptom that any diagnosis of the note can produce; progress notes and discharge summaries
  may record one of the visit's own symptoms as resolved (未再发热), also as a negated fact.
* Plans, normal exam findings and connective phrases of the phrase file contain no symptom
  term, drug name or other-profile disease name (the tests check the symptom terms), so every
  symptom the text states is a fact.  Abnormal signs may use sign words (肿胀, 压痛).
* Output depends only on the context and the generator state: the same ``rng`` state gives the
  same text and facts.  Uniforms are drawn from ``rng`` in blocks of 64.
* The chief complaint of OPR/ADM notes is the single line after ``主诉：``.
* The phrase file is parsed once per process; template symptom references are validated at
  load (``PhraseError``).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import accumulate, chain, product, repeat
from typing import Any, Final

import numpy as np
import yaml

__all__ = [
    "DENIAL_CUES",
    "DOC_TYPES",
    "EXAM_MODALITIES",
    "NoteContext",
    "NoteFact",
    "PhraseError",
    "phrase_data",
    "render_exam_report",
    "render_note",
]

# The C loader (libyaml) when present: the phrase file is large and parsed once per process.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DOC_TYPES: Final = ("OPR", "ADM", "PRG", "DIS")
EXAM_MODALITIES: Final = ("CT", "MR", "DX", "US", "ES", "ECG", "BMD")


@dataclass(frozen=True, slots=True)
class NoteContext:
    """Everything a note may state; the simulator fills it from the visit it generated."""

    doc_type: str  # 'OPR' 门诊病历 | 'ADM' 入院记录 | 'PRG' 病程记录 | 'DIS' 出院小结
    patient_name: str
    sex: str  # '1' male | '2' female
    age: int
    when: datetime  # time of writing
    department: str
    doctor: str
    diagnoses: tuple[tuple[str, str, str], ...]  # (ICD-10 code, Chinese name, profile)
    labs: tuple[tuple[str, str, str, str, str], ...]  # (code, name, value, unit, flag)
    exams: tuple[tuple[str, str, str], ...]  # (exam code, Chinese exam name, impression)
    drugs: tuple[tuple[str, str, str, str], ...]  # (drug code, name, dose text, freq code)
    vitals: tuple[float, int, int, int] | None  # (temperature, pulse, systolic, diastolic)
    admitted: date | None = None
    discharged: date | None = None
    day_of_stay: int | None = None


@dataclass(frozen=True, slots=True)
class NoteFact:
    """One statement of a note; ``text[start:end]`` is its surface form."""

    kind: str  # 'diagnosis' | 'drug' | 'lab' | 'exam' | 'vital' | 'symptom'
    code: str
    value: str
    negated: bool
    start: int
    end: int


class _FactTwin:
    """Same slot layout as :class:`NoteFact`, without the frozen ``__setattr__``.

    The notes emit ~25 facts each and a frozen dataclass ``__init__`` costs one
    ``object.__setattr__`` call per field.  A fact is therefore built as a twin and its
    ``__class__`` switched to :class:`NoteFact`: the result *is* a NoteFact (same type, equality,
    hash, repr, immutability), built in well under half the time.
    """

    __slots__ = ("code", "end", "kind", "negated", "start", "value")

    def __init__(self, kind: str, code: str, value: str, negated: bool, start: int,
                 end: int) -> None:  # fmt: skip
        self.kind = kind
        self.code = code
        self.value = value
        self.negated = negated
        self.start = start
        self.end = end


def _twin_works() -> bool:
    try:
        f: Any = _FactTwin("symptom", "x", "", False, 0, 1)
        f.__class__ = NoteFact
    except TypeError:  # pragma: no cover - layouts diverged (a field was added)
        return False
    return bool(f == NoteFact("symptom", "x", "", False, 0, 1))


_FAST_FACTS: Final = _twin_works()


# --- pre-parsed phrase data -------------------------------------------------------------------

# template segments: (kind, text) with kind 0 literal, 1 duration, 2 symptom term, 3 gest. age
_LIT, _DUR, _SYM, _GW = 0, 1, 2, 3
Segs = tuple[tuple[int, str], ...]

_SYSTEMS: Final = (
    "general", "skin", "head", "neck", "lung", "heart", "abdomen", "spine", "limbs", "neuro",
    "special",
)  # fmt: skip
_CORE_SYSTEMS: Final = frozenset({"lung", "heart", "abdomen"})
_STATUS_KEYS: Final = ("spirit", "appetite", "sleep", "stool", "urine", "weight")
DENIAL_CUES: Final = ("无", "否认", "不伴", "未")


class PhraseError(ValueError):
    """note_phrases.yaml is malformed or breaks one of its own rules."""


def _parse_template(src: str, symptoms: frozenset[str], where: str) -> tuple[Segs, tuple[str, ...]]:
    segs: list[tuple[int, str]] = []
    terms: list[str] = []
    buf: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "{":
            j = src.index("}", i)
            name = src[i + 1 : j]
            if name not in ("dur", "gw"):
                raise PhraseError(f"{where}: unknown placeholder {{{name}}} in {src!r}")
            if buf:
                segs.append((_LIT, "".join(buf)))
                buf = []
            segs.append((_DUR if name == "dur" else _GW, ""))
            i = j + 1
        elif c == "[":
            j = src.index("]", i)
            term = src[i + 1 : j]
            if term not in symptoms:
                raise PhraseError(f"{where}: [{term}] is not one of the profile's symptoms")
            if buf:
                segs.append((_LIT, "".join(buf)))
                buf = []
            segs.append((_SYM, term))
            terms.append(term)
            i = j + 1
        else:
            buf.append(c)
            i += 1
    if buf:
        segs.append((_LIT, "".join(buf)))
    return tuple(segs), tuple(terms)


def _split_dur(src: str) -> tuple[str, str]:
    before, sep, after = src.partition("{dur}")
    if not sep:
        raise PhraseError(f"onset template without {{dur}}: {src!r}")
    return before, after


def _strs(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise PhraseError(f"{where}: expected a list of strings")
    return tuple(raw)


# complaint: (segments, its symptom terms, the profile's other symptoms, own HPI opening)
_Complaint = tuple[Segs, tuple[str, ...], tuple[str, ...], tuple[str, str] | None]


class _Profile:
    __slots__ = (
        "chronic", "complaints", "deny", "durs", "hpi", "key", "needs_gw", "onset", "paired",
        "plan", "signs", "signs_normal", "skip_status", "symptoms", "symset",
    )  # fmt: skip

    def __init__(self, key: str, raw: dict[str, Any], durations: dict[str, tuple[str, ...]],
                 domains: dict[str, tuple[str, ...]], special_lead: str) -> None:  # fmt: skip
        self.key = key
        course = str(raw.get("course", "subacute"))
        if course not in durations:
            raise PhraseError(f"{key}: unknown course {course!r}")
        self.durs = durations[course]
        self.chronic = bool(raw.get("chronic", False))
        self.symptoms = _strs(raw.get("symptoms"), f"{key}.symptoms")
        self.symset = frozenset(self.symptoms)
        self.deny = _strs(raw.get("deny"), f"{key}.deny")
        # (segments, terms in the template, other symptoms of the profile, own HPI opening)
        comp: list[_Complaint] = []
        raw_comp = raw.get("complaints")
        if not isinstance(raw_comp, list):
            raise PhraseError(f"{key}: complaints must be a list")
        for item in raw_comp:
            opening: tuple[str, str] | None = None
            if isinstance(item, dict):
                src = str(item["cc"])
                opening = _split_dur(str(item["hpi"]))
            else:
                src = str(item)
            segs, terms = _parse_template(src, self.symset, f"{key}.complaints")
            rest = tuple(s for s in self.symptoms if s not in terms)
            comp.append((segs, terms, rest, opening))
        if not comp:
            raise PhraseError(f"{key}: no complaints")
        self.complaints = tuple(comp)
        self.hpi = tuple(
            _parse_template(src, self.symset, f"{key}.hpi")[0]
            for src in _strs(raw.get("hpi"), f"{key}.hpi")
        )
        self.needs_gw = any(
            k == _GW for segs in (*(c[0] for c in comp), *self.hpi) for k, _ in segs
        )
        self.onset = tuple(_split_dur(t) for t in _strs(raw.get("onset"), f"{key}.onset"))
        self.signs = self._systems(raw.get("signs"), special_lead, f"{key}.signs")
        self.signs_normal = self._systems(
            raw.get("signs_normal"), special_lead, f"{key}.signs_normal"
        )
        self.paired = frozenset(_strs(raw.get("paired"), f"{key}.paired"))
        for sysname in self.paired:
            if len(self.signs.get(sysname, ())) != len(comp):
                raise PhraseError(f"{key}: paired signs.{sysname} must match the complaints")
        self.plan = _strs(raw.get("plan"), f"{key}.plan")
        if not self.plan:
            raise PhraseError(f"{key}: no plan phrases")
        skip = 0
        for bit, dom in enumerate(_STATUS_KEYS):
            keys = domains.get(dom, ())
            if any(k in s for s in self.symptoms for k in keys):
                skip |= 1 << bit
        self.skip_status = skip

    @staticmethod
    def _systems(raw: Any, special_lead: str, where: str) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for sysname, texts in (raw or {}).items():
            if sysname not in _SYSTEMS:
                raise PhraseError(f"{where}: unknown exam system {sysname!r}")
            vals = _strs(texts, f"{where}.{sysname}")
            if sysname == "special":
                vals = tuple(v if "：" in v else special_lead + v for v in vals)
            out[sysname] = vals
        return out


# exam variant: (findings, impression, needs formatting)
_Variant = tuple[str, str, bool]


class _ExamEntry:
    __slots__ = ("abnormal", "normal")

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict) or "normal" not in raw:
            raise PhraseError(f"{where}: needs normal variants")
        self.normal = self._variants(raw["normal"], f"{where}.normal")
        self.abnormal: dict[str, tuple[_Variant, ...]] = {
            str(k): self._variants(v, f"{where}.abnormal.{k}")
            for k, v in (raw.get("abnormal") or {}).items()
        }

    @staticmethod
    def _variants(raw: Any, where: str) -> tuple[_Variant, ...]:
        if not isinstance(raw, list) or not raw:
            raise PhraseError(f"{where}: expected a non-empty list of {{f, i}}")
        out: list[_Variant] = []
        for v in raw:
            f, i = str(v["f"]), str(v["i"])
            out.append((f, i, "{" in f or "{" in i))
        return tuple(out)


class _Phrases:
    """The phrase file, parsed once."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        durations = {k: _strs(v, f"durations.{k}") for k, v in raw["durations"].items()}
        domains = {k: _strs(v, f"status_domains.{k}") for k, v in raw["status_domains"].items()}
        self.special_lead = str(raw["special_lead"])
        self.profiles: dict[str, _Profile] = {
            str(k): _Profile(str(k), v, durations, domains, self.special_lead)
            for k, v in raw["profiles"].items()
        }
        self.generic = self.profiles["_generic"]
        hpi = raw["hpi"]
        self.onset = tuple(_split_dur(s) for s in _strs(hpi["onset"], "hpi.onset"))
        self.onset_acute = tuple(_split_dur(s) for s in _strs(hpi["onset_acute"], "hpi"))
        self.acute_durs = durations["acute"]
        self.chronic_durs = durations["chronic"]
        self.subacute_durs = durations["subacute"]
        self.joiner = _strs(hpi["joiner"], "hpi.joiner")
        self.progress = _strs(hpi["progress"], "hpi.progress")
        self.deny_cue = _strs(hpi["deny_cue"], "hpi.deny_cue")
        self.secondary = _strs(hpi["secondary"], "hpi.secondary")
        self.after_opening = _strs(hpi["after_opening"], "hpi.after_opening")
        self.no_complaint = _strs(hpi["no_complaint"], "hpi.no_complaint")
        self.prior_care = _strs(hpi["prior_care"], "hpi.prior_care")
        self.closing_opr = _strs(hpi["closing_opr"], "hpi.closing_opr")
        self.closing_adm = _strs(hpi["closing_adm"], "hpi.closing_adm")
        self.admit_via = _strs(hpi["admit_via"], "hpi.admit_via")
        self.admit_via_end = _strs(hpi["admit_via_end"], "hpi.admit_via_end")
        st = raw["status"]
        self.status_lead = _strs(st["lead"], "status.lead")
        self.status = tuple(_strs(st[k], f"status.{k}") for k in _STATUS_KEYS)
        past = raw["past"]
        self.past_none = _strs(past["none"], "past.none")
        self.chronic_lead = _strs(past["chronic_lead"], "past")
        self.chronic_tail = _strs(past["chronic_tail"], "past")
        self.chronic_control = _strs(past["chronic_control"], "past")
        self.deny_common = tuple(
            (str(e["term"]), frozenset(e["profiles"])) for e in past["deny_common"]
        )
        self.deny_infectious = tuple(
            (str(e["term"]), frozenset(e["profiles"])) for e in past["deny_infectious"]
        )
        self.deny_common_lead = _strs(past["deny_common_lead"], "past")
        self.deny_common_tail = _strs(past["deny_common_tail"], "past")
        self.deny_infectious_tail = _strs(past["deny_infectious_tail"], "past")
        self.history_items: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = tuple(
            (_strs(past[k], f"past.{k}"), frozenset(past.get(f"{k}_blocked_by") or ()))
            for k in ("surgery", "transfusion", "allergy")
        )
        self.vaccine = _strs(past["vaccine"], "past.vaccine")
        self.personal = {k: _strs(v, f"personal.{k}") for k, v in raw["personal"].items()}
        self.marital = {k: _strs(v, f"marital.{k}") for k, v in raw["marital"].items()}
        self.family = _strs(raw["family"], "family")
        self.exam_normal = {k: _strs(v, f"exam_normal.{k}") for k, v in raw["exam_normal"].items()}
        self.pe_lead = _strs(raw["pe_lead"], "pe_lead")
        cp = raw["course_phrases"]
        self.cp = {k: _strs(v, f"course_phrases.{k}") for k, v in cp.items()}
        self.exams: dict[str, dict[str, _ExamEntry]] = {
            str(m): {str(p): _ExamEntry(e, f"exams.{m}.{p}") for p, e in parts.items()}
            for m, parts in raw["exams"].items()
        }
        self.exam_aliases = {str(k): str(v) for k, v in (raw.get("exam_aliases") or {}).items()}
        self.exam_fallback = _ExamEntry(raw["fallback"], "fallback")
        if "_any" not in self.exam_fallback.abnormal:
            raise PhraseError("fallback.abnormal needs _any")

    def profile(self, key: str) -> _Profile:
        return self.profiles.get(key, self.generic)

    def exam_entry(self, modality: str, body_part: str) -> _ExamEntry:
        parts = self.exams.get(modality.upper())
        if parts is None:
            return self.exam_fallback
        part = body_part.upper()
        entry = parts.get(part)
        if entry is None:
            alias = self.exam_aliases.get(part)
            entry = parts.get(alias) if alias else None
        if entry is None:
            entry = parts.get("GENERIC")
        if entry is None:
            entry = next(iter(parts.values()))
        return entry


_DATA: _Phrases | None = None


def phrase_data() -> dict[str, Any]:
    """The raw phrase file (as parsed YAML); loads and validates it on first use."""
    return _load().raw


def _load() -> _Phrases:
    global _DATA
    if _DATA is None:
        res = importlib.resources.files("medfabric.simulator") / "data" / "note_phrases.yaml"
        raw = yaml.load(res.read_text("utf-8"), Loader=_YAML_LOADER)
        if not isinstance(raw, dict):
            raise PhraseError("note_phrases.yaml: top level must be a mapping")
        _DATA = _Phrases(raw)
    return _DATA


# --- small fast helpers -----------------------------------------------------------------------


class _Rand:
    """A stream of uniforms drawn from the generator 64 at a time.

    ``u`` is the bound ``__next__`` of a lazy C-level chain over blocks, so a draw costs no
    Python frame; how many blocks a note consumes depends only on the note's own choices.
    """

    __slots__ = ("u",)

    def __init__(self, rng: np.random.Generator) -> None:
        self.u: Callable[[], float] = chain.from_iterable(map(_block, repeat(rng))).__next__

    def below(self, n: int) -> int:
        return int(self.u() * n)

    def pick(self, seq: tuple[str, ...]) -> str:
        return seq[int(self.u() * len(seq))]

    def sample(self, seq: tuple[str, ...] | list[str], k: int) -> list[str]:
        """``k`` distinct items of ``seq`` in their original order."""
        n = len(seq)
        if k >= n:
            return list(seq)
        if k <= 0:
            return []
        u = self.u
        if k == 1:
            return [seq[int(u() * n)]]
        chosen: list[int] = []
        while len(chosen) < k:
            i = int(u() * n)
            if i not in chosen:
                chosen.append(i)
        chosen.sort()
        return [seq[c] for c in chosen]


def _block(rng: np.random.Generator) -> list[float]:
    out: list[float] = rng.random(64).tolist()
    return out


class _Doc:
    """Text under construction.

    ``add`` is the bound ``append`` of the part list; a fact remembers the index of its part,
    and character offsets are computed once, at the end, from the part lengths.
    """

    __slots__ = ("add", "marks", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.add: Callable[[str], None] = self.parts.append
        self.marks: list[tuple[int, str, str, str, bool]] = []

    def fact(self, kind: str, code: str, value: str, negated: bool, surface: str) -> None:
        parts = self.parts
        self.marks.append((len(parts), kind, code, value, negated))
        parts.append(surface)

    def finish(self) -> tuple[str, tuple[NoteFact, ...]]:
        parts = self.parts
        text = "".join(parts)
        if not self.marks:
            return text, ()
        offs = list(accumulate(map(len, parts), initial=0))
        idx, kinds, codes, values, negs = zip(*self.marks, strict=True)
        at = offs.__getitem__
        starts = map(at, idx)
        ends = map(at, map((1).__add__, idx))
        if _FAST_FACTS:
            facts: list[Any] = list(map(_FactTwin, kinds, codes, values, negs, starts, ends))
            for f in facts:
                f.__class__ = NoteFact
            return text, tuple(facts)
        return text, tuple(
            map(NoteFact, kinds, codes, values, negs, starts, ends)
        )  # pragma: no cover


_SEX: Final = {"1": "男", "2": "女"}
_ARROW: Final = {"H": "↑", "L": "↓", "HH": "↑↑", "LL": "↓↓"}
_FREQ: Final = {
    "QD": ("qd", "每日一次", "每日1次"),
    "BID": ("bid", "每日两次", "每日2次"),
    "TID": ("tid", "每日三次", "每日3次"),
    "QID": ("qid", "每日四次", "每日4次"),
    "QN": ("qn", "每晚一次", "睡前一次"),
    "Q8H": ("q8h", "每8小时一次", "每8小时1次"),
    "Q12H": ("q12h", "每12小时一次", "每12小时1次"),
    "QW": ("qw", "每周一次", "每周1次"),
    "PRN": ("prn", "必要时", "必要时使用"),
    "ST": ("st", "立即", "立即使用"),
}
_LAB_SEPS: Final = (" ", "", "：", " ")
_VITAL_STYLES: Final = (
    ("T ", "℃ P ", "次/分 BP ", "/", "mmHg"),
    ("T：", "℃，P：", "次/分，BP：", "/", "mmHg"),
    ("体温", "℃，脉搏", "次/分，血压", "/", "mmHg"),
)
_NUM: Final = tuple(f"{i}." for i in range(100))
_INPATIENT_ROUTES: Final = frozenset({"静脉滴注", "肌内注射", "静脉注射"})
_ROUTE_CACHE: dict[str, str] = {}
_CACHE_LIMIT: Final = 50_000


def _route(name: str) -> str:
    """Administration route inferred from the drug's Chinese name (cached per name)."""
    r = _ROUTE_CACHE.get(name)
    if r is not None:
        return r
    if "吸入" in name or "气雾" in name or "粉雾" in name:
        r = "吸入"
    elif "眼膏" in name:
        r = "涂眼"
    elif "滴眼" in name or "眼用" in name:
        r = "滴眼"
    elif "滴耳" in name:
        r = "滴耳"
    elif "鼻" in name and ("喷" in name or "滴" in name):
        r = "喷鼻"
    elif any(k in name for k in ("软膏", "乳膏", "凝胶", "搽剂", "洗剂", "贴")):
        r = "外用"
    elif "栓" in name:
        r = "阴道给药" if "阴道" in name else "纳肛"
    elif "胰岛素" in name or "肝素" in name:
        r = "皮下注射"
    elif "疫苗" in name:
        r = "肌内注射"
    elif "注射" in name or "输液" in name:
        r = "静脉滴注"
    else:
        r = "口服"
    if len(_ROUTE_CACHE) < _CACHE_LIMIT:
        _ROUTE_CACHE[name] = r
    return r


def _clean_impression(s: str) -> str:
    if "\n" in s:
        s = "；".join(p.strip() for p in s.splitlines() if p.strip())
    return s.rstrip("。；; ")


# --- per profile-combination facts, computed once -------------------------------------------


class _Combo:
    """What follows from the note's diagnosis profiles alone (cached per profile tuple)."""

    __slots__ = (
        "chronic_idx", "denials", "keys", "pe", "pool", "primary", "profs", "secondary_idx",
        "status",
    )  # fmt: skip

    def __init__(self, data: _Phrases, profs: list[_Profile]) -> None:
        self.profs = profs
        self.primary = profs[0]
        keys = frozenset(p.key for p in profs)
        self.keys = keys
        excl: set[str] = set()
        for p in profs:
            excl |= p.symset
        pool: list[str] = []
        for p in profs:
            for t in p.deny:
                if t not in excl and t not in pool:
                    pool.append(t)
        self.pool = tuple(pool)
        skip = 0
        for p in profs:
            skip |= p.skip_status
        status = [data.status[b] for b in range(len(_STATUS_KEYS)) if not skip & (1 << b)]
        # every wording of the status sentence and of the past-history denials, pre-joined
        self.status: tuple[str, ...] = (
            tuple(
                lead + "，".join(items) + "。"
                for lead in data.status_lead
                for items in product(*status)
            )
            if status
            else ()
        )
        self.chronic_idx = tuple(i for i in range(1, len(profs)) if profs[i].chronic)
        self.secondary_idx = tuple(
            i
            for i in range(1, len(profs))
            if not profs[i].chronic and profs[i].symptoms and profs[i] is not self.primary
        )
        options: list[tuple[str, ...]] = []
        common = "、".join(t for t, ps in data.deny_common if not ps & keys)
        if common:
            options.append(
                tuple(a + common + b for a in data.deny_common_lead for b in data.deny_common_tail)
            )
        infectious = "、".join(t for t, ps in data.deny_infectious if not ps & keys)
        if infectious:
            options.append(tuple("否认" + infectious + b for b in data.deny_infectious_tail))
        options += [texts for texts, blocked in data.history_items if not blocked & keys]
        brief = tuple("，".join(c) + "。" for c in product(*options)) if options else ("",)
        full = tuple("，".join(c) + "。" for c in product(*options, data.vaccine))
        self.denials = (brief, full)
        self.pe: dict[tuple[tuple[bool, ...], int], tuple[tuple[tuple[str, ...], bool], ...]] = {}

    def physical(self, data: _Phrases, active: tuple[bool, ...], mode: int
                 ) -> tuple[tuple[tuple[str, ...], bool], ...]:  # fmt: skip
        """(options, paired with the complaint) per exam system, in system order.

        mode 0 focused (core systems plus anything specific), 1 full, 2 abnormal only.
        """
        key = (active, mode)
        got = self.pe.get(key)
        if got is not None:
            return got
        out: list[tuple[tuple[str, ...], bool]] = []
        profs = self.profs
        for sysname in _SYSTEMS:
            opts: tuple[str, ...] = ()
            paired = False
            for i, p in enumerate(profs):
                if active[i] and sysname in p.signs:
                    opts = p.signs[sysname]
                    paired = i == 0 and sysname in p.paired
                    break
            if not opts and mode != 2:
                for i, p in enumerate(profs):
                    if (not active[i] or i == 0) and sysname in p.signs_normal:
                        opts = p.signs_normal[sysname]
                        break
                if not opts and (mode == 1 or sysname in _CORE_SYSTEMS):
                    opts = data.exam_normal.get(sysname, ())
            if opts:
                out.append((opts, paired))
        got = tuple(out)
        self.pe[key] = got
        return got


_COMBOS: dict[tuple[str, ...], _Combo] = {}


def _combo(data: _Phrases, ctx: NoteContext) -> _Combo:
    key = tuple([dx[2] for dx in ctx.diagnoses])
    c = _COMBOS.get(key)
    if c is None:
        profs = [data.profile(p) for p in key] or [data.generic]
        c = _Combo(data, profs)
        if len(_COMBOS) >= _CACHE_LIMIT:
            _COMBOS.clear()
        _COMBOS[key] = c
    return c


class _Plan:
    """What this note says about symptoms, decided once per note."""

    __slots__ = (
        "active", "combo", "complaint", "complaint_idx", "denied", "dur", "gw", "opening",
        "present", "secondary",
    )  # fmt: skip

    def __init__(self, data: _Phrases, ctx: NoteContext, r: _Rand, n_deny: int) -> None:
        combo = _combo(data, ctx)
        self.combo = combo
        prim = combo.primary
        u = r.u
        durs = prim.durs
        if ctx.age < 15 and durs is data.chronic_durs:  # no 10-year history in a child
            durs = data.subacute_durs
        self.dur = r.pick(durs)
        self.gw = ""
        self.complaint_idx = k = int(u() * len(prim.complaints))
        segs, terms, rest, opening = prim.complaints[k]
        self.complaint = segs
        self.opening = opening
        if prim.needs_gw:
            wk = 12 + int(u() * 29)
            dd = int(u() * 7)
            self.gw = f"{wk}+{dd}周" if dd else f"{wk}周"
        present = list(terms)
        if rest and (not terms or u() < 0.7):
            present += r.sample(rest, int(u() * 3) if opening else 1 + int(u() * 2))
        self.present = present
        n = len(combo.profs)
        active = [True] + [False] * (n - 1)
        secondary: list[tuple[list[str], str]] = []
        if combo.secondary_idx:
            seen = set(present)
            for i in combo.secondary_idx[:2]:
                p = combo.profs[i]
                cand = [s for s in p.symptoms if s not in seen]
                if not cand:
                    continue
                syms = r.sample(cand, 1 + int(u() * 2))
                seen.update(syms)
                secondary.append((syms, r.pick(p.durs)))
                active[i] = True
        self.secondary = secondary
        self.active = tuple(active)
        self.denied = r.sample(combo.pool, n_deny)


# --- section renderers ---------------------------------------------------------------------


def _header(d: _Doc, title: str, ctx: NoteContext, time_label: str) -> None:
    age = f"{ctx.age}岁" if ctx.age > 0 else "不足1岁"
    d.add(
        f"{title}\n姓名：{ctx.patient_name}　性别：{_SEX.get(ctx.sex, '未知')}　年龄：{age}"
        f"　科别：{ctx.department}\n{time_label}：{ctx.when.isoformat(' ', 'minutes')}\n"
    )


def _emit_segs(d: _Doc, segs: Segs, dur: str, gw: str) -> None:
    add = d.add
    for kind, s in segs:
        if kind == _LIT:
            add(s)
        elif kind == _SYM:
            d.fact("symptom", s, "", False, s)
        elif kind == _DUR:
            add(dur)
        else:
            add(gw)


def _symptom_list(d: _Doc, syms: list[str], negated: bool) -> None:
    parts = d.parts
    add = d.add
    mark = d.marks.append
    for j, s in enumerate(syms):
        if j:
            add("、")
        mark((len(parts), "symptom", s, "", negated))
        add(s)


def _denials(d: _Doc, data: _Phrases, r: _Rand, denied: list[str]) -> None:
    if denied:
        d.add("，" + r.pick(data.deny_cue))
        _symptom_list(d, denied, True)


def _hpi(d: _Doc, data: _Phrases, r: _Rand, plan: _Plan, admission: bool) -> None:
    prim = plan.combo.primary
    u = r.u
    add = d.add
    if prim.hpi:
        hpi = prim.hpi
        k = plan.complaint_idx if len(hpi) == len(prim.complaints) else int(u() * len(hpi))
        _emit_segs(d, hpi[k], plan.dur, plan.gw)
    elif plan.opening is not None:
        before, after = plan.opening
        add(before + plan.dur + after)
        if plan.present:
            add("，" + r.pick(data.after_opening))
            _symptom_list(d, plan.present, False)
        else:
            add("，" + r.pick(data.no_complaint))
    else:
        x = u()
        if prim.onset and x < 0.6:
            onsets = prim.onset
        elif prim.durs is data.acute_durs and x < 0.8:
            onsets = data.onset_acute
        else:
            onsets = data.onset
        before, after = onsets[int(u() * len(onsets))]
        add(before + plan.dur + after)
        syms = plan.present
        n = len(syms)
        last_join = r.pick(data.joiner) if n > 1 else "、"
        for j, s in enumerate(syms):
            if j:
                add(last_join if j == n - 1 else "、")
            d.fact("symptom", s, "", False, s)
        add(r.pick(data.progress))
    _denials(d, data, r, plan.denied)
    add("。")
    for syms, dur in plan.secondary:
        add(r.pick(data.secondary))
        _symptom_list(d, syms, False)
        add(dur + "。")
    if admission:
        add(r.pick(data.prior_care))
    status = plan.combo.status
    if status:
        add(status[int(u() * len(status))])


def _past(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext, combo: _Combo, full: bool) -> None:
    add = d.add
    add("既往史：")
    u = r.u
    for i in combo.chronic_idx:
        code, name, _ = ctx.diagnoses[i]
        add(r.pick(data.chronic_lead))
        d.fact("diagnosis", code, "", False, name)
        years = 1 + int(u() * min(15, max(1, ctx.age - 1)))
        add(f"{r.pick(data.chronic_tail)}{years}年{r.pick(data.chronic_control)}。")
    if not combo.chronic_idx and u() < 0.5:
        add(r.pick(data.past_none))
        if not full:
            return
    add(r.pick(combo.denials[full]))


def _vitals(d: _Doc, ctx: NoteContext, r: _Rand) -> bool:
    v = ctx.vitals
    if v is None:
        return False
    st = _VITAL_STYLES[int(r.u() * 3)]
    t = f"{v[0]:.1f}"
    p = str(int(v[1]))
    s = str(int(v[2]))
    dia = str(int(v[3]))
    add = d.add
    fact = d.fact
    add(st[0])
    fact("vital", "temperature", t, False, t)
    add(st[1])
    fact("vital", "pulse", p, False, p)
    add(st[2])
    fact("vital", "sbp", s, False, s)
    add(st[3])
    fact("vital", "dbp", dia, False, dia)
    add(st[4])
    return True


def _physical(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext, plan: _Plan,
              mode: int) -> None:  # fmt: skip
    """Vitals then system findings. mode 0: focused (OPR/DIS), 1: full (ADM), 2: abnormal only."""
    has_v = _vitals(d, ctx, r)
    u = r.u
    opts = plan.combo.physical(data, plan.active, mode)
    if opts:
        k = plan.complaint_idx
        found = "，".join([o[k] if paired else o[int(u() * len(o))] for o, paired in opts])
        d.add(("，" if has_v else "") + found + "。")
    elif has_v:
        d.add("，余查体未见明显异常。" if mode == 2 else "。")
    else:
        d.add("未见明显异常。")


_LAB_MID: Final = {"H": "↑，", "L": "↓，", "HH": "↑↑，", "LL": "↓↓，"}
_LAB_END: Final = {"H": "↑", "L": "↓", "HH": "↑↑", "LL": "↓↓"}
_UNIT_SHOWN: dict[str, str] = {}


def _unit(unit: str) -> str:
    """How a unit is written after the value: ×10^9/L when it starts with a digit."""
    shown = "×" + unit if unit[:1].isdigit() else unit
    if len(_UNIT_SHOWN) < _CACHE_LIMIT:
        _UNIT_SHOWN[unit] = shown
    return shown


def _labs(d: _Doc, r: _Rand, labs: tuple[tuple[str, str, str, str, str], ...]) -> None:
    # hot loop (a blood count alone has ~20 items): marks are appended inline, and every lab
    # is followed by its flag and a comma; the last tail is replaced by the bare flag
    sep = _LAB_SEPS[int(r.u() * 4)]
    parts = d.parts
    add = d.add
    mark = d.marks.append
    mid = _LAB_MID.get
    shown = _UNIT_SHOWN.get
    flag = "N"
    for code, name, value, unit, flag in labs:
        mark((len(parts), "lab", code, value, False))
        add(name + sep + value + (shown(unit) or _unit(unit)))
        add(mid(flag, "，"))
    if labs:
        parts[-1] = _LAB_END.get(flag, "")


def _exams(d: _Doc, r: _Rand, data: _Phrases, exams: tuple[tuple[str, str, str], ...]) -> None:
    links = data.cp["exam_link"]
    for code, name, imp in exams:
        d.fact("exam", code, "", False, name)
        d.add(links[int(r.u() * len(links))] + _clean_impression(imp) + "。")


def _aux(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext, lead_key: str) -> None:
    if not ctx.labs and not ctx.exams:
        d.add(r.pick(data.cp["no_aux"]))
        return
    if ctx.labs:
        d.add(r.pick(data.cp[lead_key]))
        _labs(d, r, ctx.labs)
        d.add("。")
    _exams(d, r, data, ctx.exams)


def _diagnoses(d: _Doc, ctx: NoteContext, r: _Rand) -> None:
    if not ctx.diagnoses:
        d.add("待查\n")
        return
    add = d.add
    fact = d.fact
    inline = r.u() < 0.4
    if not inline:
        add("\n")
    n = len(ctx.diagnoses)
    for i, (code, name, _) in enumerate(ctx.diagnoses, 1):
        add(_NUM[i] if inline else _NUM[i] + " ")
        fact("diagnosis", code, "", False, name)
        add(("；" if i < n else "\n") if inline else "\n")


def _drug(d: _Doc, drug: tuple[str, str, str, str], fstyle: int, dstyle: int) -> None:
    code, name, dose, freq = drug
    route = _route(name)
    ft = _FREQ.get(freq)
    ftext = ft[fstyle] if ft else freq.lower()
    value = dose + " " + freq
    if dstyle == 0:
        d.fact("drug", code, value, False, f"{name} {dose} {route} {ftext}")
    elif dstyle == 1:
        d.fact("drug", code, value, False, f"{name} {dose} {ftext}")
        d.add(" " + route)
    else:
        d.fact("drug", code, value, False, f"{name} 每次{dose} {ftext}")
        d.add(" " + route)


def _drug_lines(d: _Doc, r: _Rand, drugs: Sequence[tuple[str, str, str, str]], start: int,
                lead: str = "") -> int:  # fmt: skip
    """One numbered line per drug; returns the next number."""
    k = start
    if drugs:
        fstyle = int(r.u() * 3)
        dstyle = int(r.u() * 3)
        for drug in drugs:
            d.add(_NUM[k] + " " + lead)
            _drug(d, drug, fstyle, dstyle)
            d.add("\n")
            k += 1
    return k


def _phrase_lines(d: _Doc, phrases: list[str], start: int) -> None:
    d.add("".join([f"{_NUM[k]} {ph}\n" for k, ph in enumerate(phrases, start)]))


def _plan_phrases(r: _Rand, combo: _Combo, n: int) -> list[str]:
    out = r.sample(combo.primary.plan, n)
    profs = combo.profs
    for i in range(1, len(profs)):
        p = profs[i]
        if p is not combo.primary and r.u() < 0.5:
            ph = r.pick(p.plan)
            if ph not in out:
                out.append(ph)
    return out


def _signature(d: _Doc, ctx: NoteContext) -> None:
    d.add(f"医师：{ctx.doctor}\n")


# --- documents ------------------------------------------------------------------------------


def _opr(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext) -> None:
    plan = _Plan(data, ctx, r, 2 + r.below(3))
    combo = plan.combo
    _header(d, "门诊病历", ctx, "就诊时间")
    d.add("主诉：")
    _emit_segs(d, plan.complaint, plan.dur, plan.gw)
    d.add("\n现病史：")
    _hpi(d, data, r, plan, False)
    d.add(r.pick(data.closing_opr) + "\n")
    _past(d, data, r, ctx, combo, False)
    d.add("\n体格检查：")
    _physical(d, data, r, ctx, plan, 0)
    d.add("\n辅助检查：")
    _aux(d, data, r, ctx, "lab_lead")
    d.add("\n诊断：")
    _diagnoses(d, ctx, r)
    d.add("处理：\n")
    k = _drug_lines(d, r, ctx.drugs, 1)
    phrases = _plan_phrases(r, combo, 1 + r.below(2))
    phrases.append(r.pick(data.cp["followup"]))
    _phrase_lines(d, phrases, k)
    _signature(d, ctx)


def _adm(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext) -> None:
    plan = _Plan(data, ctx, r, 3 + r.below(3))
    combo = plan.combo
    _header(d, "入院记录", ctx, "入院时间")
    d.add("主诉：")
    _emit_segs(d, plan.complaint, plan.dur, plan.gw)
    d.add("\n现病史：")
    _hpi(d, data, r, plan, True)
    if ctx.diagnoses and r.u() < 0.6:
        code, name, _ = ctx.diagnoses[0]
        d.add(r.pick(data.admit_via))
        d.fact("diagnosis", code, "", False, name)
        d.add(r.pick(data.admit_via_end) + "\n")
    else:
        d.add(r.pick(data.closing_adm) + "\n")
    _past(d, data, r, ctx, combo, True)
    pers = data.personal
    d.add("\n个人史：")
    female = ctx.sex == "2"
    if ctx.age < 14:
        d.add(r.pick(pers["child"]) + "。")
    else:
        smoke = (r.u() < (0.08 if female else 0.4)) and ctx.age >= 18
        drink = (r.u() < (0.05 if female else 0.3)) and ctx.age >= 18
        d.add(
            f"{r.pick(pers['adult'])}，{r.pick(pers['smoke_yes' if smoke else 'smoke_no'])}，"
            f"{r.pick(pers['drink_yes' if drink else 'drink_no'])}。"
        )
    mar = data.marital
    pregnant = "pregnancy" in combo.keys
    if female:
        d.add("\n月经及婚育史：")
        if ctx.age < 22:
            d.add(r.pick(mar["female_single"]))
        else:
            g = 1 + r.below(4)
            p = 1 + r.below(g)
            if pregnant:
                d.add(f"{r.pick(mar['female'])}，G{g + 1}P{p - 1}，{r.pick(mar['pregnant'])}")
            else:
                d.add(f"{r.pick(mar['female'])}，G{g}P{p}")
        if not pregnant and ctx.age >= 12:
            menses = mar["menses_stopped"] if ctx.age >= 52 else mar["menses_regular"]
            d.add("，" + r.pick(menses))
        d.add("。")
    else:
        d.add("\n婚育史：" + r.pick(mar["male_single"] if ctx.age < 22 else mar["male"]) + "。")
    d.add("\n家族史：" + r.pick(data.family) + "。")
    d.add("\n体格检查：")
    _physical(d, data, r, ctx, plan, 1)
    d.add("\n辅助检查：")
    _aux(d, data, r, ctx, "lab_lead")
    d.add("\n初步诊断：")
    _diagnoses(d, ctx, r)
    d.add("诊疗计划：\n")
    k = _drug_lines(d, r, ctx.drugs, 1)
    _phrase_lines(d, _plan_phrases(r, combo, 2 + r.below(2)), k)
    _signature(d, ctx)


def _stay_day(ctx: NoteContext) -> int:
    if ctx.day_of_stay is not None:
        return ctx.day_of_stay
    if ctx.admitted is not None:
        return max(1, (ctx.when.date() - ctx.admitted).days + 1)
    return 1


def _prg(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext) -> None:
    plan = _Plan(data, ctx, r, 1 + r.below(2))
    cp = data.cp
    stamp = ctx.when.isoformat(" ", "minutes")
    d.add(
        f"病程记录\n姓名：{ctx.patient_name}　性别：{_SEX.get(ctx.sex, '未知')}"
        f"　科别：{ctx.department}\n{stamp}　住院第{_stay_day(ctx)}天\n"
    )
    d.add(r.pick(cp["prg_subjective"]))
    present = plan.present
    if present:
        k = 1 + r.below(2) if len(present) > 1 else 1
        better = present[:k]
        if r.u() < 0.3:
            d.add(r.pick(cp["prg_same"]))
            _symptom_list(d, better, False)
            d.add("，程度" + r.pick(cp["prg_better"]))
        else:
            d.add("诉")
            _symptom_list(d, better, False)
            d.add(r.pick(cp["prg_better"]))
        gone = present[k : k + 2]
        if gone:
            d.add("，" + r.pick(cp["prg_no"]))
            _symptom_list(d, gone, True)
    else:
        d.add("一般情况可")
    _denials(d, data, r, plan.denied)
    d.add("。\n查体：")
    _physical(d, data, r, ctx, plan, 2)
    if ctx.labs or ctx.exams:
        d.add("\n辅助检查：")
        _aux(d, data, r, ctx, "lab_lead_prg")
    d.add("\n病情变化：" + r.pick(cp["prg_change"]) + "。\n目前诊断：")
    _diagnoses(d, ctx, r)
    d.add("诊疗计划：\n")
    k = _drug_lines(d, r, ctx.drugs, 1, "继续予")
    _phrase_lines(d, _plan_phrases(r, plan.combo, 1 + r.below(2)), k)
    _signature(d, ctx)


def _dis(d: _Doc, data: _Phrases, r: _Rand, ctx: NoteContext) -> None:
    plan = _Plan(data, ctx, r, 2 + r.below(2))
    cp = data.cp
    discharged = ctx.discharged or ctx.when.date()
    admitted = ctx.admitted or discharged
    days = max(1, (discharged - admitted).days)
    _header(d, "出院小结", ctx, "记录时间")
    d.add(
        f"入院日期：{admitted.isoformat()}　出院日期：{discharged.isoformat()}"
        f"　住院天数：{days}天\n入院情况：患者因“"
    )
    _emit_segs(d, plan.complaint, plan.dur, plan.gw)
    d.add("”入院")
    _denials(d, data, r, plan.denied)
    d.add("。" + r.pick(data.pe_lead))
    _physical(d, data, r, ctx, plan, 0)
    d.add("\n诊疗经过：" + r.pick(cp["dis_course_lead"]))
    if ctx.labs:
        d.add(r.pick(cp["lab_lead_dis"]))
        _labs(d, r, ctx.labs)
        d.add("。")
    _exams(d, r, data, ctx.exams)
    inpatient: list[tuple[str, str, str, str]] = []
    home: list[tuple[str, str, str, str]] = []
    for x in ctx.drugs:
        (inpatient if x[3] == "ST" or _route(x[1]) in _INPATIENT_ROUTES else home).append(x)
    if inpatient:
        d.add(r.pick(cp["dis_drug_lead"]))
        fstyle, dstyle = r.below(3), r.below(3)
        for j, drug in enumerate(inpatient):
            if j:
                d.add("，")
            _drug(d, drug, fstyle, dstyle)
        d.add(r.pick(cp["dis_drug_tail"]))
    else:
        d.add(r.pick(cp["dis_no_drug"]))
    d.add(r.pick(cp["dis_result"]) + "\n出院情况：" + r.pick(cp["dis_outcome_lead"]))
    gone = plan.present[:2]
    if gone:
        d.add(r.pick(cp["prg_no"]))
        _symptom_list(d, gone, True)
        d.add("。")
    else:
        d.add("无特殊不适。")
    d.add("\n出院诊断：")
    _diagnoses(d, ctx, r)
    d.add("出院医嘱：\n")
    k = 1
    if home:
        d.add(f"{_NUM[1]} {r.pick(cp['dis_take'])}")
        fstyle, dstyle = r.below(3), r.below(3)
        for j, drug in enumerate(home):
            if j:
                d.add("；")
            _drug(d, drug, fstyle, dstyle)
        d.add("。\n")
        k = 2
    phrases = _plan_phrases(r, plan.combo, 1 + r.below(2))
    phrases.append(r.pick(cp["followup"]))
    _phrase_lines(d, phrases, k)
    _signature(d, ctx)


_RENDERERS: Final = {"OPR": _opr, "ADM": _adm, "PRG": _prg, "DIS": _dis}


def render_note(ctx: NoteContext, rng: np.random.Generator) -> tuple[str, tuple[NoteFact, ...]]:
    """Render one clinical document and the facts it states.

    ``ctx.doc_type`` selects the document: OPR 门诊病历, ADM 入院记录, PRG 病程记录,
    DIS 出院小结.  The first diagnosis is the one the visit is about (chief complaint and
    present illness); later chronic diagnoses appear in the past history, later acute ones add
    a sentence to the present illness.  Raises ``ValueError`` for an unknown doc type.
    """
    fn = _RENDERERS.get(ctx.doc_type)
    if fn is None:
        raise ValueError(f"unknown doc_type {ctx.doc_type!r}; expected one of {DOC_TYPES}")
    data = _DATA or _load()
    d = _Doc()
    fn(d, data, _Rand(rng), ctx)
    return d.finish()


# --- exam reports ---------------------------------------------------------------------------

_DISCS: Final = ("L3/4", "L4/5", "L4/5", "L5/S1", "L5/S1")
_CDISCS: Final = ("C4/5", "C5/6", "C5/6", "C6/7")
_VBS: Final = ("T12", "L1", "L1", "L2", "L3")
_TVBS: Final = ("T7", "T8", "T9", "T10", "T11", "T12")


def _exam_values(v: list[float], exam_name: str) -> dict[str, str]:
    s1 = 12 + int(v[1] * 34)
    return {
        "side": "左" if v[0] < 0.5 else "右",
        "s1": str(s1),
        "s2": str(max(6, int(s1 * (0.5 + 0.45 * v[2])))),
        "nod": str(3 + int(v[3] * 7)),
        "hr": str(60 + int(v[4] * 33)),
        "hr2": str(95 + int(v[5] * 40)),
        "hrs": str(42 + int(v[5] * 14)),
        "hrt": str(102 + int(v[5] * 24)),
        "ef": str(25 + int(v[6] * 20)),
        "efn": str(56 + int(v[6] * 15)),
        "tn": f"{-0.9 + v[7] * 1.9:.1f}",
        "tl": f"{-1.1 - v[7] * 1.3:.1f}",
        "to": f"{-2.6 - v[7] * 1.4:.1f}",
        "zn": f"{-0.8 + v[8] * 1.6:.1f}",
        "zl": f"{-0.6 - v[8] * 1.6:.1f}",
        "disc": _DISCS[int(v[9] * len(_DISCS))],
        "cdisc": _CDISCS[int(v[10] * len(_CDISCS))],
        "vb": _VBS[int(v[11] * len(_VBS))],
        "tvb": _TVBS[int(v[11] * len(_TVBS))],
        "exam": exam_name,
    }


def render_exam_report(
    modality: str,
    body_part: str,
    exam_name: str,
    profiles: tuple[str, ...],
    abnormal: bool,
    rng: np.random.Generator,
) -> tuple[str, str]:
    """Findings (检查所见) and impression (诊断意见) of one exam report.

    The entry is looked up by modality and body part (aliases such as BRAIN→HEAD, then the
    modality's GENERIC entry, then a global fallback).  A normal report uses the entry's normal
    variants.  An abnormal report uses the variants of the first profile in ``profiles`` the
    entry knows, else its incidental ``_any`` findings, so abnormal text never equals normal
    text.  Numbers (sizes, levels, heart rate, T-scores) and the side are drawn consistently for
    findings and impression.
    """
    data = _DATA or _load()
    entry = data.exam_entry(modality, body_part)
    if abnormal:
        variants = None
        for p in profiles:
            variants = entry.abnormal.get(p)
            if variants:
                break
        if not variants:
            variants = entry.abnormal.get("_any") or data.exam_fallback.abnormal["_any"]
    else:
        variants = entry.normal
    v = rng.random(13).tolist()
    findings, impression, fmt = variants[int(v[12] * len(variants))]
    if fmt:
        vals = _exam_values(v, exam_name)
        findings = findings.format_map(vals)
        impression = impression.format_map(vals)
    return findings, impression
