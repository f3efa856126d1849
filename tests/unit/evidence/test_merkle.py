"""gateway/evidence/merkle.py: RFC 6962 Merkle tree heads and inclusion proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from gateway.evidence.merkle import inclusion_proof, root, root_from_proof


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _data(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


D = _data(8)
L = [_leaf(d) for d in D]
N01, N23, N45, N67 = _node(L[0], L[1]), _node(L[2], L[3]), _node(L[4], L[5]), _node(L[6], L[7])
N0123 = _node(N01, N23)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(1, L[0], id="1"),
        pytest.param(2, N01, id="2"),
        pytest.param(3, _node(N01, L[2]), id="3"),
        pytest.param(4, N0123, id="4"),
        pytest.param(5, _node(N0123, L[4]), id="5"),
        pytest.param(7, _node(N0123, _node(N45, L[6])), id="7"),
        pytest.param(8, _node(N0123, _node(N45, N67)), id="8"),
    ],
)
def test_the_root_has_the_rfc6962_shape(n: int, expected: bytes) -> None:
    assert root(D[:n]) == expected


@pytest.mark.parametrize(
    ("n", "index", "expected"),
    [
        pytest.param(1, 0, [], id="1-leaf"),
        pytest.param(2, 1, [L[0]], id="2-right"),
        pytest.param(3, 2, [N01], id="3-last"),
        pytest.param(3, 0, [L[1], L[2]], id="3-first"),
        pytest.param(5, 4, [N0123], id="5-last"),
        pytest.param(5, 1, [L[0], N23, L[4]], id="5-second"),
        pytest.param(7, 6, [N45, N0123], id="7-last"),
        pytest.param(7, 5, [L[4], L[6], N0123], id="7-sixth"),
        pytest.param(7, 0, [L[1], N23, _node(N45, L[6])], id="7-first"),
        pytest.param(8, 3, [L[2], N01, _node(N45, N67)], id="8-fourth"),
    ],
)
def test_inclusion_proofs_have_the_rfc6962_path(n: int, index: int, expected: list[bytes]) -> None:
    assert inclusion_proof(D[:n], index) == expected


# The Certificate Transparency reference inputs and tree heads (as used by the RFC 6962
# implementations in certificate-transparency and trillian): an outside check on the hand-built ones.
_CT_LEAVES = [
    bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
_CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_certificate_transparency_reference_tree_heads(n: int) -> None:
    assert root(_CT_LEAVES[:n]).hex() == _CT_ROOTS[n - 1]


def test_an_inclusion_proof_matches_the_certificate_transparency_reference_proof() -> None:
    assert [p.hex() for p in inclusion_proof(_CT_LEAVES, 0)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


def test_every_inclusion_proof_recomputes_the_root_for_trees_of_1_to_70_leaves() -> None:
    data = _data(70)
    for n in range(1, 71):
        expected = root(data[:n])
        for index in range(n):
            proof = inclusion_proof(data[:n], index)
            assert root_from_proof(data[index], index, n, proof) == expected, (n, index)


def _flip(value: bytes, position: int) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def test_a_flipped_byte_anywhere_in_any_proof_never_gives_the_root() -> None:
    data = _data(70)
    for n in range(2, 71):
        expected = root(data[:n])
        for index in range(n):
            proof = inclusion_proof(data[:n], index)
            for k in range(len(proof)):
                tampered = [*proof[:k], _flip(proof[k], (n + index + k) % 32), *proof[k + 1 :]]
                assert root_from_proof(data[index], index, n, tampered) != expected, (n, index, k)


def test_a_proof_checked_against_another_tree_size_never_gives_that_trees_root() -> None:
    # The verifier's tree head is a (size, root) pair from one signed statement.
    data = _data(40)
    roots = {m: root(data[:m]) for m in range(1, 41)}
    for n in range(1, 41):
        for index in range(n):
            proof = inclusion_proof(data[:n], index)
            for m in range(index + 1, 41):
                if m == n:
                    continue
                try:
                    recomputed = root_from_proof(data[index], index, m, proof)
                except ValueError:
                    continue
                assert recomputed != roots[m], (n, index, m)


Claim = tuple[bytes, int, int, list[bytes]]

# A 7-leaf tree, leaf 5: proof [L4, L6, N0123]. Each row is a tampering of the claim
# (leaf data, index, size, proof) handed to root_from_proof.
_N, _I = 7, 5


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d, i, n, p: (d + b"!", i, n, p), id="leaf-data-changed"),
        pytest.param(lambda d, i, n, p: (d, i, n, [_flip(p[0], 0), *p[1:]]), id="first-sibling-byte-flipped"),
        pytest.param(lambda d, i, n, p: (d, i, n, [*p[:-1], _flip(p[-1], 31)]), id="last-sibling-byte-flipped"),
        pytest.param(lambda d, i, n, p: (d, i - 1, n, p), id="index-minus-one"),
        pytest.param(lambda d, i, n, p: (d, i + 1, n, p), id="index-plus-one"),
        pytest.param(lambda d, i, n, p: (d, 1, n, p), id="index-in-other-half"),
        pytest.param(lambda d, i, n, p: (d, n, n, p), id="index-equal-to-size"),
        pytest.param(lambda d, i, n, p: (d, -1, n, p), id="negative-index"),
        pytest.param(lambda d, i, n, p: (d, i, n - 1, p), id="size-minus-one"),
        pytest.param(lambda d, i, n, p: (d, i, n + 2, p), id="size-plus-two"),
        pytest.param(lambda d, i, n, p: (d, i, 16, p), id="size-next-power-of-two"),
        pytest.param(lambda d, i, n, p: (d, i, 0, p), id="size-zero"),
        pytest.param(lambda d, i, n, p: (d, i, n, p[:-1]), id="truncated-last-sibling"),
        pytest.param(lambda d, i, n, p: (d, i, n, p[1:]), id="truncated-first-sibling"),
        pytest.param(lambda d, i, n, p: (d, i, n, []), id="empty-proof"),
        pytest.param(lambda d, i, n, p: (d, i, n, [*p, p[-1]]), id="extended-with-a-repeat"),
        pytest.param(lambda d, i, n, p: (d, i, n, [*p, bytes(32)]), id="extended-with-zeros"),
        pytest.param(lambda d, i, n, p: (d, i, n, [bytes(32), *p]), id="prepended-zeros"),
        pytest.param(lambda d, i, n, p: (d, i, n, [p[1], p[0], *p[2:]]), id="siblings-swapped"),
        pytest.param(lambda d, i, n, p: (d, i, n, [*p[:-1], root(D[:4])[:31]]), id="short-sibling"),
    ],
)
def test_a_tampered_inclusion_proof_does_not_give_the_root(tamper: Callable[[bytes, int, int, list[bytes]], Claim]) -> None:
    proof = inclusion_proof(D[:_N], _I)
    assert proof == [L[4], L[6], N0123]
    expected = root(D[:_N])
    assert root_from_proof(D[_I], _I, _N, proof) == expected
    leaf, index, size, tampered = tamper(D[_I], _I, _N, list(proof))
    try:
        recomputed = root_from_proof(leaf, index, size, tampered)
    except ValueError:
        return
    assert recomputed != expected


def test_a_proof_given_for_a_leaf_hash_instead_of_leaf_data_does_not_give_the_root() -> None:
    proof = inclusion_proof(D[:_N], _I)
    assert root_from_proof(L[_I], _I, _N, proof) != root(D[:_N])


def test_an_empty_tree_has_no_root() -> None:
    with pytest.raises(ValueError):
        root([])


@pytest.mark.parametrize(
    ("n", "index"), [pytest.param(0, 0, id="empty"), pytest.param(3, 3, id="past-end"), pytest.param(3, -1, id="negative")]
)
def test_an_inclusion_proof_for_a_leaf_outside_the_tree_raises_value_error(n: int, index: int) -> None:
    with pytest.raises(ValueError):
        inclusion_proof(D[:n], index)


def test_a_one_leaf_tree_over_two_leaf_hashes_does_not_collide_with_the_two_leaf_tree() -> None:
    a, b = b"left", b"right"
    two = root([a, b])
    assert two == _node(_leaf(a), _leaf(b))
    assert root([_leaf(a) + _leaf(b)]) != two
    assert root([b"\x01" + _leaf(a) + _leaf(b)]) != two


def test_an_inner_node_cannot_be_passed_off_as_a_leaf() -> None:
    # Second-preimage attempt on a 4-leaf tree: claim the inner node N01's preimage is the
    # data of leaf 0 in a 2-leaf tree whose other leaf is N23.
    head = root(D[:4])
    assert head == _node(N01, N23)
    assert root_from_proof(L[0] + L[1], 0, 2, [N23]) != head
    assert root_from_proof(b"\x01" + L[0] + L[1], 0, 2, [N23]) != head
    assert root([L[0] + L[1], L[2] + L[3]]) != head


def test_a_leaf_hash_is_not_the_plain_sha256_of_its_data() -> None:
    assert root([b"x"]) == hashlib.sha256(b"\x00x").digest()
    assert root([b"x"]) != hashlib.sha256(b"x").digest()
