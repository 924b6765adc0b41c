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

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medfabric.standards import codes
from medfabric.standards.sources import TableSpec, source_profiles

DIALECTS = ("ruixin", "kangning", "yunhai")
SYSTEMS = ("HIS", "LIS", "PACS", "EMR")
DialectName = Literal["ruixin", "kangning", "yunhai"]
SystemName = Literal["HIS", "LIS", "PACS", "EMR"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(v: Any) -> Any:
    """``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"`` → seconds (an int)."""
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", v)
        if m is None:
            raise ValueError(f"{v!r} is not a duration (e.g. 90, '90s', '5m', '1h', '1d')")
        return int(m.group(1)) * _UNITS[m.group(2) or "s"]
    return v


Seconds = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=365 * 86400)]


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
    """One source system of a hospital: where it is, which vendor dialect it speaks, how often
    the gateway reads it, and per-table overrides of the dialect's extraction profile."""

    url: str
    dialect: str | None = None
    interval: Seconds | None = None
    tables: dict[str, TableSpec] = Field(default_factory=dict)
    # A source mapping file (docs/mapping.md) for this system, in place of the dialect's shipped
    # one: the way to govern a system of an unknown dialect, or a hospital's variant of a known one.
    mapping: Path | None = None

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, v: str | None) -> str | None:
        if v is not None and v not in source_profiles():
            known = ", ".join(sorted(source_profiles()))
            raise ValueError(
                f"unknown dialect {v!r} (known: {known}); leave it out and list the tables"
            )
        return v

    @model_validator(mode="after")
    def _tables_without_dialect(self) -> SystemSection:
        if self.dialect is None and not self.tables:
            raise ValueError("a system without a dialect must list its tables")
        return self

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


class GatewaySection(_Strict):
    """The hospital gateways (前置机): where they send, where they keep state, their schedule."""

    receiver_url: str = "http://127.0.0.1:8470"
    dir: Path = Path("var/gateway")
    keys_dir: Path = Path("var/keys")
    batch_rows: Annotated[int, Field(ge=100, le=1_000_000)] = 125_000
    interval: Seconds = 60
    overlap: Seconds = 300
    delete_scan_every: Seconds = 3600
    send_timeout: Seconds = 60
    max_backoff: Seconds = 300
    downlink_every: Seconds = 300

    @field_validator("receiver_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")


class ReceiverSection(_Strict):
    """The regional receiver: where it listens, where ODS lives, what it accepts."""

    listen: str = "127.0.0.1:8470"
    warehouse: Path = Path("var/warehouse/warehouse.duckdb")
    keys_dir: Path = Path("var/keys")
    max_body_mb: Annotated[int, Field(ge=1, le=4096)] = 256
    clock_skew: Seconds = 300

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", v):
            raise ValueError(f"{v!r} is not host:port")
        return v


class LedgerSection(_Strict):
    """Notarization on the permissioned ledger (docs/ledger.md, "Notarizing what the gateways
    send"). Off while ``dir`` is unset."""

    dir: Path | None = None  # cluster.toml of the ledger (or the `ledger init` folder holding it)
    notarize: bool = True  # gateways notarize every batch they send
    late_after: Seconds = 600  # the receiver flags a landed batch not notarized by then
    check_every: Seconds = 30  # how often the receiver looks for notarizations
    sample: Annotated[int, Field(ge=1, le=10_000)] = 8  # records per batch the receiver checks
    timeout: Seconds = 30  # per ledger request
    tx_entries: Annotated[int, Field(ge=1, le=10_000)] = 2_000  # entries per transaction

    @property
    def enabled(self) -> bool:
        """Whether a cluster is configured."""
        return self.dir is not None


class KeysSection(_Strict):
    """Where key passphrases come from (never from this file)."""

    passphrase_env: str = "MEDFABRIC_KEY_PASSPHRASE"


class Settings(_Strict):
    """Everything ``region.toml`` holds."""

    region: RegionSection = Field(default_factory=RegionSection)
    simulator: SimulatorSection = Field(default_factory=SimulatorSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    receiver: ReceiverSection = Field(default_factory=ReceiverSection)
    ledger: LedgerSection = Field(default_factory=LedgerSection)
    keys: KeysSection = Field(default_factory=KeysSection)
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
