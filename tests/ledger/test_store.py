"""The node's SQLite store: chain guard, entry index, proofs, state rebuild, persisted replica
messages and their pruning, stable checkpoint, corruption reporting and crash durability.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.ledger.kit import (
    CHAIN,
    QUORUM,
    REPLICA_KEYS,
    REPLICAS,
    h,
    make_block,
    tx,
)

from medfabric.crypto.keys import SigningKey
from medfabric.ledger.blocks import (
    EMPTY_ROOT,
    Block,
    BlockHeader,
    Location,
    NotarizationState,
    block_entries,
    block_hash,
    encode_block,
    prove,
    verify_entry_proof,
)
from medfabric.ledger.messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    Request,
    Signed,
    ViewChange,
    batch_digest,
    frame,
    sign,
)
from medfabric.ledger.replica import StableCheckpoint
from medfabric.ledger.store import PROOF_CACHE_BLOCKS, LedgerStore, StoreError

CLIENT_KEY = SigningKey.from_bytes(b"\x41" * 32)
ROOT = Path(__file__).resolve().parents[2]


def chain(spec: list[list[list[int]]]) -> tuple[list[Block], NotarizationState]:
    """Blocks from ``spec`` (per block, per tx, entry numbers) and the reference state."""
    state = NotarizationState()
    blocks: list[Block] = []
    for txs in spec:
        previous = blocks[-1].header if blocks else None
        blocks.append(
            make_block(
                previous,
                [tx(nums, nonce=nonce) for nonce, nums in enumerate(txs)],
                state,
                advance=True,
            )
        )
    return blocks, state


SPEC = [[[1, 2]], [[2, 3], [3, 4]], [[5]]]  # duplicates: 2 in an earlier block, 3 in the same


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def store(path: Path) -> Iterator[LedgerStore]:
    s = LedgerStore.open(path, chain_id=CHAIN)
    yield s
    s.close()


def filled(store: LedgerStore) -> list[Block]:
    blocks, _ = chain(SPEC)
    for b in blocks:
        store.append_block(b)
    return blocks


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


# --- blocks -----------------------------------------------------------------------------------


def test_an_empty_store_has_nothing(store: LedgerStore) -> None:
    assert store.height() is None and store.head() is None
    assert store.block(0) is None and list(store.blocks()) == []
    assert store.locate(h(1)) is None and store.proof(h(1)) is None
    state = store.state()
    assert len(state) == 0 and state.state_root() == EMPTY_ROOT
    assert store.persisted() == [] and store.checkpoint() is None


def test_blocks_read_back_byte_identical(store: LedgerStore, path: Path) -> None:
    blocks = filled(store)
    assert store.height() == 2 and store.head() == blocks[-1].header
    for b in blocks:
        got = store.block(b.header.height)
        assert got == b and got is not None and encode_block(got) == encode_block(b)
    assert list(store.blocks()) == blocks
    assert list(store.blocks(1)) == blocks[1:]
    assert list(store.blocks(1, 2)) == blocks[1:2]
    assert list(store.blocks(5)) == [] and store.block(3) is None and store.block(-1) is None
    stored = rows(path, "SELECT height, hash, data FROM blocks ORDER BY height")
    assert stored == [(b.header.height, block_hash(b.header), encode_block(b)) for b in blocks]


def test_blocks_iterates_past_one_page(store: LedgerStore) -> None:
    blocks, _ = chain([[[n]] for n in range(150)])
    for b in blocks:
        store.append_block(b)
    assert [b.header.height for b in store.blocks()] == list(range(150))
    assert [b.header.height for b in store.blocks(60, 140)] == list(range(60, 140))


def _nothing_written(store: LedgerStore, path: Path, height: int | None) -> None:
    assert store.height() == height
    assert store.locate(h(99)) is None
    assert rows(path, f"SELECT count(*) FROM entries WHERE content_hash = x'{h(99).hex()}'") == [
        (0,)
    ]


def test_chain_checks_refuse_and_write_nothing(store: LedgerStore, path: Path) -> None:
    blocks, _ = chain(SPEC)
    stray, _ = chain([[[7]], [[99]]])
    # genesis must be height 0 and chain to the zero hash
    with pytest.raises(StoreError, match="expected height 0") as err:
        store.append_block(stray[1])
    assert err.value.height == 1
    _nothing_written(store, path, None)
    bad_genesis = Block(
        BlockHeader(0, b"\x01" * 32, EMPTY_ROOT, EMPTY_ROOT, 0, "node-0", 0), (tx([99]),), ()
    )
    with pytest.raises(StoreError, match="zero hash"):
        store.append_block(bad_genesis)
    _nothing_written(store, path, None)

    store.append_block(blocks[0])
    # a gap, a repeat, and a block chaining to another chain's genesis
    with pytest.raises(StoreError, match="height 2 does not extend the chain: expected height 1"):
        store.append_block(blocks[2])
    with pytest.raises(StoreError, match="expected height 1"):
        store.append_block(blocks[0])
    with pytest.raises(StoreError, match="does not chain to the stored block at height 0"):
        store.append_block(stray[1])
    _nothing_written(store, path, 0)
    assert rows(path, "SELECT count(*) FROM entries") == [(2,)]
    store.append_block(blocks[1])
    assert store.height() == 1


def test_duplicates_index_only_their_first_location(store: LedgerStore, path: Path) -> None:
    blocks = filled(store)
    ref = NotarizationState()
    for b in blocks:
        ref.apply(block_entries(b), b.header.height)
    expected = {
        1: Location(0, 0),
        2: Location(0, 1),
        3: Location(1, 1),  # block 1's entries are [2, 3, 3, 4]
        4: Location(1, 3),
        5: Location(2, 0),
    }
    for n, loc in expected.items():
        assert store.locate(h(n)) == loc == ref.locate(h(n))
    assert rows(path, "SELECT count(*) FROM entries") == [(5,)]


def test_proofs_from_the_store_verify(store: LedgerStore) -> None:
    blocks = filled(store)
    for n in range(1, 6):
        proof = store.proof(h(n))
        assert proof is not None
        trusted = blocks[proof.header.height].header
        assert (
            verify_entry_proof(
                proof,
                h(n),
                chain_id=CHAIN,
                replicas=REPLICAS,
                quorum=QUORUM,
                trusted_header=trusted,
            )
            == "VALID"
        )
        assert proof.position == store.locate(h(n)).position  # type: ignore[union-attr]
    assert store.proof(h(42)) is None


def test_proofs_served_from_the_block_cache_equal_fresh_ones(store: LedgerStore) -> None:
    # More blocks than the cache holds, visited twice in an order that evicts: every proof is
    # the one computed from the block alone (each leaf hashed again).
    count = PROOF_CACHE_BLOCKS + 3
    blocks, _ = chain([[[3 * b + 1, 3 * b + 2, 3 * b + 3]] for b in range(count)])
    for block in blocks:
        store.append_block(block)
    for n in [*range(1, 3 * count + 1), *range(3 * count, 0, -2)]:
        got = store.proof(h(n))
        assert got is not None
        assert got == prove(blocks[(n - 1) // 3], (n - 1) % 3)
    assert len(store._proving) == PROOF_CACHE_BLOCKS


def test_state_rebuilt_from_blocks_matches_execution(store: LedgerStore) -> None:
    blocks = filled(store)
    _, ref = chain(SPEC)
    state = store.state()
    assert state.state_root() == ref.state_root() == blocks[-1].header.state_root
    assert state.height == 2 and len(state) == len(ref) == 5


numbers = st.lists(st.integers(0, 11), min_size=1, max_size=4, unique=True)
specs = st.lists(st.lists(numbers, min_size=1, max_size=3), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_store_agrees_with_the_contract(spec: list[list[list[int]]]) -> None:
    blocks, ref = chain(spec)
    with (
        tempfile.TemporaryDirectory() as d,
        LedgerStore.open(Path(d) / "n.db", chain_id=CHAIN) as store,
    ):
        for b in blocks:
            store.append_block(b)
        for n in range(12):
            assert store.locate(h(n)) == ref.locate(h(n))
        assert store.state().state_root() == ref.state_root()


# --- opening ----------------------------------------------------------------------------------


def test_reopen_keeps_everything(path: Path) -> None:
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        blocks = filled(store)
        store.persist(MESSAGES)
        store.save_checkpoint(STABLE)
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        assert list(store.blocks()) == blocks and store.head() == blocks[-1].header
        assert store.locate(h(3)) == Location(1, 1)
        assert store.persisted() == [MESSAGES[5], VC2, MESSAGES[8]]
        assert store.checkpoint() == STABLE
        assert store.state().state_root() == blocks[-1].header.state_root
        store.append_block(chain([*SPEC, [[6]]])[0][-1])
        assert store.height() == 3
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_another_chain_is_refused(path: Path) -> None:
    LedgerStore.open(path, chain_id=CHAIN).close()
    with pytest.raises(StoreError, match="store of chain 'medfabric-test', not of 'other'"):
        LedgerStore.open(path, chain_id="other")
    with pytest.raises(StoreError, match="not of 'other'"):
        LedgerStore.open(path, chain_id="other", read_only=True)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open ledger store"):
        LedgerStore.open(junk, chain_id=CHAIN)
    other = tmp_path / "other.db"
    execute(other, "CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="something else"):
        LedgerStore.open(other, chain_id=CHAIN)
    with pytest.raises(StoreError, match="no ledger store"):
        LedgerStore.open(tmp_path / "missing.db", chain_id=CHAIN, read_only=True)


def test_a_read_only_reader_sees_the_writer_and_cannot_write(path: Path) -> None:
    with LedgerStore.open(path, chain_id=CHAIN) as writer:
        blocks = filled(writer)
        with LedgerStore.open(path, chain_id=CHAIN, read_only=True) as reader:
            assert reader.head() == blocks[-1].header
            extra = chain([*SPEC, [[6]]])[0][-1]
            writer.append_block(extra)
            assert reader.height() == 3 and reader.locate(h(6)) == Location(3, 0)
            with pytest.raises(StoreError, match="read-only"):
                reader.append_block(chain([*SPEC, [[6]], [[7]]])[0][-1])
            with pytest.raises(StoreError, match="read-only"):
                reader.persist(MESSAGES[:1])


def test_a_closed_store_refuses_calls(path: Path) -> None:
    store = LedgerStore.open(path, chain_id=CHAIN)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.height()


# --- persisted messages and the stable checkpoint ---------------------------------------------


def signed(message: Any, signer: str) -> Signed[Any]:
    key = CLIENT_KEY if signer == "clinic" else REPLICA_KEYS[signer]
    return sign(message, key, signer=signer, chain_id=CHAIN)


D = hashlib.sha256(b"batch").digest()
S = hashlib.sha256(b"state").digest()
REQUEST = signed(Request("clinic", 1, b"op"), "clinic")
CHECKPOINT_VOTES = tuple(signed(Checkpoint(4, S, r), r) for r in ("node-0", "node-1", "node-2"))
VC1 = signed(ViewChange(1, 0, (), (), "node-1"), "node-1")
VC2 = signed(ViewChange(2, 4, CHECKPOINT_VOTES, (), "node-1"), "node-1")
MESSAGES: list[Signed[Message]] = [
    signed(PrePrepare(0, 3, batch_digest((REQUEST,), 0), (REQUEST,)), "node-0"),
    signed(Prepare(0, 3, D, "node-1"), "node-1"),
    signed(Commit(0, 3, D, "node-1"), "node-1"),
    CHECKPOINT_VOTES[1],
    VC1,
    signed(Prepare(0, 5, D, "node-1"), "node-1"),
    signed(NewView(1, (VC1,), ()), "node-1"),
    VC2,
    signed(Commit(0, 5, D, "node-1"), "node-1"),
]
STABLE = StableCheckpoint(4, S, CHECKPOINT_VOTES)


def test_persisted_messages_round_trip_in_order(store: LedgerStore) -> None:
    store.persist([])
    store.persist(MESSAGES[:4])
    store.persist(MESSAGES[4:])
    got = store.persisted()
    assert got == MESSAGES
    assert [frame(s) for s in got] == [frame(s) for s in MESSAGES]


def test_a_message_of_another_chain_is_not_persisted(store: LedgerStore) -> None:
    foreign = sign(Prepare(0, 1, D, "node-1"), REPLICA_KEYS["node-1"], signer="node-1",
                   chain_id="other")  # fmt: skip
    with pytest.raises(StoreError, match="chain 'other'"):
        store.persist([MESSAGES[1], foreign])
    assert store.persisted() == []


def test_prune_drops_seq_at_or_below_stable_and_old_views(store: LedgerStore) -> None:
    store.persist(MESSAGES)
    assert store.prune_persisted(4) == 6  # seq 3 x3, the checkpoint vote at 4, VC1 and NV1
    assert store.persisted() == [MESSAGES[5], VC2, MESSAGES[8]]
    assert store.prune_persisted(4) == 0
    assert store.prune_persisted(5) == 2
    assert store.persisted() == [VC2]  # the latest view's view change stays


def test_a_new_view_of_the_latest_view_stays(store: LedgerStore) -> None:
    nv2 = signed(NewView(2, (VC2,), ()), "node-2")
    store.persist([VC1, VC2, nv2])
    store.prune_persisted(0)
    assert store.persisted() == [VC2, nv2]


def test_save_checkpoint_keeps_the_latest_and_prunes(store: LedgerStore) -> None:
    store.persist(MESSAGES)
    store.save_checkpoint(StableCheckpoint(0, S, ()))
    assert store.checkpoint() == StableCheckpoint(0, S, ())
    store.save_checkpoint(STABLE)
    assert store.checkpoint() == STABLE
    assert store.persisted() == [MESSAGES[5], VC2, MESSAGES[8]]
    store.save_checkpoint(STABLE)  # idempotent
    with pytest.raises(StoreError, match="below the stored stable checkpoint 4"):
        store.save_checkpoint(StableCheckpoint(0, S, ()))
    with pytest.raises(StoreError, match="another state digest"):
        store.save_checkpoint(StableCheckpoint(4, D, ()))
    assert store.checkpoint() == STABLE


def test_the_client_table_is_kept_with_the_checkpoint(path: Path) -> None:
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        assert store.checkpoint_clients() == {}
        store.save_checkpoint(StableCheckpoint(0, S, ()), {"clinic": (3, b"r3")})
        store.save_checkpoint(STABLE, {"clinic": (7, b"r7"), "lab": (1, b"")})
        store.save_checkpoint(STABLE)  # no table given: the saved one stays
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        assert store.checkpoint() == STABLE
        assert store.checkpoint_clients() == {"clinic": (7, b"r7"), "lab": (1, b"")}


def test_locations_up_to_a_height_are_the_state_after_that_block(store: LedgerStore) -> None:
    blocks = filled(store)
    for top in range(len(blocks)):
        state = NotarizationState()
        for b in blocks[: top + 1]:
            state.apply(block_entries(b), b.header.height)
        assert store.locations(top) == dict(state.locations())
        rebuilt = NotarizationState.from_locations(store.locations(top), top)
        assert rebuilt.state_root() == blocks[top].header.state_root
    assert store.locations(-1) == {}


def test_a_version_1_store_is_migrated(path: Path) -> None:
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        blocks = filled(store)
        store.save_checkpoint(STABLE, {"clinic": (1, b"x")})
    # As version 1 left it: no client table.
    execute(path, "DROP TABLE checkpoint_clients")
    execute(path, "PRAGMA user_version = 1")
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        assert list(store.blocks()) == blocks
        # A version-1 checkpoint has no client table: it cannot serve recovery, so it goes.
        assert store.checkpoint() is None and store.checkpoint_clients() == {}
        store.save_checkpoint(STABLE, {"clinic": (1, b"x")})
    assert rows(path, "PRAGMA user_version") == [(2,)]


# --- corruption -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE blocks SET data = x'00ff' WHERE height = 1", "corrupt"),
        ("UPDATE blocks SET data = substr(data, 1, length(data) - 3) WHERE height = 1", "corrupt"),
        ("UPDATE blocks SET hash = zeroblob(32) WHERE height = 1", "does not hash"),
        (
            "UPDATE blocks SET data = (SELECT data FROM blocks WHERE height = 2) WHERE height = 1",
            "header says height 2",
        ),
    ],
)
def test_a_corrupted_block_is_reported_with_its_height(
    store: LedgerStore, path: Path, sql: str, why: str
) -> None:
    filled(store)
    execute(path, sql)
    for read in (
        lambda: store.block(1),
        lambda: list(store.blocks()),
        store.state,
        lambda: store.proof(h(3)),
    ):
        with pytest.raises(StoreError, match=f"height 1 .*{why}") as err:
            read()
        assert err.value.height == 1
    assert store.block(0) is not None and store.head() is not None


def test_a_corrupted_index_or_state_is_reported(store: LedgerStore, path: Path) -> None:
    filled(store)
    execute(path, "UPDATE entries SET position = 0 WHERE content_hash = ?", (h(4),))
    with pytest.raises(StoreError, match=r"entry index .* corrupt") as err:
        store.proof(h(4))
    assert err.value.height == 1
    execute(path, "DELETE FROM entries WHERE content_hash = ?", (h(5),))
    with pytest.raises(StoreError, match=r"index .* holds 4 hashes"):
        store.state()


def test_corrupted_messages_and_checkpoints_are_reported(store: LedgerStore, path: Path) -> None:
    store.persist(MESSAGES[:2])
    store.save_checkpoint(STABLE)
    store.persist(MESSAGES[5:6])
    execute(path, "UPDATE persisted SET data = x'7f00'")
    with pytest.raises(StoreError, match=r"persisted message \d+ .* corrupt"):
        store.persisted()
    execute(path, "UPDATE checkpoint SET proof = substr(proof, 1, 50)")
    with pytest.raises(StoreError, match=r"checkpoint 4 .* corrupt"):
        store.checkpoint()


# --- durability -------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from medfabric.ledger.blocks import decode_block
    from medfabric.ledger.messages import decode_signed
    from medfabric.ledger.store import LedgerStore

    path, chain_id, block_file, message_file = sys.argv[1:]
    store = LedgerStore.open(Path(path), chain_id=chain_id)
    store.persist([decode_signed(Path(message_file).read_bytes())])
    store.append_block(decode_block(Path(block_file).read_bytes()))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_block_survives_sigkill_right_after_append(tmp_path: Path, path: Path) -> None:
    blocks, _ = chain(SPEC)
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        store.append_block(blocks[0])
    block_file, message_file = tmp_path / "block.bin", tmp_path / "message.bin"
    block_file.write_bytes(encode_block(blocks[1]))
    message_file.write_bytes(frame(MESSAGES[1]))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), CHAIN, str(block_file), str(message_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with LedgerStore.open(path, chain_id=CHAIN) as store:
        assert store.height() == 1 and store.block(1) == blocks[1]
        assert store.persisted() == [MESSAGES[1]]
        assert store.state().state_root() == blocks[1].header.state_root
