"""``medfabric empi``: match any CSV of people (``link``) and score clusters against a ground
truth (``eval``) — docs/empi.md."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from medfabric.cli.common import console, fail
from medfabric.empi.model import (
    BAD_DATES,
    DATE_FORMATS,
    ROLES,
    InputError,
    evaluate_clusters,
    match,
    prepare_people,
)

app = typer.Typer(help="Patient matching (EMPI): link a CSV of people, evaluate clusters.",
                  no_args_is_help=True)  # fmt: skip


def _read_csv(path: Path, encoding: str) -> pd.DataFrame:
    if not path.is_file():
        fail(f"no file {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    except UnicodeDecodeError as e:
        fail(
            f"{path}: not {encoding} (byte {e.start}: {e.reason}); give the file's encoding "
            "with --encoding (e.g. gb18030)"
        )
    except pd.errors.EmptyDataError:
        fail(f"{path}: the file is empty")
    except pd.errors.ParserError as e:
        fail(f"{path}: not a CSV file: {e}")
    return frame.replace("", None)


def _roles(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        role, eq, column = part.partition("=")
        if not eq or not column.strip():
            fail(f"--columns: {part!r} is not role=column")
        if role.strip() not in ROLES:
            fail(f"--columns: unknown role {role.strip()!r}; roles are {', '.join(ROLES)}")
        out[role.strip()] = column.strip()
    if not out:
        fail("--columns: give at least a name, e.g. name=姓名,birth_date=出生日期")
    return out


@app.command("link")
def link_cmd(
    input_csv: Annotated[Path, typer.Option("--input", help="A CSV of people, one per row.")],
    columns: Annotated[
        str,
        typer.Option(
            "--columns",
            help=f"role=column pairs, comma-separated; roles: {', '.join(ROLES)}.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the clusters.")] = Path(
        "clusters.csv"
    ),
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="The column naming each record.")
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Match probability that links two records.")
    ] = 0.95,
    review: Annotated[
        float, typer.Option("--review", help="Pairs from here up to the threshold: to review.")
    ] = 0.5,
    date_format: Annotated[
        list[str] | None,
        typer.Option(
            "--date-format",
            help="A birth-date format (repeatable); default: ISO, "
            "YYYYMMDD, YYYY/MM/DD, DD/MM/YYYY.",
        ),
    ] = None,
    bad_dates: Annotated[
        str,
        typer.Option("--bad-dates", help="A birth date in no format: error, missing or keep."),
    ] = "error",
    encoding: Annotated[str, typer.Option("--encoding", help="The CSV's encoding.")] = "utf-8",
    pairs_out: Annotated[
        Path | None, typer.Option("--pairs", help="Also write the scored pairs here.")
    ] = None,
) -> None:
    """Deduplicate the people of a CSV: normalize each role's column, train the model by EM
    on the data itself (no labels), link pairs at the threshold and write one cluster id per
    record (the smallest record id of its cluster)."""
    if bad_dates not in BAD_DATES:
        fail(f"--bad-dates must be one of {', '.join(BAD_DATES)}")
    roles = _roles(columns)
    rows = _read_csv(input_csv, encoding)
    try:
        with console.status("normalizing"):
            people = prepare_people(
                rows, roles, id_column=id_column,
                date_formats=tuple(date_format or DATE_FORMATS), bad_dates=bad_dates,
            )  # fmt: skip
        with console.status("matching") as status:
            result = match(people, threshold=threshold, review=review,
                           progress=lambda s: status.update(s))  # fmt: skip
    except InputError as e:
        fail(f"{input_csv}: {e}")
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "cluster_id", "cluster_size"])
        sizes: dict[str, int] = {}
        for c in result.clusters.values():
            sizes[c] = sizes.get(c, 0) + 1
        for uid, cid in result.clusters.items():
            w.writerow([uid, cid, sizes[cid]])
    if pairs_out is not None:
        result.pairs.to_csv(pairs_out, index=False)
    linked = sum(1 for n in sizes.values() if n > 1)
    uncertain = int((result.pairs["match_probability"] < threshold).sum())
    console.print(
        f"{len(result.clusters):,} records → {len(sizes):,} clusters ({linked:,} of 2 or more); "
        f"{uncertain:,} pairs between {review} and {threshold} to review; wrote {out} "
        f"(training {result.seconds['train']:.1f} s, prediction {result.seconds['predict']:.1f} s)"
    )


@app.command("eval")
def eval_cmd(
    truth: Annotated[Path, typer.Option("--truth", help="CSV: record id, true entity id.")],
    clusters: Annotated[
        Path, typer.Option("--clusters", help="The clusters `empi link` wrote.")
    ] = Path("clusters.csv"),
    encoding: Annotated[str, typer.Option("--encoding", help="The truth CSV's encoding.")] = (
        "utf-8"
    ),
) -> None:
    """Pairwise and cluster precision, recall and F1 of clusters against a ground truth (its
    first two columns: record id and true entity), with the confusion counts."""
    found_rows = _read_csv(clusters, "utf-8")
    truth_rows = _read_csv(truth, encoding)
    if len(truth_rows.columns) < 2 or {"id", "cluster_id"} - set(found_rows.columns):
        fail("the truth needs two columns (record id, entity); clusters need id, cluster_id")
    found = dict(zip(found_rows["id"].astype(str), found_rows["cluster_id"].astype(str),
                     strict=True))  # fmt: skip
    a, b = truth_rows.columns[:2]
    true = dict(zip(truth_rows[a].astype(str), truth_rows[b].astype(str), strict=True))
    s = evaluate_clusters(found, true)
    if s.records == 0:
        fail("no record id is in both files")
    table = Table("figure", "value", title=f"{s.records:,} records in both files")
    for label, value in (
        ("pairwise precision", f"{s.precision:.4f}"), ("pairwise recall", f"{s.recall:.4f}"),
        ("pairwise F1", f"{s.f1:.4f}"), ("true positive pairs", f"{s.true_positives:,}"),
        ("false positive pairs", f"{s.false_positives:,}"),
        ("false negative pairs", f"{s.false_negatives:,}"),
        ("true negative pairs", f"{s.true_negatives:,}"),
        ("cluster precision (found clusters exactly true)", f"{s.cluster_precision:.4f}"),
        ("cluster recall (true clusters found exactly)", f"{s.cluster_recall:.4f}"),
    ):  # fmt: skip
        table.add_row(label, value)
    console.print(table)
