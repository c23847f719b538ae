"""Timed runs and their statistics: ``TimingStats`` (one architecture's repeats) and
``InterleavedMeasurement`` (a set of architectures timed in interleaved rounds: drift
normalisation, split-half test-retest Spearman, the ``retest_ceiling`` of any predictor).

Pure numpy, no timing here: ``client_sdk.measure.harness`` produces these (and re-exports
every name, its historical home).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from client_sdk import stats as _stats

#: per-architecture statistic over its timed runs (``p10`` = 10th percentile, ...)
Statistic = Literal["median", "mean", "min", "p10", "p25"]
STATISTICS: tuple[str, ...] = ("median", "mean", "min", "p10", "p25")


@dataclass(frozen=True)
class TimingStats:
    """Per-repeat latencies (ms) of one measurement and their summary statistics."""

    samples_ms: tuple[float, ...]
    attempts: int = 1

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def min_ms(self) -> float:
        return float(np.min(self.samples_ms))

    @property
    def iqr_ms(self) -> float:
        q1, q3 = np.percentile(self.samples_ms, [25, 75])
        return float(q3 - q1)

    @property
    def cv(self) -> float:
        """Coefficient of variation: sample std / mean (0 for a single repeat)."""
        if len(self.samples_ms) < 2:
            return 0.0
        return statistics.stdev(self.samples_ms) / self.mean_ms

    def summary(self) -> dict[str, float]:
        return {
            "median_ms": self.median_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "iqr_ms": self.iqr_ms,
            "cv": self.cv,
            "repeats": float(len(self.samples_ms)),
            "attempts": float(self.attempts),
        }


def reduce_runs(
    samples: np.ndarray, statistic: str, axis: int | tuple[int, ...] = -1
) -> np.ndarray:
    """``statistic`` of ``samples`` along ``axis`` (vectorised over the other axes)."""
    if statistic == "median":
        return np.median(samples, axis=axis)
    if statistic == "mean":
        return np.mean(samples, axis=axis)
    if statistic == "min":
        return np.min(samples, axis=axis)
    if statistic in ("p10", "p25"):
        return np.percentile(samples, int(statistic[1:]), axis=axis)
    raise ValueError(f"unknown statistic '{statistic}' (have {STATISTICS})")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (``client_sdk.stats``), ``nan`` when undefined (fewer than 3 points,
    a constant side or a NaN)."""
    return _stats.spearman(a, b, min_points=3)


def spearman_brown(r: float) -> float:
    """Reliability of a doubled-length measurement from the split-half correlation ``r``
    (``r`` itself when ``r <= 0`` or nan)."""
    return 2.0 * r / (1.0 + r) if r > 0 else r


def retest_ceiling(retest: float) -> float:
    """Expected Spearman of a perfect predictor against measurements whose test-retest
    Spearman is ``retest``: ``sqrt(retest)`` (0 when ``retest <= 0``, nan stays nan)."""
    return float(np.sqrt(max(retest, 0.0))) if np.isfinite(retest) else float("nan")


