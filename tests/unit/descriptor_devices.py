"""Synthetic devices linear in FBNet's hardware-agnostic descriptors, shared by the
descriptor-head tests (``test_descriptor_heads.py``, ``test_nonneg_heads.py``)."""

from __future__ import annotations

import numpy as np

from client_sdk.spaces import get_space
from client_sdk.spaces.descriptors import descriptors
from oracle_server.predictor.heads import FitInputs
from oracle_server.predictor.priors import DescriptorPrior, fit_prior


class DescriptorDevices:
    """``n`` sampled FBNet architectures (``desc``) and devices ``y = [1, d / mean d] theta``."""

    def __init__(self, n: int, seed: int) -> None:
        self.desc = descriptors("fbnet", get_space("fbnet").sample(n, rng=seed))

    def device(self, theta: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
        """Latency (ms) of every architecture on the device ``theta``, log-normal noise."""
        x = np.c_[np.ones(len(self.desc)), self.desc / self.desc.mean(0)]
        y = x @ theta
        return y * np.exp(np.random.default_rng(seed).normal(0, noise, len(y)))

    def prior(self, thetas: np.ndarray) -> DescriptorPrior:
        """The descriptor prior fit on basis devices ``thetas`` (1 % noise each)."""
        lat = np.stack([self.device(t, 0.01, k) for k, t in enumerate(thetas)], axis=1)
        return fit_prior(self.desc, lat)

    def inputs(
        self, rows: np.ndarray, y: np.ndarray, prior: DescriptorPrior | None = None
    ) -> FitInputs:
        """A head's fit inputs on samples ``rows`` of ``y`` (three random basis columns)."""
        basis = np.exp(np.random.default_rng(2).normal(size=(len(rows), 3)))
        return FitInputs(
            basis,
            np.zeros((len(rows), 2)),
            y[rows],
            np.zeros((3, 3)),
            np.zeros((2, 1)),
            self.desc[rows],
            prior,
        )
