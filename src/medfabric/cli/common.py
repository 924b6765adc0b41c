"""Helpers shared by the command modules: consoles, clean one-line errors, settings."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from medfabric.settings import Settings, SettingsError, load_settings
from medfabric.warehouse import DuckDBEngine, WarehouseError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear error line (or a few, for settings) and exit non-zero. The message is
    plain text: brackets in it (``[ledger] dir``) are shown, not read as markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_or_fail(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        fail(str(exc))


def open_warehouse(
    settings: Settings, *, first: str = "run the receiver and the gateways"
) -> DuckDBEngine:
    """The warehouse of ``settings`` (``[receiver] warehouse``), or a clear error: none there
    yet (``first`` says what makes one), or it cannot be opened (a receiver or another command
    holding it)."""
    path = Path(settings.receiver.warehouse)
    if not path.exists():
        fail(f"no warehouse at {path}: {first} first")
    try:
        return DuckDBEngine(path)
    except WarehouseError as e:
        fail(f"cannot open the warehouse (is a receiver or another command holding it?): {e}")
