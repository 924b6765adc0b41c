"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, inclusion and consistency proofs.

Invariants:

- A leaf hash is ``SHA-256(0x00 || data)`` and an interior node ``SHA-256(0x01 || left || right)``;
  the distinct prefixes keep a leaf from ever being presented as a node (second preimages).
- The tree over ``n`` leaves is the RFC 6962 §2.1 Merkle Tree Hash (MTH): split at the largest
  power of two smaller than ``n``, left part complete. The empty tree's root is ``SHA-256("")``.
- Proofs are lists of 32-byte hashes in RFC order: the sibling nearest the leaf (or the old
  subtree) first, the sibling just below the root last (RFC 6962 §2.1.1, §2.1.2).
- Consistency proofs exist for ``0 < old_size <= new_size`` only. ``old_size == new_size`` has
  the empty proof (the roots must then be equal); the RFC defines no proof from the empty tree
  (``old_size == 0``): building one raises, verifying one returns False.
- The ``verify_*`` functions take untrusted input: they return False for anything malformed
  (sizes out of range, hashes that are not 32-byte ``bytes``, proofs of the wrong length) and
  never raise. The proof *builders* raise :class:`MerkleError` for out-of-range arguments,
  which are programming errors of the caller.
- :class:`MerkleTree` is append-only; ``root``, ``inclusion_proof`` and ``consistency_proof``
  cost O(log n) hashes for any size up to the current one, because every complete, aligned
  power-of-two subtree is hashed once when its last leaf arrives and kept.
- :class:`MerkleFrontier` keeps only the O(log n) roots of the complete subtrees that tile the
  leaves (a compact range): it serves the current root and nothing else, in O(log n) memory,
  and copies in O(log n).

This module uses the standard library and `crypto.errors` only (`crypto/` imports nothing else of
medfabric).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from hashlib import sha256

from medfabric.crypto.errors import CryptoError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleError",
    "MerkleFrontier",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_leaf_hashes",
    "root_of_packed_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in a tree (SHA-256)."""

EMPTY_ROOT = sha256(b"").digest()
"""The root of the tree with no leaves (RFC 6962 §2.1: MTH({}) = SHA-256())."""

# Hot loops test hash types inline against this tuple and spell the 0x01 node prefix as a
# literal: a function call and a global lookup per node cost a third of verification time.
_BYTES = (bytes, bytearray)


class MerkleError(CryptoError):
    """A proof or root was asked for something the tree does not hold (a programming error).

    Verification never raises it: a bad proof is reported as ``False``.
    """


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf: ``SHA-256(0x00 || data)``.

    Args:
        data: The leaf's bytes (for the ledger, an entry's canonical encoding).

    Returns:
        The 32-byte leaf hash.
    """
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: ``SHA-256(0x01 || left || right)``.

    Args:
        left: Hash of the left child.
        right: Hash of the right child.

    Returns:
        The 32-byte node hash.
    """
    return sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash (RFC 6962 §2.1) of a list of leaf *data*.

    Args:
        leaves: The leaves' bytes, in order; each is hashed with :func:`leaf_hash`.

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.

    Example:
        >>> root([b"a"]) == leaf_hash(b"a")
        True
    """
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of already computed leaf hashes.

    Args:
        hashes: Leaf hashes in order, 32 bytes each.

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.

    Raises:
        MerkleError: A hash is not 32 bytes.
    """
    _check_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    return _root_of_levels(list(hashes))


def root_of_packed_leaves(data: bytes, width: int) -> bytes:
    """The Merkle Tree Hash of leaves of equal length given as one byte string.

    Leaf ``i`` is ``data[i * width : (i + 1) * width]``, hashed with :func:`leaf_hash`. The same
    root as ``root([data[0:width], data[width:2 * width], …])``, without building the list of
    leaves first (a batch's 32-byte record digests: a million leaves in about a second).

    Args:
        data: The leaves' bytes, concatenated.
        width: The length of every leaf, at least 1.

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for empty ``data``.

    Raises:
        MerkleError: ``width`` is not positive or does not divide ``len(data)``.
    """
    if width < 1 or len(data) % width:
        raise MerkleError(f"{len(data)} bytes are not a whole number of {width}-byte leaves")
    if not data:
        return EMPTY_ROOT
    view = memoryview(data)
    return _root_of_levels(
        [sha256(b"\x00" + view[i : i + width]).digest() for i in range(0, len(data), width)]
    )


