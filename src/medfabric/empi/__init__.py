"""Enterprise master patient index (患者主索引): deterministic and probabilistic matching,
golden records, merge/unmerge history, review queue, incremental matching.

Built by issue 5. May use: warehouse.
"""
