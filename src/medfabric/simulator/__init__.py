"""A synthetic region of hospitals for developing and testing every later stage.

Public surface: :func:`simulate_region` (``medfabric simulate``), :func:`tick_region`
(``medfabric simulate tick``) and their option/summary records; :mod:`.dialects` describes the
vendor dialects the generated databases speak.
"""

from medfabric.simulator.region import (
    RegionSummary,
    SimulationError,
    SimulationOptions,
    load_manifest,
    simulate_region,
)
from medfabric.simulator.tick import TickSummary, tick_region

__all__ = [
    "RegionSummary",
    "SimulationError",
    "SimulationOptions",
    "TickSummary",
    "load_manifest",
    "simulate_region",
    "tick_region",
]
