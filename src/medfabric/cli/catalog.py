"""``medfabric catalog``: browse and export the resource catalog and the data-element dictionary."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from medfabric.cli.common import console, fail, settings_or_fail
from medfabric.governance.metadata import SCHEMAS, MetadataError, TableInfo, catalog_tables
from medfabric.standards import elements
from medfabric.warehouse import DuckDBEngine, WarehouseError


class Format(StrEnum):
    text = "text"
    md = "md"
    json = "json"


app = typer.Typer(help="Resource catalog and data-element dictionary.", no_args_is_help=True)


def _catalog_json() -> dict[str, Any]:
    cat = elements.resource_catalog()
    return {
        "version": cat.version,
        "classes": [asdict(c) for c in cat.classes.values()],
        "data_elements": [asdict(e) for e in elements.data_elements().values()],
    }


def catalog_markdown() -> str:
    """The catalog as Markdown: the classification tree with its tables, then the elements."""
    cat = elements.resource_catalog()
    lines = [f"# Resource catalog (version {cat.version})", ""]

    def walk(code: str, depth: int) -> None:
        c = cat.get(code)
        tables = f" — tables: {', '.join(f'`{t}`' for t in c.dwd_tables)}" if c.dwd_tables else ""
        lines.append(f"{'  ' * depth}- `{c.code}` {c.name_zh} ({c.name_en}){tables}")
        for child in c.children:
            walk(child, depth + 1)

    for root in cat.roots():
        walk(root.code, 0)
    lines += [
        "",
        "# Data elements",
        "",
        "| identifier | name | type | format | value domain | privacy | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in elements.data_elements().values():
        lines.append(
            f"| {e.identifier} | {e.name_zh} ({e.name_en}) | {e.data_type} | {e.format} | "
            f"{e.value_domain or ''} | {e.privacy} | {e.source} |"
        )
    return "\n".join(lines) + "\n"


@app.command("show")
def show(
    fmt: Annotated[Format, typer.Option("--format", help="text, md or json.")] = Format.text,
    privacy: Annotated[
        str | None, typer.Option(help="Only elements of this privacy class (direct, quasi, …).")
    ] = None,
) -> None:
    """Show the three-level resource catalog and the data-element dictionary."""
    problems = elements.check_catalog()
    if problems:
        fail("the catalog is inconsistent:\n" + "\n".join(problems))
    els = [e for e in elements.data_elements().values() if privacy in (None, e.privacy)]
    if privacy is not None and not els:
        fail(f"no data element has privacy class {privacy!r}")
    if fmt is Format.json:
        data = _catalog_json()
        data["data_elements"] = [asdict(e) for e in els]
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if fmt is Format.md:
        typer.echo(catalog_markdown(), nl=False)
        return
    cat = elements.resource_catalog()
    tree = Tree(f"[bold]resource catalog[/] (version {cat.version})")

    def walk(node: Tree, code: str) -> None:
        c = cat.get(code)
        tables = f" [cyan]{', '.join(c.dwd_tables)}[/]" if c.dwd_tables else ""
        branch = node.add(f"{c.code} {c.name_zh} · {c.name_en}{tables}")
        for child in c.children:
            walk(branch, child)

    for root in cat.roots():
        walk(tree, root.code)
    console.print(tree)
    t = Table(title=f"data elements ({len(els)})")
    for col in ("identifier", "name", "type", "format", "value domain", "privacy", "source"):
        t.add_column(col)
    for e in els:
        t.add_row(e.identifier, e.name_zh, e.data_type, e.format, e.value_domain or "",
                  e.privacy, e.source)  # fmt: skip
    console.print(t)


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _table_json(info: TableInfo) -> dict[str, Any]:
    out = asdict(info)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


@app.command("tables")
def tables_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="region.toml to read.")
    ] = None,
    schema: Annotated[
        str | None, typer.Option("--schema", help=f"Only this schema: {', '.join(SCHEMAS)}.")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="One table (name or schema.name), with its columns."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every table of the warehouse in one place: description, owner, row count and freshness;
    with --table, its columns (data element, Chinese name, type/format, privacy class)."""
    settings = settings_or_fail(config)
    path = Path(settings.receiver.warehouse)
    engine: DuckDBEngine | None = None
    note = ""
    if not path.exists():
        note = f"no warehouse at {path}: the catalog's static part only (no counts, no freshness)"
    else:
        try:
            engine = DuckDBEngine(path)
        except WarehouseError as e:
            note = f"the warehouse cannot be opened ({e}); the catalog's static part only"
    try:
        infos = catalog_tables(engine, settings, schema=schema, table=table)
    except MetadataError as e:
        fail(str(e))
    finally:
        if engine is not None:
            engine.close()
    if as_json:
        data = {"warehouse": str(path) if engine is not None else None, "note": note or None,
                "tables": [_table_json(i) for i in infos]}  # fmt: skip
        typer.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    if note:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    t = Table("table", "rows", "current", "source updated", "batch received", "governed", "owner",
              "description", title=f"tables ({len(infos)})")  # fmt: skip
    for i in infos:
        rows = "" if i.rows is None else f"{i.rows:,}"
        if engine is not None and not i.in_warehouse:
            rows = "[dim]not yet[/]"
        current = "" if i.current_rows is None else f"{i.current_rows:,}"
        t.add_row(i.qualified, rows, current, _when(i.latest_source_update),
                  _when(i.latest_batch_received), _when(i.latest_governance), i.owner,
                  i.description)  # fmt: skip
    console.print(t)
    if table is not None and infos:
        cols = Table("column", "type", "element", "name", "WS 363 type/format", "privacy",
                     "description", title=f"columns of {infos[0].qualified}")  # fmt: skip
        for c in infos[0].columns:
            fmt = f"{c.data_type} {c.format}" if c.data_type else ""
            cols.add_row(c.name, c.type, c.element or "", c.name_zh or "", fmt, c.privacy or "",
                         c.description)  # fmt: skip
        console.print(cols)
