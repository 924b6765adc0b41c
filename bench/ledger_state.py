"""Benchmark: the notarization contract's state root and entry-proof verification, A/B in one
process (issue 6: the ledger's per-block cost and ≥ 20,000 proof verifications/s).

Measures, in one process and on the same entries:

- state root per block: blocks of ``--block`` fresh entries applied up to ``--entries``
  entries. A (before): the from-scratch definition this replaced, kept here as the baseline
  ``FromScratchState`` (leaves sorted by content hash, the whole RFC 6962 tree rebuilt when the
  root is read after a change). B (now): ``NotarizationState`` (leaves in notarization order,
  kept in a ``MerkleFrontier``). Per block: ``apply`` + ``state_root()``, at a few ledger
  sizes (A is timed on every ``--sample``-th block only, to keep the run short; its root is
  read on those blocks alone, which is what a per-block read costs at that size). Also the
  rebuild of the full state from its mapping (``from_locations``, what state transfer does)
  and ``preview_root``;
- proof verification: a chain of ``--proof-blocks`` blocks of ``--block`` entries certified by
  3 of 4 replicas, ``--proofs`` proofs of random entries. A: ``verify_entry_proof`` (3 Ed25519
  verifications per proof). B: one ``ProofVerifier`` (what ``LedgerClient`` uses), cold cache
  (each signature verified on its first proof) and warm. Then the same proofs, each carrying
  the certificate of a random node (each node gathers its own 3 of the 4 signatures, as
  proofs fetched from several nodes do), A and B cold. Every proof must verify.

Usage: .venv/bin/python bench/ledger_state.py [--entries 200000] [--block 1000] [--sample 10]
       [--proofs 5000] [--proof-blocks 20]  (about a minute with the defaults)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

from medfabric.crypto.keys import SigningKey
from medfabric.crypto.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes
from medfabric.ledger.blocks import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockHeader,
    CommitSig,
    Entry,
    EntryIndex,
    EntryProof,
    Location,
    NotarizationState,
    ProofVerifier,
    block_hash,
    entries_root,
    prove,
    sign_block,
    sign_tx,
    verify_entry_proof,
)

CHAIN = "bench-chain"
VERIFY_TARGET_PER_S = 20_000


def make_entries(start: int, n: int) -> list[Entry]:
    """``n`` fresh entries with distinct content hashes, addresses like the gateway's."""
    out = []
    for i in range(start, start + n):
        digest = hashlib.sha256(f"bench|{i}".encode()).digest()
        index = EntryIndex(f"hosp/LIS/LAB_RESULT/R{i:010d}", "LAB_RESULT", 1_700_000_000_000 + i)
        out.append(Entry(digest, index))
    return out


def _state_leaf(content_hash: bytes, loc: Location) -> bytes:
    return b"\x27" + content_hash + loc.height.to_bytes(8, "big") + loc.position.to_bytes(8, "big")


class FromScratchState:
    """The baseline (A): the state root as it was defined before, leaves sorted by content hash
    and the RFC 6962 tree rebuilt from all of them whenever the root is read after a change."""

    def __init__(self) -> None:
        self._where: dict[bytes, Location] = {}
        self._leaves: dict[bytes, bytes] = {}
        self._root: bytes | None = EMPTY_ROOT

    def apply(self, entries: Sequence[Entry], height: int) -> None:
        """Map each new content hash to its first location, as the contract does."""
        for position, e in enumerate(entries):
            if e.content_hash in self._where:
                continue
            loc = Location(height, position)
            self._where[e.content_hash] = loc
            self._leaves[e.content_hash] = leaf_hash(_state_leaf(e.content_hash, loc))
            self._root = None

    def state_root(self) -> bytes:
        """Sort every leaf by content hash and rebuild the tree (O(n log n) + O(n) hashes)."""
        if self._root is None:
            self._root = root_from_leaf_hashes([self._leaves[k] for k in sorted(self._leaves)])
        return self._root

    @classmethod
    def from_locations(cls, locations: dict[bytes, Location]) -> FromScratchState:
        """The old snapshot rebuild: one leaf hash per mapped hash, root on first read."""
        state = cls()
        for content_hash, loc in locations.items():
            state._where[content_hash] = loc
            state._leaves[content_hash] = leaf_hash(_state_leaf(content_hash, loc))
        state._root = None
        return state


