"""Synthetic EMR text: facts match the text, cover the context, never invent, stay stable."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from medfabric.simulator import notes
from medfabric.simulator.notes import (
    DENIAL_CUES,
    DOC_TYPES,
    EXAM_MODALITIES,
    NoteContext,
    NoteFact,
    phrase_data,
    render_exam_report,
    render_note,
)
from medfabric.standards.codes import PROFILE_KEYS

BODY_PARTS = (
    "HEAD", "BRAIN", "CHEST", "ABDOMEN", "PELVIS", "CSPINE", "LSPINE", "TSPINE", "KNEE",
    "SHOULDER", "NECK", "BREAST", "HEART", "STOMACH", "COLON",
)  # fmt: skip

DX_NAMES = {
    "diabetes_t2": ("E11.9", "2型糖尿病不伴有并发症"),
    "hypertension": ("I10", "特发性（原发性）高血压"),
    "pneumonia": ("J18.9", "肺炎"),
    "stroke": ("I63.9", "脑梗死"),
    "copd": ("J44.1", "慢性阻塞性肺疾病伴有急性加重"),
    "checkup": ("Z00.0", "健康查体"),
    "pregnancy": ("Z34.9", "正常妊娠监督"),
}
LABS = (
    ("HBA1C", "糖化血红蛋白", "8.2", "%", "H"),
    ("GLU", "空腹血糖", "9.12", "mmol/L", "H"),
    ("WBC", "白细胞计数", "12.5", "10^9/L", "H"),
    ("HGB", "血红蛋白", "98", "g/L", "L"),
    ("K", "钾", "2.6", "mmol/L", "LL"),
    ("TNI", "肌钙蛋白I", "15.2", "ng/mL", "HH"),
    ("UPRO", "尿蛋白", "阳性(+)", "", "A"),
    ("NA", "钠", "140", "mmol/L", "N"),
    ("CRP", "C反应蛋白", "45", "mg/L", "H"),
)
EXAMS = (
    ("CT-CHEST", "胸部CT平扫", "考虑右下肺炎"),
    ("US-ABD", "腹部彩超(肝胆胰脾)", "脂肪肝（中度）。"),
    ("ECG-12", "常规心电图(12导联)", "窦性心律\n正常心电图"),
    ("DR-KNEE", "膝关节正侧位片", "右膝关节退行性骨关节病"),
)
DRUGS = (
    ("YP00001", "二甲双胍片", "0.5g", "TID"),
    ("YP00010", "硝苯地平控释片", "30mg", "QD"),
    ("YP00020", "注射用头孢曲松钠", "2g", "Q12H"),
    ("YP00030", "门冬胰岛素注射液", "8U", "TID"),
    ("YP00040", "布地奈德福莫特罗粉吸入剂", "1吸", "BID"),
    ("YP00050", "艾司唑仑片", "1mg", "QN"),
    ("YP00060", "对乙酰氨基酚片", "0.5g", "PRN"),
    ("YP00070", "阿司匹林肠溶片", "100mg", "QD"),
    ("YP00080", "地塞米松磷酸钠注射液", "5mg", "ST"),
    ("YP00090", "阿仑膦酸钠片", "70mg", "QW"),
    ("YP00100", "注射用美罗培南", "1g", "Q8H"),
    ("YP00110", "多潘立酮片", "10mg", "QID"),
    ("YP00120", "红霉素眼膏", "适量", "BID"),
)
HEADERS = {
    "OPR": ("门诊病历", "主诉：", "现病史：", "既往史：", "体格检查：", "辅助检查：", "诊断：",
            "处理："),
    "ADM": ("入院记录", "主诉：", "现病史：", "既往史：", "个人史：", "婚育史：", "家族史：",
            "体格检查：", "辅助检查：", "初步诊断：", "诊疗计划："),
    "PRG": ("病程记录", "住院第", "查体：", "病情变化：", "目前诊断：", "诊疗计划："),
    "DIS": ("出院小结", "入院日期：", "出院日期：", "住院天数：", "入院情况：", "诊疗经过：",
            "出院诊断：", "出院医嘱："),
}  # fmt: skip
CLAUSE_BREAKS = "，。；：\n"


def make_ctx(rng: np.random.Generator, doc_type: str, profiles: tuple[str, ...]) -> NoteContext:
    diagnoses = []
    for i, p in enumerate(profiles):
        code, name = DX_NAMES.get(p, (f"Q{i}{len(p)}.{i}", f"测试诊断{p}"))
        diagnoses.append((code, name, p))
    pick = rng.random(len(LABS)) < 0.35
    labs = tuple(lab for lab, keep in zip(LABS, pick, strict=True) if keep)
    exams = tuple(e for e, keep in zip(EXAMS, rng.random(len(EXAMS)) < 0.3, strict=True) if keep)
    drugs = tuple(d for d, keep in zip(DRUGS, rng.random(len(DRUGS)) < 0.3, strict=True) if keep)
    when = datetime(2024, 1, 1, 8, 0) + timedelta(minutes=int(rng.integers(0, 500_000)))
    admitted = when.date() - timedelta(days=int(rng.integers(0, 12)))
    vitals = None
    if rng.random() < 0.85:
        vitals = (
            round(float(rng.normal(37.0, 0.6)), 1),
            int(rng.integers(55, 120)),
            int(rng.integers(95, 180)),
            int(rng.integers(55, 105)),
        )
    return NoteContext(
        doc_type=doc_type,
        patient_name="王秀英",
        sex=str(rng.choice(["1", "2"])),
        age=int(rng.integers(0, 95)),
        when=when,
        department="内科",
        doctor="陈建国",
        diagnoses=tuple(diagnoses),
        labs=labs,
        exams=exams,
        drugs=drugs,
        vitals=vitals,
        admitted=admitted if doc_type != "OPR" else None,
        discharged=when.date() if doc_type == "DIS" else None,
        day_of_stay=(when.date() - admitted).days + 1 if doc_type == "PRG" else None,
    )


def random_cases(n: int, seed: int = 11) -> list[NoteContext]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        primary = PROFILE_KEYS[i % len(PROFILE_KEYS)]
        extra = tuple(str(p) for p in rng.choice(PROFILE_KEYS, size=int(rng.integers(0, 3))))
        out.append(make_ctx(rng, DOC_TYPES[(i // len(PROFILE_KEYS)) % 4], (primary, *extra)))
    return out


CASES = random_cases(48 * 8)


def all_symptoms() -> set[str]:
    """Every symptom term of the phrase file: ones a profile produces and ones notes deny."""
    profiles = phrase_data()["profiles"].values()
    return {s for p in profiles for key in ("symptoms", "deny") for s in p.get(key) or ()}


def clause_before(text: str, start: int) -> str:
    i = start
    while i > 0 and text[i - 1] not in CLAUSE_BREAKS:
        i -= 1
    return text[i:start]


@pytest.mark.parametrize("idx", range(0, len(CASES), 3))
def test_facts_are_exact_slices_and_cover_the_context(idx: int) -> None:
    ctx = CASES[idx]
    text, facts = render_note(ctx, np.random.default_rng(idx))
    dx = {c: n for c, n, _ in ctx.diagnoses}
    labs = {c: (n, v, u) for c, n, v, u, _ in ctx.labs}
    drugs = {c: (n, d, f) for c, n, d, f in ctx.drugs}
    exams = {c: n for c, n, _ in ctx.exams}
    vitals = {}
    if ctx.vitals is not None:
        t, p, s, d = ctx.vitals
        vitals = {"temperature": f"{t:.1f}", "pulse": str(p), "sbp": str(s), "dbp": str(d)}
    vocab = all_symptoms()
    last_end = 0
    for f in facts:
        assert isinstance(f, NoteFact)
        surface = text[f.start : f.end]
        assert surface and f.start >= last_end, f
        last_end = f.end
        if f.kind == "diagnosis":
            assert surface == dx[f.code] and f.value == "" and not f.negated
        elif f.kind == "lab":
            name, value, unit = labs[f.code]
            shown = "×" + unit if unit[:1].isdigit() else unit  # 12.5×10^9/L
            assert surface.startswith(name) and surface.endswith(value + shown)
            assert value in surface and f.value == value
        elif f.kind == "drug":
            name, dose, freq = drugs[f.code]
            assert surface.startswith(name) and dose in surface
            assert f.value == f"{dose} {freq}"
        elif f.kind == "exam":
            assert surface == exams[f.code] and f.value == ""
        elif f.kind == "vital":
            assert surface == f.value == vitals[f.code]
        elif f.kind == "symptom":
            assert surface == f.code and f.code in vocab
        else:
            pytest.fail(f"unknown fact kind {f.kind}")
        if f.negated:
            assert f.kind == "symptom"
            clause = clause_before(text, f.start)
            assert any(cue in clause for cue in DENIAL_CUES), (clause, f)
    stated = {(f.kind, f.code) for f in facts}
    for kind, codes in (("diagnosis", dx), ("lab", labs), ("drug", drugs), ("exam", exams),
                        ("vital", vitals)):  # fmt: skip
        assert {(kind, c) for c in codes} <= stated, kind
        assert {c for k, c in stated if k == kind} <= set(codes), kind


@pytest.mark.parametrize("doc_type", DOC_TYPES)
def test_every_case_renders_consistently(doc_type: str) -> None:
    """All cases of a doc type: headers, denials never contradict a diagnosis' symptoms."""
    profiles = phrase_data()["profiles"]
    for i, ctx in enumerate(CASES):
        ctx = dataclasses.replace(ctx, doc_type=doc_type)
        text, facts = render_note(ctx, np.random.default_rng(1000 + i))
        for header in HEADERS[doc_type]:
            assert header in text, (doc_type, header)
        producible = {s for _, _, p in ctx.diagnoses for s in profiles[p].get("symptoms") or ()}
        for f in facts:
            if f.kind == "symptom" and f.negated and doc_type in ("OPR", "ADM"):
                assert f.code not in producible, (f.code, ctx.diagnoses)
        assert "{" not in text and "[" not in text
        if doc_type in ("OPR", "ADM"):
            line = text[text.index("主诉：") + 3 :].split("\n", 1)[0]
            assert line.strip()


