"""A ledger cluster on disk: keys and one TOML config per node, and running one node from it.

Layout written by :func:`init_cluster` (paths in a config are relative to its folder)::

    <dir>/node-0/node.toml        the node's config (below)
    <dir>/node-0/node.key         its Ed25519 signing key (PKCS#8 PEM, mode 0600)
    <dir>/node-0/ledger.db        its store (created when the node first starts)
    <dir>/institutions/<id>.key   each institution's signing key (for clients and tests)
    <dir>/cluster.toml            the public description (below): all a client, a gateway or
                                  a verifier needs; it holds no private key

``node.toml``::

    chain_id = "medfabric"
    node_id = "node-0"
    key_file = "node.key"
    store = "ledger.db"
    tick_seconds = 0.05
    log_window = 256
    [listen]             # PBFT peers
    host = "127.0.0.1"
    port = 7100
    [api]                # HTTP client API
    host = "127.0.0.1"
    port = 7101
    [replica]            # optional ReplicaConfig fields, e.g. max_batch = 64
    [replicas."node-1"]  # every replica, this one included
    public_key = "<64 hex digits>"
    host = "127.0.0.1"
    port = 7102
    [institutions]
    "hospital-a" = "<64 hex digits>"

``cluster.toml`` (:func:`load_cluster_description`)::

    chain_id = "medfabric"
    log_window = 256
    [replicas."node-0"]  # every replica
    public_key = "<64 hex digits>"
    host = "127.0.0.1"   # its PBFT address
    port = 7100
    api_host = "127.0.0.1"
    api_port = 7101
    [institutions]
    "hospital-a" = "<64 hex digits>"

Invariants: keys are the ``medfabric.crypto`` key files (no other format); an unknown or
missing key in a config is an error naming it (:class:`ClusterError`); every node of one
cluster holds the same membership (same chain, replicas, institutions and log window).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medfabric.crypto.errors import CryptoError
from medfabric.crypto.keys import SigningKey, VerifyKey, load_private_key, save_private_key
from medfabric.ledger.api import DEFAULT_REPLY_TIMEOUT, ApiServer
from medfabric.ledger.messages import LedgerError, Membership
from medfabric.ledger.node import Node, NodeConfig, NodeError
from medfabric.ledger.replica import ReplicaConfig

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_INSTITUTIONS",
    "DESCRIPTION_NAME",
    "ClusterError",
    "NodeFiles",
    "free_base_port",
    "init_cluster",
    "load_cluster_description",
    "load_node_config",
    "node_command",
    "node_configs",
    "run_node",
    "serve_node",
    "wait_until_healthy",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "node.toml"
DESCRIPTION_NAME = "cluster.toml"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_INSTITUTIONS: tuple[str, ...] = ("hospital-a", "hospital-b")
DEFAULT_BASE_PORT = 7100
_TOP_KEYS = {
    "chain_id",
    "node_id",
    "key_file",
    "store",
    "tick_seconds",
    "log_window",
    "listen",
    "api",
    "replica",
    "replicas",
    "institutions",
}


class ClusterError(LedgerError):
    """A cluster folder or node config is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """Where :func:`init_cluster` put one node's files, and its addresses."""

    node_id: str
    config: Path
    listen: tuple[str, int]
    api: tuple[str, int]


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_str(key)


def _toml_table(name: Sequence[str], items: dict[str, str | int | float]) -> list[str]:
    lines = ["[" + ".".join(_toml_key(n) for n in name) + "]"]
    for key, value in items.items():
        rendered = _toml_str(value) if isinstance(value, str) else repr(value)
        lines.append(f"{_toml_key(key)} = {rendered}")
    return [*lines, ""]


