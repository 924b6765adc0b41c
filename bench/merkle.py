"""Benchmark: RFC 6962 Merkle trees (targets: append 1,000,000 leaves in well under 10 s; verify
at least 20,000 inclusion proofs per second in one process).

Measures, in one process and on the same leaves (leaf i is the 8-byte big-endian i):

- hashing the leaves alone (``leaf_hash``) — the floor under any tree;
- appending the leaf hashes one by one to a ``MerkleTree`` (the target), and its memory;
- the root from scratch: the recursive RFC 6962 definition (baseline, written here) and the
  level-by-level ``root_from_leaf_hashes``; all three roots must agree;
- serving roots of past sizes, inclusion and consistency proofs from the tree, and verifying
  them with ``verify_inclusion`` / ``verify_consistency`` (every proof must verify).

Usage: .venv/bin/python bench/merkle.py [--leaves 1000000] [--proofs 20000] [--seed 7]
(about half a minute with the defaults; a third of it is the tracemalloc pass.)
"""

from __future__ import annotations

import argparse
import platform
import random
import time
import tracemalloc
from collections.abc import Callable
from hashlib import sha256
from typing import TypeVar

from medfabric.crypto.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

T = TypeVar("T")

BEST_OF = 3  # the per-call figures (roots, proofs) are the best of this many passes

APPEND_TARGET_S = 10.0
VERIFY_TARGET_PER_S = 20_000


def recursive_root(hashes: list[bytes]) -> bytes:
    """MTH by the RFC 6962 §2.1 recursion (index ranges, no list copies): the baseline."""

    def mth(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return hashes[lo]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, len(hashes)) if hashes else EMPTY_ROOT


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[T, float]:
    """Result of ``fn`` and its best wall time over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n, count = args.leaves, args.proofs
    rng = random.Random(args.seed)

    print(f"Python {platform.python_version()} on {platform.machine()}, {n:,} leaves")
    data = [i.to_bytes(8, "big") for i in range(n)]

    hashes, t_leaf = timed(lambda: [leaf_hash(d) for d in data])

    def build() -> MerkleTree:
        tree = MerkleTree()
        for h in hashes:
            tree.append(h)
        return tree

    tree, t_append = timed(build)
    r_rec, t_rec = timed(lambda: recursive_root(hashes))
    r_lvl, t_lvl = timed(lambda: root_from_leaf_hashes(hashes))
    r_tree = tree.root()
    assert r_rec == r_lvl == r_tree, "roots disagree"

    # A second tree built under tracemalloc: the leaf hashes already exist, so what it counts
    # is what the tree itself holds (the timed build above ran without tracing overhead).
    tracemalloc.start()
    traced = MerkleTree(hashes)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert traced.root() == r_tree
    del traced

    sizes = [rng.randint(1, n) for _ in range(count)]
    _, t_past = timed(lambda: [tree.root(s) for s in sizes], BEST_OF)

    indices = [rng.randrange(n) for _ in range(count)]
    proofs, t_iproof = timed(lambda: [tree.inclusion_proof(i) for i in indices], BEST_OF)
    jobs = [(hashes[i], i, p) for i, p in zip(indices, proofs, strict=True)]
    ok, t_iverify = timed(
        lambda: [verify_inclusion(h, i, n, p, r_tree) for h, i, p in jobs], BEST_OF
    )
    assert all(ok), "an inclusion proof failed"
    # The same number of node hashes with no bookkeeping: the floor under verification.
    nodes = sum(len(p) for p in proofs)
    pair = hashes[0] + hashes[1]

    def bare_hashing() -> list[bytes]:
        return [sha256(b"\x01" + pair).digest() for _ in range(nodes)]

    _, t_hash_floor = timed(bare_hashing, BEST_OF)

    pairs = [sorted((rng.randint(1, n), rng.randint(1, n))) for _ in range(count)]
    old_roots = {old: tree.root(old) for old, _ in pairs}
    new_roots = {new: tree.root(new) for _, new in pairs}
    cproofs, t_cproof = timed(lambda: [tree.consistency_proof(a, b) for a, b in pairs], BEST_OF)
    ok, t_cverify = timed(
        lambda: [
            verify_consistency(a, b, old_roots[a], new_roots[b], p)
            for (a, b), p in zip(pairs, cproofs, strict=True)
        ],
        BEST_OF,
    )
    assert all(ok), "a consistency proof failed"

    def rate(t: float) -> str:
        return f"{count / t:>12,.0f} /s"

    print(f"{'':44}{'figure':>16}   baseline (same run)")
    print(f"{'hash the leaves alone (leaf_hash)':44}{t_leaf:>14.2f} s")
    print(
        f"{'MerkleTree.append, all leaf hashes':44}{t_append:>14.2f} s"
        f"   leaf hashing {t_leaf:.2f} s ({t_append / t_leaf:.1f}×)"
    )
    print(
        f"{'  append incl. leaf hashing (target)':44}{t_leaf + t_append:>14.2f} s"
        f"   target < {APPEND_TARGET_S:.0f} s:"
        f" {'met' if t_leaf + t_append < APPEND_TARGET_S else 'NOT MET'}"
    )
    print(
        f"{'  memory held by the tree':44}{held / 2**20:>12.1f} MiB"
        f"   {held / n:.1f} B per leaf (< 2n hashes × 32 B, plus bytearray growth slack)"
    )
    print(
        f"{'root from scratch, level by level':44}{t_lvl:>14.2f} s"
        f"   recursive RFC definition {t_rec:.2f} s ({t_rec / t_lvl:.1f}×)"
    )
    print(
        f"{'MerkleTree.root(size), random past sizes':44}{rate(t_past)}"
        f"   from scratch (all leaves): {1 / t_lvl:.2f} /s"
    )
    print(f"{'inclusion proofs built':44}{rate(t_iproof)}   {nodes / count:.1f} hashes per proof")
    print(
        f"{'inclusion proofs verified (target)':44}{rate(t_iverify)}"
        f"   bare node hashing: {count / t_hash_floor:,.0f} /s;"
        f" target ≥ {VERIFY_TARGET_PER_S:,}/s:"
        f" {'met' if count / t_iverify >= VERIFY_TARGET_PER_S else 'NOT MET'}"
    )
    print(f"{'consistency proofs built':44}{rate(t_cproof)}")
    print(f"{'consistency proofs verified':44}{rate(t_cverify)}")


if __name__ == "__main__":
    main()
