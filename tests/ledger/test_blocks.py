"""Entries, transactions, blocks, the notarization contract and entry proofs."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, cast

import pytest
from hypothesis import given, settings
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
from medfabric.crypto.merkle import leaf_hash, root_from_leaf_hashes
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
    ProofVerifier,
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
from medfabric.ledger.messages import InvalidMessage, LedgerError, MalformedFrame


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
    decoded = decode_entry(data)
    assert decoded == e
    assert e.leaf_hash == leaf_hash(data)
    # A decoded entry keeps the bytes it was read from as its encoding: they are exactly what
    # encoding its fields afresh gives (so the cache never changes an encoding or a hash).
    fresh = Entry(decoded.content_hash, decoded.index)
    assert decoded.encoding == fresh.encoding == data
    assert decoded.leaf_hash == fresh.leaf_hash
    # The cache is not part of the value, and a changed copy computes its own.
    changed = bytes(32) if decoded.content_hash != bytes(32) else b"\x01" * 32
    other = replace(decoded, content_hash=changed)
    assert other != decoded and other.encoding != data
    assert decode_entry(other.encoding) == other


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


def _state_leaf_hash(content_hash: bytes, loc: Location) -> bytes:
    # The definition, spelled out independently of blocks.py.
    data = b"\x27" + content_hash + loc.height.to_bytes(8, "big") + loc.position.to_bytes(8, "big")
    return leaf_hash(data)


def _defined_root(locations: dict[bytes, Location]) -> bytes:
    """The state root by its definition: leaves in (height, position) order, from scratch."""
    ordered = sorted(locations.items(), key=lambda item: (item[1], item[0]))
    return root_from_leaf_hashes([_state_leaf_hash(ch, loc) for ch, loc in ordered])


def test_state_root_is_the_root_over_leaves_in_notarization_order() -> None:
    state = NotarizationState()
    state.apply([entry(5), entry(1), entry(5)], 0)
    state.apply([], 1)
    state.apply([entry(1), entry(3), entry(2)], 2)
    expected = [
        _state_leaf_hash(h(5), Location(0, 0)),
        _state_leaf_hash(h(1), Location(0, 1)),
        _state_leaf_hash(h(3), Location(2, 1)),
        _state_leaf_hash(h(2), Location(2, 2)),
    ]
    assert state.state_root() == root_from_leaf_hashes(expected)
    # Pinned: the format of the root (a change to the definition must change this on purpose).
    assert state.state_root().hex() == PINNED_STATE_ROOT
    one = NotarizationState()
    one.apply([entry(7)], 4)
    assert one.state_root() == _state_leaf_hash(h(7), Location(4, 0))


PINNED_STATE_ROOT = "abe24e694f4a7c83cd418bffadbe4906892f255b65b7ecce774a11d48f0d5be0"


blocks_st = st.lists(
    st.lists(st.integers(0, 40), max_size=12),  # one block's entries, by number (repeats allowed)
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(blocks_spec=blocks_st, gaps=st.lists(st.integers(1, 3), min_size=12, max_size=12))
def test_incremental_state_root_matches_the_definition_and_snapshots(
    blocks_spec: list[list[int]], gaps: list[int]
) -> None:
    state = NotarizationState()
    height = -1
    for numbers, gap in zip(blocks_spec, gaps, strict=False):
        height += gap
        block = [entry(n) for n in numbers]
        before = (state.state_root(), len(state))
        preview = state.preview_root(block, height)
        assert (state.state_root(), len(state)) == before  # the preview changed nothing
        state.apply(block, height)
        assert state.state_root() == preview == _defined_root(dict(state.locations()))
        # A snapshot rebuilt from the mapping, in any order, gives the same root.
        items = list(state.locations().items())
        random.Random(height).shuffle(items)
        rebuilt = NotarizationState.from_locations(dict(items), state.height)
        assert rebuilt.state_root() == state.state_root() and len(rebuilt) == len(state)
    if state.height is None:
        assert state.state_root() == EMPTY_ROOT
    else:
        # A rebuilt state goes on exactly like the original.
        rebuilt = NotarizationState.from_locations(state.locations(), state.height)
        nxt = [entry(n) for n in range(35, 45)]
        assert rebuilt.preview_root(nxt, state.height + 1) == state.preview_root(
            nxt, state.height + 1
        )
        rebuilt.apply(nxt, state.height + 1)
        state.apply(nxt, state.height + 1)
        assert rebuilt.state_root() == state.state_root()


def test_from_locations_checks_and_rebuilds_in_location_order() -> None:
    locations = {h(1): Location(2, 0), h(2): Location(0, 3), h(3): Location(0, 1)}
    state = NotarizationState.from_locations(locations, 2)
    assert state.state_root() == root_from_leaf_hashes(
        [
            _state_leaf_hash(h(3), Location(0, 1)),
            _state_leaf_hash(h(2), Location(0, 3)),
            _state_leaf_hash(h(1), Location(2, 0)),
        ]
    )
    assert NotarizationState.from_locations({}, None).state_root() == EMPTY_ROOT
    with pytest.raises(LedgerError):
        NotarizationState.from_locations(locations, 1)  # a location above the height
    with pytest.raises(LedgerError):
        NotarizationState.from_locations({b"short": Location(0, 0)}, 0)
    with pytest.raises(LedgerError):
        NotarizationState.from_locations({h(1): Location(0, 2**64)}, 0)
    with pytest.raises(LedgerError):
        state.apply([entry(9)], 2)


def test_preview_root_refuses_what_apply_refuses() -> None:
    state = NotarizationState()
    state.apply([entry(1)], 3)
    with pytest.raises(LedgerError, match="does not follow"):
        state.preview_root([entry(2)], 3)
    # Duplicates only: the root stays; duplicates inside the previewed block count once.
    assert state.preview_root([entry(1)], 4) == state.state_root()
    twice = state.preview_root([entry(2), entry(2), entry(1)], 4)
    state.apply([entry(2), entry(2), entry(1)], 4)
    assert twice == state.state_root()


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


# --- the proof verifier's signature cache -----------------------------------------------------


class CountingKey:
    """A replica's verify key that counts the Ed25519 verifications asked of it."""

    calls = 0

    def __init__(self, key: VerifyKey) -> None:
        self.key = key

    def verify(self, message: bytes, signature: bytes) -> bool:
        CountingKey.calls += 1
        return self.key.verify(message, signature)


