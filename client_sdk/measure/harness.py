"""Latency timing harness: warm-up, repeats, robust statistics, outlier re-measurement.

Two ways to time a set of architectures:

* ``Harness.measure_many``: one architecture after the other (warm-up, ``repeats`` runs, CV
  re-measurement). A device that drifts (shared, thermally throttled) shifts every
  architecture measured during the slow minutes, so two passes can disagree.
* ``Harness.measure_interleaved`` (what onboarding uses): all models are built first, then
  ``rounds`` rounds each visit every architecture once in a shuffled order for a few timed
  runs. A per-round scale factor (robust, over all architectures) detects drift and
  normalises it away, and the first and second halves of the rounds give two independent
  estimates whose Spearman (stepped up to the full length) is the measurement's
  **test-retest Spearman**; its square root is the **ceiling** a perfect predictor can be
  expected to reach against these measurements.

The clock is injectable (``clock() -> seconds``) so tests can run on a fake clock. On a
CUDA device without an injected clock, CUDA events time each repeat. ``runtime="onnxruntime"``
times ONNX Runtime sessions of the exported networks instead (``onnx_runtime.OrtBuilder``).
The timed runs' statistics (``TimingStats``, ``InterleavedMeasurement``, ``retest_ceiling``)
live in ``client_sdk.measure.measurement`` and are re-exported here. ``pin_cpus`` and
``flush_denormal`` set CPU affinity and denormal flushing for the duration of a timing
(``client_sdk.measure.timing_env``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from client_sdk._progress import progress_enabled
from client_sdk.measure.builders import build_model, example_input
from client_sdk.measure.measurement import (
    STATISTICS,
    InterleavedMeasurement,
    Statistic,
    TimingStats,
    reduce_runs,
    retest_ceiling,
    spearman,
    spearman_brown,
)
from client_sdk.measure.timing_env import (
    check_flush_denormal,
    check_pin_cpus,
    timing_environment,
)
from client_sdk.spaces import SearchSpace, get_space

__all__ = [
    "RUNTIMES",
    "STATISTICS",
    "Backend",
    "Builder",
    "Clock",
    "Harness",
    "HarnessConfig",
    "InterleavedMeasurement",
    "Runtime",
    "Statistic",
    "TimingStats",
    "default_builder",
    "num_threads",
    "prepare",
    "reduce_runs",
    "retest_ceiling",
    "runs_per_round",
    "spearman",
    "spearman_brown",
    "time_fn",
    "time_fn_cuda_events",
]

Clock = Callable[[], float]
Backend = Literal["eager", "script", "compile"]
Runtime = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
#: (space, genes (g,), batch size, device) -> (model, input)
Builder = Callable[[SearchSpace, np.ndarray, int, str], tuple[Callable[..., Any], torch.Tensor]]


def runs_per_round(repeats: int, rounds: int) -> int:
    """Timed runs per round so that ``rounds`` rounds time at least ``repeats`` runs."""
    return max(1, -(-repeats // rounds))


@dataclass(frozen=True)
class HarnessConfig:
    warmup: int = 10
    repeats: int = 30
    threads: int | None = None  # torch.set_num_threads during timing; None keeps the default
    device: str = "cpu"
    batch_size: int = 1
    backend: Backend = "eager"
    #: a measurement whose CV exceeds this is re-measured after the first pass
    cv_threshold: float = 0.10
    max_remeasure: int = 2
    # --- interleaved measurement (``Harness.measure_interleaved``)
    #: rounds over all architectures; each visit = ``round_warmup`` untimed + ``runs`` timed
    rounds: int = 6
    runs: int = 5
    round_warmup: int = 1
    statistic: Statistic = "median"
    #: warn when the per-round scale factors spread more than this (max/min - 1)
    drift_threshold: float = 0.10
    normalise_drift: bool = True
    seed: int = 0
    # --- runtime: torch (``backend``) or onnxruntime (exported once, cached in ``onnx_cache``,
    # None: ``onnx_runtime.default_cache_dir()``; ``graph_optimization``: disable .. all)
    runtime: Runtime = "torch"
    onnx_cache: str | None = None
    graph_optimization: str = "all"
    # --- the process while timing (``timing_env``): its threads restricted to these CPUs
    # (Linux), and float32 denormals flushed to zero (torch.set_flush_denormal; ONNX Runtime
    # sessions: session.set_denormal_as_zero); both restored afterwards
    pin_cpus: tuple[int, ...] | None = None
    flush_denormal: bool = False

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("need repeats >= 1 and warmup >= 0")
        if self.backend not in ("eager", "script", "compile"):
            raise ValueError(f"unknown backend '{self.backend}'")
        if self.rounds < 1 or self.runs < 1 or self.round_warmup < 0:
            raise ValueError("need rounds >= 1, runs >= 1 and round_warmup >= 0")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic '{self.statistic}' (have {STATISTICS})")
        if not self.drift_threshold > 0:
            raise ValueError("drift_threshold must be > 0")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime '{self.runtime}' (have {RUNTIMES})")
        if self.runtime == "onnxruntime" and self.device != "cpu":
            raise ValueError(f"the onnxruntime runtime measures on the cpu, not '{self.device}'")
        object.__setattr__(self, "pin_cpus", check_pin_cpus(self.pin_cpus))
        if self.pin_cpus and self.threads and len(self.pin_cpus) < self.threads:
            warnings.warn(
                f"{self.threads} threads pinned to {len(self.pin_cpus)} CPU(s): they will "
                "share them",
                stacklevel=3,
            )
        if self.flush_denormal:
            check_flush_denormal()

    def timing(self) -> contextlib.AbstractContextManager[None]:
        """The process state to time in: ``pin_cpus`` and ``flush_denormal``, restored on exit."""
        return timing_environment(self.pin_cpus, self.flush_denormal)


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily ``torch.set_num_threads(threads)`` (no-op for ``None``)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_fn(
    fn: Callable[[], Any],
    *,
    warmup: int,
    repeats: int,
    clock: Clock = time.perf_counter,
    sync: Callable[[], None] | None = None,
) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then time ``repeats`` calls with ``clock``."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    samples = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        if sync is not None:
            sync()
        samples.append((clock() - t0) * 1e3)
    return TimingStats(tuple(samples))


def time_fn_cuda_events(fn: Callable[[], Any], *, warmup: int, repeats: int) -> TimingStats:
    """Like ``time_fn`` but each repeat is timed by a pair of CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    pairs = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return TimingStats(tuple(float(s.elapsed_time(e)) for s, e in pairs))


