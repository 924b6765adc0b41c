"""``medfabric govern``: ODS → DWD by the source mappings, the unmapped-code queue, and the
reconciliation of counts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.governance.run import Governor, HospitalSource, sources_from_settings
from medfabric.standards._yaml import CatalogError
from medfabric.warehouse import DuckDBEngine, WarehouseError

app = typer.Typer(
    help="Governance: ODS → DWD by the source mappings (docs/mapping.md).",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _open(config: Path | None) -> tuple[DuckDBEngine, Governor, list[HospitalSource], list[str]]:
    settings = settings_or_fail(config)
    try:
        sources, notes = sources_from_settings(settings)
    except CatalogError as e:
        fail(f"invalid source mapping: {e}")
    path = settings.receiver.warehouse
    if not path.exists():
        fail(f"no warehouse at {path}: run the receiver (and the gateways) first")
    try:
        engine = DuckDBEngine(path)
    except WarehouseError as e:
        fail(str(e))
    return engine, Governor(engine), sources, notes


@app.command("run")
def run_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Govern every ODS batch not processed yet: DWD rows, quarantine, duplicates, unmapped
    codes. Running it again with nothing new changes nothing."""
    engine, governor, sources, notes = _open(config)
    try:
        with Progress(
            TextColumn("governing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=console, transient=True,
            disable=as_json,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=None)

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            governor.progress = progress
            report = governor.run(sources)
    finally:
        engine.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "entries": [asdict(e) for e in report.entries],
                    "errors": report.errors, "notes": notes,
                },
                ensure_ascii=False, indent=1, default=str,
            )
        )  # fmt: skip
    else:
        table = Table("DWD table", "batches", "staged", "inserted", "quarantined", "duplicates")
        totals: dict[str, list[int]] = {}
        for e in report.entries:
            row = totals.setdefault(e.dwd_table, [0, 0, 0, 0, 0])
            for i, v in enumerate((e.batches, e.staged, e.inserted, e.quarantined, e.duplicates)):
                row[i] += v
        for name, row in totals.items():
            table.add_row(name, *(f"{v:,}" for v in row))
        console.print(table)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}")
        for error in report.errors:
            console.print(f"[red]error:[/] {error}")
    if report.errors:
        raise typer.Exit(1)


@app.command("unmapped")
def unmapped_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The unmapped-code queue: local codes the code tables do not map, with their row counts.
    Add them to the dialect's code table (docs/mapping.md) and run `govern run` again."""
    engine, governor, _, _ = _open(config)
    try:
        governor.ensure_schema()
        rows = governor.unmapped()
    finally:
        engine.close()
    if as_json:
        keys = ("hospital", "dialect", "domain", "code", "rows")
        typer.echo(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], ensure_ascii=False))
        return
    table = Table("hospital", "dialect", "domain", "local code", "rows")
    for r in rows:
        table.add_row(*r[:4], f"{r[4]:,}")
    console.print(table if rows else "no unmapped codes")


@app.command("reconcile")
def reconcile_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Per hospital and mapping entry: current ODS rows = DWD + quarantined + duplicates?"""
    engine, governor, sources, _ = _open(config)
    try:
        governor.ensure_schema()
        rows = governor.reconcile(sources)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
    else:
        table = Table("hospital", "entry", "ODS", "DWD", "quarantined", "duplicates", "balanced")
        for r in rows:
            table.add_row(
                str(r["hospital"]), str(r["entry"]), f"{r['ods_in']:,}", f"{r['dwd']:,}",
                f"{r['quarantined']:,}", f"{r['duplicates']:,}",
                "[green]yes[/]" if r["balanced"] else "[red]NO[/]",
            )  # fmt: skip
        console.print(table)
    if not all(r["balanced"] for r in rows):
        raise typer.Exit(1)
