"""Change ticks: the clock moves, and every change in truth/changes.csv is in the databases."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from tests.simulator.regionkit import Region

from medfabric.simulator import SimulationError, tick_region
from medfabric.simulator.schema import TABLE_BY_NAME


@pytest.fixture(scope="module")
def ticked(region: Region, tmp_path_factory: pytest.TempPathFactory) -> tuple[Region, Region]:
    """A copy of the session region, before and after a 3-day tick."""
    root = tmp_path_factory.mktemp("tick") / "region"
    shutil.copytree(region.root, root)
    before = Region(root, dict(region.manifest))
    summary = tick_region(root, days=3)
    assert summary.tick == 1 and summary.days == 3
    import json

    after = Region(root, json.loads((root / "region.json").read_text("utf-8")))
    return before, after


def test_clock_and_counters_advance(ticked: tuple[Region, Region]) -> None:
    before, after = ticked
    assert after.manifest["clock"] == before.manifest["clock"] + 3 * 86_400
    assert after.manifest["ticks"] == 1
    for b, a in zip(before.manifest["hospitals"], after.manifest["hospitals"], strict=True):
        assert a["counters"]["visit"] > b["counters"]["visit"]
        assert a["counters"]["lab_result"] > b["counters"]["lab_result"]


def test_every_change_is_in_the_databases(ticked: tuple[Region, Region]) -> None:
    _, after = ticked
    changes = after.truth("changes.csv")
    ops = Counter(c["op"] for c in changes)
    assert {"insert", "update", "delete", "insert_late"} <= set(ops)
    start = after.manifest["clock"] - 3 * 86_400
    rows_cache: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    for c in changes:
        key = (c["hospital"], c["table"])
        if key not in rows_cache:
            rows_cache[key] = after.rows_by_key(*key)
        rows = rows_cache[key]
        d = after.dialect(c["hospital"], TABLE_BY_NAME[c["table"]].system)
        tick_start = d.format_datetimes([start])[0]
        row = rows.get(c["local_key"])
        if c["op"] == "delete":
            if d.delete_mode == "hard":
                assert row is None, c
            else:
                assert row is not None and row["_flag"] == d.flag_deleted, c
                assert row["_updated"] >= tick_start
        elif c["op"] == "update":
            assert row is not None and row["_updated"] >= tick_start, c
        elif c["op"] == "insert_late":
            assert row is not None and row["_updated"] < tick_start, c
        else:  # inserts (deletions only touch rows that existed before the tick)
            assert row is not None, c


def test_deletes_follow_each_dialect(ticked: tuple[Region, Region]) -> None:
    _, after = ticked
    deletes = [c for c in after.truth("changes.csv") if c["op"] == "delete"]
    modes = {c["detail"].rsplit("(", 1)[1].rstrip(")") for c in deletes}
    assert modes == {"hard", "flag"}


def test_corrections_change_the_value(ticked: tuple[Region, Region]) -> None:
    _, after = ticked
    fixes = [c for c in after.truth("changes.csv") if c["detail"].startswith("corrected")]
    assert fixes
    for c in fixes[:20]:
        rows = after.rows_by_key(c["hospital"], "lab_result")
        new = c["detail"].split("→")[1].strip()
        assert rows[c["local_key"]]["value"] == new


def test_tick_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="not a region"):
        tick_region(tmp_path)
    with pytest.raises(SimulationError, match="--days must be at least 1"):
        tick_region(tmp_path, days=0)
