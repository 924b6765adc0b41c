from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from tests.gateway.kit import build_template

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated region (3 hospitals, one per dialect mix) with keys, built once."""
    return build_template(tmp_path_factory.mktemp("gw") / "tpl")


@pytest.fixture(scope="session")
def crash_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hospital (HIS ruixin, LIS kangning, PACS yunhai, EMR ruixin), few patients: the
    crash runs start several gateway processes each."""
    return build_template(tmp_path_factory.mktemp("crash") / "tpl", hospitals=1, patients=50)
