"""The ledger node's TCP edge on loopback: delivery in order per sender, broadcast, reconnection
with back-off, every kind of bad input counted and dropped while good peers keep being served,
isolation from silent, half-framed and non-reading peers, client reply routing, and a clean stop.

Every test runs its own event loop (``asyncio.run``) under a deadline, listens on port 0, and
fails if the loop saw an unhandled exception in any task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tests.ledger.kit import KEYS, MESSAGE_CHAIN, OUTSIDER, REPLICA_KEYS, membership

from medfabric.ledger.messages import (
    REASONS,
    Commit,
    FrameReader,
    Message,
    Prepare,
    Reply,
    Request,
    Signed,
    encode_frame,
    frame,
    open_frame,
    sign,
)
from medfabric.ledger.transport import METRICS, Transport, TransportError

CHAIN = MESSAGE_CHAIN
MEMBERS = membership(CHAIN)
REPLICAS = sorted(REPLICA_KEYS)
DIGEST = b"\x11" * 32
LOCAL = ("127.0.0.1", 0)
# Short back-off and timeouts keep the file fast; the defaults are for real networks.
FAST: dict[str, Any] = {"backoff_min": 0.01, "backoff_max": 0.05, "write_timeout": 5.0}


def commit(sender: str, seq: int, *, view: int = 0) -> Signed[Message]:
    return sign(Commit(view, seq, DIGEST, sender), KEYS[sender], signer=sender, chain_id=CHAIN)


def wire(signed: Signed[Any]) -> bytes:
    return encode_frame(frame(signed))


def run(test: Callable[[], Coroutine[Any, Any, None]], deadline: float = 10.0) -> None:
    """Run ``test`` on a fresh loop; fail on a timeout or on any unhandled task exception."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        async with asyncio.timeout(deadline):
            await test()

    asyncio.run(main())
    assert errors == []


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (for counters, which have no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


class Inbox:
    """An ``on_message`` callback that records what arrives and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[Signed[Message]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, signed: Signed[Message]) -> None:
        async with self._changed:
            self.items.append(signed)
            self._changed.notify_all()

    async def wait_for(self, check: Callable[[list[Signed[Message]]], bool]) -> None:
        async with asyncio.timeout(5.0), self._changed:
            await self._changed.wait_for(lambda: check(self.items))

    async def wait_count(self, n: int) -> None:
        await self.wait_for(lambda items: len(items) >= n)

    def seqs_from(self, sender: str) -> list[int]:
        return [s.message.seq for s in self.items if s.signer == sender]  # type: ignore[union-attr]


def transport(node: str, on_message: Any = None, **kw: Any) -> Transport:
    settings = {**FAST, "peers": {}, "listen": LOCAL, **kw}
    return Transport(node, MEMBERS, chain_id=CHAIN, on_message=on_message or Inbox(), **settings)


@asynccontextmanager
async def cluster(**kw: Any) -> AsyncIterator[tuple[dict[str, Transport], dict[str, Inbox]]]:
    """Four started replicas, each knowing every other's bound address."""
    inboxes = {r: Inbox() for r in REPLICAS}
    nodes = {r: transport(r, inboxes[r], **kw) for r in REPLICAS}
    try:
        for node in nodes.values():
            await node.start()
        for r, node in nodes.items():
            for other in REPLICAS:
                if other != r:
                    node.set_peer(other, nodes[other].address)
        yield nodes, inboxes
    finally:
        for node in nodes.values():
            await node.stop()


@asynccontextmanager
async def raw(address: tuple[str, int]) -> AsyncIterator[tuple[Any, asyncio.StreamWriter]]:
    """A bare TCP connection, for bytes no Transport would send."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


# --- delivery ---------------------------------------------------------------------------------


def test_four_replicas_each_receive_exactly_what_was_sent_to_them_in_order() -> None:
    count = 25

    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            for seq in range(1, count + 1):
                for sender in REPLICAS:
                    for to in REPLICAS:
                        if to != sender:
                            nodes[sender].send(to, commit(sender, seq * 10 + int(to[-1])))
            for r in REPLICAS:
                await inboxes[r].wait_count(3 * count)
            await asyncio.sleep(0.05)  # nothing extra may trickle in
            for r in REPLICAS:
                assert len(inboxes[r].items) == 3 * count
                for sender in REPLICAS:
                    sent = [s * 10 + int(r[-1]) for s in range(1, count + 1)]
                    expected = [] if sender == r else sent
                    assert inboxes[r].seqs_from(sender) == expected
            for sender in REPLICAS:
                assert nodes[sender].metrics["sent"] == 3 * count
            assert all(n.metrics[k] == 0 for n in nodes.values() for k in REASONS)

    run(go)


def test_broadcast_reaches_every_other_replica_and_not_the_sender() -> None:
    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            message = commit("node-2", 7)
            nodes["node-2"].send(None, message)
            for r in REPLICAS:
                if r != "node-2":
                    await inboxes[r].wait_count(1)
                    assert inboxes[r].items == [message]
            assert inboxes["node-2"].items == []

    run(go)


def test_a_peer_that_is_down_at_first_is_reached_once_it_starts() -> None:
    async def go() -> None:
        # Learn a free port, then free it: the peer is "down" until a new transport binds it.
        placeholder = transport("node-1")
        await placeholder.start()
        port = placeholder.address[1]
        await placeholder.stop()

        sender = transport("node-0", peers={"node-1": ("127.0.0.1", port)})
        await sender.start()
        try:
            for seq in (1, 2, 3):
                sender.send("node-1", commit("node-0", seq))
            await eventually(lambda: sender.metrics["connection_errors"] >= 3)  # backing off
            inbox = Inbox()
            late = transport("node-1", inbox, listen=("127.0.0.1", port))
            await late.start()
            try:
                await inbox.wait_count(3)
                assert inbox.seqs_from("node-0") == [1, 2, 3]
            finally:
                await late.stop()
        finally:
            await sender.stop()

    run(go)


def test_a_full_peer_queue_drops_the_oldest_messages() -> None:
    async def go() -> None:
        inbox = Inbox()
        receiver = transport("node-1", inbox)
        await receiver.start()
        sender = transport("node-0", peers={"node-1": receiver.address}, max_queue=3)
        try:
            for seq in range(1, 6):  # queued before start: nothing is written yet
                sender.send("node-1", commit("node-0", seq))
            assert sender.metrics["queue_full"] == 2
            await sender.start()
            await inbox.wait_count(3)
            await asyncio.sleep(0.05)
            assert inbox.seqs_from("node-0") == [3, 4, 5]
        finally:
            await sender.stop()
            await receiver.stop()

    run(go)


def test_undeliverable_sends_are_counted_not_raised() -> None:
    async def go() -> None:
        node = transport("node-0", max_frame=200)
        await node.start()
        try:
            node.send("clinic-a", commit("node-0", 1))  # no connection from that client
            node.send("node-3", commit("node-0", 1))  # no address for that replica
            big = sign(Request("clinic-a", 1, b"x" * 500), KEYS["clinic-a"], signer="clinic-a",
                       chain_id=CHAIN)  # fmt: skip
            node.send(None, big)
            assert node.metrics["no_route"] == 2
            assert node.metrics["send_oversized"] == 1
            other = sign(Commit(0, 1, DIGEST, "node-0"), KEYS["node-0"], signer="node-0",
                         chain_id="other-chain")  # fmt: skip
            with pytest.raises(TransportError, match="other-chain"):
                node.send(None, other)
        finally:
            await node.stop()

    run(go)


# --- bad input --------------------------------------------------------------------------------


def _bad_frames() -> dict[str, bytes]:
    intruder = sign(Commit(0, 1, DIGEST, "intruder"), OUTSIDER, signer="intruder", chain_id=CHAIN)
    forged = sign(Commit(0, 1, DIGEST, "node-1"), OUTSIDER, signer="node-1", chain_id=CHAIN)
    foreign = sign(Commit(0, 1, DIGEST, "node-1"), KEYS["node-1"], signer="node-1",
                   chain_id="other-chain")  # fmt: skip
    from_primary = sign(Prepare(0, 1, DIGEST, "node-0"), KEYS["node-0"], signer="node-0",
                        chain_id=CHAIN)  # fmt: skip
    return {
        "malformed": encode_frame(b"\x04garbage that is no message"),
        "unknown_sender": wire(intruder),
        "bad_signature": wire(forged),
        "wrong_chain": wire(foreign),
        "invalid": wire(from_primary),
    }


@pytest.mark.parametrize("reason", ["malformed", "unknown_sender", "bad_signature",
                                    "wrong_chain", "invalid"])  # fmt: skip
def test_a_bad_frame_is_counted_logged_once_and_the_connection_keeps_serving(
    reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _bad_frames()[reason]

    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            target = nodes["node-0"]
            async with raw(target.address) as (_, writer):
                writer.write(bad + bad + wire(commit("node-3", 99)))
                await writer.drain()
                await inboxes["node-0"].wait_count(1)  # the good frame after the bad ones
                assert inboxes["node-0"].seqs_from("node-3") == [99]
            assert target.metrics[reason] == 2
            assert sum(target.metrics[k] for k in REASONS) == 2
            nodes["node-1"].send("node-0", commit("node-1", 5))  # the listener still serves
            await inboxes["node-0"].wait_for(lambda items: len(items) == 2)
            assert inboxes["node-0"].items[-1] == commit("node-1", 5)

    with caplog.at_level(logging.WARNING, logger="medfabric.ledger.transport"):
        run(go)
    lines = [r for r in caplog.records if reason in r.getMessage()]
    assert len(lines) == 1  # rate limited: two drops, one line
    assert lines[0].levelno == logging.WARNING
    assert not lines[0].exc_info


@pytest.mark.parametrize(
    "garbage",
    [
        (2**31).to_bytes(4, "big") + b"\x00" * 16,  # a declared length far above max_frame
        b"GET / HTTP/1.1\r\nHost: node-0\r\n\r\n",  # a stray client: "GET " is 1.2 GB
    ],
    ids=["length-prefix", "http"],
)
def test_an_oversized_length_prefix_closes_only_that_connection(garbage: bytes) -> None:
    async def go() -> None:
        async with cluster(max_frame=1 << 20) as (nodes, inboxes):
            target = nodes["node-0"]
            async with raw(target.address) as (reader, writer):
                writer.write(garbage)
                await writer.drain()
                async with asyncio.timeout(5.0):
                    assert await reader.read() == b""  # closed by the transport
            assert target.metrics["oversized"] == 1
            nodes["node-2"].send("node-0", commit("node-2", 1))
            await inboxes["node-0"].wait_count(1)
            assert inboxes["node-0"].seqs_from("node-2") == [1]

    run(go)


def test_a_failing_on_message_is_counted_and_the_connection_kept() -> None:
    async def go() -> None:
        seen: list[int] = []

        def fragile(signed: Signed[Message]) -> None:
            seen.append(signed.message.seq)  # type: ignore[union-attr]
            if len(seen) == 1:
                raise RuntimeError("handler bug")

        node = transport("node-0", fragile)
        await node.start()
        try:
            async with raw(node.address) as (_, writer):
                writer.write(wire(commit("node-1", 1)) + wire(commit("node-1", 2)))
                await writer.drain()
                await eventually(lambda: len(seen) == 2)
            assert node.metrics["handler_errors"] == 1
            assert node.metrics["received"] == 2
        finally:
            await node.stop()

    run(go)


# --- isolation --------------------------------------------------------------------------------


def test_silent_and_half_framed_connections_do_not_stall_other_peers() -> None:
    async def go() -> None:
        async with cluster(frame_timeout=0.3) as (nodes, inboxes):
            target = nodes["node-0"]
            async with (
                raw(target.address) as (silent_reader, _),
                raw(target.address) as (
                    half_reader,
                    half_writer,
                ),
            ):
                half_writer.write(wire(commit("node-3", 1))[:20])  # header and part of the body
                await half_writer.drain()
                for seq in range(1, 11):
                    nodes["node-1"].send("node-0", commit("node-1", seq))
                await inboxes["node-0"].wait_count(10)
                assert inboxes["node-0"].seqs_from("node-1") == list(range(1, 11))
                # The half frame times out and its connection closes; the idle one stays open.
                async with asyncio.timeout(5.0):
                    assert await half_reader.read() == b""
                assert target.metrics["frame_timeout"] == 1
                assert not silent_reader.at_eof()

    run(go)


def test_a_peer_that_never_reads_does_not_stall_sending_to_others() -> None:
    async def go() -> None:
        stuck: list[asyncio.StreamWriter] = []

        def accept_and_ignore(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stuck.append(writer)  # never read: the sender's socket buffers fill up

        sink = await asyncio.start_server(accept_and_ignore, *LOCAL)
        try:
            async with cluster(max_queue=8) as (nodes, inboxes):
                sender = nodes["node-1"]
                sender.set_peer("node-3", sink.sockets[0].getsockname()[:2])
                heavy = sign(Request("clinic-a", 1, b"x" * (1 << 20)), KEYS["clinic-a"],
                             signer="clinic-a", chain_id=CHAIN)  # fmt: skip
                for _ in range(40):  # 40 MiB: far more than loopback buffers take
                    sender.send("node-3", heavy)
                    await asyncio.sleep(0)
                await eventually(lambda: sender.metrics["queue_full"] > 0)
                sender.send("node-0", commit("node-1", 1))
                sender.send("node-2", commit("node-1", 2))
                await inboxes["node-0"].wait_count(1)
                await inboxes["node-2"].wait_count(1)
        finally:
            for writer in stuck:
                writer.close()
            sink.close()
            await sink.wait_closed()

    run(go)


def test_connections_above_the_limit_are_closed_on_accept() -> None:
    async def go() -> None:
        inbox = Inbox()
        node = transport("node-0", inbox, max_connections=1)
        await node.start()
        try:
            async with raw(node.address) as (_, first), raw(node.address) as (second, _):
                async with asyncio.timeout(5.0):
                    assert await second.read() == b""
                assert node.metrics["connections_refused"] == 1
                first.write(wire(commit("node-1", 1)))
                await inbox.wait_count(1)
        finally:
            await node.stop()

    run(go)


# --- clients ----------------------------------------------------------------------------------


def test_a_reply_goes_back_on_the_connection_the_client_sent_from() -> None:
    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            primary = nodes["node-0"]
            request = sign(Request("clinic-a", 1, b"notarize"), KEYS["clinic-a"],
                           signer="clinic-a", chain_id=CHAIN)  # fmt: skip
            async with raw(primary.address) as (reader, writer):
                writer.write(wire(request))
                await writer.drain()
                await inboxes["node-0"].wait_count(1)
                # A backup relays the same request after a replica message: that connection is
                # a replica's and must not take the client's route.
                nodes["node-1"].send("node-0", commit("node-1", 1))
                nodes["node-1"].send("node-0", request)
                await inboxes["node-0"].wait_count(3)
                assert inboxes["node-0"].items == [request, commit("node-1", 1), request]

                reply = sign(Reply(0, 1, "clinic-a", "node-0", b"ok"), KEYS["node-0"],
                             signer="node-0", chain_id=CHAIN)  # fmt: skip
                primary.send("clinic-a", reply)
                frames = FrameReader(max_size=1 << 20)
                received: list[bytes] = []
                async with asyncio.timeout(5.0):
                    while not received:
                        received += frames.feed(await reader.read(4096))
                assert [open_frame(b, MEMBERS, max_size=1 << 20) for b in received] == [reply]
            await eventually(lambda: primary.metrics["sent"] == 1)
            # The client's connection is gone: its route with it.
            await eventually(lambda: "clinic-a" not in primary._client_routes)
            primary.send("clinic-a", reply)
            assert primary.metrics["no_route"] == 1

    run(go)


# --- lifecycle and configuration --------------------------------------------------------------


def test_stop_closes_everything_and_leaves_no_task_running() -> None:
    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            request = sign(Request("clinic-a", 1, b"op"), KEYS["clinic-a"], signer="clinic-a",
                           chain_id=CHAIN)  # fmt: skip
            _, idle = await asyncio.open_connection(*nodes["node-0"].address)
            _, client = await asyncio.open_connection(*nodes["node-0"].address)
            client.write(wire(request))
            nodes["node-3"].send(None, commit("node-3", 1))
            for r in ("node-0", "node-1", "node-2"):
                await inboxes[r].wait_count(1 + (r == "node-0"))
            nodes["node-0"].send("clinic-a", sign(Reply(0, 1, "clinic-a", "node-0", b""),
                                 KEYS["node-0"], signer="node-0", chain_id=CHAIN))  # fmt: skip
            address = nodes["node-0"].address
        assert asyncio.all_tasks() == {asyncio.current_task()}
        for writer in (idle, client):
            writer.close()
            await writer.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection(*address)
        assert set(nodes["node-0"].metrics) == set(METRICS)
        await nodes["node-0"].stop()  # idempotent

    run(go)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"node_id": "clinic-a"}, "node_id"),
        ({"chain_id": "other-chain"}, "chain_id"),
        ({"max_frame": 0}, "max_frame"),
        ({"max_queue": 0}, "max_queue"),
        ({"backoff_min": 1.0, "backoff_max": 0.5}, "backoff_min"),
        ({"frame_timeout": 0}, "frame_timeout"),
        ({"listen": ("127.0.0.1", 70000)}, "listen"),
        ({"peers": {"node-0": ("127.0.0.1", 1)}}, "node-0"),
        ({"peers": {"clinic-a": ("127.0.0.1", 1)}}, "clinic-a"),
    ],
)
def test_bad_settings_are_refused_at_construction(setting: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"node_id": "node-0", "chain_id": CHAIN, "listen": LOCAL,
                                "peers": {}, **setting}  # fmt: skip
    node_id = settings.pop("node_id")
    with pytest.raises(TransportError, match=message):
        Transport(node_id, MEMBERS, on_message=lambda _: None, **settings)


def test_no_exception_escapes_for_any_bad_input_in_one_stream() -> None:
    """All the bad frames back to back on one connection, then a good one: only counters move."""

    async def go() -> None:
        async with cluster() as (nodes, inboxes):
            target = nodes["node-0"]
            async with raw(target.address) as (_, writer):
                writer.write(b"".join(_bad_frames().values()) + wire(commit("node-2", 3)))
                await writer.drain()
                await inboxes["node-0"].wait_count(1)
            assert {k: target.metrics[k] for k in REASONS} == {
                **dict.fromkeys(REASONS, 1),
                "oversized": 0,
            }

    run(go)
