"""The ADS package's errors::

WarehouseError          (medfabric.warehouse) any failure of the warehouse, with its SQL
└── AdsError            a model file or the conditions file is invalid, or a refresh failed
"""

from __future__ import annotations

from medfabric.warehouse.engine import WarehouseError

__all__ = ["AdsError"]


class AdsError(WarehouseError):
    """An ADS model or conditions file breaks a rule (the message names the file), or a
    refresh statement failed (the message names the model)."""
