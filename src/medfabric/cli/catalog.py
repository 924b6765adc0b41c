"""``medfabric catalog``: browse and export the resource catalog and the data-element dictionary."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from medfabric.cli.common import console, fail
from medfabric.standards import elements


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