def init_cluster(
    dir: Path,
    nodes: int = 4,
    institutions: Sequence[str] = DEFAULT_INSTITUTIONS,
    *,
    chain_id: str = "medfabric",
    host: str = "127.0.0.1",
    base_port: int = DEFAULT_BASE_PORT,
    tick_seconds: float = 0.05,
    force: bool = False,
    institution_keys: Mapping[str, VerifyKey] | None = None,
) -> list[NodeFiles]:
    """Write fresh keys and configs for ``nodes`` replicas and the institutions.

    Node ``i`` is ``node-i``; it listens for peers on ``base_port + 2i`` and serves its API on
    ``base_port + 2i + 1``, both on ``host``.

    Args:
        dir: The cluster folder; created if missing.
        nodes: Number of replicas (``3f + 1`` tolerates ``f`` faults).
        institutions: Client ids (each gets a signing key under ``institutions/``).
        chain_id: The chain's id.
        host: The address every node listens on and is reached at.
        base_port: The first port used.
        tick_seconds: Seconds between replica ticks.
        force: Write into a non-empty folder, replacing existing keys and configs (stores are
            deleted, since they belong to the old chain).
        institution_keys: Institutions that hold their own keys (the hospitals' signing keys
            of ``medfabric keys init``): registered with these public keys, and no private key
            is written for them. An id may not be in both ``institutions`` and here.

    Returns:
        One :class:`NodeFiles` per node, in order.

    Raises:
        ClusterError: ``dir`` is not empty (without ``force``) or not a folder, the options are
            out of range, or the membership is invalid (ids too long, repeated).
    """
    if nodes < 1:
        raise ClusterError(f"nodes must be at least 1, got {nodes}")
    if not 0 < base_port <= 65536 - 2 * nodes:
        raise ClusterError(f"base_port {base_port} leaves no room for {nodes} nodes")
    if dir.exists() and not dir.is_dir():
        raise ClusterError(f"{dir} is not a folder")
    if dir.exists() and any(dir.iterdir()) and not force:
        raise ClusterError(f"{dir} is not empty (use --force to overwrite)")
    ids = [f"node-{i}" for i in range(nodes)]
    replica_keys = {r: SigningKey.generate() for r in ids}
    client_keys = {c: SigningKey.generate() for c in institutions}
    external = dict(institution_keys or {})
    both = sorted(set(external) & set(client_keys))
    if both:
        raise ClusterError(f"institutions both generated and given a key: {both}")
    registered = {c: k.verify_key for c, k in client_keys.items()} | external
    try:
        Membership(chain_id, {r: k.verify_key for r, k in replica_keys.items()}, registered)
    except LedgerError as e:
        raise ClusterError(str(e)) from e
    if len(set(institutions)) != len(institutions):
        raise ClusterError(f"institution ids repeat: {list(institutions)}")
    addresses = {r: (base_port + 2 * i, base_port + 2 * i + 1) for i, r in enumerate(ids)}

    def members(*, described: bool) -> list[str]:
        """The ``replicas`` and ``institutions`` tables (a description adds the API address)."""
        lines: list[str] = []
        for r in ids:
            table: dict[str, str | int | float] = {
                "public_key": replica_keys[r].verify_key.to_bytes().hex(),
                "host": host,
                "port": addresses[r][0],
            }
            if described:
                table |= {"api_host": host, "api_port": addresses[r][1]}
            lines += _toml_table(["replicas", r], table)
        registry: dict[str, str | int | float] = {
            c: k.to_bytes().hex() for c, k in registered.items()
        }
        return lines + _toml_table(["institutions"], registry)

    try:
        (dir / "institutions").mkdir(parents=True, exist_ok=True)
        for c, key in client_keys.items():
            save_private_key(
                key, dir / "institutions" / f"{c}.key", passphrase=None, overwrite=True
            )
        out: list[NodeFiles] = []
        for r in ids:
            folder = dir / r
            folder.mkdir(exist_ok=True)
            save_private_key(replica_keys[r], folder / "node.key", passphrase=None, overwrite=True)
            for stale in folder.glob("ledger.db*"):
                stale.unlink()
            peer_port, api_port = addresses[r]
            lines = [
                "# medfabric ledger node (written by `medfabric ledger init`)",
                f"chain_id = {_toml_str(chain_id)}",
                f"node_id = {_toml_str(r)}",
                'key_file = "node.key"',
                'store = "ledger.db"',
                f"tick_seconds = {tick_seconds!r}",
                "log_window = 256",
                "",
                *_toml_table(["listen"], {"host": host, "port": peer_port}),
                *_toml_table(["api"], {"host": host, "port": api_port}),
                *_toml_table(["replica"], {}),
                *members(described=False),
            ]
            config = folder / CONFIG_NAME
            config.write_text("\n".join(lines), encoding="utf-8")
            out.append(NodeFiles(r, config, (host, peer_port), (host, api_port)))
        public = [
            "# medfabric ledger cluster, public description (written by `medfabric ledger init`);",
            "# give this file, not the node folders, to gateways, receivers and verifiers",
            f"chain_id = {_toml_str(chain_id)}",
            "log_window = 256",
            "",
            *members(described=True),
        ]
        (dir / DESCRIPTION_NAME).write_text("\n".join(public), encoding="utf-8")
    except (OSError, CryptoError) as e:
        raise ClusterError(f"cannot write the cluster in {dir}: {e}") from e
    return out