def test_absent_diseases_only_denied() -> None:
    """History diseases the context lacks appear only inside a 否认 clause, never as present."""
    past = phrase_data()["past"]
    entries = [*past["deny_common"], *past["deny_infectious"]]
    for i, ctx in enumerate(CASES):
        text, _ = render_note(ctx, np.random.default_rng(i))
        keys = {p for _, _, p in ctx.diagnoses}
        own = "".join(n for _, n, _ in ctx.diagnoses) + "".join(e[2] for e in ctx.exams)
        for e in entries:
            term = e["term"]
            if keys & set(e["profiles"]):
                assert "否认" + term not in text
                continue
            if term in own:
                continue
            start = text.find(term)
            while start >= 0:
                assert "否认" in clause_before(text, start), (term, text)
                start = text.find(term, start + 1)


def test_deterministic_and_varied() -> None:
    ctx = CASES[5]
    a = render_note(ctx, np.random.default_rng(42))
    b = render_note(ctx, np.random.default_rng(42))
    assert a == b
    texts = {render_note(ctx, np.random.default_rng(s))[0] for s in range(20)}
    assert len(texts) > 10
    rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
    seq1 = [render_note(c, rng1) for c in CASES[:30]]
    seq2 = [render_note(c, rng2) for c in CASES[:30]]
    assert seq1 == seq2


