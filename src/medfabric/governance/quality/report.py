"""The quality report of a run: a complete JSON document and a self-contained HTML page.

The JSON (:func:`report_data`, :func:`render_json`) is the machine-readable form::

    {"format": "medfabric-quality-report", "format_version": 1,
     "run": {run_id, started_at, finished_at, rules_version, checks, passed, failed,
             not_applicable, seconds},
     "scores": [{hospital, category, passed, failed, not_applicable, score}],
     "trend": [{run_id, started_at, hospital, category, passed, failed, score}],
     "checks": [{check_id, kind, category, subcategory, dwd_table, columns, description,
                 threshold, severity, origin}],
     "results": [{hospital, dwd_table, check_id, category, subcategory, status, rows_checked,
                  rows_failed, percent_failed, threshold, severity, examples: [row_id, …]}]}

``hospital`` ``*`` is the whole region; ``category`` ``overall`` every category. The HTML
(:func:`render_html`) shows the same data; every text is escaped, and it needs no network.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any

from medfabric.governance.quality.runner import DQ_SCHEMA
from medfabric.governance.quality.scores import OVERALL, latest_run, scores, trend
from medfabric.warehouse.engine import Engine

FORMAT = "medfabric-quality-report"
CATEGORY_ORDER = ("conformance", "completeness", "plausibility", "uniqueness", "timeliness",
                  OVERALL)  # fmt: skip


class ReportError(ValueError):
    """There is nothing to report (no quality run in the warehouse)."""


def _iso(v: object) -> object:
    return v.isoformat() if isinstance(v, datetime) else v


def _dicts(engine: Engine, sql: str, params: list[object]) -> list[dict[str, Any]]:
    table = engine.fetch_arrow(sql, params)
    return [{k: _iso(v) for k, v in row.items()} for row in table.to_pylist()]


def report_data(engine: Engine, run_id: int | None = None, *, examples: int = 5
                ) -> dict[str, Any]:  # fmt: skip
    """The report of one run (the latest by default), as plain JSON-able data.

    Args:
        engine: the warehouse.
        run_id: the run.
        examples: failing row ids listed per result (from ``dq.failures``, when still kept).

    Raises:
        ReportError: no such run.
    """
    rid = latest_run(engine) if run_id is None else run_id
    runs = [] if rid is None else _dicts(
        engine, f"SELECT * FROM {DQ_SCHEMA}.runs WHERE run_id = ?", [rid]
    )  # fmt: skip
    if not runs:
        raise ReportError("no quality run in this warehouse: run `medfabric quality run`")
    assert rid is not None
    started = dict(engine.fetchall(f"SELECT run_id, started_at FROM {DQ_SCHEMA}.runs"))
    checks = _dicts(
        engine,
        f"SELECT check_id, kind, category, subcategory, dwd_table, columns, description, "
        f"threshold, severity, origin FROM {DQ_SCHEMA}.checks WHERE run_id = ? ORDER BY rowid",
        [rid],
    )
    results = _dicts(
        engine,
        f"""SELECT r.hospital, r.dwd_table, r.check_id, r.category, r.subcategory, r.status,
    r.rows_checked, r.rows_failed, r.percent_failed, r.threshold, r.severity,
    coalesce(e.examples, []) AS examples
FROM {DQ_SCHEMA}.results r LEFT JOIN (
    SELECT check_id, hospital, list(row_id ORDER BY row_id)[1:{int(examples)}] AS examples
    FROM {DQ_SCHEMA}.failures WHERE run_id = ? GROUP BY ALL
) e ON e.check_id = r.check_id AND e.hospital = r.hospital
WHERE r.run_id = ? ORDER BY r.hospital, r.dwd_table, r.check_id""",
        [rid, rid],
    )
    return {
        "format": FORMAT,
        "format_version": 1,
        "run": runs[0],
        "scores": [
            {
                "hospital": s.hospital,
                "category": s.category,
                "passed": s.passed,
                "failed": s.failed,
                "not_applicable": s.not_applicable,
                "score": s.score,
            }
            for s in scores(engine, rid)
        ],
        "trend": [
            {
                "run_id": s.run_id,
                "started_at": _iso(started.get(s.run_id)),
                "hospital": s.hospital,
                "category": s.category,
                "passed": s.passed,
                "failed": s.failed,
                "score": s.score,
            }
            for s in trend(engine)
            if s.run_id <= rid
        ],
        "checks": checks,
        "results": results,
    }


def render_json(data: dict[str, Any]) -> str:
    """The report as indented JSON (UTF-8 text, Chinese kept as is)."""
    return json.dumps(data, ensure_ascii=False, indent=1, default=str) + "\n"


_CSS = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right}
.pass{background:#e3f4e3}.fail{background:#fbe0e0}.not_applicable{color:#888}
.muted{color:#777;font-size:.85em}code{font-size:.85em}
"""


