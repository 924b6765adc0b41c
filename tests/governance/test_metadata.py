"""`catalog tables` over a governed region: every table with its description, owner, a row
count equal to COUNT(*), freshness; one table's columns; the static part without a warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.governance.regionkit import GovernedRegion, config_with_warehouse, copy_warehouse
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.governance.master import refresh_master
from medfabric.governance.metadata import PLATFORM_OWNER, MetadataError, catalog_tables
from medfabric.standards.model import dwd_model
from medfabric.warehouse import DuckDBEngine
from medfabric.warehouse.ddl import quote


def test_row_counts_equal_count_star_and_every_table_has_an_owner_and_description(
    governed: GovernedRegion, tmp_path: Path
) -> None:
    settings = governed.env.settings
    engine = DuckDBEngine(copy_warehouse(governed, tmp_path))
    try:
        refresh_master(engine, settings)
        infos = catalog_tables(engine, settings)
        schemas = {i.schema for i in infos}
        assert {"ods", "dwd", "gov", "mdm"} <= schemas
        assert {i.name for i in infos if i.schema == "dwd"} == set(dwd_model().tables)
        for i in infos:
            assert i.description and i.owner, i.qualified
            assert i.in_warehouse, i.qualified  # the governed region has every table
            ref = f"{quote(i.schema)}.{quote(i.name)}"
            assert i.rows == engine.fetchall(f"SELECT count(*) FROM {ref}")[0][0], i.qualified
            if i.schema == "ods":
                current = engine.fetchall(
                    f"SELECT count(*) FROM {quote('ods')}.{quote(i.name + '__current')}"
                )[0][0]
                assert i.current_rows == current
                hospital, system = i.name.split("__")[:2]
                assert i.owner.startswith(hospital) and i.owner.endswith(system)
                assert i.latest_batch_received is not None
                # Governance time only for a table a mapping reads (not e.g. DICOM instances).
                assert (i.latest_governance is not None) == ("治理到 dwd." in i.description), i
            else:
                assert i.owner == PLATFORM_OWNER
        lab = next(i for i in infos if i.qualified == "dwd.lab_result")
        newest = engine.fetchall("SELECT max(_source_updated_at) FROM dwd.lab_result")[0][0]
        assert lab.latest_source_update == newest and lab.latest_governance is not None
        assert lab.rows and lab.description == dwd_model().tables["lab_result"].description
        mdm = next(i for i in infos if i.qualified == "mdm.staff")
        assert mdm.latest_governance is not None  # the master-data refresh
        # One table, with its columns.
        (one,) = catalog_tables(engine, settings, table="dwd.lab_result")
        model = dwd_model().tables["lab_result"]
        assert [c.name for c in one.columns] == [c.name for c in model.columns]
        person = next(c for c in one.columns if c.name == "person_id")
        assert (person.element, person.privacy) == ("DE99.01.001.00", "direct")
        ods_name = next(i.name for i in infos if i.name.endswith("__HIS__DEPT_DICT"))
        (dept,) = catalog_tables(engine, settings, schema="ods", table=ods_name)
        named = {c.name: c for c in dept.columns}
        assert named["DEPT_NAME"].description == "→ dwd.department.department_name"
        assert named["_hash"].type == "VARCHAR"
        with pytest.raises(MetadataError, match="unknown schema 'xyz'"):
            catalog_tables(engine, settings, schema="xyz")
        with pytest.raises(MetadataError, match="no table 'nothing'"):
            catalog_tables(engine, settings, table="nothing")
    finally:
        engine.close()


def test_the_catalog_tables_command_with_and_without_a_warehouse(
    governed: GovernedRegion, tmp_path: Path
) -> None:
    warehouse = copy_warehouse(governed, tmp_path / "w")
    runner = CliRunner()
    config = config_with_warehouse(governed, tmp_path, warehouse)
    result = runner.invoke(app, ["catalog", "tables", "-c", str(config), "--schema", "dwd",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    engine = DuckDBEngine(warehouse)
    try:
        for t in data["tables"]:
            count = engine.fetchall(f'SELECT count(*) FROM dwd."{t["name"]}"')[0][0]
            assert t["rows"] == count, t["name"]
    finally:
        engine.close()
    result = runner.invoke(app, ["catalog", "tables", "-c", str(config), "--table", "dwd.staff"])
    assert result.exit_code == 0 and "columns of dwd.staff" in result.output
    result = runner.invoke(app, ["catalog", "tables", "-c", str(config), "--table", "staff"])
    assert result.exit_code == 2 and "ambiguous" in result.output  # dwd.staff and mdm.staff
    result = runner.invoke(
        app, ["catalog", "tables", "-c", str(config), "--table", "dwd.staff", "--json"]
    )
    (staff,) = json.loads(result.output)["tables"]
    cert = next(c for c in staff["columns"] if c["name"] == "certificate_no")
    assert (cert["element"], cert["name_zh"], cert["privacy"]) == (
        "DE99.04.004.00", "执业证书编码", "direct",
    )  # fmt: skip
    missing = config_with_warehouse(
        governed, tmp_path / "none", tmp_path / "none" / "nowhere.duckdb"
    )
    result = runner.invoke(app, ["catalog", "tables", "-c", str(missing), "--json"])
    assert result.exit_code == 0, result.output
    static = json.loads(result.output)
    assert static["warehouse"] is None and "no warehouse" in static["note"]
    assert {t["name"] for t in static["tables"] if t["schema"] == "dwd"} == set(dwd_model().tables)
    assert all(t["rows"] is None and not t["in_warehouse"] for t in static["tables"])
    expected_ods = len(governed.env.settings.hospitals) * 18  # each dialect reads 18 tables
    assert sum(1 for t in static["tables"] if t["schema"] == "ods") == expected_ods
    result = runner.invoke(app, ["catalog", "tables", "-c", str(config), "--schema", "nope"])
    assert result.exit_code == 2 and "unknown schema 'nope'" in result.output
