"""Merkle trees over entry hashes, as in RFC 6962 (section 2.1), with its domain separation:
a leaf is SHA-256(0x00 || data), an inner node SHA-256(0x01 || left || right). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962. Raises ValueError for an empty list."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    # Pairing adjacent nodes level by level, an odd last node moving up unpaired, builds the
    # same tree as RFC 6962's split at the largest power of two, without recursion or slicing.
    # `_leaf` and `_node` are inlined: this runs for every flight-log batch, two hashes an entry.
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        pairs = iter(level)
        paired = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _root_of_hashes(nodes: Sequence[bytes]) -> bytes:
    if len(nodes) == 1:
        return nodes[0]
    k = _split(len(nodes))
    return _node(_root_of_hashes(nodes[:k]), _root_of_hashes(nodes[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962: the sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index out of range")
    return _path(index, [_leaf(leaf) for leaf in leaves])


def _path(m: int, nodes: Sequence[bytes]) -> list[bytes]:
    if len(nodes) == 1:
        return []
    k = _split(len(nodes))
    if m < k:
        return [*_path(m, nodes[:k]), _root_of_hashes(nodes[k:])]
    return [*_path(m - k, nodes[k:]), _root_of_hashes(nodes[:k])]


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from one leaf and its inclusion proof (RFC 9162, 2.1.3.2).

    Raises:
        ValueError: the proof has the wrong length for this index and tree size.
    """
    if not 0 <= index < size:
        raise ValueError("leaf index out of range")
    fn, sn = index, size - 1
    current = _leaf(leaf)
    for sibling in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            current = _node(sibling, current)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            current = _node(current, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return current
