"""``medfabric standards``: check and browse the shipped code systems."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from medfabric.cli.common import console, fail
from medfabric.standards import codes
from medfabric.standards.integrity import check_all

app = typer.Typer(help="Standard code systems: integrity check and browsing.", no_args_is_help=True)

_SYSTEMS = ("diagnoses", "lab_items", "lab_panels", "exam_items", "drugs", "regions")


@app.command("check")
def check() -> None:
    """Check every code system: unique codes, valid ranges, every referenced code exists."""
    problems = check_all()
    info = codes.catalog()
    t = Table(title="Code systems")
    for col in ("id", "version", "standard"):
        t.add_column(col)
    for entry in info.values():
        t.add_row(entry.id, entry.version, entry.standard)
    console.print(t)
    if problems:
        for p in problems:
            console.print(f"[red]✗[/] {p}")
        fail(f"{len(problems)} integrity problem(s)")
    console.print("[green]all code systems consistent[/]")


@app.command("show")
def show(
    system: Annotated[str, typer.Argument(help=f"One of {', '.join(_SYSTEMS)} or a value domain.")],
    limit: Annotated[int, typer.Option(help="Rows to show (0 = all).")] = 20,
) -> None:
    """Print the entries of a code system or value domain."""
    rows: list[tuple[str, str, str]]
    if system in _SYSTEMS:
        table = getattr(codes, system)()
        rows = [
            (k, getattr(v, "name_zh", ""), getattr(v, "name_en", getattr(v, "level", "")))
            for k, v in table.items()
        ]
    elif system in codes.value_domain_ids():
        rows = [(k, v.name_zh, v.name_en) for k, v in codes.value_domain(system).items()]
    else:
        known = ", ".join([*_SYSTEMS, *codes.value_domain_ids()])
        fail(f"unknown code system {system!r} (known: {known})")
    t = Table(title=f"{system} ({len(rows)} entries)")
    for col in ("code", "name_zh", "name_en"):
        t.add_column(col)
    for r in rows[: limit or None]:
        t.add_row(*r)
    console.print(t)