def _verifier(max_cached: int = 64) -> ProofVerifier:
    CountingKey.calls = 0
    counting = {rid: CountingKey(k) for rid, k in REPLICAS.items()}
    return ProofVerifier(
        chain_id=CHAIN, replicas=cast(Any, counting), quorum=QUORUM, max_cached=max_cached
    )


def test_proof_verifier_verifies_each_signature_once() -> None:
    blocks, _ = build_chain(4)
    verifier = _verifier()
    for block in blocks:
        for position, e in enumerate(block_entries(block)):
            proof = prove(block, position)
            assert verifier.verify(proof, e.content_hash, trusted_header=block.header) == "VALID"
            # Decoded copies (new objects, same bytes) hit the cache as well.
            again = decode_entry_proof(encode_entry_proof(proof))
            assert verifier.verify(again, e.content_hash) == "VALID"
    assert CountingKey.calls == 3 * len(blocks) == verifier.cached
    # Another node's certificate of the same block shares two of its three signatures.
    block = blocks[1]
    other = replace(
        prove(block, 0), certificate=certify(block.header, ["node-1", "node-2", "node-3"])
    )
    assert verifier.verify(other, other.entry.content_hash) == "VALID"
    assert CountingKey.calls == 3 * len(blocks) + 1


def test_proof_verifier_answers_like_verify_entry_proof() -> None:
    blocks, _ = build_chain(4)
    block = blocks[3]
    proof = prove(block, 2)
    content_hash = proof.entry.content_hash
    fake = replace(block.header, entries_root=entries_root([proof.entry]))
    bad_sig = replace(proof.certificate[2], signature=bytes(64))
    stranger = SigningKey.from_bytes(b"\x99" * 32)
    intruder = sign_block(block.header, stranger, replica="node-9", chain_id=CHAIN)
    sigs = proof.certificate
    cases = [
        (proof, h(12345), None),
        (replace(proof, position=1), content_hash, None),
        (replace(proof, header=fake, position=0, entry_count=1, path=()), content_hash, None),
        (replace(proof, certificate=sigs[:2]), content_hash, None),
        (replace(proof, certificate=(*sigs[:2], bad_sig)), content_hash, None),
        (replace(proof, certificate=(sigs[0],) * 3), content_hash, None),
        (replace(proof, certificate=(sigs[1], sigs[0], sigs[2])), content_hash, None),
        (replace(proof, certificate=(*sigs[:2], intruder)), content_hash, None),
        (replace(proof, header=replace(block.header, proposer="")), content_hash, None),
        (proof, content_hash, blocks[2].header),
        (proof, content_hash, None),
    ]
    verifier = _verifier()
    answers = []
    for p, ch, trusted in cases * 2:  # the second round runs with the valid signatures cached
        expected = verify(p, ch, trusted_header=trusted)
        assert verifier.verify(p, ch, trusted_header=trusted) == expected
        answers.append(expected)
    assert set(answers) == {
        "hash mismatch", "not in block", "bad certificate", "untrusted header", "VALID"
    }  # fmt: skip


