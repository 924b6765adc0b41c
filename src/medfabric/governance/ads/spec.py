"""ADS models: one SQL file per table of schema ``ads``, with its partition and inputs declared in
a YAML header (docs/ads.md, "Adding a model"), and the pure SQL builders that refresh them.

A model file ``models/NN_<name>.sql`` starts with a block comment holding YAML::

    /*
    name: visits_daily                      # the table ads.visits_daily
    theme: operations                       # operations | chronic | quality
    description: Visits per day …
    partition: {institution_code: VARCHAR, visit_date: DATE}
    inputs:
      - name: visit                         # {{visit}} in the body
        from: dwd.visit
        key: [institution_code, CAST(visit_at AS DATE)]     # one expression per partition column
        hash: [visit_id, department_code, visit_type_code]  # the columns the body reads
        where: visit_type_code IS NOT NULL                  # optional
        yields: "*"                          # optional: what {{visit}} returns (x.* for a join)
        materialize: false                   # optional: keep the rows for the body (selective
                                             # inputs: no second scan of the source)
    */
    SELECT … FROM {{visit}} …

Invariants the refresher relies on:
- every row the body returns belongs to the partition its partition columns name, and is
  computed only from input rows whose ``key`` is that partition (``{{name}}`` gives exactly
  those rows when a subset of partitions is refreshed);
- ``hash`` lists every column of the input the body reads, so a change the body could see changes
  the partition's fingerprint (count and sum of the row hashes);
- a named input with ``fingerprint: false`` is not fingerprinted: another input must cover its
  rows (same key and rows, hashing every column the body reads of them);
- an input without ``name`` is read only for its fingerprint (e.g. a join that assigns a child
  row to its parent's partition), the body reading the table itself; a named input whose
  ``from`` is a join says with ``yields`` which columns ``{{name}}`` returns (``x.*``);
- files are refreshed in name order, so a model reading another ADS table comes after it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medfabric.governance.ads.errors import AdsError, fields

__all__ = ["SCHEMA", "THEMES", "Input", "Model", "load_model", "models"]

SCHEMA = "ads"
THEMES = ("operations", "chronic", "quality")
_HEADER = re.compile(r"^\s*/\*(.*?)\*/(.*)$", re.S)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\s*\}\}")
_MODEL_KEYS = {
    "name", "theme", "description", "partition", "inputs", "requires", "uses_conditions",
}  # fmt: skip
_INPUT_KEYS = {"name", "from", "key", "hash", "where", "yields", "fingerprint", "materialize"}


@dataclass(frozen=True, slots=True)
class Input:
    """One input of a model: rows of ``source`` (a table, or ``(SELECT …) alias``), assigned to a
    partition by ``key`` and fingerprinted over ``hash``."""

    name: str | None
    source: str
    key: tuple[str, ...]
    hash: tuple[str, ...]
    where: str | None
    yields: str = "*"
    fingerprint: bool = True
    materialize: bool = False

    def condition(self) -> str:
        """The rows that belong to some partition: ``where`` and every key not NULL."""
        parts = [f"({self.where})"] if self.where else []
        parts += [f"({k}) IS NOT NULL" for k in self.key]
        return " AND ".join(parts)


@dataclass(frozen=True, slots=True)
class Model:
    """A model file: ``ads.<name>``, its partition columns (name, SQL type), inputs and body."""

    name: str
    theme: str
    description: str
    partition: tuple[tuple[str, str], ...]
    inputs: tuple[Input, ...]
    body: str
    requires: tuple[str, ...]
    uses_conditions: bool
    path: Path
    digest: str

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def state_table(self) -> str:
        return f"{SCHEMA}._state__{self.name}"

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.partition)

    # --- SQL builders (pure) ---------------------------------------------------------------

    def materialize_sql(self, i: Input) -> str:
        """The rows of a ``materialize`` input with their partition (``_k0`` …) and row hash
        (``_rh``), for a temporary table that is fingerprinted and then read by the body for
        the changed partitions, instead of a second scan of the source."""
        keys = ", ".join(f"{k} AS _k{n}" for n, k in enumerate(i.key))
        return (
            f"SELECT {i.yields}, {keys}, hash({', '.join(i.hash)}) AS _rh "
            f"FROM {i.source} WHERE {i.condition()}"
        )

    def fingerprint_sql(self, i: Input, rows: str | None = None) -> str:
        """Per partition of input ``i``: rows and the sum of their hashes (``rows``: the
        temporary table of :meth:`materialize_sql`, when the input is materialized)."""
        groups = ", ".join(str(n + 1) for n in range(len(i.key)))
        if rows is not None:
            keys = ", ".join(f"_k{n} AS _p{n}" for n in range(len(i.key)))
            return (
                f"SELECT {keys}, count(*) AS _n, sum(_rh)::HUGEINT AS _h FROM {rows} "
                f"GROUP BY {groups}"
            )
        keys = ", ".join(f"{k} AS _p{n}" for n, k in enumerate(i.key))
        return (
            f"SELECT {keys}, count(*) AS _n, sum(hash({', '.join(i.hash)}))::HUGEINT AS _h "
            f"FROM {i.source} WHERE {i.condition()} GROUP BY {groups}"
        )

    def body_sql(self, todo: str | None, materialized: Mapping[str, str] | None = None) -> str:
        """The body with each ``{{input}}`` replaced by its rows — all of them (``todo`` None)
        or only those of the partitions listed in the table ``todo`` (columns ``_p0`` …).
        ``materialized``: input name → its temporary table (:meth:`materialize_sql`)."""
        by_name = {i.name: i for i in self.inputs if i.name}
        tables = materialized or {}

        def rows(match: re.Match[str]) -> str:
            i = by_name[match.group(1)]
            table = tables.get(match.group(1))
            n_keys = range(len(i.key))
            if table is not None:
                internal = ", ".join([*(f"_k{n}" for n in n_keys), "_rh"])
                semi = ""
                if todo is not None:
                    same = " AND ".join(f"_t._p{n} = _m._k{n}" for n in n_keys)
                    semi = f" SEMI JOIN {todo} _t ON {same}"
                return f"(SELECT _m.* EXCLUDE ({internal}) FROM {table} _m{semi})"
            semi = ""
            if todo is not None:  # a semi join: a correlated EXISTS is several times slower
                same = " AND ".join(f"_t._p{n} = ({k})" for n, k in enumerate(i.key))
                semi = f" SEMI JOIN {todo} _t ON {same}"
            return f"(SELECT {i.yields} FROM {i.source}{semi} WHERE {i.condition()})"

        return _PLACEHOLDER.sub(rows, self.body)

    def in_todo(self, todo: str, alias: str) -> str:
        """``EXISTS`` test: the row ``alias`` of the model's table is in a listed partition."""
        same = " AND ".join(
            f"_t._p{n} = {alias}.{_quote(c)}" for n, c in enumerate(self.partition_names)
        )
        return f"EXISTS (SELECT 1 FROM {todo} _t WHERE {same})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise AdsError(f"{where}: {what} must be a non-empty list of SQL expressions")
    return tuple(value)


