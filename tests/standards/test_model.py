"""The DWD model: consistent with the element dictionary and catalog, and the checks bite."""

from __future__ import annotations

import pytest

from medfabric.standards import model
from medfabric.standards.elements import DWD_TABLES, CatalogError, resource_catalog
from medfabric.standards.model import check_model, dwd_model

ORIGINAL = model._model_text()


def _inject(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> list[str]:
    assert old in ORIGINAL, old
    monkeypatch.setattr(model, "_model_text", lambda: ORIGINAL.replace(old, new, 1))
    return check_model()


def test_model_is_consistent() -> None:
    assert check_model() == []


def test_every_dwd_table_is_defined_and_placed_as_the_catalog_says() -> None:
    tables = dwd_model().tables
    assert tuple(tables) == DWD_TABLES
    for name, table in tables.items():
        assert table.catalog_class == resource_catalog().for_table(name).code


def test_lineage_columns_close_every_table() -> None:
    m = dwd_model()
    names = [c.name for c in m.lineage_columns]
    assert {"_source_hospital", "_source_system", "_source_key", "_ods_content_hash"} <= set(names)
    for table in m.tables.values():
        assert [c.name for c in table.columns[-len(names) :]] == names


def test_foreign_keys_point_at_primary_keys_carrying_the_same_element() -> None:
    tables = dwd_model().tables
    refs = {
        (t.name, c.name): c.references for t in tables.values() for c in t.columns if c.references
    }
    assert refs[("lab_result", "lab_report_id")] == ("lab_report", "lab_report_id")
    assert refs[("visit", "person_id")] == ("person", "person_id")
    assert refs[("imaging_study", "exam_report_id")] == ("exam_report", "exam_report_id")
    for (name, col), (target, target_col) in refs.items():
        assert tables[target].primary_key == (target_col,)
        assert tables[target].column(target_col).element == tables[name].column(col).element


def test_columns_inherit_value_domains_from_elements() -> None:
    person = dwd_model().tables["person"]
    assert person.column("sex_code").value_domain == "sex"
    assert person.column("sex_code").element.name_zh == "性别代码"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("element: DE02.01.039.00", "element: DE02.01.999.00", "unknown data element"),
        (
            "catalog_class: A0402",
            "catalog_class: A0401",
            "catalog_class A0401 but resource_catalog says A0402",
        ),
        ("primary_key: [visit_id]", "primary_key: [visit_key]", "'visit_key' is not a column"),
        (
            "{name: visit_id, element: DE99.05.001.00, required: true}",
            "{name: visit_id, element: DE99.05.001.00, required: false}",
            "'visit_id' must be required",
        ),
        ("references: person.person_id}", "references: person.name}", "not the single-column"),
        ("references: visit.visit_id}", "references: visits.visit_id}", "unknown table 'visits'"),
        ("name: bed_no,", "name: chief_complaint,", "duplicate column name"),
        ("name: bed_no,", "name: _source_key,", "duplicate column name"),
        ("name: bed_no,", "name: BedNo,", "snake_case"),
        ("  vital_sign:\n", "  vital_signs:\n", "'vital_sign' is not defined"),
        (
            "{name: lab_report_id, element: DE99.09.001.00, required: true,\n"
            "         references: lab_report.lab_report_id}",
            "{name: lab_report_id, element: DE99.10.001.00, required: true,\n"
            "         references: lab_report.lab_report_id}",
            "carries DE99.10.001.00 but lab_report.lab_report_id carries DE99.09.001.00",
        ),
    ],
)
def test_injected_errors_are_reported(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, expected: str
) -> None:
    problems = _inject(monkeypatch, old, new)
    assert any(expected in p for p in problems), problems


def test_s3_column_without_value_domain_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from medfabric.standards import elements

    e = elements.data_elements()["DE02.01.040.00"]
    patched = dict(elements.data_elements())
    patched[e.identifier] = elements.DataElement(**{**_fields(e), "value_domain": None})
    monkeypatch.setattr(model, "data_elements", lambda: patched)
    assert any("S3 element DE02.01.040.00 has no value domain" in p for p in check_model())


def _fields(e: object) -> dict[str, object]:
    return {name: getattr(e, name) for name in e.__slots__}  # type: ignore[attr-defined]


def test_malformed_file_is_rejected_with_line(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = _inject(monkeypatch, "    primary_key: [person_id]", "    primary_keys: [person_id]")
    assert len(problems) == 1 and "dwd_model.yaml:" in problems[0], problems
    assert "unknown key 'primary_keys'" in problems[0]
    dwd_model.cache_clear()
    try:
        with pytest.raises(CatalogError, match=r"dwd_model\.yaml:\d+:\d+: unknown key"):
            dwd_model()
    finally:
        monkeypatch.undo()
        dwd_model.cache_clear()


def test_loader_refuses_unknown_element(monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, "element: DE02.01.039.00", "element: DE02.01.999.00")
    dwd_model.cache_clear()
    try:
        with pytest.raises(CatalogError, match=r"dwd_model\.yaml:\d+:\d+: unknown data element"):
            dwd_model()
    finally:
        monkeypatch.undo()
        dwd_model.cache_clear()
