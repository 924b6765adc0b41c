"""The regional intake (区域前置机): batch API, signature/hash/replay checks, idempotent ODS
landing, downlink queue.

Built by issue 3. May use: records, warehouse, crypto.
"""

from medfabric.receiver.intake import Intake, Registry, Rejection, open_intake
from medfabric.receiver.service import ReceiverError, build_app, build_intake, publish, serve
from medfabric.receiver.verify import VerifyError, verify_ods

__all__ = [
    "Intake",
    "ReceiverError",
    "Registry",
    "Rejection",
    "VerifyError",
    "build_app",
    "build_intake",
    "open_intake",
    "publish",
    "serve",
    "verify_ods",
]
