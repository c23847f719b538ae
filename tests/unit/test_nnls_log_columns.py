"""``nnls_log`` reads only its columns of non-zero weight (Rank fills only those: the others
are 1.0 ms): its prediction equals the full product it replaced to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_server.predictor.heads import fit_candidate, head_kind, log_basis, predict_log
from oracle_server.predictor.heads.basis import NnlsLogParams


def reference(params: dict, basis: np.ndarray) -> np.ndarray:
    """``NnlsLog.predict_log`` before it skipped the zero-weight columns."""
    return log_basis(basis) @ np.asarray(params["weights"]) + params["c"]


@pytest.mark.parametrize("seed", range(4))
def test_sparse_weights_equal_the_full_product(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, b = 5000, 70
    w = np.zeros(b)
    w[rng.choice(b, 1 + seed, replace=False)] = rng.uniform(0.05, 2.0, 1 + seed)
    params = NnlsLogParams(w, float(rng.normal())).to_dict()
    cols = sorted(head_kind("nnls_log").columns(params))
    assert cols == sorted(np.flatnonzero(w).tolist())
    served = np.ones((n, b))  # what Rank's basis holds: 1.0 ms where no head reads
    served[:, cols] = np.exp(rng.normal(1.0, 1.5, (n, len(cols))))
    full = np.exp(rng.normal(1.0, 1.5, (n, b)))  # every column filled (fit time, tables)
    full[:5, cols[0]] = 1e-6  # below the 1e-3 ms floor
    for basis in (served, full):
        got = predict_log("nnls_log", params, basis, np.zeros((n, 0)))
        want = reference(params, basis)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.argsort(got, kind="stable")[:50],
                                      np.argsort(want, kind="stable")[:50])


def test_all_weights_nonzero_is_the_full_product_bit_for_bit() -> None:
    rng = np.random.default_rng(9)
    basis = np.exp(rng.normal(0.0, 1.0, (300, 6)))
    params = NnlsLogParams(rng.uniform(0.1, 1.0, 6), 0.3).to_dict()
    got = predict_log("nnls_log", params, basis, np.zeros((300, 0)))
    np.testing.assert_array_equal(got, reference(params, basis))


def test_fitted_head_reads_only_its_columns() -> None:
    """A fitted head: columns it does not read may hold anything (NaN here)."""
    rng = np.random.default_rng(3)
    basis = np.exp(rng.normal(1.0, 0.7, (40, 12)))
    y = np.exp(0.6 * np.log(basis[:, 2]) + 0.3 * np.log(basis[:, 7]) + rng.normal(0, 0.01, 40))
    cand = fit_candidate("nnls_log", basis[:20], np.zeros((20, 1)), y[:20], np.zeros((2, 12)),
                         np.zeros((1, 1)))
    cols = sorted(head_kind("nnls_log").columns(cand.params))
    assert 0 < len(cols) < 12
    holes = basis.copy()
    holes[:, [c for c in range(12) if c not in cols]] = np.nan
    got = predict_log("nnls_log", cand.params, holes, np.zeros((40, 1)))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference(cand.params, basis), rtol=1e-12, atol=1e-12)
