"""``medfabric ledger``: write a cluster's keys and configs, run one node, run a local cluster,
ask the nodes for their status, submit content hashes, and fetch and check proofs."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from medfabric.cli.common import console, fail
from medfabric.crypto.keys import VerifyKey
from medfabric.ledger.blocks import (
    Entry,
    EntryIndex,
    decode_entry_proof,
    encode_entry_proof,
    storage_address,
)
from medfabric.ledger.client import ClientError, LedgerClient, api_url, read_cluster
from medfabric.ledger.cluster import (
    DEFAULT_BASE_PORT,
    DEFAULT_INSTITUTIONS,
    ClusterError,
    init_cluster,
    load_node_config,
    node_command,
    node_configs,
    run_node,
)
from medfabric.ledger.messages import DIGEST_SIZE, LedgerError
from medfabric.records.keyring import Keyring

app = typer.Typer(help="The permissioned ledger (PBFT notarization nodes).", no_args_is_help=True)

DirOpt = Annotated[
    Path,
    typer.Option(
        "--dir", "-d", help="The cluster folder (client commands: or its public cluster.toml)."
    ),
]
NodesOpt = Annotated[int, typer.Option("--nodes", "-n", help="Number of nodes (3f+1).")]
BasePortOpt = Annotated[
    int, typer.Option("--base-port", help="Node i uses base+2i (peers) and base+2i+1 (API).")
]
HostOpt = Annotated[str, typer.Option("--host", help="Address the nodes listen on.")]
DEFAULT_DIR = Path("var/ledger")
STOP_GRACE_SECONDS = 10.0


def _local_nodes(folder: Path) -> list[tuple[str, str, Path]]:
    """(node id, API URL, config path) of every node config in ``folder``; fails on a bad
    config."""
    out = []
    for path in node_configs(folder):
        try:
            config, api = load_node_config(path)
        except ClusterError as e:
            fail(str(e))
        out.append((config.node_id, api_url(api), path))
    if not out:
        fail(f"{folder} holds no node configs (run `medfabric ledger init --dir {folder}`)")
    return out


@app.command("init")
def init(
    dir: DirOpt = DEFAULT_DIR,
    nodes: NodesOpt = 4,
    institution: Annotated[
        list[str] | None,
        typer.Option("--institution", "-i", help="An institution (client) id; repeatable."),
    ] = None,
    chain_id: Annotated[str, typer.Option("--chain-id", help="The chain's id.")] = "medfabric",
    host: HostOpt = "127.0.0.1",
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty folder.")] = False,
    hospital_keys: Annotated[
        Path | None,
        typer.Option(
            "--hospital-keys",
            help="A keys folder of `medfabric keys init`: register every hospital's public key "
            "(hospitals/<id>.pub) as an institution; the hospitals keep their private keys.",
        ),
    ] = None,
) -> None:
    """Write fresh keys and one node.toml per node (and the institutions' keys)."""
    registered: dict[str, VerifyKey] = {}
    if hospital_keys is not None:
        keyring = Keyring(hospital_keys)
        ids = keyring.registered_hospitals()
        if not ids:
            fail(f"{hospital_keys}/hospitals holds no <id>.pub (run `medfabric keys init`)")
        for hid in ids:
            key = keyring.hospital_verify_key(hid)
            assert key is not None
            registered[hid] = key
    generated = institution if institution is not None else []
    if institution is None and not registered:
        generated = list(DEFAULT_INSTITUTIONS)
    try:
        written = init_cluster(
            dir, nodes, generated, chain_id=chain_id, host=host, base_port=base_port,
            force=force, institution_keys=registered,
        )  # fmt: skip
    except ClusterError as e:
        fail(str(e))
    if registered:
        console.print(f"registered hospitals: {', '.join(registered)}")
    table = Table("node", "config", "peers", "API", title=f"ledger cluster in {dir}")
    for files in written:
        peers = f"{files.listen[0]}:{files.listen[1]}"
        table.add_row(files.node_id, str(files.config), peers, api_url(files.api))
    console.print(table)


@app.command("node")
def node(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's node.toml.")],
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "info",
) -> None:
    """Run one node (PBFT peers and HTTP API) until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        await run_node(config, asyncio.Event())

    try:
        asyncio.run(main())
    except ClusterError as e:
        fail(str(e))
    except (LedgerError, OSError) as e:
        fail(f"node {config} cannot start: {e}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@app.command("up")
def up(
    dir: DirOpt = DEFAULT_DIR,
    nodes: NodesOpt = 4,
    host: HostOpt = "127.0.0.1",
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
    startup_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every node's /healthz.")
    ] = 30.0,
) -> None:
    """Run a local cluster: init the folder if it has no configs, start one process per node,
    wait until every API answers, and stop them all on Ctrl-C or SIGTERM."""
    if not node_configs(dir):
        try:
            init_cluster(dir, nodes, host=host, base_port=base_port)
        except ClusterError as e:
            fail(str(e))
    local = _local_nodes(dir)
    apis = [(node_id, url) for node_id, url, _ in local]
    stopping: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for node_id, _, path in local:
            procs[node_id] = subprocess.Popen(node_command(path))
            (path.parent / "node.pid").write_text(f"{procs[node_id].pid}\n", encoding="utf-8")
        pending = dict(apis)
        deadline = time.monotonic() + startup_timeout
        while pending and not stopping:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                fail(f"node {dead[0]} exited with code {procs[dead[0]].returncode}", code=1)
            if time.monotonic() > deadline:
                fail(f"nodes not healthy after {startup_timeout} s: {', '.join(pending)}", code=1)
            pending = {n: url for n, url in pending.items() if not _healthy(url)}
            time.sleep(0.1)
        if not stopping:
            table = Table("node", "pid", "API", title=f"ledger cluster in {dir} (Ctrl-C stops)")
            for node_id, url in apis:
                table.add_row(node_id, str(procs[node_id].pid), url)
            console.print(table)
        while not stopping:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                fail(f"node {dead[0]} exited with code {procs[dead[0]].returncode}", code=1)
            time.sleep(0.2)
    finally:
        _stop_all(procs)
        for path in node_configs(dir):
            (path.parent / "node.pid").unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    console.print(f"stopped {len(procs)} nodes")


@app.command("status")
def status(
    dir: DirOpt = DEFAULT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 2.0,
) -> None:
    """Ask every node of the cluster for its status; a node that does not answer is down."""
    try:
        urls, _ = read_cluster(dir)
    except ClusterError as e:
        fail(f"{e} (run `medfabric ledger init --dir {dir}`)")
    rows: list[dict[str, Any]] = []
    with httpx.Client(timeout=timeout) as http:
        for node_id, url in urls.items():
            row: dict[str, Any] = {"node": node_id, "api": url, "up": False}
            try:
                answer = http.get(f"{url}/v1/status")
                if answer.status_code == 200:
                    row.update(answer.json(), up=True)
            except (httpx.HTTPError, ValueError):
                pass
            rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("node", "API", "state", "view", "primary", "last executed", "height", "head")
    for row in rows:
        if not row["up"]:
            table.add_row(row["node"], row["api"], "[red]down[/]", "", "", "", "", "")
            continue
        table.add_row(
            row["node"], row["api"], "up", str(row["view"]), row["primary"],
            str(row["last_executed"]), str(row["height"]), (row["head"] or "")[:12],
        )  # fmt: skip
    console.print(table)


DEFAULT_DATA_TYPE = "record"
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each node.")]


def _content_hash(text: str, where: str) -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != DIGEST_SIZE:
        fail(f"{where}: not a content hash ({2 * DIGEST_SIZE} hex digits): {text!r}")
    return digest


def _read_entries(path: Path, institution: str, data_type: str) -> list[Entry]:
    """One entry per line: a content hash in hex, optionally a tab and a storage address."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {path}: {e}")
    now = time.time_ns() // 1_000_000
    entries: list[Entry] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        text, _, address = line.strip().partition("\t")
        digest = _content_hash(text.strip(), where)
        try:
            address = address.strip() or storage_address(institution, "cli", "hashes", digest.hex())
            entries.append(Entry(digest, EntryIndex(address, data_type, now)))
        except LedgerError as e:
            fail(f"{where}: {e}")
    if not entries:
        fail(f"{path} holds no content hashes")
    return entries


