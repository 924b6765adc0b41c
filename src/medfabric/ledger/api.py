"""The HTTP/JSON client API of one ledger node, served on the node's own event loop.

Endpoints (every error is ``{"error": {"code": ..., "detail": ...}}``):

- ``POST /v1/requests``: the body is ``frame(signed_request)`` (``application/octet-stream``).
  It is checked with ``open_frame`` (400 with the reason code of :data:`REASONS`, or
  ``not_a_request``), handed to the node exactly like a request that arrived over TCP, and the
  call waits for this node's own ``Reply`` to that ``(client, timestamp)`` (504 ``timeout``
  after ``reply_timeout`` seconds). The answer carries the reply's fields, its ``result`` and the
  whole signed reply (``reply``), both base64. A client accepts a result once ``f + 1`` nodes
  answered the same bytes.
- ``GET /v1/status``: :meth:`Node.status`.
- ``GET /v1/blocks/{height}``: the header fields (hashes in hex), counts, the certificate's
  signers and the canonical block (``block``, base64 of ``encode_block``); 404 if not stored.
- ``GET /v1/proofs/{content_hash_hex}``: the entry proof (``proof``, base64 of
  ``encode_entry_proof``) with its height and position; 400 ``bad_hash``, 404 ``not_found``.
- ``GET /metrics``: the node's counters in the Prometheus text format.
- ``GET /healthz``: 200 while the node runs, else 503.

Invariants:

- Handlers never await between handing a request to the node and registering their waiter:
  the waiter is in place first, and :meth:`Node.receive` handles the ``Ready`` inline, so a
  reply (fresh, or re-sent from the replica's cache for a repeat) cannot be missed.
- :class:`ApiServer` runs uvicorn as a task on the running loop and leaves the process's
  signal handlers alone; the caller decides when to stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from medfabric.ledger.blocks import (
    block_entries,
    block_hash,
    encode_block,
    encode_entry_proof,
)
from medfabric.ledger.messages import DIGEST_SIZE, FrameError, Reply, Signed, frame, open_frame
from medfabric.ledger.messages import Request as PbftRequest
from medfabric.ledger.node import Node

__all__ = ["DEFAULT_REPLY_TIMEOUT", "MAX_REQUEST_BYTES", "ApiServer", "create_api"]

DEFAULT_REPLY_TIMEOUT = 10.0
"""Seconds ``POST /v1/requests`` waits for this node's reply before answering 504."""

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Largest accepted request frame (the transport's default ``max_frame``)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "detail": detail}}, status_code=status)


def create_api(node: Node, *, reply_timeout: float = DEFAULT_REPLY_TIMEOUT) -> FastAPI:
    """Build the client API of ``node`` (module docstring).

    Args:
        node: The node; its store is read only while it runs.
        reply_timeout: Seconds a request waits for the node's reply.

    Returns:
        The FastAPI application; serve it on the node's event loop (see :class:`ApiServer`).
    """
    app = FastAPI(title=f"medfabric ledger node {node.id}", docs_url=None, redoc_url=None)
    waiters: dict[tuple[str, int], list[asyncio.Future[Signed[Reply]]]] = {}

    def on_reply(signed: Signed[Reply]) -> None:
        for future in waiters.get((signed.message.client, signed.message.timestamp), []):
            if not future.done():
                future.set_result(signed)

    node.add_reply_listener(on_reply)

    @app.post("/v1/requests")
    async def submit(request: Request) -> JSONResponse:
        data = await request.body()
        try:
            signed = open_frame(data, node.membership, max_size=MAX_REQUEST_BYTES)
        except FrameError as e:
            return _error(400, e.reason, str(e))
        message = signed.message
        if not isinstance(message, PbftRequest):
            return _error(400, "not_a_request", f"expected a Request, got {type(message).__name__}")
        if not node.running:
            return _error(503, "unavailable", f"node {node.id} is not running")
        key = (message.client, message.timestamp)
        future: asyncio.Future[Signed[Reply]] = asyncio.get_running_loop().create_future()
        waiters.setdefault(key, []).append(future)
        try:
            node.receive(signed)
            async with asyncio.timeout(reply_timeout):
                reply = await future
        except TimeoutError:
            return _error(504, "timeout", f"no reply from {node.id} within {reply_timeout} s")
        finally:
            pending = waiters[key]
            pending.remove(future)
            if not pending:
                del waiters[key]
        return JSONResponse(
            {
                "replica": reply.message.replica,
                "view": reply.message.view,
                "client": reply.message.client,
                "timestamp": reply.message.timestamp,
                "result": _b64(reply.message.result),
                "reply": _b64(frame(reply)),
            }
        )

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return node.status()

    @app.get("/v1/blocks/{height}", response_model=None)
    async def block(height: int) -> dict[str, Any] | JSONResponse:
        found = node.store.block(height) if height >= 0 else None
        if found is None:
            return _error(404, "not_found", f"no block at height {height}")
        h = found.header
        return {
            "height": h.height,
            "hash": block_hash(h).hex(),
            "previous_hash": h.previous_hash.hex(),
            "entries_root": h.entries_root.hex(),
            "state_root": h.state_root.hex(),
            "view": h.view,
            "proposer": h.proposer,
            "time": h.time,
            "tx_count": len(found.txs),
            "entry_count": len(block_entries(found)),
            "certificate": [sig.replica for sig in found.certificate],
            "block": _b64(encode_block(found)),
        }

    @app.get("/v1/proofs/{content_hash_hex}", response_model=None)
    async def proof(content_hash_hex: str) -> dict[str, Any] | JSONResponse:
        try:
            content_hash = bytes.fromhex(content_hash_hex)
        except ValueError:
            content_hash = b""
        if len(content_hash) != DIGEST_SIZE:
            return _error(400, "bad_hash", f"expected {DIGEST_SIZE} bytes in hex")
        found = node.store.proof(content_hash)
        if found is None:
            return _error(404, "not_found", f"{content_hash_hex} is not notarized")
        return {
            "proof": _b64(encode_entry_proof(found)),
            "height": found.header.height,
            "position": found.position,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return prometheus_text(node)

    @app.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str] | JSONResponse:
        if not node.running:
            return _error(503, "unavailable", f"node {node.id} is not running")
        return {"status": "ok", "node": node.id}

    return app


def _metric_name(name: str) -> str:
    return "medfabric_ledger_" + "".join(c if c.isalnum() else "_" for c in name)


def prometheus_text(node: Node) -> str:
    """The node's counters (``<name>_total``) and progress gauges, Prometheus text format."""
    label = f'{{node="{node.id}"}}'
    lines: list[str] = []
    for name, value in sorted(node.metrics.items()):
        metric = _metric_name(name) + "_total"
        lines += [f"# TYPE {metric} counter", f"{metric}{label} {value}"]
    status = node.status()
    for name in ("view", "last_executed", "height"):
        metric = _metric_name(name)
        lines += [f"# TYPE {metric} gauge", f"{metric}{label} {status[name]}"]
    return "\n".join(lines) + "\n"


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node's owner handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves :func:`create_api` for ``node`` as a task on the running event loop.

    Example (inside a coroutine, with the node started)::

        api = ApiServer(node, "127.0.0.1", 0)
        await api.start()
        api.address  # ("127.0.0.1", 54321)
        await api.stop()

    Args:
        node: The node to serve.
        host: Address to listen on.
        port: Port; 0 picks a free one.
        reply_timeout: See :func:`create_api`.
    """

    def __init__(
        self,
        node: Node,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
    ) -> None:
        self.app = create_api(node, reply_timeout=reply_timeout)
        self._listen = (host, port)
        self._address: tuple[str, int] | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``.

        Raises:
            RuntimeError: The server was not started.
        """
        if self._address is None:
            raise RuntimeError("the API server is not started")
        return self._address

    async def start(self) -> None:
        """Bind the listen address and start serving.

        Raises:
            OSError: The address cannot be bound.
            RuntimeError: uvicorn failed to start.
        """
        sock = socket.create_server(self._listen)
        host, port = sock.getsockname()[:2]
        self._address = (host, port)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name=f"api-{host}:{port}"
        )
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # raises uvicorn's error, if any
                raise RuntimeError(f"the API server on {host}:{port} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving and wait for the server task. Safe to call more than once."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