def test_facts_are_genuine_frozen_notefacts() -> None:
    _, facts = render_note(CASES[0], np.random.default_rng(0))
    f = facts[0]
    assert type(f) is NoteFact
    assert f == NoteFact(f.kind, f.code, f.value, f.negated, f.start, f.end)
    assert hash(f) == hash(NoteFact(f.kind, f.code, f.value, f.negated, f.start, f.end))
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.start = 3  # type: ignore[misc]


def test_lab_flags_and_vital_layout() -> None:
    ctx = make_ctx(np.random.default_rng(1), "OPR", ("diabetes_t2",))
    ctx = dataclasses.replace(ctx, labs=LABS, vitals=(36.8, 78, 135, 85))
    for seed in range(10):
        text, facts = render_note(ctx, np.random.default_rng(seed))
        by_code = {f.code: f for f in facts if f.kind == "lab"}
        assert text[by_code["HBA1C"].end] == "↑"
        assert text[by_code["HGB"].end] == "↓"
        assert text[by_code["K"].end : by_code["K"].end + 2] == "↓↓"
        assert text[by_code["NA"].end] in "，。"
        vit = {f.code: f.value for f in facts if f.kind == "vital"}
        assert vit == {"temperature": "36.8", "pulse": "78", "sbp": "135", "dbp": "85"}
        assert "135/85mmHg" in text and "36.8℃" in text and "78次/分" in text