def _score_cell(score: object) -> str:
    if score is None:
        return '<td class="n not_applicable">–</td>'
    value = float(score)  # type: ignore[arg-type]
    cls = "pass" if value >= 95 else "fail" if value < 80 else ""
    return f'<td class="n {cls}">{value:.1f}</td>'


def _sparkline(points: list[float | None]) -> str:
    values = [p for p in points if p is not None]
    if len(values) < 2:
        return ""
    w, h = 120, 24
    step = w / (len(points) - 1)
    coords = " ".join(
        f"{i * step:.1f},{h - (p / 100.0) * h:.1f}" for i, p in enumerate(points) if p is not None
    )
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="trend"><polyline fill="none" stroke="#36c" stroke-width="1.5" '
        f'points="{coords}"/></svg>'
    )


def render_html(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts, no network):
    summary scores, the trend per run, every result hospital × table × check with its status,
    and failing examples."""
    run = data["run"]
    e = escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="zh"><head><meta charset="utf-8">',
        f"<title>数据质量报告 · run {e(str(run['run_id']))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>数据质量报告 Data quality report — run {e(str(run['run_id']))}</h1>",
        f'<p class="muted">started {e(str(run["started_at"]))} · finished '
        f"{e(str(run['finished_at']))} · rules {e(str(run['rules_version']))} · "
        f"{e(str(run['checks']))} checks · {e(str(run['passed']))} pass · "
        f"{e(str(run['failed']))} fail · {e(str(run['not_applicable']))} not applicable · "
        f"{float(run['seconds'] or 0):.2f} s</p>",
        "<h2>Scores (passed / (passed + failed) checks, %)</h2>",
    ]
    hospitals = sorted({s["hospital"] for s in data["scores"]}, key=lambda h: (h == "*", h))
    by = {(s["hospital"], s["category"]): s for s in data["scores"]}
    out.append("<table><tr><th>hospital</th>"
               + "".join(f"<th>{e(c)}</th>" for c in CATEGORY_ORDER) + "</tr>")  # fmt: skip
    for h in hospitals:
        cells = "".join(_score_cell(by.get((h, c), {}).get("score")) for c in CATEGORY_ORDER)
        out.append(f"<tr><th>{e('region' if h == '*' else h)}</th>{cells}</tr>")
    out.append("</table>")
    runs = sorted({t["run_id"] for t in data["trend"]})
    out.append("<h2>Trend (overall score per run)</h2><table><tr><th>hospital</th>"
               + "".join(f"<th>run {e(str(r))}</th>" for r in runs)
               + "<th>trend</th></tr>")  # fmt: skip
    tr = {(t["hospital"], t["run_id"]): t for t in data["trend"] if t["category"] == OVERALL}
    for h in hospitals:
        points = [tr.get((h, r), {}).get("score") for r in runs]
        cells = "".join(_score_cell(p) for p in points)
        out.append(f"<tr><th>{e('region' if h == '*' else h)}</th>{cells}"
                   f"<td>{_sparkline(points)}</td></tr>")  # fmt: skip
    out.append("</table>")
    checks = {c["check_id"]: c for c in data["checks"]}
    failing = [r for r in data["results"] if r["status"] == "fail"]
    out.append(f"<h2>Failing checks ({len(failing)})</h2>")
    out.append(_results_table(failing, checks))
    rest = [r for r in data["results"] if r["status"] != "fail"]
    out.append(f"<details><summary>Passing and not-applicable results ({len(rest)})</summary>")
    out.append(_results_table(rest, checks))
    out.append("</details></body></html>")
    return "\n".join(out) + "\n"


def _results_table(rows: list[dict[str, Any]], checks: dict[str, dict[str, Any]]) -> str:
    e = escape
    out = ["<table><tr><th>hospital</th><th>table</th><th>check</th><th>category</th>"
           "<th>status</th><th>checked</th><th>failed</th><th>%</th><th>threshold %</th>"
           "<th>failing examples</th></tr>"]  # fmt: skip
    for r in rows:
        desc = checks.get(r["check_id"], {}).get("description", "")
        pct = r["percent_failed"]
        examples = "<br>".join(f"<code>{e(str(x))}</code>" for x in r["examples"])
        out.append(
            f'<tr class="{e(r["status"])}"><td>{e(r["hospital"])}</td><td>{e(r["dwd_table"])}'
            f'</td><td><code>{e(r["check_id"])}</code><br><span class="muted">{e(str(desc))}'
            f"</span></td><td>{e(r['category'])}/{e(r['subcategory'])}</td>"
            f'<td>{e(r["status"])}</td><td class="n">{int(r["rows_checked"]):,}</td>'
            f'<td class="n">{int(r["rows_failed"]):,}</td>'
            f'<td class="n">{"" if pct is None else f"{float(pct):.2f}"}</td>'
            f'<td class="n">{float(r["threshold"]):g}</td><td>{examples}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)
