"""Recall and precision of the quality checks against the simulator's injected defects.

The truth file (``truth/defects.csv`` of a simulated region) has one row per injected defect:
``hospital, system, table, source_table, local_key, column, defect, detail``. The row's DWD id is
its storage address ``hospital/system/source_table/local_key``. A defect is *found* when that
address failed, in the latest run, a check of a family that answers to the defect type
(:data:`DEFECT_CHECKS`), or was set aside by governance (``gov.quarantine`` /
``gov.duplicates``).

A ``wrong_unit`` defect whose other unit has the same factor as the labelled one (10^3/µL
labelled 10^9/L, mEq/L labelled mmol/L) leaves the value exactly right: no check can or should
find it. Such defects are counted as ``no_effect`` and left out of ``recall``; ``recall_all``
keeps them.

Precision per type: of the distinct rows the checks of that type's families flagged, the share
that are injected defects of that type (``precision``) or of any type (``precision_any``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa

from medfabric.governance.quality.runner import DQ_SCHEMA
from medfabric.governance.quality.scores import latest_run
from medfabric.standards import codes
from medfabric.warehouse.engine import Engine

# defect type → check kinds (or ``category:<name>``) that answer to it.
DEFECT_CHECKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "missing_required": ("category:completeness",),
        "out_of_range": ("range", "lab_limits", "lab_flag"),
        "invalid_code": ("value_domain",),
        "future_date": ("not_future",),
        "discharge_before_admission": ("order",),
        "wrong_unit": ("lab_unit", "lab_flag", "lab_limits", "lab_delta"),
        "duplicate": ("category:uniqueness",),
    }
)
_UNITS = re.compile(r"^value in (.*), labelled (.*)$")
TRUTH_COLUMNS = ("hospital", "system", "table", "source_table", "local_key", "column",
                 "defect", "detail")  # fmt: skip


class TruthError(ValueError):
    """The defects file is missing or not of the simulator's shape."""


@dataclass(frozen=True, slots=True)
class DefectScore:
    """Recall and precision for one defect type."""

    defect: str
    injected: int
    no_effect: int
    found: int
    flagged: int
    true_positives: int
    any_defect_flagged: int
    checks: tuple[str, ...]
    by_check: tuple[tuple[str, int, int], ...] = ()  # (check id, rows flagged, of this type)

    @property
    def observable(self) -> int:
        """Injected defects that change the data (all but ``no_effect``)."""
        return self.injected - self.no_effect

    @property
    def recall(self) -> float | None:
        """found / observable; None when none is observable."""
        return self.found / self.observable if self.observable else None

    @property
    def recall_all(self) -> float | None:
        """found / injected, the no-effect defects included."""
        return self.found / self.injected if self.injected else None

    @property
    def precision(self) -> float | None:
        """Flagged rows that are defects of this type / flagged rows."""
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def precision_any(self) -> float | None:
        """Flagged rows that are injected defects of any type / flagged rows."""
        return self.any_defect_flagged / self.flagged if self.flagged else None


def read_truth(path: Path) -> list[dict[str, str]]:
    """The rows of a ``defects.csv``.

    Raises:
        TruthError: the file is missing or its header is not the simulator's.
    """
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != TRUTH_COLUMNS:
                raise TruthError(f"{path}: header must be {','.join(TRUTH_COLUMNS)}")
            return [dict(r) for r in reader]
    except OSError as e:
        raise TruthError(f"{path}: cannot read: {e}") from e


def _address(r: Mapping[str, str]) -> str:
    return f"{r['hospital']}/{r['system']}/{r['source_table']}/{r['local_key']}"


def _no_effect(engine: Engine, rows: list[dict[str, str]]) -> set[str]:
    """Addresses of wrong_unit defects whose two units share one factor for the item."""
    wanted = {_address(r): r for r in rows if r["defect"] == "wrong_unit"}
    if not wanted:
        return set()
    engine.register("dq_truth_units", pa.table({"row_id": list(wanted)}))
    try:
        items = dict(engine.fetchall(
            "SELECT t.row_id, r.item_code FROM dq_truth_units t "
            "JOIN dwd.lab_result r ON r.lab_result_id = t.row_id"
        ))  # fmt: skip
    finally:
        engine.unregister("dq_truth_units")
    factors = codes.lab_unit_factors()
    out = set()
    for address, row in wanted.items():
        m = _UNITS.match(row["detail"])
        units = factors.get(str(items.get(address, "")), {})
        if m is None or m.group(1) not in units or m.group(2) not in units:
            continue
        if abs(units[m.group(1)] / units[m.group(2)] - 1) < 1e-9:
            out.add(address)
    return out


