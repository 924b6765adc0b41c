"""Cluster process helpers: free port ranges, the node command, waiting for health."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medfabric.ledger.cluster import (
    ClusterError,
    free_base_port,
    node_command,
    wait_until_healthy,
)


def test_free_base_port_gives_a_bindable_range() -> None:
    base = free_base_port(4)
    sockets = [socket.socket() for _ in range(4)]
    try:
        for i, s in enumerate(sockets):
            s.bind(("127.0.0.1", base + i))
    finally:
        for s in sockets:
            s.close()


def test_node_command_runs_this_python_on_the_config(tmp_path: Path) -> None:
    cmd = node_command(tmp_path / "node.toml")
    assert cmd[0] == sys.executable and cmd[-2:] == ["--config", str(tmp_path / "node.toml")]


def test_a_node_that_exits_is_named() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    port = free_base_port(1)
    with pytest.raises(ClusterError, match="node node-2 exited with code 3"):
        wait_until_healthy({"node-2": f"http://127.0.0.1:{port}"}, {"node-2": dead}, timeout=5)


def test_a_node_that_never_answers_times_out_by_name() -> None:
    port = free_base_port(1)  # nothing listens there
    with pytest.raises(ClusterError, match=r"not healthy after 0\.3 s: node-1"):
        wait_until_healthy({"node-1": f"http://127.0.0.1:{port}"}, {}, timeout=0.3)
