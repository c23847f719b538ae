"""``LayerHead``: a fitted layer-level head (``layer_level``), JSON-safe parameters and a
vectorised prediction; and the issue's naive baseline ``naive_nnls``."""

from __future__ import annotations

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


@dataclass(frozen=True)
class LayerHead:
    """A fitted layer-level head. ``params`` is JSON-safe; ``predict_ms`` is vectorised."""

    kind: str
    params: dict
    loo_spearman: float = float("nan")

    def predict_log(self, desc6: np.ndarray) -> np.ndarray:
        p = self.params
        if self.kind == "ensemble":
            parts = [LayerHead.from_params(m).predict_log(desc6) for m in p["members"]]
            if not parts:
                raise ValueError("an ensemble head needs members")
            if "standardise" in p:  # members on a common scale (zero-shot), back to log ms
                (mu, sd), out = np.asarray(p["standardise"]).T, p["out"]
                parts = [(q - m) / s for q, m, s in zip(parts, mu, sd, strict=True)]
                return np.mean(parts, axis=0) * out[1] + out[0]
            return np.mean(parts, axis=0)
        if self.kind in ("eb_linear", "eb_nnls", "nnls", "basis", "zero_shot_linear"):
            ms = design(desc6) @ np.asarray(p["theta"])
            z = np.log(np.maximum(ms, p.get("floor_ms", MS_FLOOR)))
            return p.get("a", 1.0) * z + p.get("c", 0.0)
        if self.kind in ("eb_powerlaw", "zero_shot_powerlaw"):
            return p["b0"] + power_inputs(desc6) @ np.asarray(p["b"])
        if self.kind == "flops":
            return p["a"] * np.log(np.maximum(flops_of(desc6), 1.0)) + p["c"]
        raise ValueError(f"unknown layer head kind {self.kind!r}")

    def predict_ms(self, desc6: np.ndarray) -> np.ndarray:
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