def evaluate(engine: Engine, defects_csv: Path, *, run_id: int | None = None) -> list[DefectScore]:
    """Per defect type of the truth file: injected, found, recall, flagged rows, precision.

    Args:
        engine: a warehouse on which :func:`run_quality` ran.
        defects_csv: the simulator's ``truth/defects.csv``.
        run_id: the run to evaluate (the latest by default).

    Raises:
        TruthError: bad truth file, or no quality run in the warehouse.
    """
    rows = read_truth(defects_csv)
    if run_id is None:
        run_id = latest_run(engine)
        if run_id is None:
            raise TruthError("no quality run in this warehouse: run `medfabric quality run`")
    kinds = dict(engine.fetchall(
        f"SELECT check_id, kind FROM {DQ_SCHEMA}.checks WHERE run_id = ?", [run_id]
    ))  # fmt: skip
    cats = dict(engine.fetchall(
        f"SELECT check_id, category FROM {DQ_SCHEMA}.checks WHERE run_id = ?", [run_id]
    ))  # fmt: skip
    answering = sorted(
        c for c in kinds
        if any(kinds[c] in f or f"category:{cats[c]}" in f for f in DEFECT_CHECKS.values())
    )  # fmt: skip
    flagged: dict[str, set[str]] = {}
    for check_id, row in engine.fetchall(
        f"SELECT DISTINCT check_id, row_id FROM {DQ_SCHEMA}.failures "
        "WHERE run_id = ? AND list_contains(?, check_id)",
        [run_id, answering],
    ):
        flagged.setdefault(str(check_id), set()).add(str(row))
    set_aside: set[str] = set()
    if _has_gov(engine):
        address = "hospital || '/' || source_system || '/' || source_table || '/' || source_key"
        set_aside = {
            str(r[0])
            for r in engine.fetchall(
                f"SELECT {address} FROM gov.quarantine UNION SELECT {address} FROM gov.duplicates"
            )
        }
    no_effect = _no_effect(engine, rows)
    by_type: dict[str, set[str]] = {}
    for r in rows:
        by_type.setdefault(r["defect"], set()).add(_address(r))
    every_defect = {a for s in by_type.values() for a in s}
    out = []
    for defect, addresses in sorted(by_type.items()):
        families = DEFECT_CHECKS.get(defect, ())
        mine = sorted(
            c for c in kinds
            if kinds[c] in families or f"category:{cats[c]}" in families
        )  # fmt: skip
        rows_flagged = set().union(*(flagged.get(c, set()) for c in mine)) if mine else set()
        gov_found = set_aside if defect in ("missing_required", "duplicate") else set()
        found = addresses & (rows_flagged | gov_found)
        ne = addresses & no_effect if defect == "wrong_unit" else set()
        out.append(DefectScore(
            defect, len(addresses), len(ne), len(found - ne), len(rows_flagged),
            len(rows_flagged & addresses), len(rows_flagged & every_defect), tuple(mine),
            tuple(
                (c, len(flagged.get(c, set())), len(flagged.get(c, set()) & addresses))
                for c in mine if flagged.get(c)
            ),
        ))  # fmt: skip
    return out


def _has_gov(engine: Engine) -> bool:
    rows = engine.fetchall(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'gov' "
        "AND table_name IN ('quarantine', 'duplicates')"
    )
    return int(rows[0][0]) == 2


def missed(engine: Engine, defects_csv: Path, defect: str, *, run_id: int | None = None
           ) -> list[dict[str, str]]:  # fmt: skip
    """The injected defects of one type that no answering check flagged (for investigation)."""
    rows = [r for r in read_truth(defects_csv) if r["defect"] == defect]
    families = DEFECT_CHECKS.get(defect, ())
    rid = run_id if run_id is not None else latest_run(engine)
    hit = {
        str(r[0])
        for r in engine.fetchall(
            f"SELECT DISTINCT f.row_id FROM {DQ_SCHEMA}.failures f JOIN {DQ_SCHEMA}.checks c "
            "ON c.run_id = f.run_id AND c.check_id = f.check_id WHERE f.run_id = ? AND "
            "(list_contains(?, c.kind) OR list_contains(?, 'category:' || c.category))",
            [rid, list(families), list(families)],
        )
    }
    return [r for r in rows if _address(r) not in hit]
