"""Entries, transactions, blocks, the notarization contract and entry proofs."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.ledger.kit import (
    CHAIN,
    INST_KEYS,
    INSTITUTIONS,
    QUORUM,
    REPLICA_KEYS,
    REPLICAS,
    certify,
    entry,
    h,
    make_block,
    tx,
)

from medfabric.crypto.keys import SigningKey, VerifyKey
from medfabric.crypto.merkle import leaf_hash
from medfabric.ledger.blocks import (
    EMPTY_ROOT,
    GENESIS_PREVIOUS_HASH,
    MAX_TX_ENTRIES,
    Block,
    BlockError,
    BlockHeader,
    Entry,
    EntryIndex,
    EntryProof,
    InvalidTx,
    Location,
    NotarizationState,
    NotarizeTx,
    block_entries,
    block_hash,
    decode_block,
    decode_entry,
    decode_entry_proof,
    decode_tx,
    encode_block,
    encode_entry,
    encode_entry_proof,
    encode_tx,
    entries_root,
    prove,
    sign_block,
    sign_tx,
    storage_address,
    verify_block,
    verify_entry_proof,
    verify_tx,
)
from medfabric.ledger.messages import InvalidMessage, MalformedFrame


def check(block: Block, previous: BlockHeader | None, state_root: bytes) -> None:
    verify_block(
        block,
        previous,
        chain_id=CHAIN,
        replicas=REPLICAS,
        quorum=QUORUM,
        institutions=INSTITUTIONS,
        state_root=state_root,
    )


# --- encodings --------------------------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)
part = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1)
entries_st = st.builds(
    Entry,
    hashes,
    st.builds(
        EntryIndex,
        st.builds(storage_address, part, part, part, st.text(min_size=1).filter(str.isprintable)),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=16),
        st.integers(0, 2**64 - 1),
        st.sampled_from([b"", b"\x07" * 32]),
    ),
).filter(lambda e: len(e.index.address.encode()) <= 1024)


@given(entries_st)
def test_entry_round_trip(e: Entry) -> None:
    data = encode_entry(e)
    assert decode_entry(data) == e
    assert e.leaf_hash == leaf_hash(data)


@given(st.lists(entries_st, min_size=1, max_size=5), st.integers(0, 2**64 - 1))
def test_tx_block_and_proof_round_trip(entries: list[Entry], nonce: int) -> None:
    t = sign_tx("h2", nonce, entries, INST_KEYS["h2"], chain_id=CHAIN)
    assert decode_tx(encode_tx(t)) == t
    header = BlockHeader(3, h(1), entries_root(entries), h(2), 7, "node-3", nonce)
    block = Block(header, (t,), certify(header, ["node-1", "node-3"]))
    assert decode_block(encode_block(block)) == block
    proof = prove(block, len(entries) - 1)
    assert decode_entry_proof(encode_entry_proof(proof)) == proof


def test_decoders_refuse_non_canonical_bytes() -> None:
    data = encode_tx(tx([1, 2]))
    with pytest.raises(MalformedFrame):
        decode_tx(data + b"\x00")
    with pytest.raises(MalformedFrame):
        decode_tx(data[:-1])
    with pytest.raises(MalformedFrame):
        decode_entry(b"\x22" + encode_entry(entry(1))[1:])
    bad_hash = encode_entry(entry(1)).replace(b"\x00\x00\x00\x20" + h(1), b"\x00\x00\x00\x01\x00")
    with pytest.raises(InvalidMessage):
        decode_entry(bad_hash)


@pytest.mark.parametrize(
    ("address", "data_type", "timestamp", "patient"),
    [
        ("h1/HIS/visits", "visit", 0, b""),  # three parts
        ("h1//visits/k", "visit", 0, b""),  # empty part
        ("h1/HIS/visits/k", "", 0, b""),
        ("h1/HIS/visits/k", "visit", -1, b""),
        ("h1/HIS/visits/k", "visit", 0, b"\x01" * 16),  # not a 32-byte keyed hash
        ("h" * 1025 + "/a/b/c", "visit", 0, b""),
    ],
)
def test_entry_index_refuses_bad_fields(
    address: str, data_type: str, timestamp: int, patient: bytes
) -> None:
    with pytest.raises(InvalidMessage):
        EntryIndex(address, data_type, timestamp, patient)


def test_storage_address_splits_back() -> None:
    assert storage_address("h1", "LIS", "results", "a/b") == "h1/LIS/results/a/b"
    with pytest.raises(InvalidMessage):
        storage_address("h/1", "LIS", "results", "a")


# --- transactions -----------------------------------------------------------------------------


def reason(t: NotarizeTx, registry: dict[str, VerifyKey] = INSTITUTIONS) -> str:
    with pytest.raises(InvalidTx) as info:
        verify_tx(t, registry, chain_id=CHAIN)
    return info.value.reason


def test_tx_signature_checks() -> None:
    good = tx([1, 2, 3])
    verify_tx(good, INSTITUTIONS, chain_id=CHAIN)
    other_key = sign_tx("h1", 0, good.entries, INST_KEYS["h2"], chain_id=CHAIN)
    assert reason(other_key) == "bad_signature"
    flipped = bytearray(good.signature)
    flipped[5] ^= 0x01
    assert reason(replace(good, signature=bytes(flipped))) == "bad_signature"
    assert reason(replace(good, nonce=1)) == "bad_signature"  # the body is signed
    assert reason(replace(good, entries=good.entries[:2])) == "bad_signature"
    with pytest.raises(InvalidTx, match="bad_signature"):
        verify_tx(good, INSTITUTIONS, chain_id="another-chain")
    assert reason(good, {"h2": INSTITUTIONS["h2"]}) == "unknown_institution"
    assert reason(replace(good, institution="x" * 65)) == "unknown_institution"


def test_tx_batch_checks() -> None:
    assert reason(tx([])) == "empty"
    assert reason(tx([1, 2, 1])) == "duplicate_entry"
    big = NotarizeTx("h1", 0, tuple(entry(n) for n in range(MAX_TX_ENTRIES + 1)), b"")
    assert reason(big) == "oversized"


def test_tx_signature_is_not_a_block_signature() -> None:
    t = tx([1])
    header = BlockHeader(0, GENESIS_PREVIOUS_HASH, EMPTY_ROOT, EMPTY_ROOT, 0, "node-0", 0)
    sig = sign_block(header, REPLICA_KEYS["node-0"], replica="node-0", chain_id=CHAIN)
    assert sig.signature != t.signature
    assert reason(replace(t, signature=sig.signature)) == "bad_signature"


# --- blocks -----------------------------------------------------------------------------------


def build_chain(length: int) -> tuple[list[Block], NotarizationState]:
    state = NotarizationState()
    blocks: list[Block] = []
    previous: BlockHeader | None = None
    for height in range(length):
        txs = [tx([10 * height + i for i in range(3)], "h1", height)]
        if height % 2:
            txs.append(tx([10 * height + 5, 10 * height - 10], "h2", height))  # one duplicate
        block = make_block(previous, txs, state)
        state.apply(block_entries(block), height)
        blocks.append(block)
        previous = block.header
    return blocks, state


def test_chain_verifies_and_executes() -> None:
    blocks, built = build_chain(5)
    state = NotarizationState()
    previous: BlockHeader | None = None
    for block in blocks:
        result = state.apply(block_entries(block), block.header.height)
        check(block, previous, state.state_root())
        previous = block.header
        if block.header.height % 2:
            assert result.duplicates == (4,)
    assert state.locate(h(31)) == Location(3, 1)
    assert state.locate(h(10)) == Location(1, 0)  # re-notarized at height 3: the first stays
    assert state.state_root() == built.state_root()


def block_reason(block: Block, previous: BlockHeader | None, state_root: bytes) -> str:
    with pytest.raises(BlockError) as info:
        check(block, previous, state_root)
    return info.value.reason


def resign(block: Block, header: BlockHeader) -> Block:
    return replace(
        block, header=header, certificate=certify(header, ["node-0", "node-1", "node-2"])
    )


def test_broken_blocks_are_rejected() -> None:
    blocks, _ = build_chain(3)
    genesis, b1, b2 = blocks
    root = b2.header.state_root
    check(b2, b1.header, root)
    assert block_reason(b2, genesis.header, root) == "height"
    wrong_prev = resign(b2, replace(b2.header, previous_hash=block_hash(genesis.header)))
    assert block_reason(wrong_prev, b1.header, root) == "previous hash"
    wrong_root = resign(b2, replace(b2.header, entries_root=h(99)))
    assert block_reason(wrong_root, b1.header, root) == "entries root"
    dropped_tx = replace(b2, txs=b2.txs[:0])
    assert block_reason(dropped_tx, b1.header, root) == "entries root"
    assert block_reason(b2, b1.header, h(98)) == "state root"
    assert block_reason(resign(b2, replace(b2.header, time=0)), b1.header, root) == "time"
    assert block_reason(resign(b2, replace(b2.header, proposer="x")), b1.header, root) == "proposer"
    forged_tx = replace(b2, txs=(replace(b2.txs[0], nonce=77),))
    assert block_reason(forged_tx, b1.header, root) == "bad transaction"
    assert block_reason(replace(genesis, header=b1.header), None, root) == "height"


def test_certificates_are_checked() -> None:
    blocks, _ = build_chain(2)
    genesis, b1 = blocks
    root = b1.header.state_root
    sigs = b1.certificate
    too_few = replace(b1, certificate=sigs[:2])
    assert block_reason(too_few, genesis.header, root) == "bad certificate"
    duplicate = replace(b1, certificate=(sigs[0], sigs[0], sigs[1]))
    assert block_reason(duplicate, genesis.header, root) == "bad certificate"
    unsorted = replace(b1, certificate=(sigs[1], sigs[0], sigs[2]))
    assert block_reason(unsorted, genesis.header, root) == "bad certificate"
    bad = replace(sigs[2], signature=bytes(64))
    assert block_reason(replace(b1, certificate=(*sigs[:2], bad)), genesis.header, root) == (
        "bad certificate"
    )
    stranger = SigningKey.from_bytes(b"\x99" * 32)
    intruder = sign_block(b1.header, stranger, replica="node-9", chain_id=CHAIN)
    assert block_reason(replace(b1, certificate=(*sigs[:2], intruder)), genesis.header, root) == (
        "bad certificate"
    )
    # A signature over the previous block's header does not carry over.
    old = sign_block(genesis.header, REPLICA_KEYS["node-2"], replica="node-2", chain_id=CHAIN)
    assert block_reason(replace(b1, certificate=(*sigs[:2], old)), genesis.header, root) == (
        "bad certificate"
    )
    four = replace(b1, certificate=certify(b1.header, list(REPLICAS)))
    check(four, genesis.header, root)


# --- notarization state -----------------------------------------------------------------------


def test_notarization_mapping_and_duplicates() -> None:
    state = NotarizationState()
    assert state.state_root() == EMPTY_ROOT
    result = state.apply([entry(1), entry(2), entry(1)], 0)
    assert result.notarized == (h(1), h(2))
    assert result.duplicates == (2,)
    root = state.state_root()
    again = state.apply([entry(2)], 1)
    assert again == type(again)((), (0,))
    assert state.state_root() == root  # a duplicate changes nothing
    assert state.locate(h(2)) == Location(0, 1)
    assert state.locate(h(3)) is None
    assert len(state) == 2
    with pytest.raises(Exception, match="does not follow"):
        state.apply([entry(3)], 1)


def test_state_root_depends_only_on_the_mapping() -> None:
    items = [(entry(n), n % 5, n) for n in range(40)]
    roots = set()
    for seed in range(5):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        state = NotarizationState()
        # One block per item, applied in height order; the dict fills in a different order.
        by_height: dict[int, list[tuple[int, Entry]]] = {}
        for e, height, position in shuffled:
            by_height.setdefault(height, []).append((position, e))
        for height in sorted(by_height):
            positions = dict(by_height[height])
            block = [positions.get(p, entry(1000 + p)) for p in range(max(positions) + 1)]
            state.apply(block, height)
        roots.add(state.state_root())
    assert len(roots) == 1
    other = NotarizationState()
    other.apply([entry(1)], 0)
    assert other.state_root() not in roots


def test_preview_root_leaves_state_unchanged() -> None:
    state = NotarizationState()
    state.apply([entry(1)], 0)
    root = state.state_root()
    preview = state.preview_root([entry(2)], 1)
    assert state.state_root() == root and state.locate(h(2)) is None
    state.apply([entry(2)], 1)
    assert state.state_root() == preview


# --- entry proofs -----------------------------------------------------------------------------


def verify(
    proof: EntryProof, content_hash: bytes, trusted_header: BlockHeader | None = None
) -> str:
    return verify_entry_proof(
        proof,
        content_hash,
        chain_id=CHAIN,
        replicas=REPLICAS,
        quorum=QUORUM,
        trusted_header=trusted_header,
    )


def test_every_entry_proof_verifies() -> None:
    blocks, _ = build_chain(4)
    for block in blocks:
        for position, e in enumerate(block_entries(block)):
            proof = prove(block, position)
            assert verify(proof, e.content_hash, trusted_header=block.header) == "VALID"
    with pytest.raises(IndexError):
        prove(blocks[0], 3)


def test_tampering_names_what_failed() -> None:
    blocks, _ = build_chain(4)
    block = blocks[3]
    proof = prove(block, 2)
    content_hash = proof.entry.content_hash
    assert verify(proof, h(12345)) == "hash mismatch"  # the record's bytes changed
    other_index = replace(proof.entry.index, timestamp=0)
    assert verify(replace(proof, entry=replace(proof.entry, index=other_index)), content_hash) == (
        "not in block"
    )
    assert verify(replace(proof, position=1), content_hash) == "not in block"
    assert verify(replace(proof, path=proof.path[:-1]), content_hash) == "not in block"
    # A header made up around the entry: its root holds the entry but nobody signed it.
    fake = replace(block.header, entries_root=entries_root([proof.entry]))
    forged = replace(proof, header=fake, position=0, entry_count=1, path=())
    assert verify(forged, content_hash) == "bad certificate"
    assert verify(replace(proof, certificate=proof.certificate[:2]), content_hash) == (
        "bad certificate"
    )
    dup = (proof.certificate[0],) * 3
    assert verify(replace(proof, certificate=dup), content_hash) == "bad certificate"
    assert verify(proof, content_hash, trusted_header=blocks[2].header) == "untrusted header"
    assert verify(proof, content_hash) == "VALID"
