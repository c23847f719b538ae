"""Empirical-Bayes priors learned from the basis devices, for the descriptor heads.

Every basis device's whole table is fit by the same physically grounded model the
``descriptor`` head uses on a new device: latency relative to the device's mean latency,

    y / mean(y) = theta_0 + sum_j theta_j * d_j(x) / scale_j,

(``d_j``: hardware-agnostic descriptors — dense/depthwise MACs, weights, memory traffic,
executed kernels, element-wise work, per-stage MACs; fit with relative-error weights). The
spread of ``theta`` across the basis devices is the prior of a new device's coefficients:
``N(mu, g * (cov + ridge * diag(cov)))``, with ``g`` picked per device by exact
leave-one-out on its own samples. With 10 measurements the 10-15 coefficients are then
pulled towards what real hardware does, not towards zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: relative diagonal added to the basis covariance (hardware unlike every basis device)
COV_RIDGE = 0.01


@dataclass(frozen=True)
class DescriptorPrior:
    scale: np.ndarray  # (D,) typical value of each descriptor (its mean over the table)
    mu: np.ndarray  # (D + 1,) mean relative coefficients [intercept, descriptors]
    cov: np.ndarray  # (D + 1, D + 1) their covariance across basis devices (+ ridge)

    def design(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, D + 1) regressors ``[1, d / scale]``."""
        return np.c_[np.ones(len(descriptors)), descriptors / self.scale]

    def to_arrays(self, prefix: str = "prior_") -> dict[str, np.ndarray]:
        return {f"{prefix}scale": self.scale, f"{prefix}mu": self.mu, f"{prefix}cov": self.cov}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "prior_") -> DescriptorPrior:
        return cls(np.asarray(arrays[f"{prefix}scale"]), np.asarray(arrays[f"{prefix}mu"]),
                   np.asarray(arrays[f"{prefix}cov"]))


def relative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of ``y / mean(y) ~ x theta`` with relative-error weights (lstsq)."""
    yr = y / y.mean()
    w = 1.0 / yr
    return np.linalg.lstsq(x * w[:, None], yr * w, rcond=None)[0]


def fit_prior(descriptors: np.ndarray, latency_ms: np.ndarray) -> DescriptorPrior:
    """Prior from basis devices' tables: ``descriptors`` (n, D), ``latency_ms`` (n, B)."""
    scale = np.abs(descriptors).mean(0)
    scale = np.where(scale > 0, scale, 1.0)
    x = np.c_[np.ones(len(descriptors)), descriptors / scale]
    thetas = np.array([relative_fit(x, latency_ms[:, k]) for k in range(latency_ms.shape[1])])
    mu = thetas.mean(0)
    if len(thetas) > 1:
        cov = np.atleast_2d(np.cov(thetas.T))
    else:  # one basis device: an isotropic prior of its coefficients' size
        cov = np.diag(np.maximum(mu**2, 1e-4))
    cov = cov + COV_RIDGE * np.diag(np.maximum(np.diag(cov), 1e-6))
    return DescriptorPrior(scale, mu, cov)
