"""Lineage over a governed region: a DWD row leads to the exact ODS version (same content
hash), its batch and its source row; an updated source row shows both versions; unknown tables
and ids, and quarantined rows, give clear errors; the CLI prints the chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.governance.regionkit import GovernedRegion, config_with_warehouse, copy_warehouse
from tests.warehouse.test_ods import make_batch
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.governance.lineage import LineageError, lineage
from medfabric.governance.master import CONFIG_SYSTEM, refresh_master
from medfabric.governance.run import Governor, sources_from_settings
from medfabric.warehouse import DuckDBEngine, OdsStore
from medfabric.warehouse.ods import ods_ref, ods_table_name


def _one(engine: DuckDBEngine, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    table = engine.fetch_arrow(sql, params)
    rows: list[dict[str, Any]] = table.to_pylist()
    assert len(rows) == 1, sql
    return rows[0]


def test_a_lab_result_leads_to_its_ods_version_batch_and_source_row(
    engine: DuckDBEngine,
) -> None:
    row = _one(engine, "SELECT * FROM dwd.lab_result ORDER BY lab_result_id LIMIT 1")
    chain = lineage(engine, "lab_result", row["lab_result_id"])
    ods = ods_table_name(row["_source_hospital"], "LIS", row["_source_table"])
    assert chain.ods_table == ods
    assert (chain.source.hospital, chain.source.system, chain.source.table) == (
        row["_source_hospital"], "LIS", row["_source_table"],
    )  # fmt: skip
    assert chain.source.local_key == row["_source_key"]
    assert chain.source.address == row["lab_result_id"]  # the DWD id is the source address
    assert chain.mapping_version == row["_mapping_version"]
    landed = _one(
        engine,
        f"SELECT _version, _hash, _batch_id FROM {ods_ref(ods)} WHERE _local_key = ? "
        "AND _valid_to IS NULL",
        [row["_source_key"]],
    )
    derived = chain.derived_version
    assert derived is not None
    assert derived.version == landed["_version"]
    assert derived.content_hash == landed["_hash"] == row["_ods_content_hash"]
    assert derived.batch_id == landed["_batch_id"] == row["_batch_id"]
    batch = _one(
        engine,
        "SELECT hospital_id, system, source_table, manifest_sha256 FROM ingest.batches "
        "WHERE batch_id = ?",
        [row["_batch_id"]],
    )
    assert chain.batch is not None and chain.batch.batch_id == row["_batch_id"]
    assert (chain.batch.hospital_id, chain.batch.system, chain.batch.source_table) == (
        batch["hospital_id"], batch["system"], batch["source_table"],
    )  # fmt: skip
    assert chain.batch.manifest_sha256 == batch["manifest_sha256"]
    assert any(p.entry == f"lab_result<-LIS.{row['_source_table']}" for p in chain.processed)
    # The payload is the source row as received: its key column holds the local key.
    assert str(row["_source_key"]) in {str(v) for v in derived.payload.values()}
    assert chain.warnings == ()


def test_an_updated_source_row_shows_both_versions(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    hospital = next(
        h.id for h in governed.env.settings.hospitals if h.systems["LIS"].dialect == "ruixin"
    )
    ods = ods_table_name(hospital, "LIS", "LAB_RESULT")
    old = _one(engine, f"SELECT * FROM {ods_ref(ods + '__current')} ORDER BY _local_key LIMIT 1")
    columns = json.loads(
        engine.fetchall(
            "SELECT columns FROM ingest.batches WHERE ods_table = ? ORDER BY seq LIMIT 1", [ods]
        )[0][0]
    )
    payload = {name: old[name] for name, _ in columns}
    payload["RESULT_VALUE"] = "999"
    OdsStore(engine).land(
        make_batch(
            "t-update", [(old["_local_key"], "upsert", payload)],
            columns=tuple((n, t) for n, t in columns), hospital_id=hospital, system="LIS",
            source_table="LAB_RESULT", seq=999, received_at=datetime.now(UTC),
        )
    )  # fmt: skip
    Governor(engine).run(sources_from_settings(governed.env.settings)[0])
    row_id = f"{hospital}/LIS/LAB_RESULT/{old['_local_key']}"
    chain = lineage(engine, "dwd.lab_result", row_id)
    assert [v.version for v in chain.versions] == [1, 2]
    first, second = chain.versions
    assert (first.derived, second.derived) == (False, True)
    assert first.content_hash == old["_hash"] and first.valid_to is not None
    assert second.batch_id == "t-update" and second.valid_to is None
    assert second.payload["RESULT_VALUE"] == "999"
    assert chain.batch is not None and chain.batch.batch_id == "t-update"
    assert chain.row["value_as_sent"] == "999"


def test_unknown_tables_ids_and_quarantined_rows_are_clear_errors(engine: DuckDBEngine) -> None:
    with pytest.raises(LineageError, match=r"unknown DWD table 'labresult'.*lab_result"):
        lineage(engine, "labresult", "x")
    with pytest.raises(LineageError, match=r"no row 'nothing' in dwd\.lab_result; give its id"):
        lineage(engine, "lab_result", "nothing")
    with pytest.raises(LineageError, match="has no record with key 'no-such-key'"):
        lineage(engine, "person", "H01/HIS/PAT_MASTER_INDEX/no-such-key")
    q = _one(
        engine,
        "SELECT hospital, source_system, source_table, source_key, reasons FROM gov.quarantine "
        "WHERE dwd_table = 'person' ORDER BY source_key LIMIT 1",
    )
    address = f"{q['hospital']}/{q['source_system']}/{q['source_table']}/{q['source_key']}"
    with pytest.raises(LineageError) as err:
        lineage(engine, "person", address)
    assert "was quarantined" in str(err.value) and q["reasons"][0] in str(err.value)


def test_a_department_by_composite_key_and_an_institution_from_the_configuration(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    dept = _one(engine, "SELECT * FROM dwd.department ORDER BY 1, 2 LIMIT 1")
    chain = lineage(engine, "department", f"{dept['institution_code']}/{dept['department_code']}")
    assert chain.source.local_key == dept["_source_key"] and chain.derived_version is not None
    refresh_master(engine, governed.env.settings)
    h = governed.env.settings.hospitals[0]
    inst = lineage(engine, "institution", h.id)
    assert inst.from_config and inst.source.system == CONFIG_SYSTEM
    assert inst.row["institution_name"] == h.name and inst.versions == ()


def _config_and_a_lab_result(
    governed: GovernedRegion, tmp_path: Path
) -> tuple[Path, dict[str, Any]]:
    """Settings pointing at a copy of the warehouse, and the copy's first lab result."""
    warehouse = copy_warehouse(governed, tmp_path)
    engine = DuckDBEngine(warehouse)
    try:
        row = _one(engine, "SELECT * FROM dwd.lab_result ORDER BY lab_result_id LIMIT 1")
    finally:
        engine.close()
    return config_with_warehouse(governed, tmp_path, warehouse), row


