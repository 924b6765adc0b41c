"""``medfabric verify`` and ``medfabric ledger audit``: check ODS records against the ledger.

Both open the warehouse directly when no receiver holds it, and otherwise ask the running
receiver (``GET /v1/records/…/verify``, ``POST /v1/audit``), so they work either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote as url_quote

import httpx
import typer
from rich.progress import Progress
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.ledger.client import LedgerClient
from medfabric.receiver.notarization import (
    NotarizationError,
    audit,
    audit_json,
    open_reader,
    verdict_json,
    verify_row,
)
from medfabric.settings import Settings
from medfabric.warehouse import DuckDBEngine, WarehouseError
from medfabric.warehouse.engine import Engine

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def _direct(settings: Settings) -> Iterator[tuple[Engine, LedgerClient] | None]:
    """The warehouse and a ledger reader, or None when a running receiver holds the warehouse."""
    if settings.ledger.dir is None:
        fail("no ledger is configured: set [ledger] dir in region.toml (docs/ledger.md)")
    path = Path(settings.receiver.warehouse)
    if not path.exists():
        fail(f"no warehouse at {path} (nothing has landed yet)")
    try:
        engine = DuckDBEngine(path)
    except WarehouseError as e:
        if "lock" not in str(e).lower():
            fail(str(e))
        yield None
        return
    try:
        client = open_reader(settings.ledger.dir, timeout=float(settings.ledger.timeout))
    except NotarizationError as e:
        engine.close()
        fail(str(e))
    try:
        yield engine, client
    finally:
        client.close()
        engine.close()


def _ask(settings: Settings, call: Callable[[httpx.Client], httpx.Response]) -> dict[str, Any]:
    url = f"http://{settings.receiver.listen}"
    try:
        with httpx.Client(base_url=url, timeout=3600) as http:
            r = call(http)
    except httpx.HTTPError as e:
        fail(f"the warehouse is in use and the receiver at {url} does not answer: {e}")
    body: dict[str, Any] = r.json()
    if r.status_code != 200:
        fail(f"receiver: {body.get('detail', r.text)}")
    return body


def verify_record(
    settings: Settings, ods_table: str, row: str, *, version: int | None = None
) -> dict[str, Any]:
    """The verdict of one ODS record version against the ledger, as ``medfabric verify`` prints
    it with ``--json`` (through the running receiver when it holds the warehouse). Exits with a
    clear error when no ledger or warehouse is configured or the record is unknown."""
    with _direct(settings) as direct:
        if direct is not None:
            engine, client = direct
            try:
                return verdict_json(verify_row(engine, client, ods_table, row, version=version))
            except NotarizationError as e:
                fail(str(e))
        params = {} if version is None else {"version": version}
        return _ask(
            settings,
            lambda http: http.get(
                f"/v1/records/{url_quote(ods_table, safe='')}/{url_quote(row, safe='')}/verify",
                params=params,
            ),
        )


def verify_cmd(
    ods_table: Annotated[str, typer.Argument(help="The ODS table, e.g. H01__LIS__JY_JG.")],
    row: Annotated[str, typer.Argument(help="The row's local key (its _local_key).")],
    config: ConfigOpt = None,
    version: Annotated[
        int | None, typer.Option("--version", help="A row version (default: the latest).")
    ] = None,
    proof_out: Annotated[
        Path | None,
        typer.Option("--proof-out", help="Write the proof here (for `ledger verify-proof`)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute a record's hash from ODS and check its inclusion proof and its block's commit
    certificate on the ledger: VALID, or exactly what failed (exit code 1)."""
    settings = settings_or_fail(config)
    result = verify_record(settings, ods_table, row, version=version)
    if proof_out is not None and "proof" in result:
        proof_out.write_text(str(result["proof"]) + "\n", encoding="ascii")
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        colour = "green" if result["verdict"] == "VALID" else "red"
        console.print(
            f"{result['address']} (ODS {result['ods_table']} version {result['version']}, "
            f"batch {result['batch_id']})"
        )
        console.print(f"content hash {result['recomputed_hash']}")
        console.print(f"[bold {colour}]{result['verdict']}[/]: {result['detail']}")
    if result["verdict"] != "VALID":
        raise typer.Exit(1)


def audit_cmd(
    config: ConfigOpt = None,
    table: Annotated[
        str | None, typer.Option("--table", help="Only this ODS table (default: all).")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=1,
            help="Check this many random records through proofs (default: every record "
            "against a full, verified replay of the chain).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Scan (or sample) ODS records, recompute their hashes and check each against the ledger;
    report every mismatch (exit code 1 if any)."""
    settings = settings_or_fail(config)
    with _direct(settings) as direct:
        if direct is not None:
            engine, client = direct
            with Progress(console=console, transient=True, disable=as_json) as bar:
                tasks: dict[str, Any] = {}

                def progress(phase: str, done: int, total: int) -> None:
                    if phase not in tasks:
                        label = "replaying blocks" if phase == "blocks" else "checking records"
                        tasks[phase] = bar.add_task(label, total=total)
                    bar.update(tasks[phase], completed=done)

                try:
                    report = audit_json(
                        audit(engine, client, ods_table=table, sample=sample, progress=progress)
                    )
                except NotarizationError as e:
                    fail(str(e))
        else:
            params: dict[str, Any] = {}
            if table is not None:
                params["ods_table"] = table
            if sample is not None:
                params["sample"] = sample
            report = _ask(settings, lambda http: http.post("/v1/audit", params=params))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        _print_audit(report)
    if report["findings_total"]:
        raise typer.Exit(1)


def _print_audit(report: dict[str, Any]) -> None:
    what = (
        f"{report['blocks']:,} blocks ({report['entries']:,} entries) replayed and verified; "
        if report["mode"] == "full"
        else "random sample; "
    )
    console.print(f"{what}{report['checked']:,} record version(s) checked")
    counts = Table("verdict", "records")
    for verdict, n in report["counts"].items():
        counts.add_row(verdict, f"{n:,}")
    console.print(counts)
    if report["findings"]:
        t = Table("address", "version", "verdict", "detail", title="mismatches")
        for f in report["findings"]:
            t.add_row(f["address"], str(f["version"]), f["verdict"], f["detail"])
        console.print(t)
        shown = len(report["findings"])
        if report["findings_total"] > shown:
            console.print(f"… and {report['findings_total'] - shown:,} more (use --json)")
    else:
        console.print("[green]every checked record is exactly what was notarized[/]")
