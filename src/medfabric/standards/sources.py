"""Extraction profiles of the vendor dialects: which source tables a gateway reads, by which key,
how changes are tracked and how deletes show.

One YAML file per dialect in ``data/sources/``. A hospital system configured with a dialect in
``region.toml`` takes that dialect's tables; ``region.toml`` may override any table or add one
(a system of an unknown dialect lists all its tables there). The same models validate both.

Invariants:
- A table has a non-empty key; a tracking column is never part of the key.
- ``track.format`` is a ``strftime`` format (text timestamps), ``epoch_ms`` / ``epoch_s``
  (integer instants, UTC) or ``id`` (an increasing integer id: no change time).
- Flag deletes name the flag column and the value that means deleted; hard deletes are found by
  comparing keys, which the gateway does on its delete-scan schedule.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medfabric.standards._yaml import CatalogError

SOURCES_DIR = Path(__file__).parent / "data" / "sources"
SYSTEMS = ("HIS", "LIS", "PACS", "EMR")
TRACK_SPECIAL = ("epoch_ms", "epoch_s", "id")
TEXT_ENCODINGS = ("gbk", "gb18030", "utf-8")

Name = Annotated[str, Field(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackSpec(_Strict):
    """How a table's changes are found: a column and how to read it."""

    column: Name
    format: Name

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in TRACK_SPECIAL and "%" not in v:
            raise ValueError(
                f"{v!r} is neither a strftime format (e.g. '%Y%m%d%H%M%S') nor one of "
                + ", ".join(TRACK_SPECIAL)
            )
        return v

    @property
    def is_time(self) -> bool:
        """The column holds a change time (not an increasing id)."""
        return self.format != "id"


class DeleteSpec(_Strict):
    """How a table shows deleted rows."""

    mode: Literal["flag", "hard", "none"]
    column: Name | None = None
    deleted: str | None = None

    @model_validator(mode="after")
    def _flag_fields(self) -> DeleteSpec:
        if self.mode == "flag" and (self.column is None or self.deleted is None):
            raise ValueError(
                "a flag delete needs 'column' and 'deleted' (the value meaning deleted)"
            )
        if self.mode != "flag" and (self.column is not None or self.deleted is not None):
            raise ValueError(f"'column' and 'deleted' apply only to mode 'flag', not {self.mode!r}")
        return self


