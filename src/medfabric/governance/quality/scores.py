"""DQD-style scores from ``dq.results``: passed / (passed + failed) checks, per hospital and
category and overall, and their trend across runs. Not-applicable checks count in neither."""

from __future__ import annotations

from dataclasses import dataclass

from medfabric.governance.quality.runner import DQ_SCHEMA
from medfabric.warehouse.engine import Engine

OVERALL = "overall"


@dataclass(frozen=True, slots=True)
class Score:
    """Checks passed and failed for one hospital (``*`` = the region) and category
    (``overall`` = every category) in one run."""

    run_id: int
    hospital: str
    category: str
    passed: int
    failed: int
    not_applicable: int

    @property
    def score(self) -> float | None:
        """Percent of applicable checks that passed; None when none applied."""
        done = self.passed + self.failed
        return round(100.0 * self.passed / done, 1) if done else None


_SQL = f"""SELECT run_id, coalesce(hospital, '*'), coalesce(category, '{OVERALL}'),
    count(*) FILTER (WHERE status = 'pass'), count(*) FILTER (WHERE status = 'fail'),
    count(*) FILTER (WHERE status = 'not_applicable')
FROM {DQ_SCHEMA}.results {{where}}
GROUP BY GROUPING SETS ((run_id, hospital, category), (run_id, hospital), (run_id, category),
                        (run_id))
ORDER BY 1, 2, 3"""


def latest_run(engine: Engine) -> int | None:
    """The id of the latest quality run, or None (also when no run ever made schema ``dq``)."""
    present = engine.fetchall(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = 'runs'",
        [DQ_SCHEMA],
    )[0][0]
    if not present:
        return None
    got = engine.fetchall(f"SELECT max(run_id) FROM {DQ_SCHEMA}.runs")[0][0]
    return None if got is None else int(got)


def scores(engine: Engine, run_id: int | None = None) -> list[Score]:
    """Scores of one run (the latest by default): per hospital × category, per hospital
    overall, per category over the region (hospital ``*``) and the region overall."""
    rid = latest_run(engine) if run_id is None else run_id
    if rid is None:
        return []
    rows = engine.fetchall(_SQL.format(where="WHERE run_id = ?"), [rid])
    return [Score(int(r), str(h), str(c), int(p), int(f), int(n)) for r, h, c, p, f, n in rows]


def trend(engine: Engine, limit: int = 20) -> list[Score]:
    """Overall and per-category scores of every hospital and of the region for the latest
    ``limit`` runs, oldest first."""
    rows = engine.fetchall(
        _SQL.format(
            where=f"WHERE run_id IN (SELECT run_id FROM {DQ_SCHEMA}.runs ORDER BY run_id DESC "
            f"LIMIT {int(limit)})"
        )
    )
    return [Score(int(r), str(h), str(c), int(p), int(f), int(n)) for r, h, c, p, f, n in rows]
