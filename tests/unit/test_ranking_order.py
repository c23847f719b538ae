"""The server's ordering rule: a stable sort, budget-filtered, truncated to top_k."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle_server.ranking import order as _order


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    top_k=st.integers(0, 70),
    budget=st.one_of(st.none(), st.integers(0, 6)),
)
def test_order_equals_stable_sort(values: list[int], top_k: int, budget: int | None) -> None:
    lat = np.asarray(values, dtype=np.float32)
    idx = np.arange(lat.size) if budget is None else np.flatnonzero(lat <= budget)
    expected = idx[np.argsort(lat[idx], kind="stable")]
    if top_k:
        expected = expected[:top_k]
    got = _order(lat, top_k, None if budget is None else float(budget))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint32
