"""Cross-institution data requests (authorize → fetch → verify against the chain → return
with proof) and mutual recognition of lab and exam results.

Built by issue 8. May use: records, warehouse, empi, graph, ledger.client, security.
"""