def node_configs(dir: Path) -> list[Path]:
    """The node configs of a cluster folder (``*/node.toml``), sorted by folder name."""
    return sorted(dir.glob(f"*/{CONFIG_NAME}"))


def free_base_port(count: int, host: str = "127.0.0.1") -> int:
    """A base port with ``count`` consecutive free ports on ``host`` (probed, then released;
    another process may still take one before the nodes bind it).

    The range is drawn at random below Linux's default ephemeral range (32768–60999), so
    that outgoing connections of this or another process, which take ephemeral ports, do not
    grab a node's port between the probe and the bind.

    Raises:
        ClusterError: No such range was found in 50 tries.
    """
    rng = random.SystemRandom()
    for _ in range(50):
        base = rng.randrange(20_000, 32_768 - count)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    stack.enter_context(socket.socket()).bind((host, port))
            except OSError:
                continue
            return base
    raise ClusterError(f"no {count} consecutive free ports on {host}")


def node_command(config: Path) -> list[str]:
    """The command that runs one node from its config, as a separate process."""
    return [sys.executable, "-m", "medfabric", "ledger", "node", "--config", str(config)]


def wait_until_healthy(
    urls: Mapping[str, str],
    procs: Mapping[str, subprocess.Popen[bytes]],
    *,
    timeout: float,
) -> None:
    """Wait until every node's API (``urls``: node id → base URL) answers ``/healthz``.

    Raises:
        ClusterError: A node process exited, or a node did not answer within ``timeout``
            seconds; the message names it.
    """
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    with httpx.Client(timeout=1.0) as http:
        while pending:
            for node_id, proc in procs.items():
                if proc.poll() is not None:
                    raise ClusterError(f"node {node_id} exited with code {proc.returncode}")
            for node_id, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{url}/healthz").status_code == 200:
                        del pending[node_id]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"nodes not healthy after {timeout} s: {', '.join(sorted(pending))}"
                )
            time.sleep(0.1)


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ClusterError(f"{where}{key}: missing")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ClusterError(f"{where}{key}: bad value {value!r}")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ClusterError(f"{where}{key}: unknown key")


def _address(
    table: Any,
    where: str,
    *,
    allowed: frozenset[str] = frozenset({"host", "port", "public_key"}),
    prefix: str = "",
) -> tuple[str, int]:
    """``(host, port)`` from the keys ``{prefix}host`` and ``{prefix}port`` of ``table``."""
    if not isinstance(table, dict):
        raise ClusterError(f"{where.rstrip('.')}: expected a table")
    _only(table, set(allowed), where)
    port = _get(table, f"{prefix}port", int, where)
    if not 0 <= port <= 65535:
        raise ClusterError(f"{where}{prefix}port: bad value {port!r}")
    return _get(table, f"{prefix}host", str, where), port


_DESCRIBED = frozenset({"host", "port", "public_key", "api_host", "api_port"})


