from __future__ import annotations

import warnings

import pytest
from tests.governance.regionkit import GovernedRegion, build_governed

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def governed(tmp_path_factory: pytest.TempPathFactory) -> GovernedRegion:
    """A small simulated region governed into DWD (3 hospitals, 400 people), built once."""
    return build_governed(tmp_path_factory.mktemp("governed"))
