"""evidence/merkle.py against published RFC 6962/9162 test vectors (the two RFCs hash
trees identically), then every proof of trees of every size up to 70 against the
recursive definition of RFC 9162 section 2.1.1, and the corruptions a verifier must
refuse.

The vectors are those of transparency-dev/merkle (Apache-2.0), the Go library
Certificate Transparency's logs use:
- testonly/constants.go (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1): LeafInputs,
  RootHashes for every tree size 0..8;
- proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472): inclusionProofs
  (there 1-based leaf numbers; here 0-based indices).
"""

from __future__ import annotations

import hashlib

import pytest

from ingest_server.evidence import merkle

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip

ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]  # fmt: skip  (index = tree size)

# (0-based leaf index, tree size, audit path)
PROOFS = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_published_vectors(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), PROOFS)
def test_proofs_match_the_published_vectors(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in path]
    assert merkle.inclusion_proof(LEAVES[:size], index) == proof
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written as the RFC writes it (recursive)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 PATH(m, D[n]), as written there."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def test_every_tree_up_to_70_leaves_follows_the_rfc() -> None:
    digests = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70)]
    for n in range(1, 71):
        tree = merkle.MerkleTree(digests[:n])
        assert tree.root == mth(digests[:n]), n
        for i in range(n):
            proof = tree.proof(i)
            assert proof == path(i, digests[:n]), (n, i)
            assert merkle.verify_inclusion(digests[i], i, n, proof, tree.root), (n, i)


def test_a_verifier_refuses_corrupted_proofs() -> None:
    """The corruptions of transparency-dev/merkle's corruptInclusionProof."""
    index, size = 5, 8
    proof = merkle.inclusion_proof(LEAVES, index)
    leaf, good = LEAVES[index], ROOTS[size]
    assert merkle.verify_inclusion(leaf, index, size, proof, good)
    other = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    flipped = [bytes([p[0] ^ 8, *p[1:]]) if i == 1 else p for i, p in enumerate(proof)]
    bad = [
        (leaf, index - 1, size, proof, good),
        (leaf, index + 1, size, proof, good),
        (leaf, index ^ 2, size, proof, good),
        (leaf, index, size * 2, proof, good),
        (leaf, index, size // 2, proof, good),
        (b"WrongLeaf", index, size, proof, good),
        (leaf, index, size, proof, ROOTS[0]),
        (leaf, index, size, proof, other),
        (leaf, index, size, [*proof, b""], good),
        (leaf, index, size, [*proof, good], good),
        (leaf, index, size, [b"", *proof], good),
        (leaf, index, size, [good, *proof], good),
        (leaf, index, size, flipped, good),
        (leaf, index, size, proof[:-1], good),
        (leaf, index, size, [proof[0], other, *proof[1:]], good),
        (leaf, size, size, proof, good),  # an index outside the tree
    ]
    assert [merkle.verify_inclusion(*b) for b in bad] == [False] * len(bad)


def test_a_proof_of_a_leaf_outside_the_tree_is_an_error() -> None:
    with pytest.raises(IndexError, match="outside a tree of 3 leaves"):
        merkle.inclusion_proof(LEAVES[:3], 3)
