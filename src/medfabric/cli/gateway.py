"""``medfabric gateway``: run a hospital's gateway, one cycle, its status, its quarantine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.cli.keys import passphrase
from medfabric.gateway import Gateway, GatewayError, open_state_for_status
from medfabric.gateway.logs import setup_logging
from medfabric.gateway.state import StateError
from medfabric.settings import Settings, SettingsError

app = typer.Typer(help="The hospital gateway (前置机).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Batches the receiver rejected.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
HospitalOpt = Annotated[str, typer.Option("--hospital", "-H", help="Hospital id, e.g. H01.")]


def _open(settings: Settings, hospital: str) -> Gateway:
    try:
        return Gateway(settings, hospital, passphrase=passphrase(settings.keys.passphrase_env))
    except (GatewayError, StateError, SettingsError) as e:
        fail(str(e))


@app.command("run")
def run(
    hospital: HospitalOpt,
    config: ConfigOpt = None,
    max_cycles: Annotated[
        int | None, typer.Option(help="Stop after this many cycles (default: run until stopped).")
    ] = None,
) -> None:
    """Run the configured schedule (an interval per system) until stopped (Ctrl-C, SIGTERM);
    logs are JSON lines on stderr and in <gateway.dir>/<hospital>/gateway.log."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    setup_logging(hospital, gw.state.root / "gateway.log")
    try:
        gw.run(max_cycles=max_cycles)
    finally:
        gw.close()


@app.command("once")
def once(
    hospital: HospitalOpt,
    config: ConfigOpt = None,
    system: Annotated[
        list[str] | None, typer.Option("--system", help="Only these systems (repeatable).")
    ] = None,
    full: Annotated[
        bool, typer.Option(help="Read every row (only changes are still sent).")
    ] = False,
    deletes: Annotated[
        bool | None,
        typer.Option("--deletes/--no-deletes", help="Force or skip the hard-delete key scan."),
    ] = None,
    log: Annotated[bool, typer.Option(help="Print JSON log lines on stderr.")] = False,
) -> None:
    """Run one cycle now: extract, send (ignoring back-off), fetch the downlink."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    setup_logging(hospital, gw.state.root / "gateway.log", stderr=log)
    try:
        report = gw.cycle(system, full=full, deletes=deletes, force_send=True)
    finally:
        gw.close()
    table = Table("system", "table", "mode", "rows read", "records sent", "deletes")
    for t in report.tables:
        if t.rows_read or t.records:
            table.add_row(
                t.system, t.table, t.mode, f"{t.rows_read:,}", f"{t.records:,}", f"{t.deletes:,}"
            )
    console.print(table)
    s = report.send
    console.print(
        f"{report.records:,} record(s) spooled; {s.sent} batch(es) sent ({s.rows:,} rows), "
        f"{s.pending} pending, {s.quarantined} quarantined; {report.downlink} downlink message(s); "
        f"{report.seconds:.1f} s"
    )
    n = report.notary
    if n is not None:
        console.print(
            f"notarized on the ledger: {n.batches} batch(es), {n.entries:,} records "
            f"({n.new:,} new, {n.duplicates:,} already notarized); {n.pending} batch(es) waiting"
            + (f", {n.refused} refused (see `gateway status`)" if n.refused else "")
        )
    for e in report.errors:
        console.print(f"[yellow]warning:[/] {e}")
    if s.error:
        console.print(f"[yellow]warning:[/] {s.error} — batches stay in the spool")
    if n is not None and n.error:
        console.print(f"[yellow]warning:[/] {n.error} — notarization is retried later")


def _print_status(snap: dict[str, Any]) -> None:
    live = " (live gateway, as of " + snap["as_of"] + ")" if snap.get("live") else ""
    console.print(f"[bold]gateway {snap['hospital_id']}[/]{live}")
    sp = snap["spool"]
    console.print(
        f"spool: {sp['batches']} batch(es), {sp['rows']:,} rows, {sp['bytes']:,} bytes"
        + (f", oldest {sp['oldest']}" if sp["oldest"] else "")
        + (f", last error: {sp['last_error']}" if sp["last_error"] else "")
    )
    console.print(f"last acknowledgement: {snap['last_ack'] or 'never'}; inbox: {snap['inbox']}")
    table = Table("system", "table", "watermark", "last success", "lag s", "rows sent", "note")
    for t in snap["tables"]:
        note = (
            t["last_error"]
            or t["schema_warning"]
            or ("full resync pending" if t["full_pending"] else "")
        )
        table.add_row(
            t["system"], t["table"], str(t["watermark"] or "-"), str(t["last_success"] or "never"),
            "-" if t["lag_seconds"] is None else f"{t['lag_seconds']:.0f}", f"{t['rows_sent']:,}",
            note,
        )  # fmt: skip
    console.print(table)
    notary = snap.get("notary")
    if notary is not None and (notary["notarized_batches"] or notary["queued_batches"]):
        console.print(
            f"ledger: {notary['notarized_rows']:,} record(s) notarized in "
            f"{notary['notarized_batches']} batch(es), last {notary['last_notarized'] or 'never'}; "
            f"waiting: {notary['queued_batches']} batch(es), {notary['queued_rows']:,} record(s)"
            + (f"; last error: {notary['last_error']}" if notary["last_error"] else "")
        )
    if notary is not None and notary["refused"]:
        r = Table("batch", "table", "rows", "reason", title="notarization refused by the ledger")
        for b in notary["refused"]:
            r.add_row(b["batch_id"], f"{b['system']}.{b['table']}", str(b["rows"]), b["reason"])
        console.print(r)
    if snap["quarantine"]:
        q = Table("quarantined batch", "table", "rows", "code", "detail", title="quarantine")
        for b in snap["quarantine"]:
            q.add_row(
                b["batch_id"], f"{b['system']}.{b['table']}", str(b["rows"]), b["code"], b["detail"]
            )
        console.print(q)


@app.command("status")
def status(
    hospital: HospitalOpt,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Watermarks, spool depth, last success, lag and quarantined batches."""
    settings = settings_or_fail(config)
    try:
        snap = open_state_for_status(settings, hospital)
    except (GatewayError, SettingsError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(snap, ensure_ascii=False, indent=1))
    else:
        _print_status(snap)