def bench_state_root(total: int, per_block: int, sample: int) -> None:
    """Per-block apply + root for A and B at growing ledger sizes."""
    entries = make_entries(0, total)
    blocks = [entries[i : i + per_block] for i in range(0, total, per_block)]
    old, new = FromScratchState(), NotarizationState()
    # Per sample: entries, A apply + root, A root, B apply + root and B root (B: the mean over
    # the blocks since the previous sample, so one slow block on a busy machine does not decide).
    rows: list[tuple[int, float, float, float, float]] = []
    t_new_total = 0.0
    window: list[tuple[float, float]] = []
    for height, block in enumerate(blocks):
        t0 = time.perf_counter()
        new.apply(block, height)
        t1 = time.perf_counter()
        new.state_root()
        t2 = time.perf_counter()
        t_new_total += t2 - t0
        window.append((t2 - t0, t2 - t1))
        if (height + 1) % sample == 0 or height == len(blocks) - 1:
            t3 = time.perf_counter()
            old.apply(block, height)
            t4 = time.perf_counter()
            old.state_root()
            t5 = time.perf_counter()
            b_block = sum(w[0] for w in window) / len(window)
            b_root = sum(w[1] for w in window) / len(window)
            rows.append((len(new), t5 - t3, t5 - t4, b_block, b_root))
            window = []
        else:
            old.apply(block, height)  # keep A's mapping in step; its root is not read here
    print(f"state root per block of {per_block:,} new entries (apply + state_root)")
    print(
        f"{'entries in state':>17}{'A block':>12}{'A root':>12}{'B block':>11}{'B root':>10}"
        f"{'A / B (block)':>15}"
    )
    step = max(1, len(rows) // 8)
    shown = rows[step - 1 :: step] if len(rows) > 8 else rows
    if shown[-1] is not rows[-1]:
        shown.append(rows[-1])
    for n, a, r, b, br in shown:
        print(
            f"{n:>17,}{a * 1e3:>9.1f} ms{r * 1e3:>9.1f} ms{b * 1e3:>8.2f} ms{br * 1e6:>7.0f} µs"
            f"{a / b:>14.0f}×"
        )
    print(
        f"B, all {len(blocks)} blocks ({total:,} entries): {t_new_total:.2f} s"
        f" = {total / t_new_total:,.0f} entries/s for apply + root"
    )
    # A's total if its root were read on every block, from the sampled root costs
    # (linear interpolation between samples).
    pts = [(0, 0.0)] + [(n, r) for n, _, r, _, _ in rows]
    est = 0.0
    for height in range(len(blocks)):
        n = min(total, (height + 1) * per_block)
        for (n0, r0), (n1, r1) in pairwise(pts):
            if n0 <= n <= n1:
                est += r0 + (r1 - r0) * (n - n0) / max(1, n1 - n0)
                break
    print(f"A, root read on every block (estimated from the samples): {est:.1f} s of roots alone")

    locations = dict(new.locations())
    t0 = time.perf_counter()
    rebuilt = NotarizationState.from_locations(locations, new.height)
    rebuilt.state_root()
    t_rebuild_new = time.perf_counter() - t0
    assert rebuilt.state_root() == new.state_root()
    t0 = time.perf_counter()
    FromScratchState.from_locations(locations).state_root()
    t_rebuild_old = time.perf_counter() - t0
    print(
        f"rebuild from the mapping ({len(locations):,} hashes, state transfer):"
        f" A {t_rebuild_old * 1e3:.0f} ms, B {t_rebuild_new * 1e3:.0f} ms"
    )
    nxt = make_entries(total, per_block)
    assert new.height is not None
    t0 = time.perf_counter()
    for _ in range(20):
        new.preview_root(nxt, new.height + 1)
    t_preview = (time.perf_counter() - t0) / 20
    print(
        f"B preview_root of a {per_block:,}-entry block at {len(new):,} entries:"
        f" {t_preview * 1e3:.2f} ms (A copied both dicts and rebuilt the tree)"
    )


def bench_proofs(count: int, n_blocks: int, per_block: int, seed: int) -> None:
    """Proofs verified per second: every proof's 3 signatures verified (A) vs. each distinct
    signature once (B)."""
    rng = random.Random(seed)
    keys = {f"node-{i}": SigningKey.from_bytes(bytes([i + 1]) * 32) for i in range(4)}
    replicas = {rid: k.verify_key for rid, k in keys.items()}
    institution = SigningKey.from_bytes(b"\x40" * 32)
    chain: list[Block] = []
    # Per block, the certificate of each node: a node gathers its own 3 of the 4 signatures.
    node_certs: list[list[tuple[CommitSig, ...]]] = []
    head: BlockHeader | None = None
    for height in range(n_blocks):
        entries = make_entries(1_000_000 + height * per_block, per_block)
        tx = sign_tx("hosp", height, entries, institution, chain_id=CHAIN)
        header = BlockHeader(
            height,
            GENESIS_PREVIOUS_HASH if head is None else block_hash(head),
            entries_root(entries),
            bytes(32),
            0,
            "node-0",
            1_700_000_000_000 + height,
        )
        sigs = {r: sign_block(header, k, replica=r, chain_id=CHAIN) for r, k in keys.items()}
        certs = [tuple(sigs[r] for r in sorted(keys) if r != left_out) for left_out in keys]
        node_certs.append(certs)
        chain.append(Block(header, (tx,), certs[-1]))
        head = header
    proofs: list[tuple[bytes, EntryProof]] = []
    mixed: list[tuple[bytes, EntryProof]] = []  # the same proofs, each from a random node
    for _ in range(count):
        height = rng.randrange(n_blocks)
        p = prove(chain[height], rng.randrange(per_block))
        proofs.append((p.entry.content_hash, p))
        mixed.append((p.entry.content_hash, replace(p, certificate=rng.choice(node_certs[height]))))

    def run_a(items: list[tuple[bytes, EntryProof]]) -> tuple[float, int]:
        t0 = time.perf_counter()
        ok = sum(
            verify_entry_proof(p, h, chain_id=CHAIN, replicas=replicas, quorum=3) == "VALID"
            for h, p in items
        )
        return time.perf_counter() - t0, ok

    def run_b(verifier: ProofVerifier, items: list[tuple[bytes, EntryProof]]) -> tuple[float, int]:
        t0 = time.perf_counter()
        ok = sum(verifier.verify(p, h) == "VALID" for h, p in items)
        return time.perf_counter() - t0, ok

    t_a, ok_a = run_a(proofs)
    verifier = ProofVerifier(chain_id=CHAIN, replicas=replicas, quorum=3)
    t_cold, ok_cold = run_b(verifier, proofs)
    sigs_cold = verifier.cached
    t_warm = float("inf")
    for _ in range(3):  # best of 3: the machine may be busy
        t, ok_warm = run_b(verifier, proofs)
        t_warm = min(t_warm, t)
    mixed_verifier = ProofVerifier(chain_id=CHAIN, replicas=replicas, quorum=3)
    t_mixed, ok_mixed = run_b(mixed_verifier, mixed)
    t_mixed_a, ok_mixed_a = run_a(mixed)
    assert ok_a == ok_cold == ok_warm == ok_mixed == ok_mixed_a == count, "a proof failed"
    # Worst case for the cache: every proof from a block of its own (no sharing).
    distinct = [prove(b, 0) for b in chain]
    fresh = ProofVerifier(chain_id=CHAIN, replicas=replicas, quorum=3)
    t0 = time.perf_counter()
    assert all(fresh.verify(p, p.entry.content_hash) == "VALID" for p in distinct)
    t_distinct = (time.perf_counter() - t0) / len(distinct)

    def rate(t: float) -> str:
        return f"{count / t:>10,.0f} /s"

    print(
        f"proofs verified, {count:,} proofs of random entries in {n_blocks} blocks of "
        f"{per_block:,} (3-of-4 certificates)"
    )
    print(f"  {'A verify_entry_proof (3 Ed25519 per proof)':56}{rate(t_a)}")
    print(
        f"  {f'B ProofVerifier, cold ({sigs_cold} signatures verified)':56}{rate(t_cold)}"
        f"   {t_a / t_cold:.1f}× A"
    )
    print(
        f"  {'B ProofVerifier, warm (best of 3)':56}{rate(t_warm)}   {t_a / t_warm:.1f}× A;"
        f" target ≥ {VERIFY_TARGET_PER_S:,}/s:"
        f" {'met' if count / t_warm >= VERIFY_TARGET_PER_S else 'NOT MET'}"
    )
    print(
        f"  {'each proof with a random node’s certificate: A':56}{rate(t_mixed_a)}"
        f"   B cold ({mixed_verifier.cached} signatures verified): {count / t_mixed:,.0f} /s"
    )
    print(f"  B, a proof of a block not seen before: {t_distinct * 1e6:,.0f} µs (no gain, as A)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=10, help="time A on every N-th block")
    ap.add_argument("--proofs", type=int, default=5000)
    ap.add_argument("--proof-blocks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    bench_state_root(args.entries, args.block, args.sample)
    print()
    bench_proofs(args.proofs, args.proof_blocks, args.block, args.seed)


if __name__ == "__main__":
    main()
