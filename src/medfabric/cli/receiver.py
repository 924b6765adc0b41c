"""``medfabric receiver``: the regional intake service, its status, downlink publishing, and
re-verification of ODS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.cli.keys import passphrase
from medfabric.receiver import ReceiverError, VerifyError, publish, serve, verify_ods
from medfabric.settings import SettingsError

app = typer.Typer(help="The regional receiver (batch intake into ODS).", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]


@app.command("serve")
def serve_cmd(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the batch API on [receiver] listen until stopped."""
    settings = settings_or_fail(config)
    try:
        serve(settings, passphrase=passphrase(settings.keys.passphrase_env), log_level=log_level)
    except ReceiverError as e:
        fail(str(e))


@app.command("status")
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Landed tables with their lag, current rows and the last rejections (asks the running
    receiver)."""
    settings = settings_or_fail(config)
    try:
        r = httpx.get(f"http://{settings.receiver.listen}/v1/status", timeout=30)
    except httpx.HTTPError as e:
        fail(f"receiver at {settings.receiver.listen} is not reachable: {e}")
    data = r.json()
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    table = Table("ODS table", "batches", "current rows", "last received", "lag s")
    for t in data["tables"]:
        table.add_row(
            t["ods_table"], str(t["batches"]), f"{data['current_rows'].get(t['ods_table'], 0):,}",
            t["last_received_at"], f"{t['lag_seconds']:.0f}",
        )  # fmt: skip
    console.print(table)
    if data["rejections"]:
        rej = Table("batch", "hospital", "code", "detail", "at", title="last rejections")
        for x in data["rejections"]:
            rej.add_row(
                str(x["batch_id"]),
                str(x["hospital_id"]),
                x["code"],
                x["detail"][:80],
                x["received_at"],
            )
        console.print(rej)


@app.command("publish")
def publish_cmd(
    hospital: Annotated[str, typer.Option("--hospital", "-H", help="Addressee, e.g. H01.")],
    kind: Annotated[str, typer.Option(help="dictionary, notice or config.")],
    title: Annotated[str, typer.Option(help="A short title.")],
    file: Annotated[Path, typer.Option("--file", help="JSON object: the message body.")],
    config: ConfigOpt = None,
) -> None:
    """Sign a downlink message with the region's key and queue it for a hospital's gateway."""
    settings = settings_or_fail(config)
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{file}: {e}")
    if not isinstance(body, dict):
        fail(f"{file}: the body must be a JSON object")
    try:
        mid = publish(
            settings, hospital, kind=kind, title=title, body=body,
            passphrase=passphrase(settings.keys.passphrase_env),
        )  # fmt: skip
    except (ReceiverError, SettingsError, httpx.HTTPError) as e:
        fail(str(e))
    console.print(f"queued downlink message {mid} for {hospital}")


@app.command("verify")
def verify(
    config: ConfigOpt = None,
    tables: Annotated[bool, typer.Option("--tables", help="One line per ODS table.")] = False,
) -> None:
    """Recompute the content hash of every ODS row version from its stored values and compare
    it with the hash the hospital sent (run while the receiver is stopped)."""
    settings = settings_or_fail(config)
    try:
        result = verify_ods(str(settings.receiver.warehouse))
    except VerifyError as e:
        fail(str(e))
    rows: dict[str, list[int]] = {}
    for name, (n, bad) in result.items():
        label = name if tables else " ".join(name.split("__")[:2])
        acc = rows.setdefault(label, [0, 0, 0])
        acc[0] += 1
        acc[1] += n
        acc[2] += bad
    table = Table("ODS table" if tables else "hospital system", "tables", "versions", "mismatches")
    for label, (t, n, bad) in sorted(rows.items()):
        table.add_row(label, str(t), f"{n:,}", str(bad))
    console.print(table)
    bad_total = sum(b for _, b in result.values())
    if bad_total:
        fail(f"{bad_total} row version(s) do not match their hash", code=1)
    console.print(f"[green]all {sum(n for n, _ in result.values()):,} row versions verify[/]")
