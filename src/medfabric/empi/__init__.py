"""Enterprise master patient index (患者主索引): deterministic and probabilistic matching,
golden records, merge/unmerge history, review queue, incremental matching.

Built by issue 5. May use: warehouse, and standards (GB 11643 ID rules, GB/T 2260 region names) — a
documented change from DESIGN.md (docs/architecture.md).
"""
