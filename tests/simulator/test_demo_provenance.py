"""The demo's provenance step: canonical hashes of real source rows, a proof, a tampered row."""

from __future__ import annotations

import pytest
from tests.simulator.regionkit import Region

from medfabric.demo import provenance_glimpse


def test_provenance_glimpse_on_a_gbk_source(
    region: Region, capsys: pytest.CaptureFixture[str]
) -> None:
    provenance_glimpse(region.root, hospital="H02")
    out = " ".join(capsys.readouterr().out.split())
    assert "hashed canonically" in out
    assert "verifies" in out and "is rejected" in out
    assert "FAILS" not in out and "still verifies" not in out
    assert "signature valid" in out and "sealed for the region" in out
