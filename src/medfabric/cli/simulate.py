"""``medfabric simulate``: generate a synthetic region; ``simulate tick``: advance its clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.simulator import (
    RegionSummary,
    SimulationError,
    SimulationOptions,
    TickSummary,
    simulate_region,
    tick_region,
)

app = typer.Typer(
    help="Generate a synthetic region of hospitals (HIS/LIS/PACS/EMR in vendor dialects).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@app.callback()
def simulate(
    ctx: typer.Context,
    hospitals: Annotated[int | None, typer.Option(help="Number of hospitals (1-60).")] = None,
    patients: Annotated[
        int | None, typer.Option(help="Patient registrations per hospital (on average).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed: same seed, same region.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (replaced if a region).")] = None,
    shared_share: Annotated[
        float | None, typer.Option(help="Share of people who visit several hospitals (0-1).")
    ] = None,
    start_date: Annotated[
        str | None, typer.Option(help="First day of the simulated history (YYYY-MM-DD).")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Days of history to simulate.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes for hospitals.")] = None,
    dicom: Annotated[
        bool | None, typer.Option("--dicom/--no-dicom", help="Write DICOM files for studies.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Settings file (default ./region.toml if present).")
    ] = None,
) -> None:
    """Generate a region, e.g. `--hospitals 5 --patients 20000 --seed 7 --out var/region`."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_fail(config)
    s = settings.simulator
    opts = SimulationOptions(
        hospitals=s.hospitals if hospitals is None else hospitals,
        patients=s.patients if patients is None else patients,
        seed=s.seed if seed is None else seed,
        shared_share=s.shared_share if shared_share is None else shared_share,
        start_date=_date(start_date) or s.start_date,
        days=s.days if days is None else days,
        out=s.out if out is None else out,
        workers=s.workers if workers is None else workers,
        dicom=s.dicom if dicom is None else dicom,
        home_city=settings.region.code,
        region_name=settings.region.name,
    )
    try:
        with _progress() as progress:
            tasks: dict[str, TaskID] = {}

            def report(stage: str, done: int, total: int) -> None:
                label = {"plan": "planning people and visits", "visits": "writing hospitals"}
                if stage not in tasks:
                    tasks[stage] = progress.add_task(label.get(stage, stage), total=total)
                progress.update(tasks[stage], completed=done, total=total)

            summary = simulate_region(opts, report)
    except SimulationError as exc:
        fail(str(exc))
    print_summary(summary)


@app.command()
def tick(
    out: Annotated[Path, typer.Option(help="The region folder to advance.")] = Path("var/region"),
    days: Annotated[int, typer.Option(help="Days to advance the region's clock.")] = 1,
) -> None:
    """Advance the region's clock: new visits and results, updates, deletions and cancellations."""
    try:
        summary = tick_region(out, days=days)
    except SimulationError as exc:
        fail(str(exc))
    print_tick(summary)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def print_summary(s: RegionSummary) -> None:
    """One screen: what was generated and where to look."""
    console.print(f"\n[bold green]Region written[/] to {s.out} in {s.seconds:.1f} s")
    ht = Table(title="Hospitals and their source systems (vendor dialect)")
    for col in ("hospital", "name", "HIS", "LIS", "PACS", "EMR", "patients", "visits"):
        ht.add_column(col)
    for h in s.hospitals:
        his = s.rows.get(f"{h['id']}/HIS", {})
        visits = his.get("outpatient_visit", 0) + his.get("admission", 0)
        d = h["dialects"]
        ht.add_row(
            h["id"],
            h["name"],
            d["HIS"],
            d["LIS"],
            d["PACS"],
            d["EMR"],
            f"{his.get('patient', 0):,}",
            f"{visits:,}",
        )
    console.print(ht)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for key, tables in s.rows.items():
        system = key.split("/")[1]
        for table, n in tables.items():
            totals[(system, table)] += n
    rt = Table(title="Rows per table (all hospitals)")
    rt.add_column("system")
    rt.add_column("table")
    rt.add_column("rows", justify="right")
    for (system, table), n in totals.items():
        rt.add_row(system, table, f"{n:,}")
    console.print(rt)
    console.print(
        f"people {s.people:,} · local registrations {s.local_patients:,} · "
        f"people in several hospitals {s.shared_people:,} · visits {s.visits:,}\n"
        f"repeated tests across hospitals (mutual-recognition cases) {s.repeats:,} · "
        f"DICOM files {s.dicom_files:,} · EMR documents {s.notes:,} "
        f"(facts stated {s.note_facts:,})"
    )
    dt = Table(title="Injected defects (truth/defects.csv)")
    dt.add_column("defect")
    dt.add_column("count", justify="right")
    for kind, n in sorted(s.defects.items()):
        dt.add_row(kind, f"{n:,}")
    console.print(dt)
    console.print(
        f"Look at: {s.out}/region.toml (hospitals and systems), {s.out}/H01/*.db (SQLite "
        f"sources), {s.out}/truth/ (ground truth), {s.out}/region.json (manifest)."
    )


def print_tick(s: TickSummary) -> None:
    console.print(
        f"[bold green]Region clock advanced[/] {s.days} day(s) to {s.clock} (tick {s.tick})"
    )
    t = Table(title="Changes by hospital (truth/changes.csv)")
    for col in ("hospital", "inserted", "updated", "deleted"):
        t.add_column(col, justify="right" if col != "hospital" else "left")
    for hid, c in s.changes.items():
        t.add_row(
            hid, f"{c.get('insert', 0):,}", f"{c.get('update', 0):,}", f"{c.get('delete', 0):,}"
        )
    console.print(t)