def _members(
    raw: dict[str, Any], where: str, *, described: bool
) -> tuple[dict[str, VerifyKey], dict[str, tuple[str, int]], dict[str, VerifyKey]]:
    """The ``replicas`` (keys and PBFT addresses) and ``institutions`` tables of a node config
    or (``described``) of a cluster description."""
    replicas_raw = _get(raw, "replicas", dict, where)
    replicas: dict[str, VerifyKey] = {}
    addresses: dict[str, tuple[str, int]] = {}
    allowed = _DESCRIBED if described else frozenset({"host", "port", "public_key"})
    for rid, table in replicas_raw.items():
        w = f"{where}replicas.{rid}."
        addresses[rid] = _address(table, w, allowed=allowed)
        replicas[rid] = _verify_key(_get(table, "public_key", str, w), f"{w}public_key")
    clients_raw = _get(raw, "institutions", dict, where)
    clients = {
        cid: _verify_key(value, f"{where}institutions.{cid}") for cid, value in clients_raw.items()
    }
    return replicas, addresses, clients


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ClusterError(f"cannot read {path}: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ClusterError(f"{path} is not valid TOML: {e}") from e


def load_cluster_description(path: Path) -> tuple[dict[str, tuple[str, int]], Membership]:
    """Read a public cluster description (``cluster.toml``, see the module docstring).

    Returns:
        Each node's API address ``(host, port)`` and the membership.

    Raises:
        ClusterError: The file is missing or not TOML, or a key is unknown, missing or of the
            wrong type (the message names it), or the membership is invalid.
    """
    raw = _read_toml(path)
    where = f"{path}: "
    _only(raw, {"chain_id", "log_window", "replicas", "institutions"}, where)
    chain_id = _get(raw, "chain_id", str, where)
    window = _get(raw, "log_window", int, where) if "log_window" in raw else 256
    replicas, _, clients = _members(raw, where, described=True)
    apis = {
        rid: _address(table, f"{where}replicas.{rid}.", allowed=_DESCRIBED, prefix="api_")
        for rid, table in raw["replicas"].items()
    }
    try:
        membership = Membership(chain_id, replicas, clients, log_window=window)
    except LedgerError as e:
        raise ClusterError(f"{where}{e}") from e
    return apis, membership


def _verify_key(value: Any, where: str) -> VerifyKey:
    try:
        return VerifyKey.from_bytes(bytes.fromhex(value))
    except (TypeError, ValueError, CryptoError) as e:
        raise ClusterError(f"{where}: not a 32-byte public key in hex") from e


def load_node_config(path: Path) -> tuple[NodeConfig, tuple[str, int]]:
    """Read a ``node.toml`` written by :func:`init_cluster` (or by hand).

    Returns:
        The node's :class:`NodeConfig` and its API listen address ``(host, port)``.

    Raises:
        ClusterError: The file is missing or not TOML, a key is unknown, missing or of the wrong
            type (the message names it), the key file cannot be read, or the node's config is
            inconsistent (``NodeError``'s reason).
    """
    raw = _read_toml(path)
    where = f"{path}: "
    try:
        _only(raw, _TOP_KEYS, where)
        folder = path.parent
        node_id = _get(raw, "node_id", str, where)
        chain_id = _get(raw, "chain_id", str, where)
        key_file = folder / _get(raw, "key_file", str, where)
        store = folder / _get(raw, "store", str, where)
        tick = (
            float(_get(raw, "tick_seconds", (int, float), where)) if "tick_seconds" in raw else 0.05
        )
        window = _get(raw, "log_window", int, where) if "log_window" in raw else 256
        listen = _address(raw.get("listen"), f"{where}listen.")
        api = _address(raw.get("api"), f"{where}api.")
        tuning = raw.get("replica", {})
        if not isinstance(tuning, dict):
            raise ClusterError(f"{where}replica: expected a table")
        fields = {f.name: f.type for f in dataclasses.fields(ReplicaConfig)}
        _only(tuning, set(fields), f"{where}replica.")
        for key in tuning:
            _get(tuning, key, int, f"{where}replica.")
        replicas, addresses, clients = _members(raw, where, described=False)
        try:
            key = load_private_key(key_file, None, kind=SigningKey)
        except CryptoError as e:
            raise ClusterError(f"{where}key_file: {e}") from e
        config = NodeConfig(
            node_id,
            key,
            Membership(chain_id, replicas, clients, log_window=window),
            listen=listen,
            peers={r: a for r, a in addresses.items() if r != node_id},
            store_path=store,
            replica=ReplicaConfig(**tuning),
            tick_seconds=tick,
        )
    except ClusterError:
        raise
    except LedgerError as e:  # Membership, NodeConfig and ReplicaConfig checks
        raise ClusterError(f"{where}{e}") from e
    return config, api


async def serve_node(
    config: NodeConfig,
    api_listen: tuple[str, int],
    stop: asyncio.Event,
    *,
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
) -> None:
    """Run a node and its API on the running loop until ``stop`` is set, then stop both.

    Raises:
        StoreError: The store cannot be opened.
        OSError: A listen address cannot be bound.
    """
    node = Node(config)
    await node.start()
    api = ApiServer(node, *api_listen, reply_timeout=reply_timeout)
    try:
        await api.start()
        logger.info(
            "node %s: peers on %s:%d, API on http://%s:%d",
            node.id,
            *node.transport.address,
            *api.address,
        )
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(node.failed.wait())
        await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopping, failing):
            waiter.cancel()
    finally:
        await api.stop()
        await node.stop()
    if node.failure is not None:
        raise NodeError(f"node {node.id} failed: {node.failure}")


async def run_node(config_path: Path, stop: asyncio.Event) -> None:
    """Load ``config_path`` and serve the node until ``stop`` is set or SIGTERM/SIGINT arrives.

    Raises:
        ClusterError: The config is bad (see :func:`load_node_config`).
        StoreError: The store cannot be opened.
        OSError: A listen address cannot be bound.
    """
    config, api_listen = load_node_config(config_path)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Only possible in the main thread; elsewhere the caller sets ``stop``.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        await serve_node(config, api_listen, stop)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
