"""The ADS package's errors::

WarehouseError          (medfabric.warehouse) any failure of the warehouse, with its SQL
└── AdsError            a model file or the conditions file is invalid, or a refresh failed
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from medfabric.warehouse.engine import WarehouseError

__all__ = ["AdsError", "fields"]


class AdsError(WarehouseError):
    """An ADS model or conditions file breaks a rule (the message names the file), or a
    refresh statement failed (the message names the model)."""


def fields(
    spec: object, allowed: Set[str], where: str, what: str = "expected a mapping"
) -> dict[str, Any]:
    """``spec`` as a mapping with only ``allowed`` keys, else an :class:`AdsError` at ``where``
    (``what`` says what the mapping should be)."""
    if not isinstance(spec, dict):
        raise AdsError(f"{where}: {what}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise AdsError(f"{where}: unknown key {unknown[0]!r}")
    return spec