def _root_of_levels(level: list[bytes]) -> bytes:
    # Pairing neighbours level by level and lifting an odd last node unchanged builds exactly
    # the RFC tree (split at the largest power of two), without recursion.
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path PATH(index, D[n]) of RFC 6962 §2.1.1 for a tree given by its leaf hashes.

    Args:
        leaf_hashes: All leaf hashes of the tree, in order (32 bytes each).
        index: 0-based index of the leaf to prove.

    Returns:
        The proof: sibling hashes from the leaf's level up to the root's children.

    Raises:
        MerkleError: ``index`` is not in ``[0, len(leaf_hashes))`` or a hash is not 32 bytes.
    """
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The consistency proof PROOF(old_size, D[n]) of RFC 6962 §2.1.2 (SUBPROOF with b = true).

    Args:
        leaf_hashes: All leaf hashes of the newer tree, in order (32 bytes each).
        old_size: Size of the older tree, ``1 <= old_size <= len(leaf_hashes)``.

    Returns:
        The proof; empty when ``old_size == len(leaf_hashes)``.

    Raises:
        MerkleError: ``old_size`` is out of range or a hash is not 32 bytes.
    """
    return MerkleTree(leaf_hashes).consistency_proof(old_size)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof with the algorithm of RFC 9162 §2.1.3.2.

    Args:
        leaf_hash: The leaf's hash (``leaf_hash(data)``, not the data).
        index: The leaf's 0-based index.
        tree_size: Number of leaves in the tree whose root is given.
        proof: The audit path, nearest sibling first.
        root: The trusted root of the tree of ``tree_size`` leaves.

    Returns:
        True if the proof shows the leaf at ``index`` in that tree; False otherwise, including
        for malformed input (``index >= tree_size``, non-32-byte hashes, wrong proof length).
    """
    if not (_is_size(index) and _is_size(tree_size) and index < tree_size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_path(proof)):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        # sn == 0 means r is already the root: any further element makes the proof too long.
        if sn == 0 or not isinstance(p, _BYTES) or len(p) != HASH_SIZE:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                # fn was the last node of its level with no right sibling, so it was lifted
                # unchanged to the level where it is a right child: skip those levels.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree of ``new_size`` leaves extends the tree of ``old_size`` leaves.

    Uses the algorithm of RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. When the sizes are
    equal the proof must be empty and the roots equal. There is no proof from the empty tree:
    ``old_size == 0`` returns False.

    Args:
        old_size: Size of the older tree (> 0).
        new_size: Size of the newer tree (>= ``old_size``).
        old_root: Trusted root of the older tree.
        new_root: Trusted root of the newer tree.
        proof: The consistency proof, as built by :func:`consistency_proof`.

    Returns:
        True if the proof holds; False otherwise, including for malformed input (sizes out of
        order, non-32-byte hashes, wrong proof length).
    """
    if not (_is_size(old_size) and _is_size(new_size) and 0 < old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_path(proof)):
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if len(proof) == 0 or not all(_is_hash(p) for p in proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree of the new one, so the proof omits its root.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    # The first proof element is the largest complete subtree ending at the old tree's last
    # leaf: start at that subtree's level.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr).digest()
            sr = sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class _AppendOnly:
    """What :class:`MerkleTree` and :class:`MerkleFrontier` share: a count of leaves, and
    ``append`` checking a leaf hash before the subclass's ``_push`` takes it."""

    __slots__ = ("_size",)

    def __init__(self) -> None:
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash.

        Args:
            leaf_hash: The new leaf's hash (``leaf_hash(data)``), 32 bytes.

        Returns:
            The 0-based index of the new leaf.

        Raises:
            MerkleError: ``leaf_hash`` is not 32 bytes.
        """
        if not _is_hash(leaf_hash):
            raise MerkleError(f"a leaf hash must be {HASH_SIZE} bytes, got {leaf_hash!r}")
        index = self._size
        self._push(bytes(leaf_hash), index)
        self._size = index + 1
        return index

    def _push(self, leaf_hash: bytes, index: int) -> None:
        """Take leaf ``index`` (its hash, as bytes); ``size`` still counts the leaves before."""
        raise NotImplementedError


class MerkleTree(_AppendOnly):
    """An append-only Merkle tree of leaf hashes serving roots and proofs for any past size.

    Storage: one ``bytearray`` per level; level ``h`` holds, back to back, the hash of every
    complete subtree of ``2**h`` leaves aligned on a multiple of ``2**h`` (level 0 = the leaf
    hashes). That is ``n + n/2 + n/4 + ... < 2n`` hashes: under 64 bytes per leaf plus the
    bytearrays' growth slack, with no per-hash Python object (``bench/merkle.py`` measures
    about 69 bytes per leaf, 65 MiB for a million leaves), and O(log n) bytes objects for the
    right edge still waiting for siblings.

    Cost: ``append`` hashes one node on average (amortized O(1)); ``root``, ``inclusion_proof``
    and ``consistency_proof`` read O(log n) stored hashes and compute at most O(log n) nodes,
    for the current size or any earlier one.

    Example:
        >>> tree = MerkleTree()
        >>> i = tree.append(leaf_hash(b"entry"))
        >>> verify_inclusion(leaf_hash(b"entry"), i, tree.size, tree.inclusion_proof(i),
        ...                  tree.root())
        True
    """

    __slots__ = ("_frontier", "_levels")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """Create a tree, optionally holding ``leaf_hashes`` already.

        Args:
            leaf_hashes: Initial leaf hashes, in order (32 bytes each).

        Raises:
            MerkleError: A hash is not 32 bytes.
        """
        self._levels: list[bytearray] = [bytearray()]
        # The roots of the complete subtrees tiling the leaves (as in MerkleFrontier): O(log n).
        self._frontier: list[bytes] = []
        super().__init__()
        self.extend(leaf_hashes)

    def _push(self, leaf_hash: bytes, index: int) -> None:
        levels = self._levels
        levels[0] += leaf_hash
        for height, node in enumerate(_completed(self._frontier, leaf_hash, index), 1):
            if height == len(levels):
                levels.append(bytearray())
            levels[height] += node

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order.

        Args:
            leaf_hashes: The new leaves' hashes, 32 bytes each.

        Raises:
            MerkleError: A hash is not 32 bytes; the ones before it are kept.
        """
        for h in leaf_hashes:
            self.append(h)

    def leaf_hash(self, index: int) -> bytes:
        """The hash of the leaf at ``index``.

        Raises:
            MerkleError: ``index`` is not in ``[0, size)``.
        """
        self._check_index(index, self._size)
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree made of the first ``size`` leaves.

        Args:
            size: Tree size, ``0 <= size <= self.size``; the current size if omitted.

        Returns:
            The 32-byte root (:data:`EMPTY_ROOT` for size 0).

        Raises:
            MerkleError: ``size`` is out of range.
        """
        n = self._check_size(size)
        return self._range_root(0, n) if n else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path (RFC 6962 §2.1.1) of leaf ``index`` in the tree of ``size`` leaves.

        Args:
            index: 0-based leaf index, ``0 <= index < size``.
            size: Tree size, ``<= self.size``; the current size if omitted.

        Returns:
            Sibling hashes, nearest the leaf first.

        Raises:
            MerkleError: ``index`` or ``size`` is out of range.
        """
        n = self._check_size(size)
        self._check_index(index, n)
        path: list[bytes] = []
        lo, hi = 0, n
        # Walk down from the root; only the first right sibling cut by the tree's right edge
        # is an incomplete subtree, every other sibling is a stored complete one.
        while hi - lo > 1:
            mid = lo + _split(hi - lo)
            if index < mid:
                path.append(self._range_root(mid, hi))
                hi = mid
            else:
                path.append(self._range_root(lo, mid))
                lo = mid
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The consistency proof (RFC 6962 §2.1.2) from ``old_size`` leaves to ``new_size``.

        Args:
            old_size: Size of the older tree, ``1 <= old_size <= new_size``.
            new_size: Size of the newer tree, ``<= self.size``; the current size if omitted.

        Returns:
            The proof; empty when the sizes are equal.

        Raises:
            MerkleError: A size is out of range (including ``old_size == 0``: the RFC defines
                no proof from the empty tree).
        """
        n = self._check_size(new_size)
        if not (_is_size(old_size) and 0 < old_size <= n):
            raise MerkleError(f"old_size must be in [1, {n}], got {old_size!r}")
        path: list[bytes] = []
        lo, hi = 0, n
        whole_old_tree = True  # SUBPROOF's flag b: [lo, hi) still starts at leaf 0
        while old_size != hi:
            mid = lo + _split(hi - lo)
            if old_size <= mid:
                path.append(self._range_root(mid, hi))
                hi = mid
            else:
                path.append(self._range_root(lo, mid))
                lo = mid
                whole_old_tree = False
        if not whole_old_tree:
            # The verifier knows the old root but not this inner subtree of it.
            path.append(self._range_root(lo, hi))
        path.reverse()
        return path

    def _node(self, height: int, position: int) -> bytes:
        start = position * HASH_SIZE
        return bytes(self._levels[height][start : start + HASH_SIZE])

    def _range_root(self, lo: int, hi: int) -> bytes:
        # MTH of leaves [lo, hi). Callers pass ranges of the RFC recursion, where lo is a
        # multiple of every power of two up to the width, so the range is tiled by stored
        # complete subtrees of decreasing size, one per set bit of the width.
        width = hi - lo
        if width & (width - 1) == 0:
            height = width.bit_length() - 1
            return self._node(height, lo >> height)
        parts: list[bytes] = []
        while lo < hi:
            height = (hi - lo).bit_length() - 1
            parts.append(self._node(height, lo >> height))
            lo += 1 << height
        node = parts.pop()
        while parts:
            node = sha256(b"\x01" + parts.pop() + node).digest()
        return node

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not (_is_size(size) and size <= self._size):
            raise MerkleError(f"tree size must be in [0, {self._size}], got {size!r}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not (_is_size(index) and index < size):
            raise MerkleError(f"leaf index must be in [0, {size}), got {index!r}")


class MerkleFrontier(_AppendOnly):
    """The right edge of an append-only Merkle tree: enough to append leaves and read the root.

    Holds, for the first ``size`` leaves, the roots of the complete aligned subtrees that tile
    them, largest (leftmost) first: one per set bit of ``size`` (the compact range ``[0, size)``).
    The RFC 6962 root is these roots folded from the right, ``node(s0, node(s1, ... sk))``,
    because the RFC tree splits at the largest power of two with the left part complete.

    Cost: ``append`` hashes one node on average (amortized O(1), at most log2 n); ``root`` hashes
    at most log2 n nodes (the result is cached until the next append); ``copy`` copies at most
    log2 n hashes. No leaf is kept, so it cannot serve proofs or past roots: use
    :class:`MerkleTree` for those.

    Example:
        >>> f = MerkleFrontier([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
        >>> f.root() == root([b"a", b"b", b"c"])
        True
    """

    __slots__ = ("_nodes", "_root")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """Create a frontier, optionally holding ``leaf_hashes`` already.

        Args:
            leaf_hashes: Initial leaf hashes, in order (32 bytes each).

        Raises:
            MerkleError: A hash is not 32 bytes.
        """
        self._nodes: list[bytes] = []
        super().__init__()
        self._root: bytes | None = EMPTY_ROOT
        self.extend(leaf_hashes)

    def _push(self, leaf_hash: bytes, index: int) -> None:
        for _ in _completed(self._nodes, leaf_hash, index):
            pass
        self._root = None

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order.

        Args:
            leaf_hashes: The new leaves' hashes, 32 bytes each.

        Raises:
            MerkleError: A hash is not 32 bytes; the ones before it are kept.
        """
        # append() and _completed() inlined: a call per leaf costs as much as the hashing.
        nodes = self._nodes
        size = self._size
        try:
            for h in leaf_hashes:
                if not (isinstance(h, _BYTES) and len(h) == HASH_SIZE):
                    raise MerkleError(f"a leaf hash must be {HASH_SIZE} bytes, got {h!r}")
                node = h if type(h) is bytes else bytes(h)
                pos = size
                while pos & 1:
                    node = sha256(b"\x01" + nodes.pop() + node).digest()
                    pos >>= 1
                nodes.append(node)
                size += 1
        finally:
            if size != self._size:
                self._size = size
                self._root = None

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves appended so far (:data:`EMPTY_ROOT` for none)."""
        r = self._root
        if r is None:
            nodes = self._nodes
            r = nodes[-1]
            for left in reversed(nodes[:-1]):
                r = sha256(b"\x01" + left + r).digest()
            self._root = r
        return r

    def copy(self) -> MerkleFrontier:
        """An independent frontier holding the same leaves (O(log n))."""
        other = MerkleFrontier.__new__(MerkleFrontier)
        other._nodes = list(self._nodes)
        other._size = self._size
        other._root = self._root
        return other


def _completed(nodes: list[bytes], node: bytes, index: int) -> Iterator[bytes]:
    """Append leaf ``index`` (hash ``node``) to the stack of complete-subtree roots ``nodes``;
    yield each node it completes, one level up per node.

    Each trailing 1 bit of ``index`` closes a complete subtree one level up: the new node
    merges with the equally large subtree on its left (the top of the stack)."""
    pos = index
    while pos & 1:
        node = sha256(b"\x01" + nodes.pop() + node).digest()
        yield node
        pos >>= 1
    nodes.append(node)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, _BYTES) and len(value) == HASH_SIZE


def _is_path(value: object) -> bool:
    # Concatenated hashes in one bytes value are a caller bug, not an (empty) list of hashes.
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _is_size(value: object) -> bool:
    # bool is an int subclass; True as a leaf index is a caller bug, not index 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_hashes(hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if not _is_hash(h):
            raise MerkleError(f"leaf hash {i} must be {HASH_SIZE} bytes, got {h!r}")
