from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.governance.regionkit import GovernedRegion, build_governed, copy_warehouse

from medfabric.warehouse import DuckDBEngine

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def governed(tmp_path_factory: pytest.TempPathFactory) -> GovernedRegion:
    """A small simulated region governed into DWD (3 hospitals, 400 people), built once."""
    return build_governed(tmp_path_factory.mktemp("governed"))


@pytest.fixture
def engine(governed: GovernedRegion, tmp_path: Path) -> Iterator[DuckDBEngine]:
    """A private copy of the governed warehouse, open; closed after the test."""
    e = DuckDBEngine(copy_warehouse(governed, tmp_path))
    try:
        yield e
    finally:
        e.close()
