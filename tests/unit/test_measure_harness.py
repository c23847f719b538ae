"""Timing harness statistics and re-measurement on a deterministic fake clock."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from client_sdk.measure.harness import (
    Harness,
    HarnessConfig,
    InterleavedMeasurement,
    TimingStats,
    num_threads,
    prepare,
    reduce_runs,
    retest_ceiling,
    spearman,
    spearman_brown,
    time_fn,
)
from client_sdk.spaces import get_space


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


# ------------------------------------------------------------ interleaved rounds


class FakeDevice:
    """A simulated device: each call of architecture i advances the clock by its latency
    times the device's slowness ``slow(t)`` at that moment (t = simulated seconds), times a
    multiplicative jitter of relative size ``noise``."""

    def __init__(self, latency_ms, slow=lambda t: 1.0, noise: float = 0.0) -> None:
        self.t = 0.0
        self.latency_ms = np.asarray(latency_ms, dtype=np.float64)
        self.slow = slow
        self.noise = noise
        self.rng = np.random.default_rng(0)
        self.calls = 0
        self.next_index = 0

    def clock(self) -> float:
        return self.t

    def builder(self, space, genes, batch_size, device):
        i = self.next_index % len(self.latency_ms)
        self.next_index += 1

        def call(x):
            self.calls += 1
            jitter = 1.0 + self.noise * abs(self.rng.standard_normal())
            self.t += self.latency_ms[i] / 1e3 * self.slow(self.t) * jitter

        return call, torch.zeros(1)


def _interleaved(dev: FakeDevice, n: int, **cfg) -> InterleavedMeasurement:
    config = HarnessConfig(warmup=1, **cfg)
    harness = Harness(config, clock=dev.clock, builder=dev.builder)
    return harness.measure_interleaved(get_space("nasbench201"), np.zeros((n, 6), np.int16),
                                       progress=False)


def test_interleaved_steady_device() -> None:
    lat = np.linspace(1.0, 10.0, 12)
    dev = FakeDevice(lat)
    m = _interleaved(dev, 12, rounds=4, runs=3, round_warmup=2)
    assert m.samples_ms.shape == (12, 4, 3)
    # warm-up once per model, then (2 untimed + 3 timed) per architecture per round
    assert dev.calls == 12 * 1 + 12 * 4 * (2 + 3)
    np.testing.assert_allclose(m.latency_ms, lat)
    np.testing.assert_allclose(m.round_scale, 1.0)
    assert m.drift == pytest.approx(0.0) and not m.drifted
    assert m.retest_spearman == pytest.approx(1.0)
    assert len(m.stats()) == 12 and m.stats()[3].median_ms == pytest.approx(lat[3])
    summary = m.summary()
    assert summary["rounds"] == 4 and summary["retest_spearman"] == pytest.approx(1.0)


def test_interleaved_rounds_shuffle_the_order() -> None:
    lat = np.arange(1.0, 9.0)
    order: list[int] = []
    dev = FakeDevice(lat)
    harness = Harness(HarnessConfig(warmup=0, rounds=3, runs=1, round_warmup=0, seed=1),
                      clock=dev.clock, builder=dev.builder)
    real_builder = harness.builder

    def tracking_builder(space, genes, batch_size, device):
        i = dev.next_index
        call, x = real_builder(space, genes, batch_size, device)
        return (lambda inp: (order.append(i), call(inp))), x

    harness.builder = tracking_builder
    harness.measure_interleaved(get_space("nasbench201"), np.zeros((8, 6), np.int16),
                                progress=False)
    rounds = [order[k * 8 : (k + 1) * 8] for k in range(3)]
    assert all(sorted(r) == list(range(8)) for r in rounds)  # every arch once per round
    assert len({tuple(r) for r in rounds}) > 1  # in different orders


def test_interleaved_detects_drift_and_keeps_the_order() -> None:
    """The device is 40 % slower during the first half of the time (busy, then quiet): a
    one-after-the-other pass inflates the architectures measured first and misranks the
    close ones; interleaved rounds see the drift in their per-round scale and keep the true
    order."""
    lat = 5.0 + 0.1 * np.arange(20)  # close latencies: 5.0 .. 6.9 ms
    # rounds take equal time: 20 warm-up calls, then 20 * (1 + 5) calls per round; the
    # device turns quiet between round 2 and round 3 (half an architecture before it)
    boundary = (20 + 2 * 120 - 0.5) * lat.mean() / 1e3 * 1.4
    dev = FakeDevice(lat, lambda t: 1.4 if t < boundary else 1.0)
    m = _interleaved(dev, 20, rounds=4, runs=5, round_warmup=1)
    assert m.drifted and m.drift == pytest.approx(0.4, abs=0.02)
    assert m.round_scale[0] > m.round_scale[-1]
    assert m.retest_spearman == pytest.approx(1.0)
    assert spearman(m.latency_ms, lat) == pytest.approx(1.0)
    np.testing.assert_allclose(m.latency_ms / m.latency_ms[0], lat / lat[0], rtol=1e-6)

    seq_boundary = 20 * 25 * lat.mean() / 1e3 / 2
    seq_dev = FakeDevice(lat, lambda t: 1.4 if t < seq_boundary else 1.0)
    seq = Harness(HarnessConfig(warmup=1, repeats=24, max_remeasure=0), clock=seq_dev.clock,
                  builder=seq_dev.builder).measure_many(
        get_space("nasbench201"), np.zeros((20, 6), np.int16), progress=False
    )
    assert spearman(np.array([s.median_ms for s in seq]), lat) < 0.5


def test_statistics_and_merge() -> None:
    x = np.array([[[1.0, 2.0, 3.0, 4.0, 100.0]]])
    assert reduce_runs(x, "median")[0, 0] == 3.0
    assert reduce_runs(x, "min")[0, 0] == 1.0
    assert reduce_runs(x, "mean")[0, 0] == pytest.approx(22.0)
    assert reduce_runs(x, "p25")[0, 0] == pytest.approx(2.0)
    assert reduce_runs(x, "p10")[0, 0] == pytest.approx(1.4)
    with pytest.raises(ValueError):
        reduce_runs(x, "p99")
    with pytest.raises(ValueError):
        HarnessConfig(statistic="p99")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HarnessConfig(rounds=0)
    a = InterleavedMeasurement(np.ones((4, 2, 3)))
    b = InterleavedMeasurement(2 * np.ones((4, 3, 3)))
    merged = a.merge(b)
    assert merged.samples_ms.shape == (4, 5, 3) and merged.attempts == 2
    assert merged.select(np.array([0, 2])).samples_ms.shape == (2, 5, 3)
    with pytest.raises(ValueError):
        a.merge(InterleavedMeasurement(np.ones((3, 2, 3))))
    assert np.isnan(InterleavedMeasurement(np.ones((4, 1, 3))).retest_spearman)
    assert np.isnan(InterleavedMeasurement(np.ones((4, 1, 3))).ceiling)


def test_retest_from_split_half() -> None:
    """Halves that agree at r give a full-length retest 2r/(1+r) and a ceiling sqrt of it."""
    assert spearman_brown(0.6) == pytest.approx(0.75)
    assert spearman_brown(1.0) == 1.0 and spearman_brown(-0.2) == -0.2
    assert np.isnan(spearman_brown(float("nan")))
    assert retest_ceiling(0.81) == pytest.approx(0.9) and retest_ceiling(-0.1) == 0.0
    # 2 rounds of 1 run: halves = the two rounds; swap two of 5 archs in the second round
    x = np.stack([np.arange(1.0, 6.0), np.array([2.0, 1.0, 3.0, 4.0, 5.0])], axis=1)[..., None]
    m = InterleavedMeasurement(x, normalised=False)
    r = spearman(x[:, 0, 0], x[:, 1, 0])
    assert m.split_half_spearman == pytest.approx(r) and r == pytest.approx(0.9)
    assert m.retest_spearman == pytest.approx(2 * r / (1 + r))
    assert m.ceiling == pytest.approx(np.sqrt(2 * r / (1 + r)))
    assert np.isnan(spearman(np.ones(5), np.arange(5)))
    assert spearman(np.arange(5), np.arange(5) ** 2) == pytest.approx(1.0)


def test_interleaved_real_models_tiny() -> None:
    sp = get_space("nasbench201")
    cfg = HarnessConfig(warmup=1, rounds=2, runs=2, round_warmup=0, threads=1)
    m = Harness(cfg).measure_interleaved(sp, sp.sample(3, rng=0), progress=False)
    assert m.samples_ms.shape == (3, 2, 2) and np.all(m.latency_ms > 0)


@pytest.mark.parametrize("tty, progress, drawn", [
    (False, None, False),  # the default: piped / logged stderr gets no bars
    (True, None, True),
    (False, True, True),  # asked for explicitly
    (True, False, False),
])
def test_progress_bars_only_on_a_terminal_by_default(monkeypatch, capsys, tty, progress,
                                                     drawn) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    dev = FakeDevice(np.linspace(1.0, 2.0, 4))
    harness = Harness(HarnessConfig(warmup=1, rounds=2, runs=2, round_warmup=1),
                      clock=dev.clock, builder=dev.builder)
    harness.measure_interleaved(get_space("nasbench201"), np.zeros((4, 6), np.int16),
                                progress=progress, desc="refs")
    assert ("refs" in capsys.readouterr().err) is drawn
