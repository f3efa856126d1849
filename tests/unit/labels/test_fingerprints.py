"""gateway/labels/fingerprints.py: the one-pass union of window starts gives exactly the windows
a set of every start gives (the windows an argument's runs and pieces are looked up by)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.labels.fingerprints import _union


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(-5, 40))))
def test_the_union_of_spans_is_every_start_once_in_order(raw: list[tuple[int, int]]) -> None:
    spans = sorted((low, low + width) for low, width in raw)  # in order of low, as the callers give them
    expected = sorted({i for low, high in spans for i in range(low, high + 1)})
    assert list(_union(spans)) == expected
