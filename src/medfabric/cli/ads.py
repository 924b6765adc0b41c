"""``medfabric ads``: refresh the ADS themes (incremental by default) and show them."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medfabric.cli.common import console, fail, open_warehouse, settings_or_fail
from medfabric.governance.ads import THEMES, AdsError, headline, refresh_ads, theme_tables
from medfabric.warehouse import DuckDBEngine

app = typer.Typer(
    help="ADS themes: operations, chronic disease registry, data quality (docs/ads.md).",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _open(config: Path | None) -> DuckDBEngine:
    return open_warehouse(
        settings_or_fail(config), first="run the receiver and `medfabric govern run`"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@app.command("refresh")
def refresh_cmd(
    config: ConfigOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild every model instead of changed partitions.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Bring the ADS tables up to date with DWD: only partitions whose input changed since the
    last refresh are recomputed. Running it again with nothing new changes nothing."""
    engine = _open(config)
    try:
        with Progress(
            TextColumn("refreshing ADS"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
            transient=True, disable=as_json,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=None)

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            report = refresh_ads(engine, full=full, progress=progress)
    except AdsError as e:
        fail(str(e))
    finally:
        engine.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "seconds": report.seconds,
                    "fingerprint_seconds": report.fingerprint_seconds,
                    "models": [
                        {"model": m.model, "mode": m.mode, "partitions": m.partitions,
                         "rows": m.rows, "seconds": m.seconds, "note": m.note}
                        for m in report.models
                    ],
                },
                indent=1,
            )
        )  # fmt: skip
        return
    table = Table("model", "mode", "partitions", "rows", "seconds", "note")
    for m in report.models:
        table.add_row(
            m.model, m.mode, f"{m.partitions:,}", f"{m.rows:,}", f"{m.seconds:.3f}", m.note
        )
    console.print(table)
    console.print(
        f"{report.seconds:.2f} s, of which fingerprints {report.fingerprint_seconds:.2f} s"
    )


@app.command("show")
def show_cmd(
    theme: Annotated[
        str | None,
        typer.Argument(help=f"One of {', '.join(THEMES)}; none: the headline figures."),
    ] = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows per table.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Print the headline figures, or the first rows of each table of a theme."""
    if theme is not None and theme not in THEMES:
        fail(f"unknown theme {theme!r}; one of {', '.join(THEMES)}")
    engine = _open(config)
    try:
        if theme is None:
            figures = headline(engine)
            if as_json:
                typer.echo(json.dumps(dict(figures), ensure_ascii=False, indent=1))
                return
            table = Table("figure", "value")
            for label, value in figures:
                table.add_row(label, value)
            console.print(table if figures else "no ADS tables yet: run `medfabric ads refresh`")
            return
        tables = theme_tables(engine, theme, limit)
    finally:
        engine.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    t.name: {
                        "description": t.description, "total": t.total,
                        "rows": [_plain(dict(zip(t.columns, r, strict=True))) for r in t.rows],
                    }
                    for t in tables
                },
                ensure_ascii=False, indent=1,
            )
        )  # fmt: skip
        return
    if not tables:
        console.print(f"no {theme} tables yet: run `medfabric ads refresh`")
    for t in tables:
        # Lists and structs (a registry row's every indicator) do not fit a terminal table.
        keep = [
            i for i, _ in enumerate(t.columns)
            if not any(isinstance(r[i], list | dict) for r in t.rows)
        ]  # fmt: skip
        left_out = len(t.columns) - len(keep)
        title = f"ads.{t.name} ({t.total:,} rows)" + (
            f"; {left_out} nested column(s) left out, --json shows them" if left_out else ""
        )
        grid = Table(*(t.columns[i] for i in keep), title=title, title_justify="left")
        for r in t.rows:
            grid.add_row(*("" if r[i] is None else _cell(_plain(r[i])) for i in keep))
        console.print(grid)


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