def _client(dir: Path, institution: str | None, timeout: float) -> LedgerClient:
    try:
        return LedgerClient.from_cluster(dir, institution, timeout=timeout)
    except (ClusterError, ClientError) as e:
        fail(str(e))


@app.command("submit")
def submit(
    institution: Annotated[str, typer.Option("--institution", "-i", help="The institution id.")],
    hashes: Annotated[
        Path,
        typer.Option(
            "--hashes", help="One content hash (64 hex) per line, optionally TAB and an address."
        ),
    ],
    dir: DirOpt = DEFAULT_DIR,
    data_type: Annotated[
        str, typer.Option("--data-type", help="The entries' data type.")
    ] = DEFAULT_DATA_TYPE,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Notarize content hashes as the institution; print the result f+1 nodes agreed on.

    Exit 0 when notarized, 1 when refused or the cluster cannot agree, 2 for bad input."""
    entries = _read_entries(hashes, institution, data_type)
    with _client(dir, institution, timeout) as client:
        try:
            results = client.notarize_many(entries)
        except ClientError as e:
            fail(str(e), code=1)
    refused = False
    for result in results:
        if result.status == "notarized":
            console.print(f"notarized: {result.new} new, {result.duplicates} duplicates")
        else:
            console.print(f"refused: {result.reason}")
            refused = True
    if refused:
        raise typer.Exit(1)


@app.command("prove")
def prove(
    content_hash: Annotated[str, typer.Argument(help="The content hash, 64 hex digits.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the proof.")],
    dir: DirOpt = DEFAULT_DIR,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Fetch a record's proof from the nodes, verify it locally and write it (its canonical
    bytes). Exit 1 if no node serves a valid proof (or the hash is not notarized)."""
    digest = _content_hash(content_hash, "HASH")
    with _client(dir, None, timeout) as client:
        try:
            proof = client.proof(digest)
        except ClientError as e:
            fail(str(e), code=1)
    try:
        out.write_bytes(encode_entry_proof(proof))
    except OSError as e:
        fail(f"cannot write {out}: {e}")
    console.print(
        f"VALID: block {proof.header.height}, position {proof.position}; wrote {out}",
        highlight=False,
    )


@app.command("verify-proof")
def verify_proof(
    proof_file: Annotated[Path, typer.Option("--proof", help="A proof written by `prove`.")],
    content_hash: Annotated[
        str, typer.Option("--hash", help="The record's content hash, 64 hex digits.")
    ],
    dir: DirOpt = DEFAULT_DIR,
) -> None:
    """Check a proof offline against the cluster's membership; print VALID or what failed.

    Exit 0 for VALID, 1 for any other answer, 2 for bad input."""
    digest = _content_hash(content_hash, "--hash")
    try:
        proof = decode_entry_proof(proof_file.read_bytes())
    except OSError as e:
        fail(f"cannot read {proof_file}: {e}")
    except LedgerError as e:
        fail(f"{proof_file} is not an entry proof: {e}")
    with _client(dir, None, 1.0) as client:
        verdict = client.verify(digest, proof)
    typer.echo(verdict)
    if verdict != "VALID":
        raise typer.Exit(1)
