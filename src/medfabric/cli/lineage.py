"""``medfabric lineage TABLE ROW_ID``: the chain from a DWD row back to its source system row
(docs/master-data.md, "Lineage"); ``--verify`` also checks that source row on the ledger, as
``medfabric verify`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medfabric.cli.common import console, fail, open_warehouse, settings_or_fail
from medfabric.cli.provenance import verify_record
from medfabric.governance.lineage import Lineage, LineageError, lineage

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]


def _short(h: str) -> str:
    return f"{h[:16]}…"


def _print(chain: Lineage) -> None:
    src = chain.source
    console.print(
        f"[bold]dwd.{chain.dwd_table}[/] {chain.row_id}  (mapping version {chain.mapping_version})",
        highlight=False,
    )
    if chain.from_config:
        console.print(
            f"  ← region configuration: hospital {src.local_key} in {src.table} "
            f"(content hash {_short(chain.content_hash)})",
            highlight=False,
        )
        return
    derived = chain.derived_version
    if derived is not None:
        console.print(
            f"  ← ODS {chain.ods_table} version {derived.version} of {len(chain.versions)} "
            f"(hash {_short(derived.content_hash)} = the row's _ods_content_hash)",
            highlight=False,
        )
    b = chain.batch
    if b is not None:
        notarized = "not checked on the ledger"
        if b.notarization is not None:
            notarized = f"ledger: {b.notarization['status']}"
        console.print(
            f"  ← batch {b.batch_id} ({b.hospital_id} {b.system} {b.source_table}, seq {b.seq}, "
            f"{b.row_count:,} rows, received {b.received_at:%Y-%m-%d %H:%M:%S}Z, manifest "
            f"sha256 {_short(b.manifest_sha256)}, {notarized})",
            highlight=False,
        )
    updated = "" if src.source_updated_at is None else f", updated {src.source_updated_at}"
    console.print(
        f"  ← source row {src.address} ({src.hospital} {src.system} table {src.table} key "
        f"{src.local_key}{updated})",
        highlight=False,
    )
    if chain.versions:
        t = Table("version", "op", "content hash", "batch", "source updated", "valid to", "")
        for v in chain.versions:
            t.add_row(
                str(v.version), v.op, _short(v.content_hash), v.batch_id,
                str(v.source_updated_at or ""), str(v.valid_to or "current"),
                "[green]← this row[/]" if v.derived else "",
            )  # fmt: skip
        console.print(t)
    for p in chain.processed:
        console.print(
            f"governed by entry {p.entry} (mapping {p.mapping_version}) at "
            f"{p.processed_at:%Y-%m-%d %H:%M:%S}Z",
            highlight=False,
        )
    for e in chain.events:
        console.print(f"[yellow]{e.kind}[/] (dwd.{e.dwd_table}): {e.detail}", highlight=False)
    for w in chain.warnings:
        console.print(f"[red]warning:[/] {w}", highlight=False)


def lineage_cmd(
    table: Annotated[str, typer.Argument(help="The DWD table, e.g. lab_result.")],
    row_id: Annotated[
        str,
        typer.Argument(
            help="The row's id (primary key; a composite key joined with '/') or its source "
            "address hospital/SYSTEM/TABLE/local_key."
        ),
    ],
    config: ConfigOpt = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also check the source row on the ledger.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the chain of a DWD row: its mapping version, the ODS version it came from (and the
    others), the batch, the source system row, and what governance recorded about it."""
    settings = settings_or_fail(config)
    engine = open_warehouse(settings)
    try:
        chain = lineage(engine, table, row_id)
    except LineageError as e:
        fail(str(e))
    finally:
        engine.close()
    result: dict[str, Any] = chain.to_json()
    if not as_json:
        _print(chain)
    if not verify:
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    derived = chain.derived_version
    if chain.from_config or chain.ods_table is None or derived is None:
        fail("--verify: this row has no ODS source version to check on the ledger")
    verdict = verify_record(
        settings, chain.ods_table, chain.source.local_key, version=derived.version
    )
    if as_json:
        result["verification"] = verdict
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        colour = "green" if verdict["verdict"] == "VALID" else "red"
        console.print(f"[bold {colour}]{verdict['verdict']}[/]: {verdict['detail']}")
    if verdict["verdict"] != "VALID":
        raise typer.Exit(1)