def _input(spec: Any, n: int, where: str) -> Input:
    where = f"{where}: input {n}"
    spec = fields(spec, _INPUT_KEYS, where)
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise AdsError(f"{where}: name {name!r} must be snake_case")
    source = spec.get("from")
    if not isinstance(source, str) or not source.strip():
        raise AdsError(f"{where}: 'from' is required: a table, a join or (SELECT …) alias")
    where_sql = spec.get("where")
    if where_sql is not None and not isinstance(where_sql, str):
        raise AdsError(f"{where}: 'where' must be an SQL condition")
    yields = spec.get("yields", "*")
    if not isinstance(yields, str):
        raise AdsError(f"{where}: 'yields' must be an SQL select list such as x.*")
    fingerprint = spec.get("fingerprint", True)
    if not isinstance(fingerprint, bool) or (not fingerprint and not name):
        raise AdsError(f"{where}: 'fingerprint: false' is for a named input only")
    materialize = spec.get("materialize", False)
    if not isinstance(materialize, bool) or (materialize and not (name and fingerprint)):
        raise AdsError(f"{where}: 'materialize: true' is for a named, fingerprinted input")
    hashed = _strings(spec.get("hash"), "hash", where) if fingerprint else ()
    return Input(
        name,
        source.strip(),
        _strings(spec.get("key"), "key", where),
        hashed,
        where_sql,
        yields,
        fingerprint,
        materialize,
    )


def load_model(path: Path, text: str | None = None) -> Model:
    """Read and check one model file.

    Raises:
        AdsError: no YAML header, a missing or unknown key, a key whose length differs from the
            partition's, or a ``{{placeholder}}`` that names no input.
    """
    text = path.read_text("utf-8") if text is None else text
    m = _HEADER.match(text)
    if m is None:
        raise AdsError(f"{path.name}: a model starts with a /* YAML */ header")
    try:
        spec: Any = yaml.safe_load(m.group(1))
    except yaml.YAMLError as e:
        raise AdsError(f"{path.name}: header is not valid YAML: {e}") from e
    where = path.name
    spec = fields(spec, _MODEL_KEYS, where, "header must be a mapping")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdsError(f"{where}: name {name!r} must be snake_case")
    if spec.get("theme") not in THEMES:
        raise AdsError(f"{where}: theme must be one of {', '.join(THEMES)}")
    partition = spec.get("partition")
    if not isinstance(partition, dict) or not partition:
        raise AdsError(f"{where}: partition must map column names to SQL types")
    inputs_spec = spec.get("inputs")
    if not isinstance(inputs_spec, list) or not inputs_spec:
        raise AdsError(f"{where}: inputs must be a non-empty list")
    inputs = tuple(_input(s, n, where) for n, s in enumerate(inputs_spec, start=1))
    for n, i in enumerate(inputs, start=1):
        if len(i.key) != len(partition):
            raise AdsError(
                f"{where}: input {n} has {len(i.key)} key expressions for "
                f"{len(partition)} partition columns"
            )
    if not any(i.fingerprint for i in inputs):
        raise AdsError(f"{where}: at least one input must be fingerprinted")
    names = [i.name for i in inputs if i.name]
    if len(set(names)) != len(names):
        raise AdsError(f"{where}: two inputs share a name")
    body = m.group(2).strip()
    for used in _PLACEHOLDER.findall(body):
        if used not in names:
            raise AdsError(f"{where}: {{{{{used}}}}} names no input")
    requires = spec.get("requires") or []
    if not isinstance(requires, list):
        raise AdsError(f"{where}: requires must be a list of tables")
    return Model(
        name=name,
        theme=spec["theme"],
        description=str(spec.get("description", "")).strip(),
        partition=tuple((str(k), str(v)) for k, v in partition.items()),
        inputs=inputs,
        body=body,
        requires=tuple(str(r) for r in requires),
        uses_conditions=bool(spec.get("uses_conditions", False)),
        path=path,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


@functools.cache
def models() -> tuple[Model, ...]:
    """The shipped models, in refresh order (file name order).

    Raises:
        AdsError: a model file is invalid, or two share a name.
    """
    folder = resources.files("medfabric.governance.ads") / "models"
    out = [
        load_model(Path(str(f)), f.read_text("utf-8"))
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".sql")
    ]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise AdsError("two ADS model files share a name")
    return tuple(out)
