"""Timing harness statistics and re-measurement on a deterministic fake clock."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from client_sdk.measure.harness import (
    Harness,
    HarnessConfig,
    TimingStats,
    num_threads,
    prepare,
    time_fn,
)
from oracle_server.spaces import get_space


class StepClock:
    """``clock()`` returns the running sum of scripted steps (seconds)."""

    def __init__(self, steps: list[float]) -> None:
        self._it = itertools.accumulate(itertools.chain([0.0], steps))

    def __call__(self) -> float:
        return next(self._it)


def durations_clock(durations_ms: list[float]) -> StepClock:
    """A clock read twice per repeat; repeat i takes ``durations_ms[i]``, gaps take 1 s."""
    steps: list[float] = []
    for d in durations_ms:
        steps += [d / 1e3, 1.0]
    return StepClock(steps)


def test_stats() -> None:
    s = TimingStats((1.0, 2.0, 3.0, 4.0, 100.0))
    assert s.median_ms == 3.0
    assert s.min_ms == 1.0
    assert s.mean_ms == pytest.approx(22.0)
    assert s.iqr_ms == pytest.approx(2.0)  # q1 = 2, q3 = 4
    assert s.cv == pytest.approx(np.std(s.samples_ms, ddof=1) / 22.0)
    assert TimingStats((5.0,)).cv == 0.0
    assert set(s.summary()) >= {"median_ms", "iqr_ms", "cv", "repeats", "attempts"}


def test_time_fn_warmup_and_repeats_on_fake_clock() -> None:
    calls = []
    clock = durations_clock([2.0, 4.0, 3.0])
    stats = time_fn(lambda: calls.append(1), warmup=5, repeats=3, clock=clock)
    assert len(calls) == 8
    assert stats.samples_ms == pytest.approx((2.0, 4.0, 3.0))
    assert stats.median_ms == pytest.approx(3.0)


def test_num_threads_restores() -> None:
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError), num_threads(0):
        pass


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        HarnessConfig(repeats=0)
    with pytest.raises(ValueError):
        HarnessConfig(backend="tensorrt")  # type: ignore[arg-type]


def _fake_builder(space, genes, batch_size, device):
    return (lambda x: x), torch.zeros(batch_size)


def test_remeasure_noisy_architecture() -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(3, rng=0)
    quiet = [10.0, 10.0, 10.0, 10.0]
    noisy = [10.0, 30.0, 10.0, 50.0]
    # pass 1: arch 0 quiet, arch 1 noisy, arch 2 quiet; then arch 1 again, quiet at 12 ms
    clock = durations_clock(quiet + noisy + quiet + [12.0] * 4)
    cfg = HarnessConfig(warmup=2, repeats=4, cv_threshold=0.1, max_remeasure=2)
    stats = Harness(cfg, clock=clock, builder=_fake_builder).measure_many(sp, genes, progress=False)
    assert [s.attempts for s in stats] == [1, 2, 1]
    assert [s.median_ms for s in stats] == pytest.approx([10.0, 12.0, 10.0])
    assert all(s.cv <= 0.1 for s in stats)


def test_remeasure_keeps_best_and_gives_up() -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(1, rng=0)
    worse = [10.0, 100.0, 10.0, 100.0]
    bad = [10.0, 20.0, 10.0, 20.0]
    clock = durations_clock(bad + worse + worse)
    cfg = HarnessConfig(warmup=0, repeats=4, cv_threshold=0.1, max_remeasure=2)
    (stats,) = Harness(cfg, clock=clock, builder=_fake_builder).measure_many(
        sp, genes, progress=False
    )
    assert stats.attempts == 3
    assert stats.samples_ms == pytest.approx(tuple(bad))


def test_real_model_eager_and_script() -> None:
    sp = get_space("nasbench201")
    genes = sp.sample(1, rng=1)[0]
    for backend in ("eager", "script"):
        cfg = HarnessConfig(warmup=1, repeats=3, threads=1, backend=backend)
        stats = Harness(cfg).measure_arch(sp, genes)
        assert len(stats.samples_ms) == 3
        assert stats.median_ms > 0


def test_prepare_script_matches_eager() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(1, 3, 8, 8)
    scripted = prepare(model, x, "script")
    with torch.inference_mode():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)
