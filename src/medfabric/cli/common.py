"""Helpers shared by the command modules: consoles, clean one-line errors, settings."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from medfabric.settings import Settings, SettingsError, load_settings

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