def test_edge_contexts() -> None:
    rng = np.random.default_rng(3)
    base = make_ctx(rng, "OPR", ("hypertension",))
    empty = dataclasses.replace(base, diagnoses=(), labs=(), exams=(), drugs=(), vitals=None)
    for dt in DOC_TYPES:
        text, facts = render_note(dataclasses.replace(empty, doc_type=dt), rng)
        assert text and all(f.kind == "symptom" for f in facts)
    unknown = dataclasses.replace(base, diagnoses=(("X99", "未知病", "no_such_profile"),))
    text, facts = render_note(unknown, rng)
    assert any(f.kind == "diagnosis" and f.code == "X99" for f in facts)
    with pytest.raises(ValueError):
        render_note(dataclasses.replace(base, doc_type="XXX"), rng)
    dis = dataclasses.replace(base, doc_type="DIS", admitted=date(2024, 3, 1),
                              discharged=date(2024, 3, 8))  # fmt: skip
    assert "住院天数：7天" in render_note(dis, rng)[0]


def test_phrase_file_covers_profiles_and_modalities() -> None:
    data = phrase_data()
    profiles = data["profiles"]
    for key in PROFILE_KEYS:
        p = profiles[key]
        assert p["complaints"] and p["deny"] and p["plan"], key
        if key != "checkup":
            assert len(p["symptoms"]) >= 3, key
            assert p.get("signs") and p.get("signs_normal"), key
    assert set(EXAM_MODALITIES) <= set(data["exams"])
    parts = {part for mod in data["exams"].values() for part in mod}
    aliases = data["exam_aliases"]
    for part in BODY_PARTS:
        assert part in parts or aliases.get(part) in parts, part
    for mod in data["exams"].values():
        for entry in mod.values():
            assert entry["normal"] and entry["abnormal"]


def test_connective_text_never_states_a_symptom() -> None:
    """Plans, normal findings and connectives hold no symptom term (they would be unrecorded)."""
    data = phrase_data()
    vocab = all_symptoms()
    texts: list[str] = []
    for p in data["profiles"].values():
        texts += p["plan"] + (p.get("onset") or [])
        for vals in (p.get("signs_normal") or {}).values():
            texts += vals
        for c in p["complaints"]:
            if isinstance(c, dict):
                texts.append(c["hpi"])
                c = c["cc"]
            lit = c
            while "[" in lit:
                lit = lit[: lit.index("[")] + "|" + lit[lit.index("]") + 1 :]
            texts.append(lit)
    for vals in data["exam_normal"].values():
        texts += vals
    for key in ("onset", "onset_acute", "progress", "secondary", "prior_care", "closing_opr",
                "closing_adm"):  # fmt: skip
        texts += data["hpi"][key]
    for vals in data["status"].values():
        texts += vals
    for vals in data["course_phrases"].values():
        texts += vals
    texts += data["family"]
    bad = [(t, s) for t in texts for s in vocab if s in t]
    assert not bad


def test_templates_reference_own_symptoms() -> None:
    notes_data = notes._load()
    for key, prof in notes_data.profiles.items():
        for _segs, terms, rest, _opening in prof.complaints:
            assert set(terms) <= prof.symset, key
            assert set(rest) | set(terms) == prof.symset or not prof.symptoms, key


