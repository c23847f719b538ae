"""``client_sdk._ranks.average_ranks``: the vectorised 2-D path equals ranking each row or
column alone (ties averaged, NaNs last and tied), and scipy's ``rankdata``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from client_sdk._ranks import _rank1, average_ranks


@pytest.mark.parametrize("seed", range(40))
def test_two_dimensional_ranks_equal_one_row_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, size=(rng.integers(1, 6), rng.integers(1, 9))).astype(float)
    if seed % 3 == 0:
        a[rng.random(a.shape) < 0.25] = np.nan
    for axis in (0, 1):
        assert np.array_equal(average_ranks(a, axis=axis), np.apply_along_axis(_rank1, axis, a))
    if not np.isnan(a).any():
        assert np.array_equal(average_ranks(a, axis=1), rankdata(a, axis=1))


def test_ranks_of_empty_and_three_dimensional_input() -> None:
    assert average_ranks(np.zeros((0, 3)), axis=1).shape == (0, 3)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        average_ranks(np.zeros((2, 2, 2)))


def test_spearman_columns_with_one_y_column_per_x_column() -> None:
    from client_sdk.stats import spearman, spearman_columns

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 7)), rng.normal(size=(12, 7))
    y[:, 3] = 1.0  # a constant column is undefined
    got = spearman_columns(x, y)
    want = [spearman(x[:, j], y[:, j]) for j in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[3])