@app.command("resync")
def resync(
    hospital: HospitalOpt,
    system: Annotated[str, typer.Option("--system", help="HIS, LIS, PACS or EMR.")],
    config: ConfigOpt = None,
    table: Annotated[str | None, typer.Option("--table", help="One table (default: all).")] = None,
) -> None:
    """Schedule a full read of a system's tables at the next cycle."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    try:
        names = gw.resync(system, table)
    except GatewayError as e:
        fail(str(e))
    finally:
        gw.close()
    console.print(f"full resync scheduled for {', '.join(names)}")


@app.command("notary-retry")
def notary_retry(
    hospital: HospitalOpt,
    batch: Annotated[
        str | None, typer.Argument(help="A refused batch id (default: every refused batch).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Queue batches the ledger refused for notarization again (after the cause was fixed,
    e.g. the hospital's key registered with `medfabric ledger init --hospital-keys`)."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    try:
        where, params = "status = 'refused'", []
        if batch is not None:
            where, params = where + " AND batch_id = ?", [batch]
        with gw.state.transaction() as con:
            row = con.execute(f"SELECT count(*) FROM notary WHERE {where}", params).fetchone()
            count = int(row[0]) if row else 0
            con.execute(
                "UPDATE notary SET status = 'pending', attempts = 0, next_try = NULL "
                f"WHERE {where}",
                params,
            )
    finally:
        gw.close()
    if batch is not None and count == 0:
        fail(f"{batch} is not a refused batch of {hospital}")
    console.print(f"{count} batch(es) queued for notarization again")


@app.command("inbox")
def inbox(hospital: HospitalOpt, config: ConfigOpt = None) -> None:
    """Downlink messages received from the region."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    try:
        rows = gw.state.con.execute(
            "SELECT id, kind, title, file, received_at FROM inbox ORDER BY id"
        ).fetchall()
    finally:
        gw.close()
    table = Table("id", "kind", "title", "file", "received")
    for r in rows:
        table.add_row(str(r[0]), r[1], r[2], r[3], r[4].isoformat())
    console.print(table)


@quarantine_app.command("list")
def quarantine_list(hospital: HospitalOpt, config: ConfigOpt = None) -> None:
    """Quarantined batches with the receiver's reason."""
    settings = settings_or_fail(config)
    snap = open_state_for_status(settings, hospital)
    q = Table("batch", "table", "rows", "code", "detail", "since")
    for b in snap["quarantine"]:
        q.add_row(
            b["batch_id"],
            f"{b['system']}.{b['table']}",
            str(b["rows"]),
            b["code"],
            b["detail"],
            b["quarantined_at"],
        )
    console.print(q)


@quarantine_app.command("retry")
def quarantine_retry(
    hospital: HospitalOpt,
    batch: Annotated[str, typer.Argument(help="The batch id.")],
    config: ConfigOpt = None,
) -> None:
    """Put a quarantined batch back in the outbox (after fixing the cause, e.g. a key)."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    try:
        gw.quarantine_retry(batch)
    except GatewayError as e:
        fail(str(e))
    finally:
        gw.close()
    console.print(f"{batch} is back in the outbox; it is sent at the next cycle")


@quarantine_app.command("drop")
def quarantine_drop(
    hospital: HospitalOpt,
    batch: Annotated[str, typer.Argument(help="The batch id.")],
    config: ConfigOpt = None,
) -> None:
    """Discard a quarantined batch and schedule a full resync of its table (nothing is lost:
    its rows are read and sent again)."""
    settings = settings_or_fail(config)
    gw = _open(settings, hospital)
    try:
        table = gw.quarantine_drop(batch)
    except GatewayError as e:
        fail(str(e))
    finally:
        gw.close()
    console.print(f"{batch} dropped; full resync of {table} scheduled")
