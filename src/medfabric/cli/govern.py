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

from medfabric.cli.common import console, fail, open_warehouse, settings_or_fail
from medfabric.governance.pipeline import GovernReport, govern
from medfabric.governance.quality.scores import OVERALL, Score, scores
from medfabric.governance.run import Governor, HospitalSource, sources_from_settings
from medfabric.settings import Settings
from medfabric.standards._yaml import CatalogError
from medfabric.warehouse import DuckDBEngine, WarehouseError

app = typer.Typer(
    help="Governance: ODS → DWD by the source mappings (docs/mapping.md), master data, data "
    "quality and the ADS themes.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _open(
    config: Path | None,
) -> tuple[Settings, DuckDBEngine, Governor, list[HospitalSource], list[str]]:
    settings = settings_or_fail(config)
    try:
        sources, notes = sources_from_settings(settings)
    except CatalogError as e:
        fail(f"invalid source mapping: {e}")
    engine = open_warehouse(settings)
    return settings, engine, Governor(engine), sources, notes


@app.command("run")
def run_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Govern every ODS batch not processed yet (DWD rows, quarantine, duplicates, unmapped
    codes), then refresh master data, run the data-quality checks (when anything changed) and
    refresh the ADS themes. Running it again with nothing new changes nothing."""
    settings, engine, _, sources, notes = _open(config)
    try:
        with Progress(
            TextColumn("{task.fields[step]}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
            transient=True, disable=as_json,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=None, step="governing")

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            def step(name: str) -> None:
                bar.update(task, step=name, description="")

            report = govern(engine, settings, sources, progress=progress, step=step)
            quality = scores(engine) if report.quality is not None else []
    except (WarehouseError, CatalogError) as e:
        fail(str(e))
    finally:
        engine.close()
    run = report.run
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "entries": [asdict(e) for e in run.entries],
                    "errors": run.errors, "notes": notes,
                    "master": {t.table: asdict(t) for t in report.master.tables},
                    "quality": None if report.quality is None else {
                        "run_id": report.quality.run_id,
                        "scores": [asdict(s) | {"score": s.score} for s in quality],
                    },
                    "ads": [asdict(m) for m in report.ads.models],
                },
                ensure_ascii=False, indent=1, default=str,
            )
        )  # fmt: skip
    else:
        _print_report(report, quality, notes)
    if run.errors:
        raise typer.Exit(1)


def _print_report(report: GovernReport, quality: list[Score], notes: list[str]) -> None:
    table = Table("DWD table", "batches", "staged", "inserted", "quarantined", "duplicates")
    totals: dict[str, list[int]] = {}
    for e in report.run.entries:
        row = totals.setdefault(e.dwd_table, [0, 0, 0, 0, 0])
        for i, v in enumerate((e.batches, e.staged, e.inserted, e.quarantined, e.duplicates)):
            row[i] += v
    for name, row in totals.items():
        table.add_row(name, *(f"{v:,}" for v in row))
    console.print(table)
    m = report.master
    console.print(
        f"master data: {m.table('mdm.institution').rows} institutions, "
        f"{m.table('mdm.department').rows:,} departments ({m.departments_queued} unmapped, "
        "see `medfabric catalog tables --table mdm.department_queue`), "
        f"{m.table('mdm.staff').rows:,} staff; {m.changed:,} rows changed"
    )
    if report.quality is None:
        console.print("data quality: nothing changed, the last run stands")
    else:
        q = report.quality
        overall = {s.hospital: s.score for s in quality if s.category == OVERALL}
        shown = ", ".join(
            f"{'region' if h == '*' else h} {v:.1f} %" for h, v in sorted(overall.items())
            if v is not None
        )  # fmt: skip
        console.print(
            f"data quality run {q.run_id}: {q.count('pass')} pass, {q.count('fail')} fail, "
            f"{q.count('not_applicable')} not applicable; scores {shown} "
            "(`medfabric quality report`)"
        )
    a = report.ads
    console.print(
        f"ADS: {len(a.changed())} of {len(a.models)} models refreshed in {a.seconds:.2f} s "
        "(`medfabric ads show`)"
    )
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    for error in report.run.errors:
        console.print(f"[red]error:[/] {error}")


@app.command("unmapped")
def unmapped_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The unmapped-code queue: local codes the code tables do not map, with their row counts.
    Add them to the dialect's code table (docs/mapping.md) and run `govern run` again."""
    _, engine, governor, _, _ = _open(config)
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
    _, engine, governor, sources, _ = _open(config)
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
