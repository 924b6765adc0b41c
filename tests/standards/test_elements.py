"""The data-element dictionary and resource catalog: consistent as shipped, and the checks bite."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from medfabric.simulator.schema import TABLE_BY_NAME
from medfabric.standards import elements
from medfabric.standards.elements import CatalogError

ORIGINAL = {name: elements._read(name) for name in (elements.ELEMENTS_FILE, elements.CATALOG_FILE)}

# Official WS 363 identifiers used in the dictionary: identifier → (name_zh, data_type, privacy).
OFFICIAL = {
    "DE02.01.039.00": ("姓名", "S1", "direct"),
    "DE02.01.040.00": ("性别代码", "S3", "quasi"),
    "DE02.01.005.01": ("出生日期", "D", "quasi"),
    "DE02.01.030.00": ("身份证件号码", "S1", "direct"),
    "DE02.01.031.00": ("身份证件类别代码", "S3", "none"),
    "DE02.01.010.00": ("电话号码", "S1", "direct"),
    "DE05.01.024.00": ("疾病诊断编码", "S3", "sensitive"),
    "DE06.00.092.00": ("入院日期时间", "DT", "quasi"),
    "DE04.10.174.00": ("收缩压", "N", "sensitive"),
}

# The simulator's patient table: every direct identifier column → its data element.
PATIENT_DIRECT = {
    "name": "DE02.01.039.00",
    "id_number": "DE02.01.030.00",
    "phone": "DE02.01.010.00",
    "address": "DE99.01.003.00",
}


@pytest.fixture
def patch_file(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Replace one data file's text for the test; loader caches are cleared around it."""

    def patch(name: str, text: str) -> None:
        files = dict(ORIGINAL, **{name: text})
        monkeypatch.setattr(elements, "_read", lambda n: files[n])
        elements.data_elements.cache_clear()
        elements.resource_catalog.cache_clear()

    yield patch
    elements.data_elements.cache_clear()
    elements.resource_catalog.cache_clear()


def _replace(name: str, old: str, new: str) -> str:
    text = ORIGINAL[name]
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_shipped_catalog_has_no_problems() -> None:
    assert elements.check_catalog() == []


def test_element_counts() -> None:
    des = elements.data_elements()
    assert 120 <= len(des) <= 200
    assert {e.privacy for e in des.values()} == set(elements.PRIVACY_CLASSES)
    assert all(e.is_local == (e.source == "local") for e in des.values())


@pytest.mark.parametrize("identifier", sorted(OFFICIAL))
def test_official_identifiers(identifier: str) -> None:
    e = elements.data_elements()[identifier]
    assert (e.name_zh, e.data_type, e.privacy) == OFFICIAL[identifier]
    assert e.source == "WS 363"


def test_value_domains_on_coded_person_elements() -> None:
    des = elements.data_elements()
    assert des["DE02.01.040.00"].value_domain == "sex"
    assert des["DE02.01.031.00"].value_domain == "id_doc_type"
    assert des["DE05.01.024.00"].value_domain == "diagnoses"


def test_simulator_patient_direct_identifiers_are_direct() -> None:
    columns = {c.name for c in TABLE_BY_NAME["patient"].columns}
    des = elements.data_elements()
    for column, identifier in PATIENT_DIRECT.items():
        assert column in columns
        assert des[identifier].privacy == "direct", column


def test_every_dwd_table_placed_once() -> None:
    cat = elements.resource_catalog()
    assert set(cat.table_index) == set(elements.DWD_TABLES)
    assert [c.code for c in cat.roots()] == ["E", "A", "K"]
    assert len(cat.get("A").children) == 12
    assert [c.code for c in cat.path(cat.for_table("lab_result").code)] == ["A", "A04", "A0402"]
    assert cat.for_table("vital_sign").parent == "E02"


def test_unknown_lookups_raise() -> None:
    cat = elements.resource_catalog()
    with pytest.raises(CatalogError, match="not placed"):
        cat.for_table("nonexistent")
    with pytest.raises(CatalogError, match="unknown class code"):
        cat.get("Z99")


def test_duplicate_identifier(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    patch_file(f, _replace(f, "DE99.15.008.00,", "DE99.15.007.00,"))
    assert any("duplicate identifier" in p for p in elements.check_catalog())
    with pytest.raises(CatalogError, match=r"data_elements\.csv:\d+: duplicate identifier"):
        elements.data_elements()


def test_s3_without_value_domain(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    patch_file(f, _replace(f, ",S3,N1,sex,", ",S3,N1,,"))
    problems = elements.check_catalog()
    assert problems == [p for p in problems if "DE02.01.040.00" in p]
    assert any("S3 element needs a value domain" in p for p in problems)


def test_unknown_value_domain(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    patch_file(f, _replace(f, ",S3,N2,marital_status,", ",S3,N2,marriage,"))
    assert any("unknown value domain" in p and "'marriage'" in p for p in elements.check_catalog())


def test_format_inconsistent_with_type(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    patch_file(f, _replace(f, ",D,D8,", ",D,DT15,"))
    assert any("format of D must be D8" in p for p in elements.check_catalog())


def test_official_source_in_local_range(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    text = ORIGINAL[f].replace(",,none,,local\n", ",,none,,WS 363\n", 1)
    patch_file(f, text)
    assert any("contradicts the DE99 local range" in p for p in elements.check_catalog())


def test_table_placed_twice(patch_file: Callable[[str, str], None]) -> None:
    f = elements.CATALOG_FILE
    patch_file(f, _replace(f, "dwd_tables: [charge]", "dwd_tables: [charge, order]"))
    assert any("'order' placed more than once" in p for p in elements.check_catalog())
    with pytest.raises(CatalogError, match=r"resource_catalog\.yaml:\d+:\d+: DWD table 'order'"):
        elements.resource_catalog()


def test_table_on_wrong_level_and_bad_code(patch_file: Callable[[str, str], None]) -> None:
    f = elements.CATALOG_FILE
    patch_file(f, _replace(f, "code: A0404", "code: A0504"))
    assert any("A0504: code must extend its parent's code 'A04'" in p
               for p in elements.check_catalog())  # fmt: skip


def test_malformed_csv_names_line_and_column(patch_file: Callable[[str, str], None]) -> None:
    f = elements.ELEMENTS_FILE
    patch_file(f, _replace(f, "DE02.01.030.00,身份证件号码,", "DE02.01.030.00,,"))
    with pytest.raises(CatalogError, match=r"data_elements\.csv:\d+: column 2 \(name_zh\): empty"):
        elements.data_elements()
    assert len(elements.check_catalog()) == 1


def test_malformed_yaml_names_line_and_column(patch_file: Callable[[str, str], None]) -> None:
    f = elements.CATALOG_FILE
    old = "    name_en: Knowledge\n"
    patch_file(f, _replace(f, old, old + "    colour: 1\n"))
    with pytest.raises(CatalogError, match=r"resource_catalog\.yaml:\d+:5: unknown key 'colour'"):
        elements.resource_catalog()