@pytest.mark.parametrize("modality", EXAM_MODALITIES)
def test_exam_reports_normal_vs_abnormal(modality: str) -> None:
    data = phrase_data()["exams"][modality]
    rng = np.random.default_rng(5)
    for part, entry in data.items():
        normals = {render_exam_report(modality, part, "某检查", (), False, rng) for _ in range(5)}
        for prof in [*entry["abnormal"], "checkup"]:
            for _ in range(4):
                f, i = render_exam_report(modality, part, "某检查", (prof,), True, rng)
                assert f and i and "{" not in f + i
                assert (f, i) not in normals
                assert i not in {n[1] for n in normals}


def test_exam_reports_mention_relevant_findings() -> None:
    rng = np.random.default_rng(9)
    for _ in range(20):
        for mod in ("CT", "DX"):
            f, i = render_exam_report(mod, "CHEST", "胸部检查", ("pneumonia",), True, rng)
            assert "肺炎" in i and ("渗出" in f or "模糊" in f or "实变" in f or "磨玻璃" in f)
        f, i = render_exam_report("CT", "HEAD", "头颅CT平扫", ("hypertension", "stroke"), True, rng)
        assert "低密度" in f and "梗死" in i
        f, i = render_exam_report("US", "ABDOMEN", "腹部彩超", ("biliary",), True, rng)
        assert "胆囊结石" in i
        f, i = render_exam_report("US", "ABDOMEN", "腹部彩超", ("liver_disease",), True, rng)
        assert "脂肪肝" in i or "肝硬化" in i
        f, i = render_exam_report("MR", "BRAIN", "头颅MRI", ("stroke",), True, rng)
        assert "梗死" in i
        f, i = render_exam_report("BMD", "LSPINE", "腰椎骨密度", ("osteoporosis",), True, rng)
        assert i == "骨质疏松" and "T值-" in f
        f, i = render_exam_report("ECG", "HEART", "常规心电图", ("arrhythmia",), False, rng)
        assert "正常心电图" in i
        f, i = render_exam_report("CT", "CHEST", "胸部CT平扫", (), False, rng)
        assert "肺炎" not in i
    assert render_exam_report("XX", "YY", "奇怪检查", (), False, rng)[1] == "奇怪检查未见明显异常"
    a = render_exam_report("US", "NECK", "甲状腺彩超", ("thyroid",), True, np.random.default_rng(1))
    b = render_exam_report("US", "NECK", "甲状腺彩超", ("thyroid",), True, np.random.default_rng(1))
    assert a == b


def test_paired_signs_match_the_complaint() -> None:
    """A profile's paired exam findings follow its chief complaint (left hip → left hip)."""
    profiles = phrase_data()["profiles"]
    rng = np.random.default_rng(21)
    for key, prof in profiles.items():
        if not prof.get("paired"):
            continue
        for _ in range(12):
            ctx = make_ctx(rng, "OPR", (key,))
            text, _ = render_note(ctx, rng)
            line = text[text.index("主诉：") + 3 :].split("\n", 1)[0]
            ccs = [c["cc"] if isinstance(c, dict) else c for c in prof["complaints"]]
            idx = [i for i, tpl in enumerate(ccs) if tpl.split("[", 1)[0].split("{", 1)[0] in line]
            assert idx, (key, line)
            for system in prof["paired"]:
                assert any(prof["signs"][system][i] in text for i in idx), (key, system, text)


def test_complaint_openings_lead_the_present_illness() -> None:
    """A complaint with its own opening (体检发现…) starts the present illness with it."""
    rng = np.random.default_rng(4)
    seen = 0
    for _ in range(150):
        ctx = make_ctx(rng, "OPR", ("gout",))
        text, _ = render_note(ctx, rng)
        if "主诉：体检发现尿酸升高" in text:
            hpi = text[text.index("现病史：") + 4 :]
            assert hpi.startswith("患者") and "前体检发现尿酸升高" in hpi.split("。")[0]
            seen += 1
    assert seen > 10
