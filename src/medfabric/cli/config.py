"""``medfabric config``: validate and print region.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfabric.cli.common import console, settings_or_fail

app = typer.Typer(help="Settings (region.toml): validate and show.", no_args_is_help=True)


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="The settings file.")] = Path("region.toml"),
) -> None:
    """Validate a settings file; every problem names its key."""
    settings = settings_or_fail(path)
    console.print(
        f"[green]{path} is valid[/]: region {settings.region.name} ({settings.region.code}), "
        f"{len(settings.hospitals)} hospital(s) configured"
    )


@app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="The settings file.")] = Path("region.toml"),
) -> None:
    """Print the effective settings (file values merged with defaults) as JSON."""
    settings = settings_or_fail(path)
    console.print_json(settings.model_dump_json())