def test_a_cached_signature_never_vouches_for_another_header_or_certificate() -> None:
    blocks, _ = build_chain(3)
    block = blocks[2]
    proof = prove(block, 0)
    content_hash = proof.entry.content_hash
    verifier = _verifier()
    assert verifier.verify(proof, content_hash) == "VALID" and verifier.cached == 3
    # The valid certificate on a made-up header whose entries root holds the entry.
    fake = replace(block.header, entries_root=entries_root([proof.entry]))
    forged = replace(proof, header=fake, position=0, entry_count=1, path=())
    assert verifier.verify(forged, content_hash) == "bad certificate"
    # The same header with another field changed (state root) and the same certificate.
    other_state = replace(proof, header=replace(block.header, state_root=h(77)))
    assert verifier.verify(other_state, content_hash) == "bad certificate"
    # The valid header with a certificate that differs by one signature, or lacks one.
    bad_sig = replace(proof.certificate[2], signature=bytes(64))
    forged_cert = replace(proof, certificate=(*proof.certificate[:2], bad_sig))
    assert verifier.verify(forged_cert, content_hash) == "bad certificate"
    flipped = proof.certificate[2].signature[:-1] + bytes([proof.certificate[2].signature[-1] ^ 1])
    one_bit = replace(proof.certificate[2], signature=flipped)
    assert verifier.verify(replace(proof, certificate=(*proof.certificate[:2], one_bit)),
                           content_hash) == "bad certificate"  # fmt: skip
    assert verifier.verify(replace(proof, certificate=proof.certificate[:2]), content_hash) == (
        "bad certificate"
    )
    # A valid signature moved to another signer's name.
    swapped = replace(proof.certificate[2], replica="node-3")
    assert verifier.verify(replace(proof, certificate=(*proof.certificate[:2], swapped)),
                           content_hash) == "bad certificate"  # fmt: skip
    # The certificate of the previous block, presented with this header.
    previous = prove(blocks[1], 0)
    assert verifier.verify(replace(proof, certificate=previous.certificate), content_hash) == (
        "bad certificate"
    )
    # Failures are not cached, and the valid proof still verifies.
    assert verifier.cached == 3
    assert verifier.verify(proof, content_hash) == "VALID"
    # Another membership (other replica keys, another chain) shares nothing.
    strangers = {rid: SigningKey.from_bytes(bytes([0x90 + i]) * 32).verify_key
                 for i, rid in enumerate(REPLICAS)}  # fmt: skip
    other = ProofVerifier(chain_id=CHAIN, replicas=strangers, quorum=QUORUM)
    assert other.verify(proof, content_hash) == "bad certificate"
    assert (
        ProofVerifier(chain_id="other-chain", replicas=REPLICAS, quorum=QUORUM).verify(
            proof, content_hash
        )
        == "bad certificate"
    )


def test_proof_verifier_cache_is_bounded() -> None:
    blocks, _ = build_chain(4)
    proofs = [(prove(b, 0), block_entries(b)[0].content_hash) for b in blocks]
    verifier = _verifier(max_cached=3)  # one certificate's worth
    for proof, content_hash in proofs:
        assert verifier.verify(proof, content_hash) == "VALID"
    assert verifier.cached == 3 and CountingKey.calls == 12
    # The most recent block's signatures are remembered, the older ones were dropped (LRU).
    assert verifier.verify(*proofs[3]) == "VALID"
    assert CountingKey.calls == 12
    assert verifier.verify(*proofs[0]) == "VALID"
    assert CountingKey.calls == 15 and verifier.cached == 3
    # No cache at all: every proof is checked in full.
    uncached = _verifier(max_cached=0)
    for _ in range(2):
        assert uncached.verify(*proofs[0]) == "VALID"
    assert CountingKey.calls == 6 and uncached.cached == 0
    with pytest.raises(LedgerError):
        _verifier(max_cached=-1)
