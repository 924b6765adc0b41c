"""PBFT messages at the edge: canonical encoding round trips for every type, signatures bound to
chain, type and sender, ``validate_basic`` rejections, stream framing, and the promise that any
bytes at all give a ``FrameError`` or a checked message — never another exception.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.ledger.kit import CLIENT_KEYS, KEYS, MESSAGE_CHAIN, OUTSIDER, REPLICA_KEYS, membership

from medfabric.crypto.keys import SigningKey
from medfabric.crypto.merkle import inclusion_proof, leaf_hash, root_from_leaf_hashes
from medfabric.ledger.messages import (
    DOMAIN,
    NULL_DIGEST,
    REASONS,
    BadSignature,
    BlockSignature,
    Checkpoint,
    Commit,
    FetchState,
    FrameError,
    FrameReader,
    InvalidMessage,
    LedgerError,
    MalformedFrame,
    Membership,
    Message,
    NewView,
    OversizedFrame,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Reply,
    Request,
    Signed,
    StateChunk,
    UnknownSender,
    ViewChange,
    WrongChain,
    batch_digest,
    decode,
    decode_signed,
    encode,
    encode_frame,
    frame,
    new_view_pre_prepares,
    open_frame,
    sign,
    signing_bytes,
)

CHAIN = MESSAGE_CHAIN
MAX = 1 << 20
# Fixed seeds (tests/ledger/kit.py): failures replay identically.
MEMBERS = membership(CHAIN, log_window=8)
REPLICAS = sorted(REPLICA_KEYS)
CLIENTS = sorted(CLIENT_KEYS)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def signed(message: Any, signer: str | None = None, *, key: SigningKey | None = None,
           chain: str = CHAIN) -> Signed[Any]:  # fmt: skip
    if signer is None:
        if isinstance(message, Request):
            signer = message.client
        elif isinstance(message, PrePrepare | NewView):
            signer = MEMBERS.primary(message.view)
        else:
            signer = message.replica
    return sign(message, key or KEYS[signer], signer=signer, chain_id=chain)


def reason(data: bytes, membership: Membership = MEMBERS) -> str:
    with pytest.raises(FrameError) as info:
        open_frame(data, membership, max_size=MAX)
    return info.value.reason


def why(data: bytes) -> str:
    """The refusal as ``reason: detail``, so a test can tell which rule fired."""
    with pytest.raises(FrameError) as info:
        open_frame(data, MEMBERS, max_size=MAX)
    return f"{info.value.reason}: {info.value}"


def accept(item: Signed[Any]) -> Signed[Message]:
    return open_frame(frame(item), MEMBERS, max_size=MAX)


# --- strategies: random *valid* messages --------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
digests = st.binary(min_size=32, max_size=32)
views = st.integers(0, 6)
replicas = st.sampled_from(REPLICAS)
clients = st.sampled_from(CLIENTS)


def backups(view: int) -> list[str]:
    return [r for r in REPLICAS if r != MEMBERS.primary(view)]


@st.composite
def requests(draw: st.DrawFn) -> Signed[Request]:
    return signed(Request(draw(clients), draw(u64), draw(st.binary(max_size=40))))


batches = st.lists(
    requests(), max_size=4, unique_by=lambda s: (s.message.client, s.message.timestamp)
).map(tuple)


@st.composite
def pre_prepares(draw: st.DrawFn) -> Signed[PrePrepare]:
    batch = draw(batches)
    view = draw(views)
    origin = draw(st.integers(0, view)) if batch else 0
    return signed(PrePrepare(view, draw(u64), batch_digest(batch, origin), batch, origin))


@st.composite
def prepares(draw: st.DrawFn) -> Signed[Prepare]:
    view = draw(views)
    return signed(Prepare(view, draw(u64), draw(digests), draw(st.sampled_from(backups(view)))))


@st.composite
def commits(draw: st.DrawFn) -> Signed[Commit]:
    return signed(Commit(draw(views), draw(u64), draw(digests), draw(replicas)))


@st.composite
def checkpoints(draw: st.DrawFn) -> Signed[Checkpoint]:
    return signed(Checkpoint(draw(u64), draw(digests), draw(replicas)))


@st.composite
def replies(draw: st.DrawFn) -> Signed[Reply]:
    return signed(Reply(draw(u64), draw(u64), draw(clients), draw(replicas), draw(st.binary())))


@st.composite
def fetches(draw: st.DrawFn) -> Signed[FetchState]:
    return signed(FetchState(draw(u64), draw(u64), draw(replicas)))


@st.composite
def state_chunks(draw: st.DrawFn) -> Signed[StateChunk]:
    chunks = draw(st.lists(st.binary(max_size=30), min_size=1, max_size=7))
    hashes = [leaf_hash(c) for c in chunks]
    i = draw(st.integers(0, len(chunks) - 1))
    proof = tuple(inclusion_proof(hashes, i))
    root = root_from_leaf_hashes(hashes)
    return signed(StateChunk(draw(u64), root, i, len(chunks), chunks[i], proof, draw(replicas)))


@st.composite
def block_signatures(draw: st.DrawFn) -> Signed[BlockSignature]:
    sig = draw(st.binary(min_size=64, max_size=64))
    return signed(BlockSignature(draw(u64), draw(digests), draw(replicas), sig))


def certificate(view: int, seq: int, digest: bytes, voters: list[str]) -> PreparedCertificate:
    pp = signed(PrePrepare(view, seq, digest, None))
    return PreparedCertificate(pp, tuple(signed(Prepare(view, seq, digest, r)) for r in voters))


@st.composite
def certificates(draw: st.DrawFn, seq: int, below_view: int) -> PreparedCertificate:
    view = draw(st.integers(0, below_view - 1))
    voters = draw(st.lists(st.sampled_from(backups(view)), min_size=2, unique=True))
    return certificate(view, seq, draw(st.sampled_from([b"\x01" * 32, b"\x02" * 32])),
                       sorted(voters))  # fmt: skip


def checkpoint_proof(seq: int, digest: bytes, voters: list[str]) -> tuple[Signed[Checkpoint], ...]:
    return tuple(signed(Checkpoint(seq, digest, r)) for r in sorted(voters))


@st.composite
def view_change_messages(draw: st.DrawFn, new_view: int, replica: str) -> ViewChange:
    cp = draw(st.sampled_from([0, 4, 8]))
    proof: tuple[Signed[Checkpoint], ...] = ()
    if cp:
        voters = draw(st.lists(replicas, min_size=3, unique=True))
        proof = checkpoint_proof(cp, b"\x0c" * 32, voters)
    seqs = draw(st.lists(st.integers(cp + 1, cp + 8), max_size=3, unique=True))
    certs = tuple(draw(certificates(s, new_view)) for s in sorted(seqs))
    return ViewChange(new_view, cp, proof, certs, replica)


@st.composite
def view_changes(draw: st.DrawFn) -> Signed[ViewChange]:
    new_view = draw(st.integers(1, 6))
    return signed(draw(view_change_messages(new_view, draw(replicas))))


@st.composite
def new_views(draw: st.DrawFn) -> Signed[NewView]:
    view = draw(st.integers(1, 6))
    voters = sorted(draw(st.lists(replicas, min_size=3, unique=True)))
    vcs = tuple(signed(draw(view_change_messages(view, r))) for r in voters)
    o = tuple(signed(pp) for pp in new_view_pre_prepares(view, [v.message for v in vcs]))
    return signed(NewView(view, vcs, o))


STRATEGIES: dict[str, st.SearchStrategy[Signed[Any]]] = {
    "Request": requests(),
    "Reply": replies(),
    "PrePrepare": pre_prepares(),
    "Prepare": prepares(),
    "Commit": commits(),
    "Checkpoint": checkpoints(),
    "ViewChange": view_changes(),
    "NewView": new_views(),
    "FetchState": fetches(),
    "StateChunk": state_chunks(),
    "BlockSignature": block_signatures(),
}
any_signed = st.one_of(*STRATEGIES.values())


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
@FAST
@given(data=st.data())
def test_every_message_type_round_trips_and_opens(kind: str, data: st.DataObject) -> None:
    item = data.draw(STRATEGIES[kind])
    assert type(item.message).__name__ == kind
    raw = frame(item)
    assert decode_signed(raw) == item
    assert encode(decode_signed(raw)) == raw
    assert decode(encode(item.message)) == item.message
    assert encode(decode(encode(item.message))) == encode(item.message)
    assert accept(item) == item


def test_the_encoding_is_pinned_by_a_hand_written_vector() -> None:
    # Written from the module docstring, not from the encoder: the format must never drift.
    prepare = Prepare(1, 2, b"\x11" * 32, "node-2")
    expected = (
        b"\x04"
        + (1).to_bytes(8, "big")
        + (2).to_bytes(8, "big")
        + b"\x00\x00\x00\x20"
        + b"\x11" * 32
        + b"\x00\x00\x00\x06node-2"
    )
    assert encode(prepare) == expected
    assert signing_bytes(CHAIN, prepare) == DOMAIN + b"\x00\x0atest-chain" + expected
    envelope = signed(prepare)
    assert frame(envelope) == (
        b"\x7f\x00\x00\x00\x0atest-chain" + expected + b"\x00\x00\x00\x06node-2"
        + b"\x00\x00\x00\x40" + envelope.signature
    )  # fmt: skip


def test_a_pre_prepare_is_signed_without_its_batch() -> None:
    batch = (signed(Request("clinic-a", 1, b"op")),)
    full = signed(PrePrepare(0, 1, batch_digest(batch, 0), batch))
    stripped = Signed(full.message.stripped(), full.signer, full.signature, CHAIN)
    assert stripped.verify(MEMBERS.replicas["node-0"])
    assert accept(full) == full
    assert reason(frame(stripped)) == "invalid"  # a bare pre-prepare must carry its batch
    assert batch_digest((), 0) == NULL_DIGEST


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x7f",
        b"\x04" + b"\x00" * 8,  # a bare message where an envelope is expected
        b"\x7f\x00\x00\x00\x00",  # empty chain id
        b"\x7f\x00\x00\x00\x02\xff\xfe",  # chain id not UTF-8
        b"\x7f\x00\x00\x00\x01c\x7f",  # an envelope inside an envelope
        b"\x7f\x00\x00\x00\x01c\x0b",  # unknown tag
        b"\x7f\x00\x00\x00\x01c\x01\xff\xff\xff\xff",  # length beyond the data
    ],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    assert reason(data) == "malformed"


def test_trailing_bytes_and_bad_presence_bytes_are_malformed() -> None:
    raw = frame(signed(Prepare(1, 2, b"\x11" * 32, "node-2")))
    assert reason(raw + b"\x00") == "malformed"
    pp = frame(signed(PrePrepare(0, 1, NULL_DIGEST, ())))
    at = pp.index(NULL_DIGEST) + 32
    assert pp[at] == 1
    assert reason(pp[:at] + b"\x02" + pp[at + 1 :]) == "malformed"
    with pytest.raises(MalformedFrame):
        decode(encode(Prepare(1, 2, b"\x11" * 32, "node-2")) + b"x")


def test_encoding_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(LedgerError):
        encode(Commit(-1, 0, b"\x00" * 32, "node-0"))
    with pytest.raises(LedgerError):
        encode(Commit(0, 2**64, b"\x00" * 32, "node-0"))
    with pytest.raises(LedgerError):
        encode(Commit(0, 0, b"\x00" * 32, "n" * 65))


# --- signatures -------------------------------------------------------------------------------


@FAST
@given(item=any_signed, data=st.data())
def test_any_flipped_bit_is_refused(item: Signed[Any], data: st.DataObject) -> None:
    raw = bytearray(frame(item))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert reason(bytes(raw)) in REASONS


def test_a_signature_for_another_chain_is_refused() -> None:
    prepare = Prepare(1, 2, b"\x11" * 32, "node-2")
    assert reason(frame(signed(prepare, chain="other-chain"))) == "wrong_chain"
    # Relabelled to our chain, the other chain's signature does not verify.
    forged = replace(signed(prepare, chain="other-chain"), chain_id=CHAIN)
    assert reason(frame(forged)) == "bad_signature"
    other = Membership("other-chain", MEMBERS.replicas, MEMBERS.clients)
    assert reason(frame(signed(prepare)), other) == "wrong_chain"


def test_a_signature_cannot_be_moved_to_another_message_type() -> None:
    prepare = signed(Prepare(1, 2, b"\x11" * 32, "node-2"))
    commit = Signed(Commit(1, 2, b"\x11" * 32, "node-2"), "node-2", prepare.signature, CHAIN)
    assert reason(frame(commit)) == "bad_signature"


def test_a_signer_outside_the_membership_is_refused() -> None:
    assert reason(frame(signed(Commit(0, 1, b"\x11" * 32, "node-9"), key=OUTSIDER))) == (
        "unknown_sender"
    )
    assert reason(frame(signed(Request("clinic-z", 1, b""), key=OUTSIDER))) == "unknown_sender"


def test_roles_are_not_interchangeable() -> None:
    commit = Commit(0, 1, b"\x11" * 32, "node-1")
    # A client id signing a replica message, and a replica id signing a request.
    assert reason(frame(signed(commit, "clinic-a"))) == "unknown_sender"
    assert reason(frame(signed(Request("clinic-a", 1, b"op"), "node-1"))) == "unknown_sender"
    # A client's key passed off under a replica id, and the reverse.
    assert reason(frame(signed(commit, "node-1", key=CLIENT_KEYS["clinic-a"]))) == ("bad_signature")
    request = Request("clinic-a", 1, b"op")
    assert reason(frame(signed(request, "clinic-a", key=REPLICA_KEYS["node-1"]))) == (
        "bad_signature"
    )


def test_a_prepare_replayed_as_another_replica_is_refused() -> None:
    original = signed(Prepare(1, 2, b"\x11" * 32, "node-2"))
    assert accept(original) == original
    # node-3 re-signs node-2's prepare under its own id: the message names another sender.
    assert reason(frame(signed(original.message, "node-3"))) == "invalid"
    # node-3 signs it claiming to be node-2.
    assert reason(frame(signed(original.message, "node-2", key=REPLICA_KEYS["node-3"]))) == (
        "bad_signature"
    )
    # node-2's signature kept, the sender field rewritten to node-3.
    moved = Signed(replace(original.message, replica="node-3"), "node-3", original.signature, CHAIN)
    assert reason(frame(moved)) == "bad_signature"


# --- validate_basic ---------------------------------------------------------------------------


def test_digests_must_be_32_bytes() -> None:
    assert why(frame(signed(Prepare(1, 2, b"\x11" * 31, "node-2")))) == (
        "invalid: digest must be 32 bytes, got 31"
    )
    assert why(frame(signed(Checkpoint(4, b"\x11" * 33, "node-1")))) == (
        "invalid: state_digest must be 32 bytes, got 33"
    )


def test_batch_digest_must_match_and_requests_are_unique() -> None:
    batch = (signed(Request("clinic-a", 1, b"op")),)
    assert "not the batch's digest" in why(frame(signed(PrePrepare(0, 1, NULL_DIGEST, batch))))
    twice = (*batch, signed(Request("clinic-a", 1, b"op")))
    assert "twice" in why(frame(signed(PrePrepare(0, 1, batch_digest(twice, 0), twice))))
    forged = (replace(batch[0], message=Request("clinic-a", 1, b"other op")),)
    assert reason(frame(signed(PrePrepare(0, 1, batch_digest(forged, 0), forged)))) == (
        "bad_signature"
    )


def test_a_batch_names_the_view_it_was_built_in() -> None:
    batch = (signed(Request("clinic-a", 1, b"op")),)
    # Proposed again in view 3 after being built in view 1: the digest is still view 1's.
    again = signed(PrePrepare(3, 1, batch_digest(batch, 1), batch, 1))
    assert open_frame(frame(again), MEMBERS, max_size=MAX).message.origin == 1
    assert decode_signed(frame(again)) == again
    assert batch_digest(batch, 1) != batch_digest(batch, 3)
    assert "not the batch's digest" in why(
        frame(signed(PrePrepare(3, 1, batch_digest(batch, 1), batch, 3)))
    )
    assert "later view" in why(frame(signed(PrePrepare(1, 1, batch_digest(batch, 2), batch, 2))))
    assert "null request" in why(frame(signed(PrePrepare(2, 1, batch_digest((), 1), (), 1))))
    stripped = again.message.stripped()
    assert stripped.origin == 0 and stripped.batch is None


def test_only_the_primary_pre_prepares_and_it_does_not_prepare() -> None:
    assert MEMBERS.primary(1) == "node-1"
    pp = PrePrepare(1, 1, NULL_DIGEST, ())
    assert reason(frame(signed(pp, "node-2"))) == "invalid"
    assert reason(frame(signed(Prepare(1, 1, NULL_DIGEST, "node-1")))) == "invalid"


def _view_change(**changes: Any) -> ViewChange:
    base = ViewChange(
        new_view=2,
        checkpoint_seq=4,
        checkpoint_proof=checkpoint_proof(4, b"\x0c" * 32, ["node-0", "node-1", "node-2"]),
        prepared=(certificate(1, 5, b"\x01" * 32, ["node-0", "node-2"]),),
        replica="node-3",
    )
    return replace(base, **changes)


def test_a_well_formed_view_change_is_accepted() -> None:
    vc = _view_change()
    assert accept(signed(vc)).message == vc
    assert vc.checkpoint_digest == b"\x0c" * 32


def test_checkpoint_proofs_need_a_quorum_of_distinct_matching_signers() -> None:
    two = checkpoint_proof(4, b"\x0c" * 32, ["node-0", "node-1"])
    assert "fewer than 2f+1" in why(frame(signed(_view_change(checkpoint_proof=two))))
    dup = (*two, signed(Checkpoint(4, b"\x0c" * 32, "node-1")))
    assert "distinct signers" in why(frame(signed(_view_change(checkpoint_proof=dup))))
    mixed = (*two, signed(Checkpoint(4, b"\x0d" * 32, "node-2")))
    assert "mixes" in why(frame(signed(_view_change(checkpoint_proof=mixed))))
    genesis_with_proof = _view_change(checkpoint_seq=0, prepared=())
    assert "genesis" in why(frame(signed(genesis_with_proof)))
    forged = list(checkpoint_proof(4, b"\x0c" * 32, ["node-0", "node-1", "node-2"]))
    forged[1] = replace(forged[1], signature=forged[0].signature)
    assert reason(frame(signed(_view_change(checkpoint_proof=tuple(forged))))) == "bad_signature"


def test_prepared_certificates_are_checked() -> None:
    good = certificate(1, 5, b"\x01" * 32, ["node-0", "node-2"])
    other = signed(Prepare(1, 5, b"\x02" * 32, "node-2"))
    bad_digest = replace(good, prepares=(good.prepares[0], other))
    too_few = replace(good, prepares=good.prepares[:1])
    from_primary = certificate(1, 5, b"\x01" * 32, ["node-0", "node-1"])
    with_batch = replace(good, pre_prepare=signed(PrePrepare(1, 5, NULL_DIGEST, ())))
    not_primary = replace(good, pre_prepare=signed(good.pre_prepare.message, "node-2"))
    for cert, rule in (
        (bad_digest, "does not match the pre-prepare"),
        (too_few, "fewer than 2f prepares"),
        (from_primary, "the primary does not prepare"),
        (with_batch, "carries no batch"),
        (not_primary, "may not be signed by 'node-2'"),
    ):
        assert rule in why(frame(signed(_view_change(prepared=(cert,)))))
    # Out of the window (4, 4 + 8], out of order, or not from an earlier view.
    assert reason(frame(signed(_view_change(prepared=(certificate(1, 13, b"\x01" * 32,
                                                                   ["node-0", "node-2"]),))))) == (
        "invalid"
    )  # fmt: skip
    assert reason(frame(signed(_view_change(prepared=(good, good))))) == "invalid"
    assert reason(frame(signed(_view_change(new_view=1)))) == "invalid"


def _new_view(view: int, voters: list[str]) -> NewView:
    vcs = tuple(signed(_view_change(new_view=view, replica=r)) for r in voters)
    o = tuple(signed(pp) for pp in new_view_pre_prepares(view, [v.message for v in vcs]))
    return NewView(view, vcs, o)


def test_new_view_needs_a_quorum_and_the_right_pre_prepares() -> None:
    nv = _new_view(2, ["node-0", "node-1", "node-3"])
    assert [(p.message.seq, p.message.digest) for p in nv.pre_prepares] == [(5, b"\x01" * 32)]
    assert accept(signed(nv)).message == nv
    assert "fewer than 2f+1" in why(frame(signed(_new_view(2, ["node-0", "node-3"]))))
    dup = replace(nv, view_changes=(nv.view_changes[0], *nv.view_changes[:2]))
    assert "distinct signers" in why(frame(signed(dup)))
    # A primary lying about O: dropping, altering or adding a pre-prepare.
    for lie in (
        (),
        (signed(PrePrepare(2, 5, b"\x02" * 32, None)),),
        (*nv.pre_prepares, signed(PrePrepare(2, 6, NULL_DIGEST, None))),
    ):
        assert "pre-prepares differ" in why(frame(signed(replace(nv, pre_prepares=lie))))
    other_view = replace(nv, view=3)
    assert reason(frame(signed(other_view))) == "invalid"


def test_new_view_pre_prepares_fill_gaps_and_prefer_the_highest_view() -> None:
    low = ViewChange(3, 0, (), (certificate(0, 2, b"\x01" * 32, ["node-1", "node-2"]),), "node-0")
    high = ViewChange(3, 0, (), (certificate(2, 2, b"\x02" * 32, ["node-0", "node-1"]),), "node-1")
    none = ViewChange(3, 0, (), (), "node-2")
    assert new_view_pre_prepares(3, [low, high, none]) == (
        PrePrepare(3, 1, NULL_DIGEST, None),
        PrePrepare(3, 2, b"\x02" * 32, None),
    )
    assert new_view_pre_prepares(3, [none]) == ()


def test_state_chunks_must_prove_their_place() -> None:
    chunks = [b"a", b"b", b"c"]
    hashes = [leaf_hash(c) for c in chunks]
    root = root_from_leaf_hashes(hashes)
    proof = tuple(inclusion_proof(hashes, 1))
    good = StateChunk(8, root, 1, 3, b"b", proof, "node-0")
    assert accept(signed(good)).message == good
    for bad in (
        replace(good, data=b"x"),
        replace(good, chunk=2),
        replace(good, chunk=3),
        replace(good, total=0, chunk=0),
        replace(good, proof=proof[:1]),
    ):
        assert reason(frame(signed(bad))) == "invalid"


def test_a_block_signature_is_pinned_and_round_trips() -> None:
    message = BlockSignature(7, b"\x22" * 32, "node-1", b"\x33" * 64)
    expected = (
        b"\x0b"
        + (7).to_bytes(8, "big")
        + b"\x00\x00\x00\x20" + b"\x22" * 32
        + b"\x00\x00\x00\x06node-1"
        + b"\x00\x00\x00\x40" + b"\x33" * 64
    )  # fmt: skip
    assert encode(message) == expected
    assert decode(expected) == message
    envelope = signed(message)
    assert decode_signed(frame(envelope)) == envelope
    assert accept(envelope) == envelope


def test_a_block_signature_is_signed_by_its_replica() -> None:
    message = BlockSignature(7, b"\x22" * 32, "node-1", b"\x33" * 64)
    # Another replica relaying (re-signing) node-1's block signature does not pass as node-1's.
    assert why(frame(signed(message, "node-2"))) == (
        "invalid: BlockSignature may not be signed by 'node-2'"
    )
    assert reason(frame(signed(message, "node-1", key=REPLICA_KEYS["node-2"]))) == ("bad_signature")
    assert reason(frame(signed(message, "clinic-a"))) == "unknown_sender"
    assert reason(frame(signed(message, chain="other-chain"))) == "wrong_chain"
    # Same fields under another type tag: the signature does not move.
    moved = Signed(Commit(7, 0, b"\x22" * 32, "node-1"), "node-1", signed(message).signature, CHAIN)
    assert reason(frame(moved)) == "bad_signature"


def test_a_block_signature_needs_a_32_byte_hash_and_a_64_byte_signature() -> None:
    good = BlockSignature(7, b"\x22" * 32, "node-1", b"\x33" * 64)
    assert why(frame(signed(replace(good, block_hash=b"\x22" * 31)))) == (
        "invalid: block_hash must be 32 bytes, got 31"
    )
    for size in (0, 63, 65):
        assert why(frame(signed(replace(good, signature=b"\x33" * size)))) == (
            f"invalid: signature must be 64 bytes, got {size}"
        )
    with pytest.raises(InvalidMessage, match="not a replica"):
        replace(good, replica="clinic-a").validate_basic(MEMBERS)


# --- membership -------------------------------------------------------------------------------


def test_membership_quorums_and_primaries() -> None:
    assert (MEMBERS.n, MEMBERS.f, MEMBERS.quorum) == (4, 1, 3)
    assert [MEMBERS.primary(v) for v in range(5)] == [*REPLICAS, "node-0"]
    seven = Membership("c", {f"r{i}": SigningKey.from_bytes(bytes([i + 9]) * 32).verify_key
                             for i in range(7)}, {})  # fmt: skip
    assert (seven.f, seven.quorum) == (2, 5)


def test_membership_refuses_ambiguous_identities() -> None:
    key = REPLICA_KEYS["node-0"].verify_key
    with pytest.raises(LedgerError):
        Membership(CHAIN, {"a": key, "b": key}, {})
    with pytest.raises(LedgerError):
        Membership(CHAIN, {"a": key}, {"a": CLIENT_KEYS["clinic-a"].verify_key})
    with pytest.raises(LedgerError):
        Membership(CHAIN, {}, {})
    with pytest.raises(LedgerError):
        Membership("", {"a": key}, {})
    with pytest.raises(LedgerError):
        Membership(CHAIN, {"\ud800": key}, {})


# --- framing ----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=50), max_size=8),
    cuts=st.lists(st.integers(0, 500), max_size=10),
)
def test_frame_reader_reassembles_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    reader = FrameReader(max_size=50)
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out += reader.feed(stream[a:b])
        assert reader.buffered <= 4 + 50
    assert out == frames
    assert reader.buffered == 0


def test_frame_reader_refuses_an_oversized_declared_length_before_the_body() -> None:
    reader = FrameReader(max_size=100)
    assert reader.feed(encode_frame(b"ok")[:3]) == []
    assert reader.feed(encode_frame(b"ok")[3:] + (101).to_bytes(4, "big")[:2]) == [b"ok"]
    with pytest.raises(OversizedFrame) as info:
        reader.feed((101).to_bytes(4, "big")[2:])
    assert info.value.reason == "oversized"
    assert reader.buffered == 0
    with pytest.raises(OversizedFrame):
        reader.feed(b"")  # the stream is lost; the caller closes it


def test_open_frame_checks_the_size_before_parsing() -> None:
    with pytest.raises(OversizedFrame):
        open_frame(b"\x00" * 101, MEMBERS, max_size=100)
    raw = frame(signed(Prepare(1, 2, b"\x11" * 32, "node-2")))
    assert open_frame(raw, MEMBERS, max_size=len(raw)) == decode_signed(raw)
    assert reason_with_size(raw, len(raw) - 1) == "oversized"


def reason_with_size(data: bytes, max_size: int) -> str:
    with pytest.raises(FrameError) as info:
        open_frame(data, MEMBERS, max_size=max_size)
    return info.value.reason


# --- fuzz -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_only_ever_raise_frame_error(data: bytes) -> None:
    for candidate in (data, b"\x7f" + data, b"\x7f\x00\x00\x00\x0atest-chain" + data):
        try:
            open_frame(candidate, MEMBERS, max_size=MAX)
        except FrameError as e:
            assert e.reason in REASONS


@FAST
@given(item=any_signed, data=st.data())
def test_mutated_frames_only_ever_raise_frame_error(item: Signed[Any], data: st.DataObject) -> None:
    raw = frame(item)
    at = data.draw(st.integers(0, len(raw)))
    cut = data.draw(st.integers(0, 8))
    junk = data.draw(st.binary(max_size=8))
    mutated = raw[:at] + junk + raw[at + cut :]
    try:
        open_frame(mutated, MEMBERS, max_size=MAX)
    except FrameError as e:
        assert e.reason in REASONS
    else:
        assert mutated == raw  # only the untouched frame can pass


def test_every_reason_has_an_exception() -> None:
    from medfabric.ledger import messages

    found = {
        cls.reason
        for cls in vars(messages).values()
        if isinstance(cls, type) and issubclass(cls, FrameError) and cls is not FrameError
    }
    assert found == set(REASONS)
    assert issubclass(BadSignature, FrameError) and issubclass(WrongChain, FrameError)
    assert issubclass(UnknownSender, FrameError) and issubclass(InvalidMessage, FrameError)
