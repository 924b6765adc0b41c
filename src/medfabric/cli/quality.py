"""``medfabric quality``: run the data-quality checks, report them, evaluate them against the
simulator's injected defects (docs/quality.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medfabric.cli.common import console, fail, open_warehouse, settings_or_fail
from medfabric.governance.quality.evaluate import TruthError, evaluate
from medfabric.governance.quality.report import ReportError, render_html, render_json, report_data
from medfabric.governance.quality.rules import RulesError, load_rules
from medfabric.governance.quality.runner import run_quality
from medfabric.governance.quality.scores import OVERALL, scores
from medfabric.warehouse import DuckDBEngine, WarehouseError

app = typer.Typer(
    help="Data quality: conformance, completeness, plausibility, uniqueness, timeliness "
    "(docs/quality.md).",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="region.toml to read.")]
RECALL_GATE = 0.95


def _open(config: Path | None) -> DuckDBEngine:
    return open_warehouse(
        settings_or_fail(config), first="run the receiver and `medfabric govern run`"
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


@app.command("run")
def run_cmd(
    config: ConfigOpt = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="A rules file instead of the shipped one.")
    ] = None,
) -> None:
    """Run every check (generated from the catalog, plus the rules file) on the warehouse and
    store the results in schema dq; print the scores."""
    try:
        rule_set = load_rules(rules)
    except RulesError as e:
        fail(f"invalid rules file: {e}")
    engine = _open(config)
    try:
        with console.status("running quality checks"):
            run = run_quality(engine, rules=rule_set)
        table = _scores_table(engine, run.run_id)
    except WarehouseError as e:
        fail(str(e))
    finally:
        engine.close()
    console.print(table)
    seconds = (run.finished_at - run.started_at).total_seconds()
    console.print(
        f"run {run.run_id}: {len(run.checks)} checks × hospitals → {run.count('pass')} pass, "
        f"{run.count('fail')} fail, {run.count('not_applicable')} not applicable "
        f"({seconds:.2f} s)"
    )


def _scores_table(engine: DuckDBEngine, run_id: int | None = None) -> Table:
    cats = ("conformance", "completeness", "plausibility", "uniqueness", "timeliness", OVERALL)
    table = Table("hospital", *cats, title="Scores: passed / (passed + failed) checks, %")
    by = {(s.hospital, s.category): s.score for s in scores(engine, run_id)}
    for h in sorted({h for h, _ in by}, key=lambda x: (x == "*", x)):
        table.add_row("region" if h == "*" else h, *(_pct(by.get((h, c))) for c in cats))
    return table


@app.command("report")
def report_cmd(
    config: ConfigOpt = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="json or html; default: a summary table.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    run_id: Annotated[int | None, typer.Option("--run", help="A run id (default latest).")] = None,
) -> None:
    """The report of the latest run: a summary on the terminal, or the complete JSON or a
    self-contained HTML page (--format, --out)."""
    if fmt not in (None, "json", "html"):
        fail(f"--format must be json or html, got {fmt!r}")
    engine = _open(config)
    try:
        data = report_data(engine, run_id)
        summary = _scores_table(engine, data["run"]["run_id"]) if fmt is None else None
    except ReportError as e:
        fail(str(e))
    except WarehouseError as e:
        fail(str(e))
    finally:
        engine.close()
    if summary is not None:
        console.print(summary)
        failing = Table("hospital", "table", "check", "checked", "failed", "%",
                        title="Failing checks")  # fmt: skip
        for r in data["results"]:
            if r["status"] == "fail":
                failing.add_row(
                    r["hospital"], r["dwd_table"], r["check_id"], f"{r['rows_checked']:,}",
                    f"{r['rows_failed']:,}", _pct(r["percent_failed"]),
                )  # fmt: skip
        console.print(failing)
        return
    text = render_json(data) if fmt == "json" else render_html(data)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


@app.command("eval")
def eval_cmd(
    truth: Annotated[Path, typer.Option("--truth", help="The simulator's truth/defects.csv.")],
    config: ConfigOpt = None,
) -> None:
    """Recall and precision of the latest run against the simulator's injected defects; exits 1
    when the recall of any defect type is below 95 %."""
    engine = _open(config)
    try:
        rows = evaluate(engine, truth)
    except TruthError as e:
        fail(str(e))
    except WarehouseError as e:
        fail(str(e))
    finally:
        engine.close()
    table = Table(
        "defect", "injected", "no effect", "found", "recall", "flagged", "precision",
        "prec. any", title="Injected defects found by the checks",
    )  # fmt: skip
    low = []
    for s in rows:
        table.add_row(
            s.defect, str(s.injected), str(s.no_effect), str(s.found), _ratio(s.recall),
            str(s.flagged), _ratio(s.precision), _ratio(s.precision_any),
        )  # fmt: skip
        if s.recall is not None and s.recall < RECALL_GATE:
            low.append(s.defect)
    console.print(table)
    per_check = Table("defect", "check", "flagged", "of this type", title="Flagged rows per check")
    for s in rows:
        for check_id, flagged, hits in s.by_check:
            per_check.add_row(s.defect, check_id, str(flagged), str(hits))
    console.print(per_check)
    console.print(
        "[dim]no effect: a wrong_unit whose unit has the labelled unit's factor (the value is "
        "right); recall = found / (injected − no effect).[/]"
    )
    if low:
        console.print(f"[red]recall below {RECALL_GATE:.0%}:[/] {', '.join(low)}")
        raise typer.Exit(1)


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
