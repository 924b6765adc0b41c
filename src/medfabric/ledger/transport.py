"""The network edge of one ledger node: asyncio TCP with length-prefixed frames (stdlib only).

A :class:`Transport` listens for connections from other replicas and from clients, keeps one
outbound connection per peer replica, and hands every frame that passes
:func:`~medfabric.ledger.messages.open_frame` to ``on_message``. It knows nothing of PBFT state:
what to send and what a message means is the replica's job; this module only moves signed
envelopes and refuses bad input.

Wire: each frame is ``u32 big-endian length || frame(signed)`` (:func:`encode_frame`), split
with a :class:`FrameReader`. There is no handshake: a connection is authenticated frame by
frame, by the signatures :func:`open_frame` checks.

Invariants:

- Ordering: frames read from one connection reach ``on_message`` in arrival order, one at a
  time (an awaitable result is awaited before the next frame is read). Messages sent to one
  peer are written in ``send`` order on one connection at a time. Nothing is ordered across
  connections, and nothing is guaranteed delivered: PBFT retransmits.
- Isolation: every connection is read by its own task and every peer is written by its own
  task, with ``drain`` under a timeout; a slow, silent or half-framed peer delays only itself.
  ``send`` never blocks and never does I/O.
- Dropped, counted and logged, never raised and never fatal to the listener:

  - an inbound frame refused by :func:`open_frame`: counted under its reason (``REASONS``) and
    the connection kept;
  - a declared length above ``max_frame``: ``oversized``, and that one connection is closed
    (the stream cannot be resynchronised; complete frames that arrived in the same read as the
    bad header are lost with it);
  - a connection that stops for ``frame_timeout`` seconds inside a frame: ``frame_timeout``,
    connection closed (bounds the memory a half-sent frame pins);
  - a message for a full peer queue: the *oldest* queued message is dropped (``queue_full``).
    Newer PBFT messages supersede older ones (higher views and sequence numbers), and the
    replica's retransmission covers the rest;
  - a message for a destination with no address or no client connection: ``no_route``;
  - a message that would exceed ``max_frame`` at the receiver: ``send_oversized``;
  - queued messages whose write failed (the connection broke): ``connection_errors`` for the
    failure; the messages of that write are lost;
  - an exception raised by ``on_message``: ``handler_errors`` (logged with its traceback: it
    is a local bug, not bad input), and the connection kept.

- Logging: one WARNING line per (peer address, metric) per ``log_interval`` seconds, without a
  traceback; the next line states how many were suppressed. The peer address of an inbound
  connection is its host (ports are ephemeral); of an outbound one, the peer's ``host:port``.
- Back-off: a peer whose connect or write fails is retried after ``backoff_min`` seconds,
  doubling up to ``backoff_max``; the delay resets after a write that drained. Connections are
  opened lazily, when the first message for the peer is queued.
- Client routing: a ``Request`` that passes the edge checks routes later messages addressed to
  its client id to the connection it arrived on (the last one wins). A connection that has
  carried any replica-signed message is a replica connection: requests relayed on it (backups
  forward requests to the primary) never become a client route, and routes already on it are
  removed. Routes go when their connection closes.

Metrics (:data:`METRICS`, all present from the start, monotonically increasing): the
:data:`REASONS` codes, ``received`` (frames delivered), ``sent`` (frames written and drained),
``queue_full``, ``no_route``, ``send_oversized``, ``connection_errors``, ``frame_timeout``,
``connections_refused`` (inbound connections above ``max_connections``) and ``handler_errors``.

Not thread-safe: call every method on the event loop that runs :meth:`Transport.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

from medfabric.ledger.messages import (
    REASONS,
    FrameError,
    FrameReader,
    LedgerError,
    Membership,
    Message,
    OversizedFrame,
    Request,
    Signed,
    encode_frame,
    frame,
    open_frame,
)

__all__ = ["DEFAULT_MAX_FRAME", "METRICS", "OnMessage", "Transport", "TransportError"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""Largest frame accepted or sent, in bytes (without the 4-byte length prefix): 16 MiB."""

METRICS: tuple[str, ...] = (
    *REASONS,
    "received",
    "sent",
    "queue_full",
    "no_route",
    "send_oversized",
    "connection_errors",
    "frame_timeout",
    "connections_refused",
    "handler_errors",
)
"""Every key of :attr:`Transport.metrics`."""

OnMessage: TypeAlias = Callable[[Signed[Message]], Awaitable[None] | None]
"""Receives each checked message; may be a plain function or a coroutine function."""

_READ_SIZE = 64 * 1024
_U32_MAX = 2**32 - 1
_LOG_STATE_LIMIT = 4096  # (address, metric) pairs remembered for rate limiting


class TransportError(LedgerError):
    """A transport was misconfigured or misused (never raised for anything from the network)."""


