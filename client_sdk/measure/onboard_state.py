"""What an onboarding is asked to do (``OnboardSettings``, the arguments of ``onboard``,
checked) and what its steps have produced so far (``OnboardState``): the pipeline
(``client_sdk.measure.onboard_pipeline.Onboarding``) fills the state one named step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client_sdk import stats as _stats
from client_sdk.measure.harness import (
    Backend,
    Harness,
    HarnessConfig,
    InterleavedMeasurement,
    Runtime,
    Statistic,
    retest_ceiling,
    runs_per_round,
)
from client_sdk.measure.onboard_report import OnboardReport
from client_sdk.spaces import SearchSpace

#: The settings that are ``HarnessConfig`` fields of the same name.
HARNESS_SETTINGS = (
    "warmup", "repeats", "threads", "device", "batch_size", "backend", "cv_threshold", "rounds",
    "statistic", "seed", "runtime", "onnx_cache", "graph_optimization", "pin_cpus",
    "flush_denormal",
)  # fmt: skip


@dataclass(frozen=True)
class OnboardSettings:
    """The arguments of ``onboard`` (the one place of their defaults; see its docstring for
    their meaning), checked on construction: a bad value raises ``ValueError`` before any
    work."""

    name: str
    space: str
    samples: int = 10
    threads: int | None = None
    batch_size: int = 1
    device: str = "cpu"
    validate: int = 0
    repeats: int = 30
    progress: bool | None = None
    seed: int = 0
    warmup: int = 10
    backend: Backend = "eager"
    cv_threshold: float = 0.10
    rounds: int = 6
    statistic: Statistic = "median"
    target_spearman: float | None = None
    max_samples: int | None = None
    round_size: int = 5
    retest: int | None = None
    retest_threshold: float = 0.90
    remeasure_low_retest: bool = True
    session_check: bool = True
    register_retest: bool = True
    runtime: Runtime = "torch"
    onnx_cache: str | None = None
    graph_optimization: str = "all"
    pin_cpus: tuple[int, ...] | None = None
    flush_denormal: bool = False

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError(f"need at least 2 samples, got {self.samples}")
        if self.validate < 0:
            raise ValueError(f"validate must be >= 0, got {self.validate}")
        target = self.target_spearman
        if target is not None and not -1.0 < target <= 1.0:
            raise ValueError(f"target_spearman must be in (-1, 1], got {target}")
        if self.round_size < 1:
            raise ValueError(f"round_size must be >= 1, got {self.round_size}")
        if self.rounds < 2:
            raise ValueError(
                f"need rounds >= 2 (two halves give the retest ceiling), got {self.rounds}"
            )
        if self.n_retest < 0:
            raise ValueError(f"retest must be >= 0, got {self.retest}")
        if self.budget < self.samples:
            raise ValueError(f"max_samples ({self.budget}) is below samples ({self.samples})")
        self.harness_config()  # the harness's own checks (pin_cpus, flush_denormal, ...)

    @property
    def n_retest(self) -> int:
        """Random architectures measured with the references for the retest ceiling."""
        if self.retest is not None:
            return self.retest
        return 20 if self.validate < 20 or self.session_check else 0

    @property
    def budget(self) -> int:
        """Registered samples the adaptive rounds may reach (``max_samples``)."""
        if self.max_samples is not None:
            return self.max_samples
        adaptive = self.samples if self.target_spearman is None else 4 * self.samples
        return adaptive + (self.n_retest if self.register_retest else 0)

    def harness_config(self) -> HarnessConfig:
        """The harness's configuration: the settings of :data:`HARNESS_SETTINGS`, and ``runs``
        per round from ``repeats`` over ``rounds``."""
        same = {name: getattr(self, name) for name in HARNESS_SETTINGS}
        return HarnessConfig(runs=runs_per_round(self.repeats, self.rounds), **same)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (``client_sdk.stats``); 0 when undefined (a constant side, a NaN)."""
    return _stats.spearman(a, b, undefined=0.0)


@dataclass(frozen=True)
class Validation:
    """The ``validate`` step: fresh random architectures measured and ranked by the oracle."""

    genes: np.ndarray
    latency_ms: np.ndarray  # measured here
    predicted_ms: np.ndarray  # the oracle's prediction of them for the device
    spearman: float  # oracle ranking vs measured
    flops_spearman: float  # analytic FLOPs vs measured (the baseline)
    retest_spearman: float  # test-retest of the validation measurement


@dataclass
class SessionCheck:
    """The ``session check`` step: the first set measured again in a later, separate pass."""

    first_ms: np.ndarray  # the first pass's latencies of the first set
    latency_ms: np.ndarray  # the later pass's
    added: int = 0  # measurements of the later pass added to the device
    info: Any = None  # the device after they were added

    @property
    def archs(self) -> int:
        return len(self.first_ms)

    @property
    def spearman(self) -> float:
        return spearman(self.first_ms, self.latency_ms)

    @property
    def ceiling(self) -> float:
        return retest_ceiling(self.spearman)

    @property
    def scale(self) -> float:
        """Median latency ratio, later pass / first pass."""
        return float(np.median(self.latency_ms / np.asarray(self.first_ms)))


@dataclass
class OnboardState:
    """What the steps have produced so far; each field is set by the step named beside it."""

    sp: SearchSpace
    harness: Harness
    threads: int  # torch threads measured with
    t_start: float
    done: list[str] = field(default_factory=list)  # the steps run, in order
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    remeasured: int = 0  # sets measured twice because their retest was low
    drift: float = 0.0  # largest per-round drift seen
    refs: np.ndarray | None = None  # suggest: the oracle's reference architectures
    retest_genes: np.ndarray | None = None  # build: random archs for the retest ceiling
    measured: np.ndarray | None = None  # build: refs then retest archs, one interleaved set
    contract: dict[str, Any] = field(default_factory=dict)  # build
    first: InterleavedMeasurement | None = None  # measure: the first set's measurement
    retest_rho: float = float("nan")  # measure: retest Spearman of the retest archs
    n_first: int = 0  # register: archs of the first set registered (refs + retest archs)
    info: Any = None  # register, adapt: the device as the oracle describes it
    #: register, adapt: one entry per round; the genes, latencies and CVs registered
    history: list[dict[str, Any]] = field(default_factory=list)
    all_genes: list[np.ndarray] = field(default_factory=list)
    all_ms: list[np.ndarray] = field(default_factory=list)
    all_cv: list[np.ndarray] = field(default_factory=list)
    validation: Validation | None = None  # validate
    later_ms: np.ndarray | None = None  # validate: the later pass, when it rode along
    session: SessionCheck | None = None  # session check
    report: OnboardReport | None = None  # report

    @property
    def measured_ms(self) -> np.ndarray:
        """The first set's latencies (drift scale estimated on the whole set)."""
        assert self.first is not None, "the measure step has not run"
        return self.first.latency_ms

    @property
    def ref_ms(self) -> np.ndarray:
        assert self.refs is not None
        return self.measured_ms[: len(self.refs)]

    @property
    def first_genes(self) -> np.ndarray:
        """The registered architectures of the first set."""
        assert self.measured is not None
        return self.measured[: self.n_first]

    @property
    def retest(self) -> tuple[float, int]:
        """(retest Spearman, archs it is from): the validation set's when it has one, else
        the retest archs'."""
        v = self.validation
        if v is not None and np.isfinite(v.retest_spearman):
            return v.retest_spearman, len(v.genes)
        return self.retest_rho, 0 if self.retest_genes is None else len(self.retest_genes)
