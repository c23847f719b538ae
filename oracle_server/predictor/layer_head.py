"""``LayerHead``: a fitted layer-level head (``layer_level``), JSON-safe parameters and a
vectorised prediction; and the issue's naive baseline ``naive_nnls``."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from oracle_server.predictor.layer_features import (
    GLOBAL_SCALE,
    MS_FLOOR,
    _check_desc,
    design,
    flops_of,
    nnls_coef,
    power_inputs,
)


class LayerInputs:
    """A batch's six descriptors and what the layer heads compute from them (the design
    matrix, the power-law inputs, the log FLOPs), each computed once however many heads
    and members read them (``TransferredBasis``: one ensemble per basis column)."""

    def __init__(self, desc6: np.ndarray) -> None:
        self.desc6 = _check_desc(desc6)

    @functools.cached_property
    def design(self) -> np.ndarray:
        return design(self.desc6)

    @functools.cached_property
    def power(self) -> np.ndarray:
        return power_inputs(self.desc6)

    @functools.cached_property
    def log_flops(self) -> np.ndarray:
        return np.log(np.maximum(flops_of(self.desc6), 1.0))


@dataclass(frozen=True)
class LayerHead:
    """A fitted layer-level head. ``params`` is JSON-safe; ``predict_ms`` is vectorised."""

    kind: str
    params: dict
    loo_spearman: float = float("nan")

    def predict_log(self, desc6: np.ndarray | LayerInputs) -> np.ndarray:
        p = self.params
        x = desc6 if isinstance(desc6, LayerInputs) else LayerInputs(desc6)
        if self.kind == "ensemble":
            parts = [LayerHead.from_params(m).predict_log(x) for m in p["members"]]
            if not parts:
                raise ValueError("an ensemble head needs members")
            if "standardise" in p:  # members on a common scale (zero-shot), back to log ms
                (mu, sd), out = np.asarray(p["standardise"]).T, p["out"]
                parts = [(q - m) / s for q, m, s in zip(parts, mu, sd, strict=True)]
                return np.mean(parts, axis=0) * out[1] + out[0]
            return np.mean(parts, axis=0)
        if self.kind in ("eb_linear", "eb_nnls", "nnls", "basis", "zero_shot_linear"):
            ms = x.design @ np.asarray(p["theta"])
            z = np.log(np.maximum(ms, p.get("floor_ms", MS_FLOOR)))
            return p.get("a", 1.0) * z + p.get("c", 0.0)
        if self.kind in ("eb_powerlaw", "zero_shot_powerlaw"):
            return p["b0"] + x.power @ np.asarray(p["b"])
        if self.kind == "flops":
            return p["a"] * x.log_flops + p["c"]
        raise ValueError(f"unknown layer head kind {self.kind!r}")

    def predict_ms(self, desc6: np.ndarray | LayerInputs) -> np.ndarray:
        return np.exp(self.predict_log(desc6))

    def to_params(self) -> dict:
        return {
            "kind": self.kind,
            "params": self.params,
            "loo_spearman": None
            if not np.isfinite(self.loo_spearman)
            else float(self.loo_spearman),
        }

    @classmethod
    def from_params(cls, params: dict) -> LayerHead:
        loo = params.get("loo_spearman")
        return cls(
            str(params["kind"]), dict(params["params"]), float("nan") if loo is None else float(loo)
        )


def naive_nnls(desc6: np.ndarray, y: np.ndarray) -> LayerHead:
    """The issue's naive baseline: scipy nnls of y on [1, d_j / scale_j] (scale_j: the
    samples' mean of d_j; 1 where it is 0)."""
    d = _check_desc(desc6)
    c = nnls_coef(np.c_[np.ones(len(d)), d], np.asarray(y, dtype=np.float64))
    theta = np.r_[c[0], c[1:] * GLOBAL_SCALE]  # per absolute unit -> per GLOBAL_SCALE unit
    return LayerHead("nnls", {"theta": theta.tolist(), "floor_ms": MS_FLOOR})
