"""Latency timing harness: warm-up, repeats, robust statistics, outlier re-measurement.

The clock is injectable (``clock() -> seconds``) so tests can run on a fake clock. On a
CUDA device without an injected clock, CUDA events time each repeat.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from client_sdk.measure.builders import build_model, example_input
from oracle_server.spaces import SearchSpace, get_space

Clock = Callable[[], float]
Backend = Literal["eager", "script", "compile"]
#: (space, genes (g,), batch size, device) -> (model, input)
Builder = Callable[[SearchSpace, np.ndarray, int, str], tuple[Callable[..., Any], torch.Tensor]]


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

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("need repeats >= 1 and warmup >= 0")
        if self.backend not in ("eager", "script", "compile"):
            raise ValueError(f"unknown backend '{self.backend}'")


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

    def _use_cuda_events(self) -> bool:
        return (
            self.clock is None
            and self.config.device.startswith("cuda")
            and torch.cuda.is_available()
        )

    def measure_model(self, fn: Callable[..., Any], x: torch.Tensor) -> TimingStats:
        """One timed attempt of ``fn(x)`` under inference mode and the thread setting."""
        cfg = self.config
        with num_threads(cfg.threads), torch.inference_mode():
            call = prepare(fn, x, cfg.backend) if isinstance(fn, nn.Module) else fn
            if self._use_cuda_events():
                return time_fn_cuda_events(lambda: call(x), warmup=cfg.warmup, repeats=cfg.repeats)
            sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else None
            return time_fn(
                lambda: call(x),
                warmup=cfg.warmup,
                repeats=cfg.repeats,
                clock=self.clock or time.perf_counter,
                sync=sync,
            )

    def measure_arch(self, space: str | SearchSpace, genes: np.ndarray) -> TimingStats:
        sp = get_space(space) if isinstance(space, str) else space
        model, x = self.builder(sp, np.asarray(genes), self.config.batch_size, self.config.device)
        return self.measure_model(model, x)

    def measure_many(
        self,
        space: str | SearchSpace,
        genes: np.ndarray,
        *,
        progress: bool = True,
        desc: str = "measuring",
    ) -> list[TimingStats]:
        """Measure each row of ``genes (n, g)``; re-measure rows whose CV is over threshold.

        Re-measurement happens after the full first pass (a transient load has a chance to
        pass), up to ``max_remeasure`` rounds; the attempt with the lowest CV is kept and
        ``attempts`` counts all of them.
        """
        sp = get_space(space) if isinstance(space, str) else space
        genes = np.asarray(genes)
        cfg = self.config
        stats: list[TimingStats] = []
        for row in tqdm(genes, desc=desc, unit="arch", disable=not progress, leave=False):
            stats.append(self.measure_arch(sp, row))
        for _ in range(cfg.max_remeasure):
            noisy = [i for i, s in enumerate(stats) if s.cv > cfg.cv_threshold]
            if not noisy:
                break
            bar = tqdm(noisy, desc=f"{desc} (re-measure)", unit="arch", disable=not progress)
            for i in bar:
                again = self.measure_arch(sp, genes[i])
                best = again if again.cv < stats[i].cv else stats[i]
                stats[i] = replace(best, attempts=stats[i].attempts + 1)
        return stats