def prepare(model: nn.Module, x: torch.Tensor, backend: Backend = "eager") -> Callable[..., Any]:
    """The callable to time: the eager model, a frozen TorchScript trace, or torch.compile."""
    model = model.eval()
    if backend == "eager":
        return model
    if backend == "script":  # deprecated in torch 2.x but still the cheapest BN folding
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.freeze(torch.jit.trace(model, x))
    if backend == "compile":
        return torch.compile(model)
    raise ValueError(f"unknown backend '{backend}'")


def default_builder(
    space: SearchSpace, genes: np.ndarray, batch_size: int, device: str
) -> tuple[nn.Module, torch.Tensor]:
    model = build_model(space, genes).to(device)
    return model, example_input(space, genes, batch_size=batch_size, device=device)


@dataclass
class Harness:
    """Times architectures of a space; ``clock``/``builder`` are injectable for tests."""

    config: HarnessConfig = field(default_factory=HarnessConfig)
    clock: Clock | None = None
    builder: Builder = default_builder
    _interleaved_calls: int = field(default=0, init=False, repr=False)
    #: the ONNX Runtime builder (export counters: ``ort_builder.stats()``), once it is used
    ort_builder: Any = field(default=None, init=False, repr=False)

    def build(self, sp: SearchSpace, genes: np.ndarray) -> tuple[Callable[..., Any], Any]:
        """``builder``'s (callable, input); the ONNX Runtime builder when the config's runtime
        is onnxruntime and no builder was injected."""
        cfg = self.config
        builder = self.builder
        if cfg.runtime == "onnxruntime" and builder is default_builder:
            if self.ort_builder is None:
                from client_sdk.measure.onnx_runtime import OrtBuilder

                self.ort_builder = OrtBuilder(
                    cfg.onnx_cache,
                    cfg.threads,
                    cfg.graph_optimization,
                    flush_denormal=cfg.flush_denormal,
                )
            builder = self.ort_builder
        return builder(sp, np.asarray(genes), cfg.batch_size, cfg.device)

    def _use_cuda_events(self) -> bool:
        return (
            self.clock is None
            and self.config.device.startswith("cuda")
            and torch.cuda.is_available()
        )

    def _time(self, call: Callable[[], Any], warmup: int, repeats: int) -> TimingStats:
        """``repeats`` timed calls after ``warmup`` untimed ones: CUDA events on a GPU without
        an injected clock, else the clock (synchronising a CUDA device around each call)."""
        if self._use_cuda_events():
            return time_fn_cuda_events(call, warmup=warmup, repeats=repeats)
        sync = torch.cuda.synchronize if self.config.device.startswith("cuda") else None
        clock = self.clock or time.perf_counter
        return time_fn(call, warmup=warmup, repeats=repeats, clock=clock, sync=sync)

    def measure_model(self, fn: Callable[..., Any], x: torch.Tensor) -> TimingStats:
        """One timed attempt of ``fn(x)`` under inference mode, the thread setting and the
        config's ``timing`` state."""
        cfg = self.config
        with cfg.timing(), num_threads(cfg.threads), torch.inference_mode():
            call = prepare(fn, x, cfg.backend) if isinstance(fn, nn.Module) else fn
            return self._time(_bind(call, x), cfg.warmup, cfg.repeats)

    def measure_arch(self, space: str | SearchSpace, genes: np.ndarray) -> TimingStats:
        sp = get_space(space) if isinstance(space, str) else space
        with self.config.timing():  # an ONNX Runtime session sets denormal flags when built
            return self.measure_model(*self.build(sp, genes))

    def measure_interleaved(
        self,
        space: str | SearchSpace,
        genes: np.ndarray,
        *,
        progress: bool | None = None,
        desc: str = "measuring",
        rounds: int | None = None,
    ) -> InterleavedMeasurement:
        """Time every row of ``genes (n, g)`` in ``rounds`` interleaved rounds.

        All models are built (and warmed up ``warmup`` times) first, so they are all in
        memory at once (an ImageNet-size FBNet/OFA network is ~16 MB of fp32 weights: 110 of
        them ~2 GB); each round then visits every architecture once, in a fresh random order,
        for ``round_warmup`` untimed and ``runs`` timed calls. See
        ``InterleavedMeasurement`` for the statistic, the drift correction and the retest
        ceiling.
        """
        quiet = not progress_enabled(progress)  # None: bars only on a terminal
        sp = get_space(space) if isinstance(space, str) else space
        genes = np.asarray(genes)
        cfg = self.config
        n_rounds = cfg.rounds if rounds is None else rounds
        if n_rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {n_rounds}")
        rng = np.random.default_rng([cfg.seed, self._interleaved_calls])  # new orders per call
        self._interleaved_calls += 1
        out = np.zeros((len(genes), n_rounds, cfg.runs))
        with cfg.timing(), num_threads(cfg.threads), torch.inference_mode():
            calls: list[Callable[[], Any]] = []
            for row in tqdm(genes, desc=f"{desc} (build)", unit="arch", disable=quiet, leave=False):
                model, x = self.build(sp, row)
                fn = prepare(model, x, cfg.backend) if isinstance(model, nn.Module) else model
                call = _bind(fn, x)
                for _ in range(cfg.warmup):
                    call()
                calls.append(call)
            bar = tqdm(
                total=len(genes) * n_rounds, desc=desc, unit="arch", disable=quiet, leave=False
            )
            for r in range(n_rounds):
                for i in rng.permutation(len(genes)):
                    out[i, r] = self._time(calls[i], cfg.round_warmup, cfg.runs).samples_ms
                    bar.update()
            bar.close()
        return InterleavedMeasurement(out, cfg.statistic, cfg.normalise_drift, cfg.drift_threshold)

    def measure_many(
        self,
        space: str | SearchSpace,
        genes: np.ndarray,
        *,
        progress: bool | None = None,
        desc: str = "measuring",
    ) -> list[TimingStats]:
        """Measure each row of ``genes (n, g)``; re-measure rows whose CV is over threshold.

        Re-measurement happens after the full first pass (a transient load has a chance to
        pass), up to ``max_remeasure`` rounds; the attempt with the lowest CV is kept and
        ``attempts`` counts all of them.
        """
        quiet = not progress_enabled(progress)
        sp = get_space(space) if isinstance(space, str) else space
        genes = np.asarray(genes)
        cfg = self.config
        stats: list[TimingStats] = []
        for row in tqdm(genes, desc=desc, unit="arch", disable=quiet, leave=False):
            stats.append(self.measure_arch(sp, row))
        for _ in range(cfg.max_remeasure):
            noisy = [i for i, s in enumerate(stats) if s.cv > cfg.cv_threshold]
            if not noisy:
                break
            bar = tqdm(noisy, desc=f"{desc} (re-measure)", unit="arch", disable=quiet)
            for i in bar:
                again = self.measure_arch(sp, genes[i])
                best = again if again.cv < stats[i].cv else stats[i]
                stats[i] = replace(best, attempts=stats[i].attempts + 1)
        return stats


def _bind(fn: Callable[..., Any], x: torch.Tensor) -> Callable[[], Any]:
    return lambda: fn(x)
