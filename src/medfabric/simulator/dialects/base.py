"""What a vendor dialect is: naming, value encodings, local code lists and delete convention.

Invariants:
- A dialect's local code map is injective per domain (one local code per standard code), so the
  truth table written beside the region can be inverted by governance.
- Formatting is column-at-a-time (lists in, lists out) because the simulator writes millions of
  values; nothing here is called per value from a Python loop over rows of a whole table twice.
- ``None`` stays ``None`` through every formatter (a missing value is a NULL in every dialect).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar

import numpy as np

from medfabric.simulator.schema import Column, Table, ref_system
from medfabric.standards import codes

# Standard code lists of the domains the schema uses: (domain → ordered standard codes).
_SIM_DOMAINS: dict[str, tuple[str, ...]] = {
    "diag_type": ("1", "2"),
    "order_type": ("LAB", "EXAM", "DRUG"),
    "result_status": ("F", "C"),
    "report_status": ("F", "C"),
}


def standard_codes(domain: str) -> tuple[str, ...]:
    """Ordered standard codes of a schema code domain."""
    return _standard_codes(domain)


@functools.cache
def _standard_codes(domain: str) -> tuple[str, ...]:
    if domain in _SIM_DOMAINS:
        return _SIM_DOMAINS[domain]
    source: Mapping[str, Any] = {
        "sex": codes.value_domain("sex"),
        "id_type": codes.value_domain("id_doc_type"),
        "ethnicity": codes.value_domain("ethnicity"),
        "marital": codes.value_domain("marital_status"),
        "visit_type": codes.value_domain("visit_type"),
        "dept": codes.value_domain("department"),
        "disposition": codes.value_domain("discharge_disposition"),
        "frequency": codes.value_domain("frequency"),
        "specimen": codes.value_domain("specimen_type"),
        "flag": codes.value_domain("abnormal_flag"),
        "order_status": codes.value_domain("order_status"),
        "doc_type": codes.value_domain("document_type"),
        "diag": codes.diagnoses(),
        "drug": codes.drugs(),
        "lab_item": codes.lab_items(),
        "lab_panel": codes.lab_panels(),
        "exam": codes.exam_items(),
    }[domain]
    return tuple(source)


def iso_seconds(values: Sequence[int | None]) -> list[str | None]:
    """Epoch seconds (naive local time) → 'YYYY-MM-DDTHH:MM:SS', vectorized."""
    arr = np.array([0 if v is None else v for v in values], dtype="datetime64[s]")
    out: list[str | None] = list(np.datetime_as_string(arr, unit="s").tolist())
    for i, v in enumerate(values):
        if v is None:
            out[i] = None
    return out


class Dialect:
    """Base of the three vendor dialects; subclasses fill the class attributes and codes."""

    name: ClassVar[str]
    vendor_zh: ClassVar[str]
    table_names: ClassVar[Mapping[str, str]]
    text_encoding: ClassVar[str] = "utf-8"
    delete_mode: ClassVar[str] = "flag"  # 'flag' | 'hard'
    updated_column: ClassVar[str]
    flag_column: ClassVar[str | None] = None
    flag_live: ClassVar[Any] = None
    flag_deleted: ClassVar[Any] = None
    unit_overrides: ClassVar[Mapping[str, str]] = {}
    integer_keys: ClassVar[bool] = False

    # --- naming -------------------------------------------------------------------------
    def table_name(self, table: str) -> str:
        return self.table_names[table]

    def column_name(self, table: str, column: str) -> str:
        raise NotImplementedError

    def column_names(self, table: Table) -> list[str]:
        return [self.column_name(table.name, c.name) for c in table.columns]

    # --- keys ---------------------------------------------------------------------------
    def format_keys(self, space: str, values: Sequence[int | None]) -> list[Any]:
        """Local keys of a key space (a table, or 'visit' for both visit tables)."""
        raise NotImplementedError

    def format_key(self, space: str, value: int) -> Any:
        """One local key (the single-value form of :meth:`format_keys`)."""
        return value

    def parse_key(self, space: str, stored: Any) -> int:
        """Inverse of :meth:`format_keys` for one stored key."""
        return int(stored)

    # --- time ---------------------------------------------------------------------------
    def format_datetimes(self, values: Sequence[int | None]) -> list[Any]:
        raise NotImplementedError

    def format_date(self, value: date | None) -> Any:
        raise NotImplementedError

    # --- codes --------------------------------------------------------------------------
    def local_code_for(self, domain: str, index: int, std: str) -> str:
        """Local code of the ``index``-th standard code ``std`` of ``domain``."""
        raise NotImplementedError

    def local_codes(self, domain: str) -> Mapping[str, str]:
        """Standard code → this dialect's local code, for every code of the domain."""
        return _local_codes(self, domain)

    # --- units --------------------------------------------------------------------------
    def lab_unit(self, item_code: str, standard_unit: str) -> str:
        return self.unit_overrides.get(item_code, standard_unit)

    # --- DDL ----------------------------------------------------------------------------
    def sql_type(self, column: Column, system: str) -> str:
        kind = column.kind
        ref = column.ref_table
        if ref is not None and ref_system(ref) != system:
            return "TEXT"  # another system's key, as that system formats it
        if kind == "key" or ref is not None:
            return "INTEGER" if self.integer_keys else "TEXT"
        if kind == "text":
            return "BLOB" if self.text_encoding != "utf-8" else "TEXT"
        if kind == "int":
            return "INTEGER"
        if kind == "float":
            return "REAL"
        if kind == "dt":
            return self.datetime_sql_type
        return "TEXT"

    datetime_sql_type: ClassVar[str] = "TEXT"

    def create_table_sql(self, table: Table) -> str:
        cols = [
            f'"{n}" {self.sql_type(c, table.system)}' + (" PRIMARY KEY" if c.kind == "key" else "")
            for n, c in zip(self.column_names(table), table.columns, strict=True)
        ]
        cols.append(f'"{self.updated_column}" {self.datetime_sql_type}')
        if self.flag_column:
            cols.append(f'"{self.flag_column}" TEXT')
        return f'CREATE TABLE IF NOT EXISTS "{self.table_name(table.name)}" ({", ".join(cols)})'


@functools.cache
def _local_codes(dialect: Dialect, domain: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    seen: set[str] = set()
    for i, std in enumerate(standard_codes(domain)):
        local = dialect.local_code_for(domain, i, std)
        if local in seen:
            raise ValueError(f"dialect {dialect.name}: local code {local!r} reused in {domain}")
        seen.add(local)
        out[std] = local
    return out


def camel(name: str) -> str:
    """snake_case → camelCase."""
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
