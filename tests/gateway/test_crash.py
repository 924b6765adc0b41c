"""kill -9 of the gateway at seeded random points (between every two durable steps of
extraction and sending): after a restart, ODS equals the sources exactly, with no duplicate
versions and nothing lost. The gateway runs as a real process against a receiver on loopback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.gateway.kit import (
    Env,
    assert_ods_equals_sources,
    copy_region,
    duplicate_versions,
    free_port,
    loopback_receiver,
)

from medfabric.gateway.faults import ENV
from medfabric.simulator.tick import tick_region

# A full load of H01 passes about 110 crash points (18 tables × read/hash/write/commit, then
# send/ack per batch); a recovery or an incremental cycle at least 36 (18 tables × 2). Points
# are drawn below those counts so a run really dies.
FULL_POINTS = 100
RECOVERY_POINTS = 30
INCREMENTAL_POINTS = 30


def _once(env: Env, crash_at: int | None) -> int:
    environ = {k: v for k, v in os.environ.items() if k != ENV}
    if crash_at is not None:
        environ[ENV] = str(crash_at)
    proc = subprocess.run(
        [sys.executable, "-m", "medfabric", "gateway", "once", "--hospital", "H01",
         "--config", str(env.root / "region.toml"), "--deletes"],
        env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if crash_at is None:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_crash_during_full_load(crash_template: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    env = copy_region(crash_template, tmp_path / "r", port=free_port())
    with loopback_receiver(env):
        assert _once(env, rng.randint(1, FULL_POINTS)) == -signal.SIGKILL
        # ... and again while recovering
        assert _once(env, rng.randint(1, RECOVERY_POINTS)) == -signal.SIGKILL
        _once(env, None)
    assert_ods_equals_sources(env, "H01")
    assert duplicate_versions(env) == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 20))
def test_crash_during_incremental_load(crash_template: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    env = copy_region(crash_template, tmp_path / "r", port=free_port())
    with loopback_receiver(env):
        _once(env, None)
        tick_region(env.root, days=3)
        assert _once(env, rng.randint(1, INCREMENTAL_POINTS)) == -signal.SIGKILL
        _once(env, None)
    assert_ods_equals_sources(env, "H01")
    assert duplicate_versions(env) == 0
