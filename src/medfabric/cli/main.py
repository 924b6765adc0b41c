"""Entry point of the ``medfabric`` command: one sub-command group per stage built so far."""

from __future__ import annotations

import typer

from medfabric import __version__
from medfabric.cli import (
    ads,
    catalog,
    config,
    empi,
    gateway,
    govern,
    keys,
    ledger,
    lineage,
    provenance,
    quality,
    receiver,
    simulate,
    standards,
)

app = typer.Typer(
    name="medfabric",
    help="medfabric — regional health-data platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(simulate.app, name="simulate")
app.add_typer(standards.app, name="standards")
app.add_typer(catalog.app, name="catalog")
app.add_typer(config.app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(gateway.app, name="gateway")
app.add_typer(receiver.app, name="receiver")
app.add_typer(ledger.app, name="ledger")
app.add_typer(govern.app, name="govern")
app.add_typer(empi.app, name="empi")
app.add_typer(quality.app, name="quality")
app.add_typer(ads.app, name="ads")
app.command("verify")(provenance.verify_cmd)
app.command("lineage")(lineage.lineage_cmd)
ledger.app.command("audit")(provenance.audit_cmd)


@app.command()
def version() -> None:
    """Print the medfabric version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
