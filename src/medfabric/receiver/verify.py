"""Re-verification of ODS: recompute every stored row version's content hash from its values.

Each version is hashed with exactly the columns of the batch it came in (``ingest.batches``
keeps them), so a table whose source later gained or lost a column still verifies. The work is
one SQL statement per (ODS table, column set).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from medfabric.records import ColumnKind, RecordError, kind_of_duckdb_type
from medfabric.records.sqlcanon import hash_sql
from medfabric.warehouse import DuckDBEngine, WarehouseError
from medfabric.warehouse.ddl import quote
from medfabric.warehouse.engine import Engine


class VerifyError(Exception):
    """The warehouse cannot be opened or read for verification."""


@dataclass(frozen=True, slots=True)
class HashGroup:
    """Row versions of one ODS table that came with one column set: the SQL expression that
    recomputes their content hash, and the batches they came in."""

    ods_table: str
    hospital_id: str
    system: str
    source_table: str
    expression: str
    batch_ids: tuple[str, ...]


def hash_groups(engine: Engine, ods_table: str | None = None) -> Iterator[HashGroup]:
    """Every (ODS table, column set) with landed rows, or those of one table.

    Raises:
        WarehouseError, RecordError: the warehouse cannot be read, or a stored column type has
            no canonical kind.
    """
    groups: dict[tuple[str, str, str, str, str], list[str]] = defaultdict(list)
    for bid, ods, hosp, system, table, cols in engine.fetchall(
        "SELECT batch_id, ods_table, hospital_id, system, source_table, columns::VARCHAR "
        "FROM ingest.batches WHERE landed > 0 AND (? IS NULL OR ods_table = ?) ORDER BY seq",
        [ods_table, ods_table],
    ):
        groups[(ods, hosp, system, table, cols)].append(bid)
    for (ods, hosp, system, table, cols), batch_ids in groups.items():
        columns: list[tuple[str, ColumnKind]] = [
            (n, kind_of_duckdb_type(t)) for n, t in json.loads(cols)
        ]
        utype = engine.fetchall(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'ods' "
            "AND table_name = ? AND column_name = '_source_updated_at'",
            [ods],
        )
        updated_kind: ColumnKind = (
            "datetime_tz" if utype and "TIME ZONE" in str(utype[0][0]).upper() else "datetime"
        )
        sql = hash_sql(
            hospital_id=hosp, system=system, table=table, columns=columns,
            updated_kind=updated_kind,
        )  # fmt: skip
        yield HashGroup(ods, hosp, system, table, sql, tuple(batch_ids))


def verify_ods(warehouse: str) -> dict[str, tuple[int, int]]:
    """ODS table → (row versions checked, versions whose recomputed hash differs).

    Raises:
        VerifyError: the warehouse is locked (a receiver runs) or unreadable.
    """
    try:
        engine = DuckDBEngine(warehouse)
    except WarehouseError as e:
        raise VerifyError(f"cannot open {warehouse}: {e}") from None
    try:
        out: dict[str, tuple[int, int]] = {}
        for g in hash_groups(engine):
            rows = engine.fetchall(
                f"SELECT count(*), count(*) FILTER (WHERE h IS DISTINCT FROM _hash) FROM "
                f"(SELECT _hash, {g.expression} AS h FROM ods.{quote(g.ods_table)} "
                "WHERE _batch_id IN (SELECT unnest(?::VARCHAR[])))",
                [list(g.batch_ids)],
            )
            n, bad = out.get(g.ods_table, (0, 0))
            out[g.ods_table] = (n + int(rows[0][0]), bad + int(rows[0][1]))
        return out
    except (WarehouseError, RecordError) as e:
        raise VerifyError(f"verification of {warehouse} failed: {e}") from None
    finally:
        engine.close()
