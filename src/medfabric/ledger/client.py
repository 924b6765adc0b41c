"""The ledger client of one institution: submit transactions to every node, accept a result on
``f + 1`` matching signed replies, and fetch per-record proofs that it checks itself.

The client trusts nothing a node says without checking it against the membership:

- A result is accepted only when ``f + 1`` replies carry the same result bytes, and each reply
  counts only if its signed envelope (the API's ``reply`` field) opens with ``open_frame``
  against the membership, is a ``Reply`` to this client's request (client and timestamp), and
  is signed by the replica whose API answered. At most ``f`` replicas are faulty, so ``f + 1``
  matching replies include one from a correct replica. A reply that fails is ignored and
  counted (``metrics["replies_ignored"]``).
- A proof is returned only if :func:`~medfabric.ledger.blocks.verify_entry_proof` answers
  ``VALID`` for the chain's replica keys and quorum (the client asks its
  :class:`~medfabric.ledger.blocks.ProofVerifier`, which gives the same answer and verifies
  each distinct commit signature once). A node that serves anything else is skipped in favour
  of the next one.
- A node that is down, answers an error or times out is skipped (failover); the request still
  reaches every other node.

Request numbering: each request's timestamp is the wall-clock time in milliseconds, bumped to
stay strictly above the previous request of the same client object (replicas ignore a request
that is not newer than the client's last executed one, and use the timestamps as block times).
The transaction nonce is the request timestamp, so two equal batches are two distinct
transactions. One client object sends one request at a time (calls are serialised by a lock);
two client objects of one institution must not run at once.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import httpx

from medfabric.crypto.errors import CryptoError
from medfabric.crypto.keys import SigningKey, load_private_key
from medfabric.ledger.blocks import (
    MAX_TX_ENTRIES,
    Block,
    Entry,
    EntryProof,
    InvalidTx,
    ProofVerifier,
    decode_block,
    decode_entry_proof,
    encode_tx,
    sign_tx,
    verify_tx,
)
from medfabric.ledger.chain import TxResult
from medfabric.ledger.cluster import (
    DESCRIPTION_NAME,
    ClusterError,
    load_cluster_description,
    load_node_config,
    node_configs,
)
from medfabric.ledger.messages import (
    DIGEST_SIZE,
    FrameError,
    LedgerError,
    Membership,
    Reply,
    Request,
    frame,
    open_frame,
    sign,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientError",
    "LedgerClient",
    "NotNotarized",
    "api_url",
    "read_cluster",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
"""Seconds to wait for one node's answer; above the API's 10 s reply timeout, so a node that
cannot reach consensus answers 504 before the client gives up on it."""

MAX_REPLY_BYTES = 1 << 20
"""Largest signed reply envelope accepted from a node."""

_OCTETS = {"content-type": "application/octet-stream"}


class ClientError(LedgerError):
    """The cluster did not give an answer the client can trust.

    Attributes:
        answers: Node id → what that node answered (``"notarized 2 new, 0 duplicates"``,
            ``"unreachable: ..."``, ``"bad reply: ..."``, ``"HTTP 504 timeout"``, ...), for the
            nodes that were asked.
    """

    def __init__(self, message: str, answers: Mapping[str, str] | None = None) -> None:
        self.answers = dict(answers or {})
        if self.answers:
            message += " (" + "; ".join(f"{n}: {a}" for n, a in sorted(self.answers.items())) + ")"
        super().__init__(message)


class NotNotarized(ClientError):
    """Every node that answered said the content hash is not notarized (404)."""


def api_url(address: tuple[str, int]) -> str:
    host, port = address
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def read_cluster(dir: Path) -> tuple[dict[str, str], Membership]:
    """The API URLs (node id → base URL) and the membership of a cluster.

    ``dir`` is a public cluster description (``cluster.toml``), or a folder holding one, or a
    cluster folder of node configs (``*/node.toml``; reading those needs the nodes' key files,
    so give clients the description instead).

    Raises:
        ClusterError: No description and no node configs, a file is bad (see
            :func:`~medfabric.ledger.cluster.load_cluster_description` and
            :func:`~medfabric.ledger.cluster.load_node_config`), or two configs disagree on
            the membership.
    """
    description = dir if dir.is_file() else dir / DESCRIPTION_NAME
    if description.is_file():
        apis, described = load_cluster_description(description)
        return {node: api_url(address) for node, address in apis.items()}, described
    nodes: dict[str, str] = {}
    membership: Membership | None = None
    for path in node_configs(dir):
        config, api = load_node_config(path)
        nodes[config.node_id] = api_url(api)
        if membership is None:
            membership = config.membership
        elif config.membership != membership:
            raise ClusterError(f"{path}: membership differs from the other nodes'")
    if membership is None:
        raise ClusterError(f"{dir} holds neither {DESCRIPTION_NAME} nor node configs")
    return nodes, membership


@dataclass(frozen=True, slots=True)
class _Answer:
    node: str
    result: bytes | None  # the result bytes of a checked reply
    summary: str  # what the node answered, for errors
    bad: bool = False  # the node answered with a reply that failed the checks


def _http_summary(response: httpx.Response) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "error"
    return f"HTTP {response.status_code} {code}"


def _describe(result: bytes) -> str:
    try:
        r = TxResult.decode(result)
    except LedgerError:
        return f"result {result[:16].hex()}"
    if r.status == "notarized":
        return f"notarized {r.new} new, {r.duplicates} duplicates"
    return f"refused: {r.reason}"


class LedgerClient:
    """Submits one institution's notarization transactions and fetches verified proofs.

    Example::

        client = LedgerClient.from_cluster(Path("var/ledger"), "hospital-a")
        result = client.notarize([entry])          # TxResult, agreed by f + 1 replicas
        proof = client.proof(entry.content_hash)   # verified locally
        client.verify(entry.content_hash, proof)   # "VALID"
        client.close()

    Args:
        nodes: Node (replica) id → base URL of its HTTP API.
        membership: The chain's membership (replica keys, institutions, quorum).
        institution: The institution (client) id, or ``None`` for a client that only reads
            proofs.
        key: The institution's signing key (``None`` with ``institution=None``).
        timeout: Seconds to wait for each node's answer.
        transport: An httpx transport (tests inject one); the default opens real connections.

    Raises:
        ClientError: A node id is not a replica, no node is given, the institution is not a
            client of the membership, or the key is not its registered key.
    """

    def __init__(
        self,
        nodes: Mapping[str, str],
        membership: Membership,
        institution: str | None = None,
        key: SigningKey | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not nodes:
            raise ClientError("a client needs at least one node")
        unknown = sorted(set(nodes) - set(membership.replicas))
        if unknown:
            raise ClientError(f"nodes are not replicas of {membership.chain_id!r}: {unknown}")
        if (institution is None) != (key is None):
            raise ClientError("give both the institution and its key, or neither")
        if institution is not None and key is not None:
            registered = membership.clients.get(institution)
            if registered is None:
                raise ClientError(f"{institution!r} is not an institution of the chain")
            if registered != key.verify_key:
                raise ClientError(f"the key is not {institution!r}'s registered key")
        if timeout <= 0:
            raise ClientError(f"timeout must be positive, got {timeout}")
        self.nodes = {rid: url.rstrip("/") for rid, url in nodes.items()}
        self.membership = membership
        self.institution = institution
        self._key = key
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._last_timestamp = 0
        self._verifier = ProofVerifier(
            chain_id=membership.chain_id, replicas=membership.replicas, quorum=membership.quorum
        )
        self.metrics: dict[str, int] = {
            "requests": 0,
            "replies_accepted": 0,
            "replies_ignored": 0,
            "nodes_failed": 0,
            "proofs_invalid": 0,
        }

    @classmethod
    def from_cluster(
        cls, dir: Path, institution: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> LedgerClient:
        """A client for a cluster folder written by ``init_cluster`` (or a description).

        The API URLs and the membership come from :func:`read_cluster` (the public
        ``cluster.toml`` when there is one); the institution's key from
        ``institutions/<institution>.key`` next to it. Without ``institution`` the client only
        reads.

        Raises:
            ClusterError: The folder or a config is bad, or the key file cannot be loaded.
            ClientError: As for the constructor.
        """
        nodes, membership = read_cluster(dir)
        key = None
        if institution is not None:
            folder = dir.parent if dir.is_file() else dir
            path = folder / "institutions" / f"{institution}.key"
            try:
                key = load_private_key(path, None, kind=SigningKey)
            except CryptoError as e:
                raise ClusterError(f"cannot load {path}: {e}") from e
        return cls(nodes, membership, institution, key, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- submitting ----------------------------------------------------------------------------

    def notarize(self, entries: Sequence[Entry]) -> TxResult:
        """Notarize ``entries`` as one transaction and return the result ``f + 1`` replicas sent.

        The result may be ``refused`` (the replicas agreed the transaction is invalid).

        Raises:
            ClientError: The client has no key; the transaction is invalid before it is sent
                (empty, more than ``MAX_TX_ENTRIES`` entries, a repeated content hash); or
                ``f + 1`` matching checked replies could not be gathered (``answers`` says what
                each node answered).
        """
        if self.institution is None or self._key is None:
            raise ClientError("this client has no institution key; it can only read proofs")
        with self._lock:
            timestamp = max(time.time_ns() // 1_000_000, self._last_timestamp + 1)
            self._last_timestamp = timestamp
            chain = self.membership.chain_id
            tx = sign_tx(self.institution, timestamp, entries, self._key, chain_id=chain)
            try:
                verify_tx(tx, self.membership.clients, chain_id=chain)
            except InvalidTx as e:
                raise ClientError(f"transaction not sent: {e}") from e
            request = Request(self.institution, timestamp, encode_tx(tx))
            signed = sign(request, self._key, signer=self.institution, chain_id=chain)
            self.metrics["requests"] += 1
            return self._gather(frame(signed), timestamp)

    def notarize_many(self, entries: Sequence[Entry]) -> list[TxResult]:
        """Notarize ``entries`` in transactions of at most ``MAX_TX_ENTRIES``, in order.

        Raises:
            ClientError: As for :meth:`notarize`; also before anything is sent if ``entries``
                is empty or repeats a content hash. Transactions sent before a failure stay
                notarized.
        """
        if not entries:
            raise ClientError("transaction not sent: empty")
        hashes = [e.content_hash for e in entries]
        if len(set(hashes)) != len(hashes):
            raise ClientError("transaction not sent: duplicate_entry in the input")
        return [
            self.notarize(entries[i : i + MAX_TX_ENTRIES])
            for i in range(0, len(entries), MAX_TX_ENTRIES)
        ]

    def _post(self, node: str, body: bytes, timestamp: int) -> _Answer:
        try:
            response = self._http.post(
                f"{self.nodes[node]}/v1/requests", content=body, headers=_OCTETS
            )
        except httpx.HTTPError as e:
            return _Answer(node, None, f"unreachable: {type(e).__name__}")
        if response.status_code != 200:
            return _Answer(node, None, _http_summary(response))
        try:
            raw = base64.b64decode(response.json()["reply"], validate=True)
            signed = open_frame(raw, self.membership, max_size=MAX_REPLY_BYTES)
        except (ValueError, KeyError, TypeError) as e:
            return _Answer(node, None, f"bad reply: unreadable ({type(e).__name__})", bad=True)
        except FrameError as e:
            return _Answer(node, None, f"bad reply: {e.reason}", bad=True)
        reply = signed.message
        if not isinstance(reply, Reply):
            return _Answer(node, None, f"bad reply: a {type(reply).__name__}", bad=True)
        if reply.replica != node:  # open_frame checked signer == reply.replica
            return _Answer(node, None, f"bad reply: signed by {reply.replica}", bad=True)
        if reply.client != self.institution or reply.timestamp != timestamp:
            return _Answer(node, None, "bad reply: for another request", bad=True)
        return _Answer(node, reply.result, _describe(reply.result))

    def _gather(self, body: bytes, timestamp: int) -> TxResult:
        """Post ``body`` to every node; return once ``f + 1`` checked replies agree."""
        needed = self.membership.f + 1
        votes: dict[bytes, int] = {}
        answers: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=len(self.nodes), thread_name_prefix="ledger-client")
        try:
            futures = [pool.submit(self._post, n, body, timestamp) for n in self.nodes]
            for future in as_completed(futures):
                answer = future.result()
                answers[answer.node] = answer.summary
                if answer.result is None:
                    self.metrics["replies_ignored" if answer.bad else "nodes_failed"] += 1
                    log = logger.warning if answer.bad else logger.info
                    log("ledger client: %s answered %s", answer.node, answer.summary)
                    continue
                self.metrics["replies_accepted"] += 1
                votes[answer.result] = votes.get(answer.result, 0) + 1
                if votes[answer.result] >= needed:
                    try:
                        return TxResult.decode(answer.result)
                    except LedgerError as e:
                        raise ClientError(f"{needed} replicas agreed on a non-result: {e}") from e
        finally:
            # Slow nodes are not waited for once f + 1 agree; their threads end on their own.
            pool.shutdown(wait=False, cancel_futures=True)
        raise ClientError(
            f"no {needed} matching replies: {sum(votes.values())} of {len(self.nodes)} nodes "
            f"sent a valid reply, at most {max(votes.values(), default=0)} agreed",
            answers,
        )

    # --- proofs --------------------------------------------------------------------------------

    def verify(self, content_hash: bytes, proof: EntryProof) -> str:
        """Check ``proof`` offline against the membership: ``"VALID"`` or what failed (one of
        :data:`~medfabric.ledger.blocks.PROOF_RESULTS`).

        The answer is :func:`~medfabric.ledger.blocks.verify_entry_proof`'s; a commit signature
        already verified over the same header is not verified again (a bounded cache of the
        client's :class:`~medfabric.ledger.blocks.ProofVerifier`), so checking many proofs of
        one block costs at most one Ed25519 verification per replica.
        """
        return self._verifier.verify(proof, content_hash)

    def proof(self, content_hash: bytes) -> EntryProof:
        """Fetch the proof of ``content_hash`` from the nodes in turn and verify it locally.

        Returns:
            The first proof that :meth:`verify` finds ``VALID``.

        Raises:
            ClientError: ``content_hash`` is not 32 bytes; or no node served a valid proof:
                :class:`NotNotarized` when every node that answered said 404, else a
                :class:`ClientError` whose ``answers`` name the invalid proofs and failures.
        """
        if len(content_hash) != DIGEST_SIZE:
            raise ClientError(f"a content hash is {DIGEST_SIZE} bytes, got {len(content_hash)}")
        answers: dict[str, str] = {}
        for node, url in self.nodes.items():
            try:
                response = self._http.get(f"{url}/v1/proofs/{content_hash.hex()}")
            except httpx.HTTPError as e:
                answers[node] = f"unreachable: {type(e).__name__}"
                continue
            if response.status_code != 200:
                answers[node] = _http_summary(response)
                continue
            try:
                found = decode_entry_proof(
                    base64.b64decode(response.json()["proof"], validate=True)
                )
            except (ValueError, KeyError, TypeError, LedgerError) as e:
                answers[node] = f"invalid proof: undecodable ({type(e).__name__})"
                self.metrics["proofs_invalid"] += 1
                continue
            verdict = self.verify(content_hash, found)
            if verdict == "VALID":
                return found
            answers[node] = f"invalid proof: {verdict}"
            self.metrics["proofs_invalid"] += 1
            logger.warning("ledger client: %s served an invalid proof (%s)", node, verdict)
        reached = [a for a in answers.values() if not a.startswith("unreachable")]
        if reached and all(a == "HTTP 404 not_found" for a in reached):
            raise NotNotarized(f"{content_hash.hex()} is not notarized", answers)
        if any(a.startswith("invalid proof") for a in reached):
            raise ClientError(f"invalid proofs served for {content_hash.hex()}", answers)
        raise ClientError(f"no node served a proof of {content_hash.hex()}", answers)

    # --- blocks ----------------------------------------------------------------------------------

    def height(self) -> int | None:
        """The highest stored height any reachable node reports (None: no block yet).

        Raises:
            ClientError: No node answered.
        """
        heights: list[int | None] = []
        for url in self.nodes.values():
            try:
                response = self._http.get(f"{url}/v1/status")
                if response.status_code == 200:
                    heights.append(response.json().get("height"))
            except (httpx.HTTPError, ValueError):
                continue
        if not heights:
            raise ClientError("no node answered /v1/status")
        known = [h for h in heights if isinstance(h, int) and h >= 0]
        return max(known) if known else None

    def block(self, height: int) -> Block | None:
        """The block at ``height`` from the first node that has it, decoded but *not* verified
        (a caller replays the chain with :func:`~medfabric.ledger.blocks.verify_block`).

        Returns:
            The block, or None when every node that answered has none at that height.

        Raises:
            ClientError: No node answered, or a node served undecodable bytes.
        """
        reached = False
        for node, url in self.nodes.items():
            try:
                response = self._http.get(f"{url}/v1/blocks/{height}")
            except httpx.HTTPError:
                continue
            reached = True
            if response.status_code != 200:
                continue
            try:
                return decode_block(base64.b64decode(response.json()["block"], validate=True))
            except (ValueError, KeyError, TypeError, LedgerError) as e:
                raise ClientError(f"{node} served an undecodable block {height}: {e}") from e
        if not reached:
            raise ClientError(f"no node answered for block {height}")
        return None
