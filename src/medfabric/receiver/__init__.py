"""The regional intake (区域前置机): batch API, signature/hash/replay checks, idempotent ODS
landing, downlink queue.

Built by issue 3. May use: records, warehouse, crypto.
"""
