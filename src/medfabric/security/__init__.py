"""Identities and keys, authentication, the one authorization policy, de-identification,
encryption at rest, the hash-chained audit trail.

Built by issue 7. May use: crypto.
"""
