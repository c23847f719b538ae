"""Zero-shot layer-level heads (``layer_level``): rank a new space from a basis device's
table in another space, with no sample of the new space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oracle_server.predictor.heads import _affine_coef
from oracle_server.predictor.layer_features import (
    _check_desc,
    _check_samples,
    flops_of,
    table_linear,
    table_power,
)
from oracle_server.predictor.layer_head import LayerHead
from oracle_server.predictor.layer_prior import CrossSpacePrior

#: zero-shot members (mean log prediction), chosen on the train + validation devices shared
#: by two spaces, averaged over the four directions (test devices excluded)
ZERO_SHOT_MEMBERS: tuple[str, ...] = ("linear", "powerlaw", "flops")


def zero_shot(
    device_table_desc6: np.ndarray,
    device_table_ms: np.ndarray,
    prior: CrossSpacePrior | None = None,
    members: Sequence[str] = ZERO_SHOT_MEMBERS,
    target_desc6: np.ndarray | None = None,
) -> LayerHead:
    """A basis device's layer-level model fit on its whole table in another space, to rank a
    new space with no sample of it: the mean log prediction of the non-negative linear model
    in ms, the power law and the FLOPs law, each fit on the source table. ``prior`` (other
    devices, other spaces) fills linear coefficients the source space does not identify
    (e.g. depthwise MACs from NAS-Bench-201); without it they are 0.

    ``target_desc6``: descriptors of (a sample of) the new space's candidate architectures
    (no latency): each member's log prediction is standardised over them before averaging,
    so a member that extrapolates wildly in the new space cannot dominate the mean;
    without it the members are averaged in log ms over the source table's statistics."""
    d, y = _check_samples(device_table_desc6, device_table_ms)
    parts = []
    for member in members:
        if member == "linear":
            c = table_linear(d, y)
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
    if len(parts) == 1:
        return parts[0]
    ref = d if target_desc6 is None else _check_desc(target_desc6)
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


def _fill_from_prior(c: np.ndarray, prior: CrossSpacePrior) -> np.ndarray:
    """Missing coefficients: the basis devices' mean ratio to this device's dense-MAC cost."""
    lin = prior.linear
    out = c.copy()
    for j in np.flatnonzero(~np.isfinite(c)):
        ok = np.isfinite(lin[:, j]) & np.isfinite(lin[:, 1]) & (lin[:, 1] > 0)
        if ok.any() and np.isfinite(c[1]):
            out[j] = c[1] * float(np.median(lin[ok, j] / lin[ok, 1]))
    return out