def test_the_lineage_command(governed: GovernedRegion, tmp_path: Path) -> None:
    config, row = _config_and_a_lab_result(governed, tmp_path)
    runner = CliRunner()
    args = ["lineage", "lab_result", row["lab_result_id"], "-c", str(config)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["content_hash"] == row["_ods_content_hash"]
    assert data["derived_version"] == 1 and data["batch"]["batch_id"] == row["_batch_id"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and row["_batch_id"] in result.output
    result = runner.invoke(app, ["lineage", "lab_result", "nothing", "-c", str(config)])
    assert result.exit_code == 2 and "no row 'nothing'" in result.output
    result = runner.invoke(app, [*args, "--verify"])  # no ledger configured here
    assert result.exit_code == 2 and "no ledger is configured" in result.output


def test_lineage_verify_checks_the_derived_version_with_medfabric_verify(
    governed: GovernedRegion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--verify hands the derived ODS version to the function behind `medfabric verify` (the
    ledger check itself is tested with the receiver's notarization)."""
    import medfabric.cli.lineage as cli

    config, row = _config_and_a_lab_result(governed, tmp_path)
    calls: list[tuple[str, str, int | None]] = []
    verdict = {"verdict": "VALID", "detail": "proof and commit certificate check out"}

    def fake(settings: Any, ods_table: str, key: str, *, version: int | None = None) -> Any:
        calls.append((ods_table, key, version))
        return verdict

    monkeypatch.setattr(cli, "verify_record", fake)
    args = ["lineage", "lab_result", row["lab_result_id"], "-c", str(config), "--verify"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    ods = ods_table_name(row["_source_hospital"], "LIS", row["_source_table"])
    assert calls == [(ods, row["_source_key"], 1)]
    assert json.loads(result.output)["verification"]["verdict"] == "VALID"
    verdict = {"verdict": "HASH_MISMATCH", "detail": "recomputed hash differs"}
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "HASH_MISMATCH" in result.output