class _Outbox:
    """A bounded FIFO of encoded frames that drops its oldest item when full."""

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] = deque()
        self._limit = limit
        self._ready = asyncio.Event()

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False if the oldest item had to be dropped to make room."""
        dropped = len(self._items) >= self._limit
        if dropped:
            self._items.popleft()
        self._items.append(data)
        self._ready.set()
        return not dropped

    async def wait(self) -> None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()

    def take_all(self) -> list[bytes]:
        items = list(self._items)
        self._items.clear()
        return items


class _Connection:
    """One TCP connection, inbound or outbound, read by one task."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, peer: str | None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer  # the replica id for an outbound connection
        name = writer.get_extra_info("peername")
        host, port = (str(name[0]), name[1]) if isinstance(name, tuple) else ("?", None)
        self.host = host
        self.label = f"{host}:{port}" if port is not None else host
        self.is_replica = peer is not None
        self.outbox: _Outbox | None = None  # replies to a client, created on first use
        self.writer_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Transport:
    """The TCP edge of one replica: listener, per-peer senders, checked delivery.

    Example (inside a coroutine; ``replica.step`` consumes what arrives)::

        t = Transport("node-0", members, chain_id=members.chain_id, listen=("0.0.0.0", 7000),
                      peers={"node-1": ("10.0.0.2", 7000)}, on_message=inbox.put)
        await t.start()
        t.send(None, signed_prepare)  # to every peer; returns at once
        await t.stop()
    """

    def __init__(
        self,
        node_id: str,
        membership: Membership,
        *,
        chain_id: str,
        listen: tuple[str, int],
        peers: Mapping[str, tuple[str, int]],
        on_message: OnMessage,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_queue: int = 1024,
        max_connections: int = 256,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        connect_timeout: float = 5.0,
        write_timeout: float = 10.0,
        frame_timeout: float = 30.0,
        log_interval: float = 60.0,
    ) -> None:
        """Configure a transport; nothing is opened until :meth:`start`.

        Args:
            node_id: This replica's id in ``membership``.
            membership: Who may sign what; every inbound frame is checked against it.
            chain_id: Must equal ``membership.chain_id`` (a guard against mixed configs).
            listen: ``(host, port)`` to listen on; port 0 picks a free port (see
                :attr:`address`).
            peers: Other replica id → ``(host, port)`` it listens on. Broadcasts go to these.
            on_message: Called with each checked message, per connection in arrival order.
            max_frame: Largest frame in bytes, both ways.
            max_queue: Messages queued per peer (and per client connection) before the
                oldest is dropped.
            max_connections: Open inbound connections; more are closed on accept.
            backoff_min: First reconnect delay in seconds after a failure.
            backoff_max: Cap of the doubling reconnect delay.
            connect_timeout: Seconds allowed for one connect.
            write_timeout: Seconds a write may wait for the peer to read before the connection
                is closed as stalled.
            frame_timeout: Seconds without a byte inside a started frame before the
                connection is closed.
            log_interval: Seconds between two log lines for one (peer address, metric).

        Raises:
            TransportError: A setting is out of range, naming it and the bad value.
        """
        if node_id not in membership.replicas:
            raise TransportError(f"node_id {node_id!r} is not a replica of the membership")
        if chain_id != membership.chain_id:
            raise TransportError(
                f"chain_id {chain_id!r} differs from the membership's {membership.chain_id!r}"
            )
        if not 0 < max_frame <= _U32_MAX:
            raise TransportError(f"max_frame must be in 1..2**32-1, got {max_frame}")
        for name, count in (("max_queue", max_queue), ("max_connections", max_connections)):
            if count < 1:
                raise TransportError(f"{name} must be >= 1, got {count}")
        if not 0 < backoff_min <= backoff_max:
            raise TransportError(
                f"need 0 < backoff_min <= backoff_max, got {backoff_min} and {backoff_max}"
            )
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("write_timeout", write_timeout),
            ("frame_timeout", frame_timeout),
        ):
            if seconds <= 0:
                raise TransportError(f"{name} must be > 0, got {seconds}")
        if log_interval < 0:
            raise TransportError(f"log_interval must be >= 0, got {log_interval}")
        _check_address("listen", listen)
        self.node_id = node_id
        self.membership = membership
        self._listen = listen
        self._on_message = on_message
        self._max_frame = max_frame
        self._max_queue = max_queue
        self._max_connections = max_connections
        self._backoff = (backoff_min, backoff_max)
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._frame_timeout = frame_timeout
        self._log_interval = log_interval
        self._metrics = dict.fromkeys(METRICS, 0)
        self._peers: dict[str, tuple[str, int]] = {}
        self._outboxes: dict[str, _Outbox] = {}
        self._inbound: set[_Connection] = set()
        self._outbound: set[_Connection] = set()
        self._client_routes: dict[str, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log_state: dict[tuple[str, str], tuple[float, int]] = {}
        self._server: asyncio.Server | None = None
        self._state = "new"
        for peer, address in peers.items():
            self.set_peer(peer, address)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start one sender task per known peer.

        Raises:
            TransportError: The transport was already started.
            OSError: The listen address cannot be bound.
        """
        if self._state != "new":
            raise TransportError(f"transport {self.node_id!r} is {self._state}, not new")
        self._server = await asyncio.start_server(self._accept, *self._listen)
        self._state = "running"
        for peer in self._outboxes:
            self._spawn(self._peer_loop(peer))

    async def stop(self) -> None:
        """Close the listener and every connection, and end every task this transport started.

        Queued messages are discarded. Safe to call more than once.
        """
        if self._state == "stopped":
            return
        self._state = "stopped"
        if self._server is not None:
            self._server.close()
        connections = [*self._inbound, *self._outbound]
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.writer.wait_closed()
        self._inbound.clear()
        self._outbound.clear()
        self._client_routes.clear()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` of the listener.

        Raises:
            TransportError: The transport is not listening.
        """
        if self._server is None or not self._server.sockets or self._state != "running":
            raise TransportError(f"transport {self.node_id!r} is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def metrics(self) -> Mapping[str, int]:
        """Live, read-only counters; the keys are :data:`METRICS`."""
        return MappingProxyType(self._metrics)

    def set_peer(self, peer: str, address: tuple[str, int]) -> None:
        """Add a peer replica or change its address (used from the next connection on).

        Args:
            peer: A replica id other than this node's.
            address: ``(host, port)`` the peer listens on.

        Raises:
            TransportError: ``peer`` is not another replica, or the address is not valid.
        """
        if peer not in self.membership.replicas or peer == self.node_id:
            raise TransportError(f"peer {peer!r} is not another replica of the membership")
        _check_address(f"address of {peer!r}", address)
        self._peers[peer] = address
        if peer not in self._outboxes:
            self._outboxes[peer] = _Outbox(self._max_queue)
            if self._state == "running":
                self._spawn(self._peer_loop(peer))

    # --- sending --------------------------------------------------------------------------

    def send(self, to: str | None, signed: Signed[Message]) -> None:
        """Queue ``signed`` for ``to`` and return at once; the write happens in the background.

        Args:
            to: A peer replica id, a client id (answered on the connection its last request
                came from), or None for every peer.
            signed: The envelope, signed for this transport's chain.

        Raises:
            TransportError: ``signed`` is for another chain (a local bug).
            EncodeError: The message cannot be encoded (a local bug).
        """
        if signed.chain_id != self.membership.chain_id:
            raise TransportError(f"refusing to send a message signed for {signed.chain_id!r}")
        data = frame(signed)
        if len(data) > self._max_frame:
            self._drop("send_oversized", "local send", f"{len(data)} bytes > {self._max_frame}")
            return
        wire = encode_frame(data)
        if to is None:
            for peer in self._outboxes:
                self._queue(f"queue to {peer}", self._outboxes[peer], wire)
        elif to in self._outboxes:
            self._queue(f"queue to {to}", self._outboxes[to], wire)
        elif to in self._client_routes:
            self._queue_client(self._client_routes[to], wire)
        else:
            self._drop("no_route", f"send to {to}", "no peer address or client connection")

    def _queue(self, where: str, box: _Outbox, wire: bytes) -> None:
        if not box.put(wire):
            self._drop("queue_full", where, "dropped the oldest queued message")

    def _queue_client(self, conn: _Connection, wire: bytes) -> None:
        if conn.outbox is None:
            conn.outbox = _Outbox(self._max_queue)
            conn.writer_task = self._spawn(self._client_writer(conn, conn.outbox))
        self._queue(f"queue to {conn.label}", conn.outbox, wire)

    async def _write(self, conn: _Connection, batch: list[bytes]) -> None:
        if conn.closed:  # a closing transport would swallow the bytes and drain at once
            raise ConnectionResetError("connection closed")
        for wire in batch:
            conn.writer.write(wire)
        async with asyncio.timeout(self._write_timeout):
            await conn.writer.drain()
        self._metrics["sent"] += len(batch)

    async def _peer_loop(self, peer: str) -> None:
        box = self._outboxes[peer]
        delay = self._backoff[0]
        conn: _Connection | None = None
        try:
            while True:
                await box.wait()
                host, port = self._peers[peer]
                try:
                    if conn is None or conn.closed:
                        conn = None
                        async with asyncio.timeout(self._connect_timeout):
                            reader, writer = await asyncio.open_connection(host, port)
                        conn = _Connection(reader, writer, peer=peer)
                        self._outbound.add(conn)
                        self._spawn(self._read_loop(conn))
                    await self._write(conn, box.take_all())
                except Exception as e:  # OSError, TimeoutError, or a bad host name: retry later
                    self._drop("connection_errors", f"{peer} at {host}:{port}", _describe(e))
                    if conn is not None:
                        conn.close()
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, self._backoff[1])
                else:
                    delay = self._backoff[0]
        finally:
            if conn is not None:
                conn.close()

    async def _client_writer(self, conn: _Connection, box: _Outbox) -> None:
        # Cancelled by the connection's read loop when the connection ends.
        while not conn.closed:
            await box.wait()
            try:
                await self._write(conn, box.take_all())
            except (OSError, TimeoutError) as e:
                self._drop("connection_errors", conn.label, _describe(e), host=conn.host)
                conn.close()

    # --- receiving ------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(reader, writer, peer=None)
        if self._state != "running" or len(self._inbound) >= self._max_connections:
            self._drop(
                "connections_refused", conn.label, f"{len(self._inbound)} open", host=conn.host
            )
            conn.close()
            return
        self._inbound.add(conn)
        self._spawn(self._read_loop(conn))

    async def _read_loop(self, conn: _Connection) -> None:
        frames = FrameReader(max_size=self._max_frame)
        try:
            while True:
                # Only a started frame is timed: an idle replica connection is normal.
                limit = self._frame_timeout if frames.buffered else None
                try:
                    async with asyncio.timeout(limit):
                        data = await conn.reader.read(_READ_SIZE)
                except TimeoutError:
                    self._drop(
                        "frame_timeout",
                        conn.label,
                        f"{frames.buffered} B unfinished",
                        host=conn.host,
                    )
                    return
                except OSError as e:
                    self._drop("connection_errors", conn.label, _describe(e), host=conn.host)
                    return
                if not data:
                    return
                try:
                    items = frames.feed(data)
                except OversizedFrame as e:
                    self._drop(e.reason, conn.label, f"{e}; connection closed", host=conn.host)
                    return
                for item in items:
                    await self._deliver(conn, item)
        finally:
            conn.close()
            if conn.writer_task is not None:
                conn.writer_task.cancel()
            self._inbound.discard(conn)
            self._outbound.discard(conn)
            self._forget_routes(conn)

    async def _deliver(self, conn: _Connection, data: bytes) -> None:
        try:
            signed = open_frame(data, self.membership, max_size=self._max_frame)
        except FrameError as e:
            self._drop(e.reason, conn.label, _clip(str(e)), host=conn.host)
            return
        message = signed.message
        if not isinstance(message, Request):
            if not conn.is_replica:
                conn.is_replica = True
                self._forget_routes(conn)
        elif not conn.is_replica:
            self._client_routes[message.client] = conn
        self._metrics["received"] += 1
        try:
            result = self._on_message(signed)
            if inspect.isawaitable(result):
                await result
        except Exception as e:  # the callback's bug must not take the connection down
            self._drop("handler_errors", conn.label, _describe(e), host=conn.host, trace=True)

    def _forget_routes(self, conn: _Connection) -> None:
        for client in [c for c, route in self._client_routes.items() if route is conn]:
            del self._client_routes[client]

    # --- bookkeeping ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _drop(
        self, metric: str, where: str, detail: str, *, host: str | None = None, trace: bool = False
    ) -> None:
        """Count ``metric`` and log it, at most once per (``host`` or ``where``, metric) per
        interval; ``trace`` logs at ERROR with the current exception's traceback."""
        self._metrics[metric] += 1
        now = time.monotonic()
        key = (host or where, metric)
        last, suppressed = self._log_state.get(key, (None, 0))
        if last is not None and now - last < self._log_interval:
            self._log_state[key] = (last, suppressed + 1)
            return
        if len(self._log_state) >= _LOG_STATE_LIMIT:
            self._log_state = {
                k: v for k, v in self._log_state.items() if now - v[0] < self._log_interval
            }
        self._log_state[key] = (now, 0)
        more = f" ({suppressed} more since the last line)" if suppressed else ""
        if trace:
            logger.error("%s: %s (%s): %s%s", self.node_id, metric, where, detail, more,
                         exc_info=True)  # fmt: skip
        else:
            logger.warning("%s: %s (%s): %s%s", self.node_id, metric, where, detail, more)


def _check_address(name: str, address: tuple[str, int]) -> None:
    ok = (
        isinstance(address, tuple)
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and 0 <= address[1] <= 65535
    )
    if not ok:
        raise TransportError(f"{name} must be (host, port) with port in 0..65535: {address!r}")


def _describe(error: BaseException) -> str:
    return _clip(f"{type(error).__name__}: {error}")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