@dataclass(frozen=True)
class InterleavedMeasurement:
    """Timed runs ``(n, rounds, runs)`` of ``n`` architectures in interleaved rounds.

    ``round_scale[r]`` is round r's speed relative to the whole measurement: the median over
    architectures of (statistic in round r / statistic over all rounds), so a device that is
    10 % slower during round r has ``round_scale[r] ~ 1.1`` whatever the architectures'
    latencies. With ``normalised``, every run of round r is divided by it before the
    per-architecture statistic is taken.
    """

    samples_ms: np.ndarray  # (n, rounds, runs) raw timings
    statistic: str = "median"
    normalised: bool = True
    drift_threshold: float = 0.10
    attempts: int = 1  # times the whole set was measured (``merge`` adds them)

    @property
    def num_archs(self) -> int:
        return int(self.samples_ms.shape[0])

    @property
    def num_rounds(self) -> int:
        return int(self.samples_ms.shape[1])

    @property
    def round_scale(self) -> np.ndarray:
        x = self.samples_ms
        if x.shape[0] < 3 or x.shape[1] < 2:
            return np.ones(x.shape[1])
        per_round = reduce_runs(x, self.statistic, axis=2)  # (n, R)
        overall = reduce_runs(x, self.statistic, axis=(1, 2))  # (n,)
        scale = np.median(per_round / np.maximum(overall[:, None], 1e-12), axis=0)
        return scale / np.median(scale)

    @property
    def drift(self) -> float:
        """Spread of the per-round scale factors: max/min - 1 (0 = a steady device)."""
        s = self.round_scale
        return float(s.max() / s.min() - 1.0)

    @property
    def drifted(self) -> bool:
        return self.drift > self.drift_threshold

    def corrected(self) -> np.ndarray:
        """The runs, divided by their round's scale factor when ``normalised``."""
        if not self.normalised:
            return self.samples_ms
        return self.samples_ms / self.round_scale[None, :, None]

    def estimate(self, rounds: slice | np.ndarray | None = None) -> np.ndarray:
        """(n,) per-architecture ``statistic`` over the (corrected) runs of ``rounds``."""
        x = self.corrected()
        if rounds is not None:
            x = x[:, rounds]
        return reduce_runs(x.reshape(x.shape[0], -1), self.statistic)

    @property
    def latency_ms(self) -> np.ndarray:
        return self.estimate()

    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """Two independent estimates: the first and the second half of the rounds."""
        h = max(self.num_rounds // 2, 1)
        return self.estimate(slice(0, h)), self.estimate(slice(h, None))

    @property
    def split_half_spearman(self) -> float:
        """Spearman between the two halves' estimates (nan if < 2 rounds or < 3 archs)."""
        if self.num_rounds < 2:
            return float("nan")
        return spearman(*self.halves())

    @property
    def retest_spearman(self) -> float:
        """Test-retest Spearman of the full estimate: how well two such measurements would
        agree, from the split-half one by the Spearman-Brown formula ``2r / (1 + r)`` (each
        half has half the runs; the classical test-theory step-up, applied to ranks)."""
        return spearman_brown(self.split_half_spearman)

    @property
    def ceiling(self) -> float:
        """The Spearman a perfect predictor can be expected to reach against these
        measurements: ``sqrt(retest)`` (attenuation by the measurement noise)."""
        return retest_ceiling(self.retest_spearman)

    @property
    def cv(self) -> np.ndarray:
        """(n,) within-architecture CV of the corrected runs."""
        x = self.corrected().reshape(self.num_archs, -1)
        if x.shape[1] < 2:
            return np.zeros(self.num_archs)
        return x.std(axis=1, ddof=1) / x.mean(axis=1)

    def stats(self) -> list[TimingStats]:
        """One ``TimingStats`` per architecture (its corrected runs, round after round)."""
        x = self.corrected().reshape(self.num_archs, -1)
        return [TimingStats(tuple(map(float, row)), self.attempts) for row in x]

    def merge(self, other: InterleavedMeasurement) -> InterleavedMeasurement:
        """Both measurements' rounds of the same architectures (a re-measurement)."""
        if (
            other.samples_ms.shape[0] != self.num_archs
            or other.samples_ms.shape[2] != (self.samples_ms.shape[2])
        ):
            raise ValueError("can only merge measurements of the same architectures and runs")
        return replace(
            self,
            samples_ms=np.concatenate([self.samples_ms, other.samples_ms], axis=1),
            attempts=self.attempts + other.attempts,
        )

    def select(self, index: np.ndarray | slice) -> InterleavedMeasurement:
        """The same rounds restricted to some architectures."""
        return replace(self, samples_ms=self.samples_ms[index])

    def summary(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "rounds": self.num_rounds,
            "runs_per_round": int(self.samples_ms.shape[2]),
            "split_half_spearman": self.split_half_spearman,
            "retest_spearman": self.retest_spearman,
            "ceiling": self.ceiling,
            "drift": self.drift,
            "drifted": self.drifted,
            "normalised": self.normalised,
            "round_scale": self.round_scale.tolist(),
            "cv_median": float(np.median(self.cv)) if self.num_archs else float("nan"),
        }
