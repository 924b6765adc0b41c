"""A small simulated region carried all the way to DWD: simulated sources → gateways → receiver
(in process) → ODS → governance. Built once per test session; tests that change the warehouse
work on a copy (:func:`copy_warehouse`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.gateway.kit import Env, build_template, copy_region, gateway, in_process_receiver

from medfabric.governance.run import Governor, RunReport, sources_from_settings
from medfabric.warehouse import DuckDBEngine

GOVERNED = {"hospitals": 3, "patients": 400, "seed": 7, "days": 90, "dicom": False}


@dataclass(frozen=True)
class GovernedRegion:
    """The region's folder, its settings and the governed warehouse file."""

    env: Env
    report: RunReport

    @property
    def root(self) -> Path:
        return self.env.root

    @property
    def warehouse(self) -> Path:
        return self.env.warehouse


def build_governed(base: Path) -> GovernedRegion:
    """Simulate, extract, land and govern a small region under ``base``."""
    template = build_template(base / "tpl", **GOVERNED)
    env = copy_region(template, base / "region")
    with in_process_receiver(env) as client:
        for h in env.settings.hospitals:
            gw = gateway(env, h.id, client)
            try:
                gw.cycle(force_send=True)
            finally:
                gw.close()
    sources, _ = sources_from_settings(env.settings)
    engine = DuckDBEngine(env.warehouse)
    try:
        report = Governor(engine).run(sources)
    finally:
        engine.close()
    return GovernedRegion(env, report)


def copy_warehouse(region: GovernedRegion, dest: Path) -> Path:
    """A copy of the governed warehouse file that a test may change."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "warehouse.duckdb"
    shutil.copyfile(region.warehouse, target)
    return target


def config_with_warehouse(region: GovernedRegion, dest: Path, warehouse: Path) -> Path:
    """``dest/region.toml``: the region's settings pointing at another warehouse file (a copy)
    — for the commands, which find the warehouse through the settings."""
    text = (region.root / "region.toml").read_text("utf-8")
    assert str(region.warehouse) in text
    dest.mkdir(parents=True, exist_ok=True)
    config = dest / "region.toml"
    config.write_text(text.replace(str(region.warehouse), str(warehouse)), encoding="utf-8")
    return config
