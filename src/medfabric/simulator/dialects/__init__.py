"""The vendor dialects the simulated hospitals speak, one module per dialect."""

from medfabric.simulator.dialects.base import Dialect, standard_codes
from medfabric.simulator.dialects.kangning import Kangning
from medfabric.simulator.dialects.ruixin import Ruixin
from medfabric.simulator.dialects.yunhai import Yunhai

DIALECTS: dict[str, Dialect] = {d.name: d for d in (Ruixin(), Kangning(), Yunhai())}

__all__ = ["DIALECTS", "Dialect", "standard_codes"]
