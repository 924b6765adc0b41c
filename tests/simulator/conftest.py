"""A small region generated once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.simulator.regionkit import Region, make_region


@pytest.fixture(scope="session")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    yield make_region(tmp_path_factory.mktemp("sim") / "region")
