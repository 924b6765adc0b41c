from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from tests.gateway.kit import build_template

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated region (3 hospitals) with keys, built once (as in tests/gateway)."""
    return build_template(tmp_path_factory.mktemp("rx") / "tpl")
