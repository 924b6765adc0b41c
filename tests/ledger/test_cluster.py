"""Cluster helpers: free port ranges, the node command, waiting for health, and the public
cluster description (``cluster.toml``) that clients read instead of the node configs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medfabric.ledger.client import read_cluster
from medfabric.ledger.cluster import (
    DESCRIPTION_NAME,
    ClusterError,
    free_base_port,
    init_cluster,
    load_cluster_description,
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


def test_the_public_description_is_enough_for_a_client(tmp_path: Path) -> None:
    # A hospital or a verifier gets cluster.toml only: no node key, no node folder.
    cluster = tmp_path / "ledger"
    files = init_cluster(cluster, nodes=4, institutions=("H01",), base_port=21000)
    public = tmp_path / "elsewhere" / DESCRIPTION_NAME
    public.parent.mkdir()
    public.write_bytes((cluster / DESCRIPTION_NAME).read_bytes())
    assert "PRIVATE" not in public.read_text()
    (cluster / DESCRIPTION_NAME).rename(tmp_path / "aside.toml")
    from_nodes = read_cluster(cluster)  # no description: the node configs (with their keys)
    for where in (public, public.parent):
        urls, membership = read_cluster(where)
        assert (urls, membership) == from_nodes
    assert urls == {f.node_id: f"http://{f.api[0]}:{f.api[1]}" for f in files}
    assert sorted(membership.clients) == ["H01"] and membership.quorum == 3


def test_a_bad_description_is_named(tmp_path: Path) -> None:
    init_cluster(tmp_path, nodes=4, base_port=21000)
    path = tmp_path / DESCRIPTION_NAME
    text = path.read_text()
    path.write_text(text.replace("api_port", "api_prot", 1))
    with pytest.raises(ClusterError, match=r"replicas\.node-0\.api_prot: unknown key"):
        load_cluster_description(path)
    path.write_text(text.replace('chain_id = "medfabric"', "chain_id = 7"))
    with pytest.raises(ClusterError, match="chain_id: bad value 7"):
        load_cluster_description(path)
    path.unlink()
    for folder in tmp_path.glob("node-*"):
        (folder / "node.toml").unlink()
    with pytest.raises(ClusterError, match=r"holds neither cluster\.toml nor node configs"):
        read_cluster(tmp_path)
