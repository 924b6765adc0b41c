"""Columns governance derives from other columns, whatever the dialect: the source systems do
not hold them, and one definition for the region keeps them comparable.

- ``visit.length_of_stay_days`` (实际住院天数, DE99.05.006.00): discharge date minus admission
  date, a same-day stay counting 1 day; NULL when either is missing or the discharge is before
  the admission (the quality checks report that order). Derived on the staged rows, only where
  the mapping left it empty.
- ``visit.age_years`` (年龄, DE02.01.026.00): the full years between the person's birth date and
  the visit (admission, else visit time). It depends on another table, so it is derived after
  each run over every visit whose value differs from what the person's current birth date gives
  — a corrected birth date re-ages the visits; NULL when the visit is before the birth.
"""

from __future__ import annotations

from medfabric.warehouse.engine import Engine

__all__ = ["derive_across", "derive_rows"]

_STAY = (
    "CASE WHEN admitted_at IS NOT NULL AND discharged_at >= admitted_at THEN "
    "greatest(1, date_diff('day', CAST(admitted_at AS DATE), CAST(discharged_at AS DATE))) END"
)
# Per DWD table: column → expression over the row's own columns.
ROW_DERIVED: dict[str, dict[str, str]] = {"visit": {"length_of_stay_days": _STAY}}

_AT = "CAST(coalesce(v.admitted_at, v.visit_at) AS DATE)"
_AGE = (
    f"CASE WHEN p.birth_date <= {_AT} THEN year({_AT}) - year(p.birth_date) - "
    f"CAST(strftime({_AT}, '%m%d') < strftime(p.birth_date, '%m%d') AS INTEGER) END"
)


def derive_rows(engine: Engine, dwd_table: str, staged: str) -> None:
    """Fill the row-derived columns of ``dwd_table`` in the staged table ``staged`` where the
    mapping left them NULL."""
    for column, expr in ROW_DERIVED.get(dwd_table, {}).items():
        engine.execute(f"UPDATE {staged} SET {column} = {expr} WHERE {column} IS NULL")


def derive_across(engine: Engine) -> int:
    """Re-derive ``visit.age_years`` where it differs from the person's birth date; returns the
    number of visits changed."""
    age = f"(SELECT {_AGE} FROM dwd.person p WHERE p.person_id = v.person_id)"
    rows = engine.fetchall(
        f"""UPDATE dwd.visit v SET age_years = {age}
WHERE v.age_years IS DISTINCT FROM {age} RETURNING 1"""
    )
    return len(rows)
