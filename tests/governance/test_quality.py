"""Data-quality checks on a governed simulated region: the simulator's injected defects are
found, every category produces results, planted violations turn checks from pass to fail, the
report's JSON and HTML, scores and trend, checks derived from the catalog, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from tests.governance.regionkit import GovernedRegion, config_with_warehouse, copy_warehouse
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.governance.quality.checks import generate_checks, model_checks
from medfabric.governance.quality.evaluate import evaluate
from medfabric.governance.quality.report import render_html, render_json, report_data
from medfabric.governance.quality.rules import load_rules, parse_rules
from medfabric.governance.quality.runner import CheckResult, QualityRun, run_quality
from medfabric.governance.quality.scores import scores, trend
from medfabric.standards.elements import data_elements
from medfabric.standards.model import Column, dwd_model
from medfabric.warehouse import DuckDBEngine, WarehouseError

CATEGORIES = {"conformance", "completeness", "plausibility", "uniqueness", "timeliness"}


@pytest.fixture(scope="module")
def first_run(governed: GovernedRegion, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, QualityRun]:  # fmt: skip
    """One run on a module-wide copy, for the read-only tests."""
    path = copy_warehouse(governed, tmp_path_factory.mktemp("quality"))
    e = DuckDBEngine(path)
    try:
        run = run_quality(e)
    finally:
        e.close()
    return path, run


def _result(run: QualityRun, check_id: str, hospital: str) -> CheckResult:
    return next(r for r in run.results if r.check_id == check_id and r.hospital == hospital)


def test_injected_defects_are_found(governed: GovernedRegion, first_run: tuple[Path, QualityRun]
                                    ) -> None:  # fmt: skip
    e = DuckDBEngine(first_run[0])
    try:
        rows = evaluate(e, governed.root / "truth" / "defects.csv")
    finally:
        e.close()
    for s in rows:
        print(f"{s.defect:28} injected={s.injected} no_effect={s.no_effect} found={s.found} "
              f"recall={s.recall} flagged={s.flagged} precision={s.precision}")  # fmt: skip
    by = {s.defect: s for s in rows}
    assert {"missing_required", "duplicate", "wrong_unit"} <= set(by)
    for s in rows:
        assert s.observable > 0, s
        assert s.recall is not None and s.recall >= 0.95, s
        assert s.flagged >= s.found > 0
        assert s.precision is not None and 0 < s.precision <= 1
    for s in rows:  # the per-check breakdown adds up
        assert s.by_check and max(f for _, f, _ in s.by_check) <= s.flagged
        assert sum(hits for _, _, hits in s.by_check) >= s.true_positives
    # Only a wrong_unit whose units share one factor is excused, and it really is a no-op.
    assert all(s.no_effect == 0 for s in rows if s.defect != "wrong_unit")


def test_every_category_produces_results(first_run: tuple[Path, QualityRun]) -> None:
    run = first_run[1]
    assert {r.category for r in run.results} == CATEGORIES
    for category in CATEGORIES:
        statuses = {r.status for r in run.results if r.category == category}
        assert statuses & {"pass", "fail"}, category
    assert run.count("pass") + run.count("fail") + run.count("not_applicable") == len(run.results)
    hospitals = {r.hospital for r in run.results}
    assert hospitals == {"H01", "H02", "H03"}
    assert len(run.results) == len(run.checks) * len(hospitals)


def test_completeness_counts_the_quarantined_rows(first_run: tuple[Path, QualityRun]) -> None:
    path, run = first_run
    e = DuckDBEngine(path)
    try:
        quarantined = dict(e.fetchall(
            "SELECT hospital, count(*) FROM gov.quarantine WHERE dwd_table = 'person' AND "
            "list_contains(reasons, 'missing required name') GROUP BY 1"
        ))  # fmt: skip
        persons = dict(e.fetchall("SELECT _source_hospital, count(*) FROM dwd.person GROUP BY 1"))
        stored = e.fetchall(
            "SELECT count(*) FROM dq.failures WHERE check_id = 'person.name.required' AND "
            "row_id IN (SELECT hospital || '/' || source_system || '/' || source_table || '/' || "
            "source_key FROM gov.quarantine)"
        )[0][0]
    finally:
        e.close()
    assert quarantined
    for hospital, n in quarantined.items():
        r = _result(run, "person.name.required", hospital)
        assert (r.status, r.rows_failed) == ("fail", n)
        assert r.rows_checked >= persons[hospital] + n
    assert stored == sum(quarantined.values())


def test_planted_violations_turn_checks_from_pass_to_fail(engine: DuckDBEngine) -> None:
    before = run_quality(engine)
    planted = {
        "person.sex_code.value_domain": "UPDATE dwd.person SET sex_code = '7' WHERE person_id = "
        "(SELECT min(person_id) FROM dwd.person WHERE _source_hospital = 'H02')",
        "visit.discharge_after_admission": "UPDATE dwd.visit SET discharged_at = admitted_at - "
        "INTERVAL 1 DAY WHERE visit_id = (SELECT min(visit_id) FROM dwd.visit WHERE "
        "_source_hospital = 'H02' AND admitted_at IS NOT NULL AND discharged_at IS NOT NULL)",
        "diagnosis.visit_id.references": "UPDATE dwd.diagnosis SET visit_id = 'H02/HIS/X/1' "
        "WHERE diagnosis_id = (SELECT min(diagnosis_id) FROM dwd.diagnosis WHERE "
        "_source_hospital = 'H02')",
        "staff.sex_code.format": "UPDATE dwd.staff SET sex_code = 'x' WHERE staff_code = "
        "(SELECT min(staff_code) FROM dwd.staff WHERE _source_hospital = 'H02') AND "
        "_source_hospital = 'H02'",
    }
    for check_id in planted:
        assert _result(before, check_id, "H02").status == "pass", check_id
    for sql in planted.values():
        engine.execute(sql)
    after = run_quality(engine)
    for check_id in planted:
        r = _result(after, check_id, "H02")
        assert (r.status, r.rows_failed) == ("fail", 1), check_id
        rows = engine.fetchall(
            "SELECT row_id FROM dq.failures WHERE run_id = ? AND check_id = ? AND hospital = ?",
            [after.run_id, check_id, "H02"],
        )
        assert len(rows) == 1 and rows[0][0].startswith("H02/"), check_id
    assert _result(after, "visit.discharge_after_admission", "H01").rows_failed == (
        _result(before, "visit.discharge_after_admission", "H01").rows_failed
    )


def test_a_check_without_rows_is_not_applicable(engine: DuckDBEngine) -> None:
    engine.execute("DELETE FROM dwd.imaging_study WHERE _source_hospital = 'H01'")
    run = run_quality(engine)
    vital = [r for r in run.results if r.dwd_table == "vital_sign"]
    assert vital and {r.status for r in vital} == {"not_applicable"}
    assert all(r.rows_checked == 0 for r in vital)
    h01 = [r for r in run.results if r.dwd_table == "imaging_study" and r.hospital == "H01"]
    assert {r.status for r in h01} == {"not_applicable"}
    h02 = [r for r in run.results if r.dwd_table == "imaging_study" and r.hospital == "H02"]
    assert "pass" in {r.status for r in h02}
    # A column the hospital's mapping never fills: checked on no row, so not applicable.
    unfilled = _result(run, "person.postal_code.format", "H01")
    assert (unfilled.status, unfilled.rows_checked) == ("not_applicable", 0)


def test_the_json_report_has_the_documented_shape(first_run: tuple[Path, QualityRun]) -> None:
    path, run = first_run
    e = DuckDBEngine(path)
    try:
        data = json.loads(render_json(report_data(e)))
    finally:
        e.close()
    assert (data["format"], data["format_version"]) == ("medfabric-quality-report", 1)
    assert set(data) == {"format", "format_version", "run", "scores", "trend", "checks",
                         "results"}  # fmt: skip
    assert data["run"]["run_id"] == run.run_id
    assert set(data["run"]) >= {"run_id", "started_at", "finished_at", "rules_version", "checks",
                                "passed", "failed", "not_applicable", "seconds"}  # fmt: skip
    assert set(data["results"][0]) == {
        "hospital", "dwd_table", "check_id", "category", "subcategory", "status",
        "rows_checked", "rows_failed", "percent_failed", "threshold", "severity", "examples",
    }  # fmt: skip
    assert len(data["results"]) == len(run.results)
    assert len(data["checks"]) == len(run.checks)
    assert set(data["checks"][0]) == {"check_id", "kind", "category", "subcategory",
                                      "dwd_table", "columns", "description", "threshold",
                                      "severity", "origin"}  # fmt: skip
    failing = [r for r in data["results"] if r["status"] == "fail"]
    assert failing and all(r["examples"] for r in failing)
    assert all(len(r["examples"]) <= 5 for r in data["results"])
    region = {s["category"]: s for s in data["scores"] if s["hospital"] == "*"}
    assert set(region) == CATEGORIES | {"overall"}
    overall = region["overall"]
    assert overall["score"] == round(
        100 * overall["passed"] / (overall["passed"] + overall["failed"]), 1
    )


def test_the_html_report_is_self_contained_and_escapes_text(engine: DuckDBEngine) -> None:
    rules = parse_rules(
        'version: "t"\nrules:\n  - {id: person.evil, kind: sql, table: person, '
        'predicate: "name <> \'<script>\'", description: "<b>bold</b> & co"}\n'
    )
    run_quality(engine, rules=rules)
    html = render_html(report_data(engine))
    assert html.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert "<b>bold</b>" not in html and "<script" not in html
    assert not re.search(r"(src|href)=", html)  # nothing fetched from anywhere
    assert "person.evil" in html and "H01" in html


def test_scores_and_their_trend_across_runs(engine: DuckDBEngine) -> None:
    first = run_quality(engine)
    engine.execute(
        "UPDATE dwd.person SET sex_code = '9', birth_date = DATE '1800-01-01' "
        "WHERE _source_hospital = 'H03'"
    )
    second = run_quality(engine)
    assert second.run_id == first.run_id + 1
    now = {(s.hospital, s.category): s for s in scores(engine)}
    h03 = now[("H03", "overall")]
    assert h03.run_id == second.run_id
    assert h03.score == round(100 * h03.passed / (h03.passed + h03.failed), 1)
    points = {(s.run_id, s.hospital): s.score for s in trend(engine) if s.category == "overall"}
    assert points[(second.run_id, "H03")] < points[(first.run_id, "H03")]
    assert points[(second.run_id, "H01")] == points[(first.run_id, "H01")]
    data = report_data(engine)
    assert {t["run_id"] for t in data["trend"]} == {first.run_id, second.run_id}
    older = report_data(engine, first.run_id)
    assert {t["run_id"] for t in older["trend"]} == {first.run_id}


def test_checks_are_derived_from_the_catalog() -> None:
    model = dwd_model()
    person = model.tables["person"]
    extra = Column("nickname", data_elements()["DE02.01.039.00"], required=True)
    grown = dataclasses.replace(person, columns=(*person.columns, extra))
    tables = {**model.tables, "person": grown}
    bigger = dataclasses.replace(model, tables=tables)
    before = {c.id for c in model_checks(model)}
    after = {c.id: c for c in model_checks(bigger)}
    assert set(after) - before == {"person.nickname.required", "person.nickname.format"}
    required = after["person.nickname.required"]
    assert (required.category, required.table, required.columns) == (
        "completeness",
        "person",
        ("nickname",),
    )
    # Every required column, coded column and reference of the model has its check.
    ids = {c.id for c in generate_checks(load_rules())}
    for t in model.tables.values():
        for c in t.columns:
            if c.lineage:
                continue
            assert f"{t.name}.{c.name}.format" in ids
            assert (f"{t.name}.{c.name}.required" in ids) == c.required
            assert (f"{t.name}.{c.name}.value_domain" in ids) == (c.value_domain is not None)
            assert (f"{t.name}.{c.name}.references" in ids) == (c.references is not None)
        assert f"{t.name}.primary_key.unique" in ids


def _region_copy(governed: GovernedRegion, tmp_path: Path) -> Path:
    return config_with_warehouse(governed, tmp_path, copy_warehouse(governed, tmp_path / "wh"))


def test_the_quality_commands(governed: GovernedRegion, tmp_path: Path) -> None:
    config = _region_copy(governed, tmp_path)
    runner = CliRunner()
    got = runner.invoke(app, ["quality", "report", "-c", str(config)])
    assert got.exit_code == 2 and "no quality run" in got.output
    got = runner.invoke(app, ["quality", "run", "-c", str(config)])
    assert got.exit_code == 0, got.output
    assert "run 1:" in got.output
    got = runner.invoke(app, ["quality", "report", "-c", str(config)])
    assert got.exit_code == 0 and "Failing checks" in got.output
    out = tmp_path / "q.json"
    got = runner.invoke(app, ["quality", "report", "-c", str(config), "--format", "json",
                              "--out", str(out)])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert json.loads(out.read_text("utf-8"))["run"]["run_id"] == 1
    html = tmp_path / "q.html"
    got = runner.invoke(app, ["quality", "report", "-c", str(config), "--format", "html",
                              "--out", str(html)])  # fmt: skip
    assert got.exit_code == 0 and html.read_text("utf-8").startswith("<!DOCTYPE html>")
    got = runner.invoke(app, ["quality", "eval", "-c", str(config), "--truth",
                              str(governed.root / "truth" / "defects.csv")])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert "wrong_unit" in got.output
    # A truth file whose defects are all missed fails the recall gate.
    fake = tmp_path / "defects.csv"
    fake.write_text(
        "hospital,system,table,source_table,local_key,column,defect,detail\n"
        "H01,HIS,patient,PAT_MASTER_INDEX,NOPE,name,missing_required,\n",
        "utf-8",
    )
    got = runner.invoke(app, ["quality", "eval", "-c", str(config), "--truth", str(fake)])
    assert got.exit_code == 1 and "recall below" in got.output
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nrules:\n  - {id: a.b, kind: range, table: nope}\n', "utf-8")
    got = runner.invoke(app, ["quality", "run", "-c", str(config), "--rules", str(bad)])
    assert got.exit_code == 2 and "bad.yaml:3:" in got.output


def test_a_warehouse_without_dwd_is_refused_clearly() -> None:
    e = DuckDBEngine(":memory:")
    try:
        with pytest.raises(WarehouseError, match=r"no DWD tables.*govern run"):
            run_quality(e)
    finally:
        e.close()


def test_a_unit_mix_up_is_told_apart_from_an_abnormal_value(engine: DuckDBEngine) -> None:
    """A normal glucose written in mg/dL but labelled mmol/L fails the unit check; a high
    glucose that the LIS flagged high does not."""
    pick = (
        "SELECT min(lab_result_id) FROM dwd.lab_result WHERE item_code = 'GLU' AND "
        "abnormal_flag = 'N' AND _source_hospital = 'H01'"
    )
    mixed = engine.fetchall(pick)[0][0]
    engine.execute(
        "UPDATE dwd.lab_result SET value_numeric = value_numeric * 18.016 WHERE lab_result_id = ?",
        [mixed],
    )
    high = engine.fetchall(pick.replace("min(", "max("))[0][0]
    engine.execute(
        "UPDATE dwd.lab_result SET value_numeric = 14.2, abnormal_flag = 'H' "
        "WHERE lab_result_id = ?",
        [high],
    )
    run = run_quality(engine)
    failing = {
        (str(c), str(r))
        for c, r in engine.fetchall(
            "SELECT check_id, row_id FROM dq.failures WHERE run_id = ?", [run.run_id]
        )
    }
    assert ("lab_result.unit.mixup", mixed) in failing
    assert ("lab_result.flag.consistent", mixed) in failing
    assert not {c for c, r in failing if r == high}


def test_a_delta_check_finds_a_mislabelled_value_inside_the_reference_range(
    engine: DuckDBEngine,
) -> None:
    """A person's two results of an item whose units differ tenfold (CRP mg/L and mg/dL): the
    second rewritten as one tenth of the first, as a mg/dL value labelled mg/L would be."""
    pick = engine.fetchall(
        """SELECT person_id, item_code, list(lab_result_id ORDER BY _source_updated_at,
        lab_result_id), list(CAST(value_numeric AS DOUBLE) ORDER BY _source_updated_at,
        lab_result_id)
FROM dwd.lab_result WHERE item_code IN ('HSCRP', 'LPA', 'CRP') AND value_numeric > 0
GROUP BY ALL HAVING count(*) >= 2 ORDER BY 1, 2 LIMIT 1"""
    )
    assert pick, "the fixture has no person with two results of a tenfold-unit item"
    _, item, ids, values = pick[0]
    engine.execute(
        "UPDATE dwd.lab_result SET value_numeric = ? WHERE lab_result_id = ?",
        [values[0] / 10, ids[1]],
    )
    run = run_quality(engine)
    flagged = {
        str(r)
        for (r,) in engine.fetchall(
            "SELECT row_id FROM dq.failures WHERE run_id = ? AND check_id = ?",
            [run.run_id, "lab_result.value.delta"],
        )
    }
    assert {ids[0], ids[1]} <= flagged, item  # the pair; the check cannot tell which is wrong
