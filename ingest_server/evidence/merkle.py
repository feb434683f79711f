"""Merkle trees over a day's batch digests, as RFC 9162 (Certificate Transparency 2.0,
section 2.1) defines them, so that any CT library checks our roots and proofs.

    leaf hash  SHA-256(0x00 || leaf)                        (the leaf: a 32-byte batch digest)
    node hash  SHA-256(0x01 || left || right)
    MTH(D[n])  for n > 1: node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n;
               MTH of one leaf is its leaf hash, of none SHA-256 of nothing

The 0x00/0x01 prefixes keep a leaf from passing for a node (second-preimage). The tree is
built level by level: pairing neighbours and carrying a lone last node up unchanged gives
exactly the RFC's split, and keeps every level for proofs in O(log n) each, so a day of
a large plant (10^5 batches) needs one pass for the root and all its proofs.

An inclusion proof (audit path) is the list of sibling hashes from the leaf up, as RFC
9162 section 2.1.3.1; `verify_inclusion` is the RFC's section 2.1.3.2 algorithm. Pure:
no database, no network (an offline verifier runs it). Checked against the published
vectors of transparency-dev/merkle (tests/evidence/test_merkle.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """The tree over `leaves` (in the order given: the caller fixes the order), every
    level kept: levels[0] the leaf hashes, the last level the root."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        level = [leaf_hash(x) for x in leaves]
        self.size = len(level)
        self.levels = [level]
        while len(level) > 1:
            up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:  # a lone last node goes up as it is (the RFC's split)
                up.append(level[-1])
            self.levels.append(up)
            level = up

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def proof(self, index: int) -> list[bytes]:
        """The audit path of leaf `index` (0-based): sibling hashes, leaf level first."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} is outside a tree of {self.size} leaves")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # no sibling: this node was carried up unchanged
                path.append(level[sibling])
            index //= 2
        return path


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(leaves)."""
    return MerkleTree(leaves).root


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaves[index] in the tree over `leaves`."""
    return MerkleTree(leaves).proof(index)


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root that `proof` leads to from `leaf` at `index` in a tree of `size` leaves
    (RFC 9162 section 2.1.3.2), or None when the proof cannot belong to such a tree (a
    wrong length, an index outside it, a hash not 32 bytes)."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in proof):
        return None
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:  # the path is longer than the tree is high
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:  # right border: climb to the next level where fn is a right child
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Whether `proof` shows `leaf` at `index` of the tree of `size` leaves whose root is
    `expected_root`."""
    return root_from_proof(leaf, index, size, proof) == expected_root


# -- a day's leaves --------------------------------------------------------------------
# Version 1 of the leaf order (anchor_days.leaf_order): the day's batches sorted by site
# id, gateway id (both by Unicode code point, as Python compares str; never a database
# collation), then boot and seq ascending. A leaf is the batch's 32-byte digest.
LEAF_ORDER = 1


@dataclass(frozen=True, order=True)
class Leaf:
    """A v2 batch as a leaf of its day's tree; fields in the order of LEAF_ORDER 1."""

    site: str
    gateway: str
    boot: int
    seq: int
    digest: bytes


@dataclass(frozen=True)
class Inclusion:
    """A batch's place in its day's tree and its audit path (RFC 9162 section 2.1.3.1)."""

    leaf: Leaf
    index: int
    size: int
    proof: list[bytes]

    def verify(self, expected_root: bytes) -> bool:
        return verify_inclusion(self.leaf.digest, self.index, self.size, self.proof,
                                expected_root)  # fmt: skip


def ordered(leaves: Sequence[Leaf]) -> list[Leaf]:
    """`leaves` in LEAF_ORDER 1 (the digest never decides: (gateway, boot, seq) is a
    batch's key)."""
    return sorted(leaves, key=lambda x: (x.site, x.gateway, x.boot, x.seq))


def day_tree(leaves: Sequence[Leaf]) -> tuple[MerkleTree, list[Leaf]]:
    """The tree over a day's batches in LEAF_ORDER 1, and the leaves in that order."""
    order = ordered(leaves)
    return MerkleTree([x.digest for x in order]), order


def inclusions(leaves: Sequence[Leaf]) -> list[Inclusion]:
    """Every batch's inclusion proof in its day's tree."""
    tree, order = day_tree(leaves)
    return [Inclusion(x, i, tree.size, tree.proof(i)) for i, x in enumerate(order)]
