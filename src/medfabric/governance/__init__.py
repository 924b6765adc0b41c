"""ODS → DWD transforms from declarative mappings: cleaning, unit and format unification,
code mapping with an unmapped queue, quarantine, quality rules and scores, master data.

Built by issue 4. May use: warehouse, standards.
"""
