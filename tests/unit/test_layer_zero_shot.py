"""Zero-shot layer-level heads (issue 26): the target-contribution ridge and the member gate
of ``layer_zero_shot.zero_shot``."""

from __future__ import annotations

import numpy as np

from oracle_server.predictor import layer_level as ll
from oracle_server.predictor.heads import spearman
from oracle_server.predictor.layer_features import table_linear
from oracle_server.predictor.layer_zero_shot import target_ridge_linear


def _desc(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ll.GLOBAL_SCALE * rng.uniform(0.5, 3.0, size=(n, ll.NUM_BASE))


def _collinear_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source where dense MACs follow the weights to 1 % (as in NAS-Bench-201), a device
    whose source latency is weights + kernels, and a target whose weights are far outside
    the source's range (dense MACs within it)."""
    rng = np.random.default_rng(seed)
    src = _desc(800, seed)
    src[:, 0] = src[:, 2] / ll.GLOBAL_SCALE[2] * ll.GLOBAL_SCALE[0] * rng.normal(1, 0.01, 800)
    tgt = _desc(800, seed + 1)
    tgt[:, 2] = 8.0 * ll.GLOBAL_SCALE[2] * rng.uniform(1, 3, 800)
    y = ll.design(src) @ np.array([0.2, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    return src, tgt, y


def test_target_ridge_puts_a_collinear_cost_where_the_target_extrapolates_least():
    src, tgt, y = _collinear_pair()
    m = ll.design(tgt).mean(0)
    plain = m * table_linear(src, y)  # the previous linear member: the weights carry it
    assert plain[3] > 5 * plain[1]
    ridged = target_ridge_linear(src, y, tgt, 1e-4)
    share = m * ridged
    assert share[1] > 3 * share[3]  # dense MACs carry the cost, not the out-of-range weights
    assert share[3] < 0.2 * plain[3]
    assert spearman(ll.design(src) @ ridged, y) > 0.99  # at (almost) no cost on the source


def test_target_ridge_marks_unidentified_coefficients():
    src = _desc(300, 3)
    src[:, 1] = 0.0  # no depthwise layer in the source
    y = ll.design(src) @ np.array([0.1, 1.0, 2.0, 0.5, 0.0, 1.0, 0.0])
    c = target_ridge_linear(src, y, _desc(300, 4))
    assert np.isnan(c[2]) and np.isfinite(np.delete(c, 2)).all()


def test_a_member_that_does_not_rank_the_source_is_left_out():
    src = _desc(600, 5)
    y = 0.3 + 10.0 * src[:, 4] / ll.GLOBAL_SCALE[4]  # launch-bound: kernels only
    assert abs(spearman(ll.flops_of(src), y)) < 0.2
    tgt = _desc(600, 6)
    gated = ll.zero_shot(src, y, target_desc6=tgt)
    kinds = [m["kind"] for m in gated.params["members"]]
    assert "flops" not in kinds and "zero_shot_linear" in kinds
    everyone = ll.zero_shot(src, y, target_desc6=tgt, min_source_rho=-1.0)
    assert "flops" in [m["kind"] for m in everyone.params["members"]]
    truth = 0.3 + 10.0 * tgt[:, 4] / ll.GLOBAL_SCALE[4]
    assert spearman(gated.predict_ms(tgt), truth) > spearman(everyone.predict_ms(tgt), truth)


def test_the_best_member_is_kept_when_none_ranks_the_source():
    src = _desc(400, 7)
    y = np.random.default_rng(8).uniform(1.0, 2.0, 400)  # noise: nothing ranks it
    head = ll.zero_shot(src, y, target_desc6=_desc(100, 9), min_source_rho=0.99)
    assert head.kind in ("zero_shot_linear", "zero_shot_powerlaw", "flops")
