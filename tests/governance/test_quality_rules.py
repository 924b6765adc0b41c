"""The quality rules file: the shipped one loads, and a bad rule is refused with file, line,
column and reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from medfabric.governance.quality.rules import KINDS, RulesError, load_rules, parse_rules

HEAD = 'version: "1"\nrules:\n'


def _parse(body: str) -> None:
    parse_rules(HEAD + body, "rules.yaml")


def test_the_shipped_rules_load_and_use_every_kind() -> None:
    rules = load_rules()
    assert rules.version
    assert {r.kind for r in rules.rules} == set(KINDS)
    by_id = {r.id: r for r in rules.rules}
    discharge = by_id["visit.discharge_after_admission"]
    assert discharge.params["columns"] == ("admitted_at", "discharged_at")
    assert (discharge.category, discharge.subcategory) == ("plausibility", "temporal")
    assert by_id["visit.timeliness"].params["max_lag"] == timedelta(days=7)
    assert by_id["lab_result.value.present"].category == "completeness"


def test_a_rule_can_follow_a_reference_to_another_table() -> None:
    rules = parse_rules(
        HEAD + "  - {id: lab_report.after_order, kind: order, table: lab_report,\n"
        "     columns: [order_id->ordered_at, reported_at], tolerance: 2h}\n"
    )
    rule = rules.rules[0]
    assert rule.params["columns"] == ("order_id->ordered_at", "reported_at")
    assert rule.params["tolerance"] == timedelta(hours=2)


@pytest.mark.parametrize(
    ("body", "token", "reason"),
    [
        ("  - {id: person.x, kind: range, table: person, column: nope, min: 0}\n",
         "nope", "unknown column 'nope' of DWD table 'person'"),
        ("  - {id: x.y, kind: range, table: patients, column: name, min: 0}\n",
         "patients", "unknown DWD table 'patients'"),
        ("  - {id: person.x, kind: guess, table: person}\n",
         "guess", "unknown kind 'guess'"),
        ("  - {id: visit.t, kind: timeliness, table: visit, column: visit_at, max_lag: soon}\n",
         "soon", "'max_lag' must be a duration such as 7d"),
        ("  - {id: visit.o, kind: order, table: visit, columns: [visit_at]}\n",
         "[visit_at]", "at least two columns"),
        ("  - {id: visit.o, kind: order, table: visit, columns: [name->x, visit_at]}\n",
         "name->x", "unknown column 'name' of DWD table 'visit'"),
        ("  - {id: visit.o, kind: order, table: visit, columns: [bed_no->x, visit_at]}\n",
         "bed_no->x", "visit.bed_no is not a reference"),
        ("  - {id: person.x, kind: range, table: person, column: name, min: 0, colour: red}\n",
         "red", "unknown key 'colour' for a range rule"),
        ("  - {id: person.x, kind: range, table: person, column: birth_date, threshold: 120,"
         " min: 0}\n", "120", "a percent, at most 100"),
        ("  - {id: person.x, kind: sql, table: person, predicate: no_such_column > 1}\n",
         "{id: person.x, kind: sql", "predicate does not bind"),
        ("  - {id: visit.l, kind: lab_flag, table: visit}\n",
         "visit}", "applies to lab_result only"),
        ("  - {id: lab_result.l, kind: lab_limits, table: lab_result, items: {NOPE: {max: 1}}}\n",
         "{max: 1}", "unknown lab item 'NOPE'"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_with_its_place_and_reason(
    body: str, token: str, reason: str
) -> None:
    with pytest.raises(RulesError) as info:
        _parse(body)
    message = str(info.value)
    where = f"rules.yaml:3:{body.index(token) + 1}"  # the rules start on line 3
    assert message.startswith(where + ":"), message
    assert reason in message


def test_a_duplicate_rule_id_names_both_places() -> None:
    body = (
        "  - {id: person.x, kind: range, table: person, column: birth_date, min: 1900-01-01}\n"
        "  - {id: person.x, kind: range, table: person, column: birth_date, max: run}\n"
    )
    with pytest.raises(RulesError, match=r"rules.yaml:4:5: duplicate rule id 'person.x' "
                                         r"\(first at rules.yaml:3:5\)"):  # fmt: skip
        _parse(body)


def test_malformed_yaml_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"rules.yaml:\d+:\d+: "):
        parse_rules(HEAD + "  - {id: [\n", "rules.yaml")
    with pytest.raises(RulesError, match="'rules' must be a list"):
        parse_rules('version: "1"\nrules: 3\n', "rules.yaml")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "mine.yaml"
    bad.write_text(HEAD + "  - {id: person.x, kind: range, table: person, column: z, min: 0}\n")
    with pytest.raises(RulesError, match=r"^mine.yaml:3:"):
        load_rules(bad)
