"""The hospital front-end machine (前置机): extractors (full, incremental by watermark,
deletes), batch packing, signing, encryption, spool, uplink/downlink, notarization client.

Built by issue 3. May use: records, standards, ledger.client, crypto.
"""

from medfabric.gateway.runner import (
    CycleReport,
    Gateway,
    GatewayError,
    open_state_for_status,
    plan_systems,
)
from medfabric.gateway.sources import SourceError, open_reader

__all__ = [
    "CycleReport",
    "Gateway",
    "GatewayError",
    "SourceError",
    "open_reader",
    "open_state_for_status",
    "plan_systems",
]
