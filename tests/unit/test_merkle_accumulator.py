"""The incremental Merkle accumulator the flight-log writer uses gives RFC 6962 roots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import merkle


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=150))
def test_the_accumulated_root_equals_the_rfc_6962_root_of_the_same_leaves(leaves: list[bytes]) -> None:
    accumulator = merkle.Accumulator()
    for leaf in leaves:
        accumulator.push(leaf)
    assert accumulator.count == len(leaves)
    assert accumulator.root() == merkle.root(leaves)


def test_a_reset_accumulator_starts_a_new_tree_and_an_empty_one_has_no_root() -> None:
    accumulator = merkle.Accumulator()
    accumulator.push(b"a" * 32)
    accumulator.reset()
    with pytest.raises(ValueError):
        accumulator.root()
    accumulator.push(b"b" * 32)
    assert accumulator.root() == merkle.root([b"b" * 32])
