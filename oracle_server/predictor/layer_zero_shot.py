"""Zero-shot layer-level heads (``layer_level``): rank a new space from a basis device's
table in another space, with no sample of the new space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oracle_server.predictor.heads import _affine_coef, spearman
from oracle_server.predictor.heads.solver import nnls
from oracle_server.predictor.layer_features import (
    _check_desc,
    _check_samples,
    design,
    flops_of,
    table_linear,
    table_power,
)
from oracle_server.predictor.layer_head import LayerHead
from oracle_server.predictor.layer_prior import CrossSpacePrior

#: zero-shot members (mean log prediction), chosen on the train + validation devices shared
#: by two spaces, averaged over the four directions (test devices excluded)
ZERO_SHOT_MEMBERS: tuple[str, ...] = ("linear", "powerlaw", "flops")
#: ridge on the linear member's per-descriptor contributions to the TARGET space's mean
#: latency (relative to the source mean, per source row): among source fits that are
#: equally good (descriptors collinear in the source, e.g. dense MACs and weights in
#: NAS-Bench-201) it picks the one that extrapolates least into the new space
TARGET_RIDGE = 1e-4
#: a member whose ranking of the device's own source table has Spearman below this is left
#: out (e.g. the FLOPs law on a launch-bound batch-1 GPU: 0.2-0.3); 0.30-0.35 are equal on
#: the selection devices (``benchmarks/studies/zero_shot_variants.py``)
MIN_SOURCE_RHO = 1 / 3


def zero_shot(
    device_table_desc6: np.ndarray,
    device_table_ms: np.ndarray,
    prior: CrossSpacePrior | None = None,
    members: Sequence[str] = ZERO_SHOT_MEMBERS,
    target_desc6: np.ndarray | None = None,
    target_ridge: float = TARGET_RIDGE,
    min_source_rho: float = MIN_SOURCE_RHO,
) -> LayerHead:
    """A basis device's layer-level model fit on its whole table in another space, to rank a
    new space with no sample of it: the mean log prediction of the non-negative linear model
    in ms, the power law and the FLOPs law, each fit on the source table. ``prior`` (other
    devices, other spaces) fills linear coefficients the source space does not identify
    (e.g. depthwise MACs from NAS-Bench-201); without it they are 0.

    ``target_desc6``: descriptors of (a sample of) the new space's candidate architectures
    (no latency). The linear member is then fit with a small ridge (``target_ridge``) on
    each descriptor's contribution to the new space's mean latency, and each member's log
    prediction is standardised over them before averaging, so a member that extrapolates
    wildly in the new space cannot dominate the mean; without it the linear member is the
    plain non-negative fit and the members are averaged in log ms over the source table.

    Members whose Spearman on the source table itself is below ``min_source_rho`` are left
    out (the best one is kept if none reaches it)."""
    d, y = _check_samples(device_table_desc6, device_table_ms)
    ref = None if target_desc6 is None else _check_desc(target_desc6)
    parts = []
    for member in members:
        if member == "linear":
            c = table_linear(d, y) if ref is None else target_ridge_linear(d, y, ref, target_ridge)
            if prior is not None and not np.isfinite(c).all():
                c = _fill_from_prior(c, prior)
            c = np.where(np.isfinite(c), c, 0.0)
            floor = float(0.2 * y.min())
            parts.append(LayerHead("zero_shot_linear", {"theta": c.tolist(), "floor_ms": floor}))
        elif member == "powerlaw":
            b = table_power(d, y)
            b = np.where(np.isfinite(b), b, 0.0)
            parts.append(LayerHead("zero_shot_powerlaw", {"b0": float(b[0]), "b": b[1:].tolist()}))
        elif member == "flops":
            a, c0 = _affine_coef(np.log(np.maximum(flops_of(d), 1.0)), np.log(y))
            parts.append(LayerHead("flops", {"a": a, "c": c0}))
        else:
            raise ValueError(f"unknown zero-shot member {member!r}")
    if len(parts) > 1 and min_source_rho > -1.0:
        rho = [spearman(q.predict_log(d), y) for q in parts]
        rho = [r if np.isfinite(r) else -1.0 for r in rho]
        keep = [q for q, r in zip(parts, rho, strict=True) if r >= min_source_rho]
        parts = keep or [parts[int(np.argmax(rho))]]
    if len(parts) == 1:
        return parts[0]
    ref = d if ref is None else ref
    preds = [q.predict_log(ref) for q in parts]
    stats = [[float(q.mean()), float(q.std()) if q.std() > 0 else 1.0] for q in preds]
    z = np.log(y)
    return LayerHead(
        "ensemble",
        {
            "members": [q.to_params() for q in parts],
            "standardise": stats,
            "out": [float(z.mean()), float(z.std())],
        },
    )


def target_ridge_linear(
    desc6: np.ndarray, y_ms: np.ndarray, target_desc6: np.ndarray, ridge: float = TARGET_RIDGE
) -> np.ndarray:
    """(7,) non-negative ms coefficients of ``design`` fit on a source table with a ridge on
    each term's contribution to the target's mean latency: min |x c - y|^2 / s^2 +
    ridge * n * sum_j (c_j m_j / s)^2 (``m``: the target design's column means, ``s``:
    the source mean latency). NaN where the source does not identify a coefficient (as
    ``table_linear``)."""
    x = design(desc6)
    y = np.asarray(y_ms, dtype=np.float64)
    m = design(target_desc6).mean(0)
    m = np.where(m > 0, m, 1.0)
    s, n = float(y.mean()), len(y)
    a = np.r_[x / m, np.sqrt(ridge * n) * np.eye(x.shape[1])]
    c = nnls(a, np.r_[y / s, np.zeros(x.shape[1])]) / m * s
    c[np.r_[False, np.ptp(x[:, 1:], axis=0) <= 0]] = np.nan
    return c


def _fill_from_prior(c: np.ndarray, prior: CrossSpacePrior) -> np.ndarray:
    """Missing coefficients: the basis devices' mean ratio to this device's dense-MAC cost."""
    lin = prior.linear
    out = c.copy()
    for j in np.flatnonzero(~np.isfinite(c)):
        ok = np.isfinite(lin[:, j]) & np.isfinite(lin[:, 1]) & (lin[:, 1] > 0)
        if ok.any() and np.isfinite(c[1]):
            out[j] = c[1] * float(np.median(lin[ok, j] / lin[ok, 1]))
    return out
