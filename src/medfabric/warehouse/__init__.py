"""The storage engine interface (DuckDB by default), layer schemas (ODS, DWD, ADS), lineage,
incremental state.

Built by issues 3 and 4. May use: standards.
"""

from medfabric.warehouse.engine import DuckDBEngine, Engine, WarehouseError
from medfabric.warehouse.ods import (
    BatchRecord,
    DownlinkError,
    DownlinkMessage,
    LandingBatch,
    LandingError,
    LandResult,
    OdsStore,
    Rejection,
    ReplayError,
    TableLag,
    Watermark,
    ods_table_name,
)

__all__ = [
    "BatchRecord",
    "DownlinkError",
    "DownlinkMessage",
    "DuckDBEngine",
    "Engine",
    "LandResult",
    "LandingBatch",
    "LandingError",
    "OdsStore",
    "Rejection",
    "ReplayError",
    "TableLag",
    "WarehouseError",
    "Watermark",
    "ods_table_name",
]
