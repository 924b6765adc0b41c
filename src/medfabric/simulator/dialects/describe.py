"""Describe the three dialects' schemas as Markdown (the source of `docs/source-dialects.md`).

Regenerate the document after changing a dialect:
``.venv/bin/python -m medfabric.simulator.dialects.describe > docs/source-dialects.md``
(a test fails while the committed document differs from what this prints).
"""

from __future__ import annotations

from medfabric.simulator.dialects import DIALECTS
from medfabric.simulator.schema import TABLES


def markdown() -> str:
    """Every canonical table and column with its name in each dialect."""
    names = list(DIALECTS)
    out = [
        "# Source dialects: tables and columns",
        "",
        "Generated from `simulator/dialects/` by "
        "`python -m medfabric.simulator.dialects.describe`; do not edit by hand.",
        "Column kinds are those of `simulator/schema.py` (`code:<domain>` columns hold each",
        "dialect's local codes, mapped in `truth/code_maps.csv`).",
        "",
        "| | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows = [
        ("change-tracking column", [DIALECTS[n].updated_column for n in names]),
        ("deletion", [
            f"flag `{DIALECTS[n].flag_column}` = `{DIALECTS[n].flag_deleted}`"
            if DIALECTS[n].delete_mode == "flag" else "hard delete"
            for n in names
        ]),
        ("text encoding", [DIALECTS[n].text_encoding for n in names]),
        ("key type", ["integer" if DIALECTS[n].integer_keys else "text" for n in names]),
    ]  # fmt: skip
    for label, values in rows:
        out.append(f"| {label} | " + " | ".join(f"{v}" for v in values) + " |")
    for table in TABLES:
        out += [
            "",
            f"## {table.system} · `{table.name}`",
            "",
            "| column | kind | " + " | ".join(f"`{n}`" for n in names) + " |",
            "|---|---|" + "---|" * len(names),
            "| *(table)* | | "
            + " | ".join(f"`{DIALECTS[n].table_name(table.name)}`" for n in names)
            + " |",
        ]
        for col in table.columns:
            cells = " | ".join(f"`{DIALECTS[n].column_name(table.name, col.name)}`" for n in names)
            out.append(f"| {col.name} | {col.kind} | {cells} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
