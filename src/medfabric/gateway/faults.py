"""Fault injection for the crash tests: die with SIGKILL at the N-th crash point.

``MEDFABRIC_GATEWAY_CRASH_AT=N`` makes the gateway process kill itself, without any clean-up, when
it passes its N-th crash point (points sit between every two durable steps: a chunk hashed, a
batch file written, a batch committed, a batch sent, a batch acknowledged, a table read). Unset,
crash points cost one integer comparison.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

ENV = "MEDFABRIC_GATEWAY_CRASH_AT"


def crash_point_from_env() -> Callable[[str], None]:
    """A crash-point callable: a no-op unless the environment asks for a crash."""
    raw = os.environ.get(ENV)
    if not raw:
        return lambda label: None
    target = int(raw)
    passed = 0
    lock = threading.Lock()  # extraction and the background sender both pass points

    def point(label: str) -> None:
        nonlocal passed
        with lock:
            passed += 1
            hit = passed == target
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    return point
