"""Typed settings read from ``region.toml``.

Invariants:
- Every section is a strict model: an unknown key or a value of the wrong type or range is a
  :class:`SettingsError` whose message names the file and the dotted key (``hospitals[1].dialect``).
- Secrets never live here; later stages read them from key files or environment variables named
  in these settings.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medfabric.standards import codes

DIALECTS = ("ruixin", "kangning", "yunhai")
SYSTEMS = ("HIS", "LIS", "PACS", "EMR")
DialectName = Literal["ruixin", "kangning", "yunhai"]
SystemName = Literal["HIS", "LIS", "PACS", "EMR"]


class SettingsError(Exception):
    """``region.toml`` is missing, unreadable or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionSection(_Strict):
    """The region the platform serves."""

    name: str = "榕城区域健康医疗大数据平台"
    code: Annotated[str, Field(pattern=r"^\d{6}$")] = "350100"
    data_dir: Path = Path("var")

    @field_validator("code")
    @classmethod
    def _known_region(cls, v: str) -> str:
        region = codes.regions().get(v)
        if region is None or region.level != "city":
            raise ValueError(f"{v!r} is not a GB/T 2260 city code")
        return v


class SimulatorSection(_Strict):
    """Defaults of ``medfabric simulate`` (each can be overridden on the command line)."""

    hospitals: Annotated[int, Field(ge=1, le=60)] = 5
    patients: Annotated[int, Field(ge=1, le=2_000_000)] = 20_000
    seed: int = 7
    shared_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.30
    start_date: date = date(2025, 1, 1)
    days: Annotated[int, Field(ge=1, le=3650)] = 365
    out: Path = Path("var/region")
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    dicom: bool = True


class SystemSection(_Strict):
    """One source system of a hospital: where it is and which vendor dialect it speaks."""

    url: str
    dialect: DialectName

    @field_validator("url")
    @classmethod
    def _url_shape(cls, v: str) -> str:
        if not re.match(r"^[a-z][a-z0-9+]*://", v):
            raise ValueError(f"{v!r} is not a SQLAlchemy-style URL (e.g. sqlite:///path.db)")
        return v


class HospitalSection(_Strict):
    """A hospital of the region and its four source systems."""

    id: Annotated[str, Field(pattern=r"^H\d{2,3}$")]
    name: str
    level: str = "三级甲等"
    systems: dict[SystemName, SystemSection] = Field(default_factory=dict)


class Settings(_Strict):
    """Everything ``region.toml`` holds."""

    region: RegionSection = Field(default_factory=RegionSection)
    simulator: SimulatorSection = Field(default_factory=SimulatorSection)
    hospitals: list[HospitalSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_hospitals(self) -> Settings:
        seen: set[str] = set()
        for i, h in enumerate(self.hospitals):
            if h.id in seen:
                raise ValueError(f"hospitals[{i}].id: duplicate hospital id {h.id!r}")
            seen.add(h.id)
        return self

    def hospital(self, hospital_id: str) -> HospitalSection:
        """The hospital with this id; raises SettingsError naming the known ids."""
        for h in self.hospitals:
            if h.id == hospital_id:
                return h
        known = ", ".join(h.id for h in self.hospitals) or "none"
        raise SettingsError(f"unknown hospital {hospital_id!r} (configured: {known})")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_settings(data: dict[str, Any], *, source: str = "region.toml") -> Settings:
    """Validate a decoded TOML document into :class:`Settings`.

    Raises:
        SettingsError: one line per problem, each naming the dotted key and the bad value.
    """
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = _loc(tuple(err["loc"])) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{source}: {key}: {msg}")
        raise SettingsError("\n".join(lines)) from None


def load_settings(path: Path | None = None) -> Settings:
    """Read ``region.toml`` (or defaults when ``path`` is None and no file exists).

    Args:
        path: the file; None looks for ``./region.toml`` and falls back to defaults.
    Raises:
        SettingsError: unreadable TOML or invalid settings.
    """
    if path is None:
        path = Path("region.toml")
        if not path.exists():
            return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, source=str(path))
