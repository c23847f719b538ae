"""The public, frozen results of adaptation: ``Prediction`` and ``HeadFit``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from oracle_server.predictor.heads import (
    head_kind,
    log_basis,
    predict_log,
    predict_log_projected,
)


@dataclass(frozen=True)
class Prediction:
    """Point predictions and log-normal uncertainty for a batch of architectures."""

    latency_ms: np.ndarray  # (n,) float64, point prediction (median of the log-normal)
    log_sigma: np.ndarray  # (n,) float64, std-dev of the log-latency error

    def interval(self, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval ``(lo_ms, hi_ms)``."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        return self.latency_ms * np.exp(-z * self.log_sigma), self.latency_ms * np.exp(
            z * self.log_sigma
        )

    def prob_below(self, budget_ms: float) -> np.ndarray:
        """P(true latency <= budget_ms) for each architecture, ``(n,)``."""
        if not budget_ms > 0:
            return np.zeros(len(self.latency_ms))
        with np.errstate(divide="ignore"):
            zscore = (math.log(budget_ms) - np.log(self.latency_ms)) / np.maximum(
                self.log_sigma, 1e-12
            )
        from scipy.special import ndtr  # lazily: scipy.special slows start-up

        return ndtr(zscore)


#: float fields stored as JSON null when NaN (an older stored head may lack ``beats_flops``)
_NULLABLE = ("expected_spearman", "monotonicity", "flops_spearman", "beats_flops")


@dataclass(frozen=True)
class HeadFit:
    """A fitted per-device head: everything needed to predict, JSON-serialisable."""

    kind: str  # a registered head kind (``heads.HEADS``): "ensemble", "affine", ...
    num_samples: int
    expected_spearman: float  # leave-one-out CV estimate on its own samples (nan if too few)
    monotonicity: float  # Spearman of the best basis output vs the samples
    fit_seconds: float
    params: dict = field(default_factory=dict)  # the kind's typed parameters, as JSON
    sigma: dict = field(default_factory=dict)  # uncertainty model (see ``log_sigma``)
    candidates: dict = field(default_factory=dict)  # LOO Spearman of every candidate
    flops_spearman: float = float("nan")  # LOO Spearman of ranking by FLOPs, same samples
    quality: str = "good"  # "good" | "low" (see selection.assess)
    advised_samples: int = 0  # total measurements advised (== num_samples when good)
    warnings: list = field(default_factory=list)  # plain-language reasons for doubt
    #: share of bootstrap resamples of its samples where it ranks better than FLOPs
    beats_flops: float = float("nan")

    def predict(
        self, basis: np.ndarray, features: np.ndarray, descriptors: np.ndarray | None = None
    ) -> Prediction:
        """``basis`` (n, B) from ``LatencyModel.basis``, ``features`` (n, F), and
        ``descriptors`` (n, D) from ``LatencyModel.descriptors`` (read by descriptor heads)."""
        mu = predict_log(self.kind, self.params, basis, np.asarray(features, dtype=np.float64),
                         descriptors)
        return Prediction(np.exp(mu), self.log_sigma(basis, mu))

    def predict_projected(self, basis: np.ndarray, features: np.ndarray,
                          projected: np.ndarray) -> Prediction:
        """``predict`` from ``features @ heads.feature_projection(kind, params, F)`` and
        ``projected = descriptors @ heads.projection(kind, params, D)`` (Rank's fast path:
        those combinations folded into the one-hot layout and the descriptor tables)."""
        mu = predict_log_projected(self.kind, self.params, basis, features, projected)
        return Prediction(np.exp(mu), self.log_sigma(basis, mu))

    def log_sigma(self, basis: np.ndarray, mu: np.ndarray | None = None) -> np.ndarray:
        """Per-architecture std-dev of log error: s * sqrt(1 + leverage along the anchor).

        The anchor is a basis column, or (``anchor`` -1, heads that read no basis column)
        the head's own log prediction ``mu``."""
        s = self.sigma
        if not s:
            return np.zeros(len(basis) if mu is None else len(mu))
        if s["anchor"] < 0:
            if mu is None:
                raise ValueError("this head's uncertainty needs its own prediction (mu)")
            u = np.asarray(mu, dtype=np.float64)
        else:
            u = log_basis(basis[:, s["anchor"]])
        lev = 1.0 / s["n"] + (u - s["u_mean"]) ** 2 / max(s["u_sxx"], 1e-12)
        return s["s"] * np.sqrt(1.0 + lev)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in _NULLABLE:
            if isinstance(d[key], float) and math.isnan(d[key]):
                d[key] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HeadFit:
        """A stored head; its parameters are validated against its kind's typed parameters
        (``ValueError`` naming the kind and the field: ``heads.ParamsError``)."""
        d = dict(d)
        head_kind(str(d.get("kind"))).parse(d.get("params") or {})
        for key in _NULLABLE:
            d[key] = float("nan") if d.get(key) is None else float(d[key])
        return cls(**d)
