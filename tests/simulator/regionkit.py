"""Generate small regions for tests and read them back through the dialects."""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from medfabric.simulator import SimulationOptions, simulate_region
from medfabric.simulator.dialects import DIALECTS, Dialect
from medfabric.simulator.schema import TABLE_BY_NAME

SMALL = {"hospitals": 3, "patients": 600, "seed": 11, "days": 120, "start_date": date(2025, 3, 1)}


@dataclass
class Region:
    root: Path
    manifest: dict[str, Any]

    def dialect(self, hospital: str, system: str) -> Dialect:
        h = next(x for x in self.manifest["hospitals"] if x["id"] == hospital)
        return DIALECTS[h["dialects"][system]]

    def db(self, hospital: str, system: str) -> sqlite3.Connection:
        return sqlite3.connect(self.root / hospital / f"{system.lower()}.db")

    def rows(self, hospital: str, table: str) -> list[dict[str, Any]]:
        """Rows of a canonical table, keyed by canonical column names (values as stored)."""
        t = TABLE_BY_NAME[table]
        d = self.dialect(hospital, t.system)
        names = [*d.column_names(t), d.updated_column] + ([d.flag_column] if d.flag_column else [])
        keys = [c.name for c in t.columns] + ["_updated"] + (["_flag"] if d.flag_column else [])
        cols = ", ".join(f'"{n}"' for n in names)
        with self.db(hospital, t.system) as conn:
            cur = conn.execute(f'SELECT {cols} FROM "{d.table_name(table)}"')
            return [dict(zip(keys, r, strict=True)) for r in cur]

    def rows_by_key(self, hospital: str, table: str) -> dict[str, dict[str, Any]]:
        """Rows of a canonical table keyed by their stored local key (as text)."""
        key = TABLE_BY_NAME[table].key
        return {str(r[key]): r for r in self.rows(hospital, table)}

    def truth(self, name: str) -> list[dict[str, str]]:
        with (self.root / "truth" / name).open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    @property
    def hospitals(self) -> list[str]:
        return [h["id"] for h in self.manifest["hospitals"]]


def make_region(root: Path, **kw: Any) -> Region:
    opts = SimulationOptions(out=root, **{**SMALL, "workers": 1, **kw})
    simulate_region(opts)
    return Region(root, json.loads((root / "region.json").read_text("utf-8")))
