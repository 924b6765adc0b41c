"""The storage engine interface (DuckDB by default), layer schemas (ODS, DWD, ADS), lineage,
incremental state.

Built by issues 3 and 4. May use: standards.
"""
