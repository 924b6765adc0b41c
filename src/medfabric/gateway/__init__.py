"""The hospital front-end machine (前置机): extractors (full, incremental by watermark,
deletes), batch packing, signing, encryption, spool, uplink/downlink, notarization client.

Built by issue 3. May use: records, standards, ledger.client, crypto.
"""