def _check_encoding(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        name = codecs.lookup(v).name
    except LookupError:
        raise ValueError(f"unknown text encoding {v!r}") from None
    if name not in TEXT_ENCODINGS:
        raise ValueError(f"text encoding {v!r} is not supported; use one of gbk, gb18030, utf-8")
    return name


class TableSpec(_Strict):
    """One source table as the gateway reads it (every field may be left to the dialect)."""

    key: tuple[Name, ...] | None = None
    track: TrackSpec | None = None
    delete: DeleteSpec | None = None
    text_encoding: str | None = None
    encoded_columns: tuple[Name, ...] = ()
    patient: Name | None = None
    enabled: bool = True

    @field_validator("text_encoding")
    @classmethod
    def _encoding(cls, v: str | None) -> str | None:
        return _check_encoding(v)

    @model_validator(mode="after")
    def _consistent(self) -> TableSpec:
        if self.key is not None and not self.key:
            raise ValueError("'key' must name at least one column")
        if self.key is not None and len(set(self.key)) != len(self.key):
            raise ValueError("'key' names a column twice")
        if self.encoded_columns and self.text_encoding is None:
            raise ValueError("'encoded_columns' needs 'text_encoding'")
        if self.patient is not None and self.key is not None and self.patient in self.key[1:]:
            raise ValueError("'patient' cannot be a later part of a composite key")
        return self


class TableDefaults(_Strict):
    """What every table of a dialect shares unless it says otherwise."""

    track: TrackSpec | None = None
    delete: DeleteSpec = DeleteSpec(mode="none")


class SourceProfile(_Strict):
    """A dialect's extraction profile (one YAML file)."""

    dialect: Name
    vendor: str = ""
    defaults: TableDefaults = TableDefaults()
    systems: dict[Literal["HIS", "LIS", "PACS", "EMR"], dict[Name, TableSpec]] = Field(
        default_factory=dict
    )


class SourceTable(_Strict):
    """A fully resolved source table: what the extractor needs, nothing left to defaults."""

    name: Name
    key: tuple[Name, ...]
    track: TrackSpec | None
    delete: DeleteSpec
    text_encoding: str | None = None
    encoded_columns: tuple[Name, ...] = ()
    patient: Name | None = None  # the hospital's patient id column (pseudonymized on chain)

    @model_validator(mode="after")
    def _track_not_key(self) -> SourceTable:
        if self.track is not None and self.track.column in self.key and self.track.is_time:
            raise ValueError(f"{self.name}: the change-time column cannot be part of the key")
        if self.delete.mode == "flag" and self.delete.column in self.key:
            raise ValueError(f"{self.name}: the delete flag cannot be part of the key")
        return self


def _errors(file: str, exc: ValidationError) -> CatalogError:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{file}: {loc}: {msg}")
    return CatalogError("\n".join(lines))


def parse_profile(data: Any, *, file: str) -> SourceProfile:
    """Validate a decoded profile document; errors name the file and the dotted key."""
    try:
        return SourceProfile.model_validate(data)
    except ValidationError as exc:
        raise _errors(file, exc) from None


@functools.cache
def source_profiles() -> Mapping[str, SourceProfile]:
    """Every shipped dialect profile, by dialect name."""
    out: dict[str, SourceProfile] = {}
    for path in sorted(SOURCES_DIR.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CatalogError(f"sources/{path.name}: not valid YAML: {exc}") from None
        profile = parse_profile(data, file=f"sources/{path.name}")
        if profile.dialect != path.stem:
            raise CatalogError(
                f"sources/{path.name}: dialect {profile.dialect!r} differs from the file name"
            )
        out[profile.dialect] = profile
    return out


def source_profile(dialect: str) -> SourceProfile:
    """The profile of one dialect; CatalogError naming the known ones if there is none."""
    profiles = source_profiles()
    if dialect not in profiles:
        known = ", ".join(sorted(profiles))
        raise CatalogError(f"no extraction profile for dialect {dialect!r} (known: {known})")
    return profiles[dialect]


def resolve_tables(
    dialect: str | None, system: str, overrides: Mapping[str, TableSpec]
) -> list[SourceTable]:
    """The tables a system's gateway reads: the dialect's, merged with ``region.toml``'s.

    Args:
        dialect: the system's dialect, or None when every table is configured in region.toml.
        system: HIS, LIS, PACS or EMR.
        overrides: table name → spec from region.toml; a field left out keeps the dialect's.

    Returns:
        Enabled tables in profile order, then tables only region.toml names, in its order.

    Raises:
        CatalogError: a table without a key (an unknown dialect's table must give one), or an
            invalid combination; the message names the system and table.
    """
    base: dict[str, TableSpec] = {}
    defaults = TableDefaults()
    if dialect is not None:
        profile = source_profile(dialect)
        defaults = profile.defaults
        base = dict(profile.systems.get(system, {}))  # type: ignore[call-overload]
    names = list(base) + [n for n in overrides if n not in base]
    out: list[SourceTable] = []
    for name in names:
        spec = base.get(name, TableSpec())
        over = overrides.get(name)
        if over is not None:
            spec = spec.model_copy(update=over.model_dump(exclude_unset=True))
        if not spec.enabled:
            continue
        if spec.key is None:
            raise CatalogError(
                f'{system}.tables.{name}: no key configured (give key = ["COLUMN", …])'
            )
        try:
            out.append(
                SourceTable(
                    name=name,
                    key=spec.key,
                    track=spec.track if spec.track is not None else defaults.track,
                    delete=spec.delete if spec.delete is not None else defaults.delete,
                    text_encoding=spec.text_encoding,
                    encoded_columns=spec.encoded_columns,
                    patient=spec.patient,
                )
            )
        except ValidationError as exc:
            raise _errors(f"{system}.tables.{name}", exc) from None
    return out
