"""onboard() against a fake oracle client, with a fast fake measurement."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy.stats import spearmanr

from client_sdk.measure.harness import Harness, InterleavedMeasurement
from client_sdk.measure.onboard import OnboardReport, format_report, onboard
from client_sdk.spaces import SearchSpace, get_space


@dataclass
class FakeInfo:
    name: str
    space: str
    head_kind: str = "affine"
    num_samples: int = 0
    expected_spearman: float = 0.9
    monotonicity: float = 0.95
    quality: str = "good"  # the DeviceInfo fields onboarding reports
    advised_samples: int = 0
    warnings: tuple = ()


@dataclass
class FakeRank:
    latency_ms: dict[str, np.ndarray]


@dataclass
class FakeClient:
    """Expected Spearman grows with the samples: 0.80 + 0.01 per sample over 10."""

    registered: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def _info(self, name, space, n) -> FakeInfo:
        return FakeInfo(name, space, num_samples=n,
                        expected_spearman=0.9 if n <= 10 else min(0.9 + 0.01 * (n - 10), 1.0))

    def suggest_references(self, space: str, n: int, seed: int = 0, device: str = "") -> np.ndarray:
        self.calls.append(("suggest", space, n, seed) + ((device,) if device else ()))
        return get_space(space).sample(n, rng=seed + (1000 if device else 0))

    def register_device(self, name, space, measurements, contract=None):
        genes, ms = measurements
        self.calls.append(("register", name, space))
        self.registered[name] = (genes, ms, contract)
        return self._info(name, space, len(ms))

    def add_measurements(self, name, measurements, space=""):
        genes, ms = measurements
        self.calls.append(("add", name, space, len(ms)))
        old_g, old_ms, contract = self.registered[name]
        self.registered[name] = (np.concatenate([old_g, genes]), np.concatenate([old_ms, ms]),
                                 contract)
        return self._info(name, space, len(old_ms) + len(ms))

    def rank(self, space: str, archs: np.ndarray, devices: list[str]) -> FakeRank:
        self.calls.append(("rank", space, len(archs), tuple(devices)))
        # a predictor that is right up to noise: FLOPs + a gene-dependent wiggle
        pred = get_space(space).flops(archs) / 1e6 + archs[:, 0]
        return FakeRank({d: pred for d in devices})


def true_ms(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """The fake device: MFLOPs / 10 + 0.5 * (first gene) ms."""
    return space.flops(genes) / 1e7 + 0.5 * genes[:, 0]


def fake_measure(
    space: SearchSpace, genes: np.ndarray, harness: Harness, progress: bool, desc: str
) -> InterleavedMeasurement:
    """Deterministic, instantaneous: 4 rounds x 3 runs of ``true_ms`` with 1 % wiggle."""
    ms = true_ms(space, genes)
    wiggle = np.array([1.0, 1.01, 0.99])
    return InterleavedMeasurement(ms[:, None, None] * wiggle[None, None, :] * np.ones((1, 4, 1)))


def slow_measure(scale_after: float):
    """The device gets ``scale_after`` times slower after the first measured set."""
    count = {"n": 0}

    def measure(space, genes, harness, progress, desc):
        m = fake_measure(space, genes, harness, progress, desc)
        count["n"] += 1
        factor = 1.0 if count["n"] == 1 else scale_after
        return InterleavedMeasurement(m.samples_ms * factor)

    return measure


_NOISE = np.random.default_rng(0)


def noisy_measure(space, genes, harness, progress, desc):
    """Pure noise, different at every call: a low retest ceiling."""
    x = 1.0 + 0.05 * _NOISE.random((len(genes), 4, 3))
    return InterleavedMeasurement(x)


def test_onboard_registers_and_validates() -> None:
    client = FakeClient()
    lines: list[str] = []
    report = onboard(
        client,
        "cpu1",
        "nasbench201",
        samples=5,
        threads=1,
        validate=20,
        progress=False,
        seed=3,
        measure_fn=fake_measure,
        log=lines.append,
    )
    assert isinstance(report, OnboardReport)
    genes, ms, contract = client.registered["cpu1"]
    # the 5 references and the 20 retest archs measured with them (register_retest), then
    # the same 25 again from the session check's pass (added after the validation)
    assert genes.shape == (50, 6) and genes.dtype == np.int16
    assert report.registered_retest == 20 and report.progress[0]["added"] == 25
    np.testing.assert_allclose(ms[:25], report.reference_latency_ms)
    np.testing.assert_array_equal(genes[25:], genes[:25])
    np.testing.assert_allclose(ms[25:], report.session_latency_ms[:25])
    assert report.session_added == 25
    assert client.calls.index(("rank", "nasbench201", 20, ("cpu1",))) < client.calls.index(
        ("add", "cpu1", "nasbench201", 25))  # the validation scored the first-pass device
    assert contract["unit"] == "ms/inference"
    assert contract["batch_size"] == 1 and contract["threads"] == 1
    assert contract["input_resolution"] == 32
    assert contract["runtime"] == "torch" and contract["precision"] == "fp32"
    assert contract["runtime_version"] and contract["notes"]
    assert client.calls[0] == ("suggest", "nasbench201", 5, 3)
    assert ("rank", "nasbench201", 20, ("cpu1",)) in client.calls
    assert report.num_samples == 50 and report.expected_spearman == 1.0  # capped at 1
    assert report.remeasured == 0 and not report.warnings
    assert report.retest_spearman == pytest.approx(1.0) and report.retest_archs == 20
    assert report.ceiling == pytest.approx(1.0)
    assert report.validation_retest_spearman == pytest.approx(1.0)
    # session check: the 5 references + 20 retest archs measured again with the validation set
    assert report.session_archs == 25
    assert report.session_retest_spearman == pytest.approx(1.0)
    assert report.session_scale == pytest.approx(1.0) and report.session_ceiling == 1.0
    assert report.validation_latency_ms is not None and len(report.validation_latency_ms) == 20
    # recomputed independently: the validation sample (seed + 1), the fake oracle's prediction
    # and the fake device's true latency (the measurement's wiggle does not change ranks)
    sp = get_space("nasbench201")
    val = sp.sample(20, np.random.default_rng(3 + 1))
    assert report.validation_archs == [sp.format(g) for g in val]
    true = true_ms(sp, val)
    predicted = sp.flops(val) / 1e6 + val[:, 0]
    np.testing.assert_allclose(report.validation_predicted_ms, predicted)
    assert report.validation_spearman == pytest.approx(spearmanr(predicted, true).statistic)
    assert report.flops_spearman == pytest.approx(spearmanr(sp.flops(val), true).statistic)
    assert report.validation_spearman > 0.5
    assert {"suggest_s", "measure_s", "register_s", "validate_measure_s", "total_s"} <= set(
        report.timings_s
    )
    assert any("from 25 archs (5 references + 20 retest archs): head affine, expected "
               "Spearman 1.000" in line for line in lines)
    text = format_report(report)
    assert "cpu1" in text and "validation" in text and "FLOPs baseline" in text
    assert "retest" in text and "adaptive" not in text
    # the head shown is the refit on both passes; the validation scored the first pass's
    assert (f"refit on both passes: {report.num_samples} measurements of 25 archs" in text)
    assert "scored on the first pass's head, before the later pass was added" in text
    assert isinstance(report.to_dict()["reference_latency_ms"], list)


def test_onboard_without_validation_ofa_contract() -> None:
    client = FakeClient()
    report = onboard(
        client,
        "phone",
        "ofa_mbv3",
        samples=3,
        progress=False,
        measure_fn=fake_measure,
        log=None,
    )
    assert report.validation_spearman is None and report.validate == 0
    contract = client.registered["phone"][2]
    assert contract["input_resolution"] == 0  # per-architecture resolution
    assert "resolution gene" in contract["notes"]
    assert contract["threads"] >= 1
    assert "validation" not in format_report(report)


def test_onboard_real_measurement_tiny() -> None:
    client = FakeClient()
    report = onboard(
        client,
        "cpu1",
        "nasbench201",
        samples=2,
        threads=1,
        repeats=2,
        rounds=2,
        warmup=1,
        retest=0,
        progress=False,
        log=None,
    )
    assert np.all(report.reference_latency_ms > 0)
    assert report.reference_cv.shape == (2,)
    assert report.rounds == 2 and report.runs == 1


def test_onboard_bad_args() -> None:
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", samples=1, measure_fn=fake_measure, log=None)
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", validate=-1, measure_fn=fake_measure, log=None)


def test_onboard_adaptive_rounds_reach_the_target() -> None:
    client = FakeClient()
    lines: list[str] = []
    report = onboard(client, "cpu1", "nasbench201", samples=10, target_spearman=0.95,
                     max_samples=40, round_size=3, progress=False, measure_fn=fake_measure,
                     register_retest=False, session_check=False, log=lines.append)
    # 0.90 at 10 samples, +0.01 per sample: 0.95 needs 15 -> rounds of 3: 13, 16
    assert [p["samples"] for p in report.progress] == [10, 13, 16]
    assert report.target_reached and report.num_samples == 16
    adaptive = [c for c in client.calls if c[0] == "suggest" and len(c) == 5]
    assert [c[2] for c in adaptive] == [3, 3] and all(c[4] == "cpu1" for c in adaptive)
    assert [c[3] for c in client.calls if c[0] == "add"] == [3, 3]
    genes, ms, _ = client.registered["cpu1"]
    assert len(genes) == 16 and len(report.reference_archs) == 16
    np.testing.assert_allclose(ms, report.reference_latency_ms)
    np.testing.assert_allclose(ms, true_ms(get_space("nasbench201"), genes), rtol=1e-9)
    assert sum("round" in line and "expected Spearman" in line for line in lines) == 2
    assert any("target 0.950 reached" in line for line in lines)
    assert "target 0.950 reached" in format_report(report)


def test_onboard_adaptive_budget_and_anchor_rescaling() -> None:
    """The device is 30 % slower in the later rounds: the anchors re-measured each round
    put the new latencies back on the first round's scale."""
    client = FakeClient()
    report = onboard(client, "cpu1", "nasbench201", samples=10, target_spearman=0.999,
                     max_samples=14, round_size=3, progress=False, register_retest=False,
                     session_check=False, measure_fn=slow_measure(1.3), log=None)
    assert [p["samples"] for p in report.progress] == [10, 13, 14]  # budget caps the last round
    assert report.target_reached is False
    assert report.progress[1]["anchor_scale"] == pytest.approx(1.3)
    genes, ms, _ = client.registered["cpu1"]
    np.testing.assert_allclose(ms, true_ms(get_space("nasbench201"), genes), rtol=1e-9)
    assert "NOT reached" in format_report(report)


def test_onboard_low_retest_is_remeasured_then_warned() -> None:
    client = FakeClient()
    calls: list[str] = []

    def measure(space, genes, harness, progress, desc):
        calls.append(desc)
        return noisy_measure(space, genes, harness, progress, desc)

    report = onboard(client, "cpu1", "nasbench201", samples=10, retest=20, progress=False,
                     session_check=False, measure_fn=measure, log=None)
    assert calls == ["references", "references (again)"]
    assert report.remeasured == 1
    assert report.retest_spearman < 0.9
    assert any("too noisy" in w for w in report.warnings)
    assert "WARNING" in format_report(report)
    quiet = onboard(FakeClient(), "cpu2", "nasbench201", samples=10, retest=20,
                    remeasure_low_retest=False, session_check=False, progress=False,
                    measure_fn=noisy_measure, log=None)
    assert quiet.remeasured == 0 and not quiet.warnings


def test_onboard_adaptive_bad_args() -> None:
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", target_spearman=1.5,
                measure_fn=fake_measure, log=None)
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", samples=10, target_spearman=0.9,
                max_samples=5, measure_fn=fake_measure, log=None)
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", round_size=0, measure_fn=fake_measure,
                log=None)


def test_session_check_reports_a_slower_later_pass() -> None:
    """The device is 30 % slower after the first set: the session check (its own pass at the
    end, no validation) sees the same ranking at 1.3x the latency, and warns about budgets."""
    calls: list[str] = []
    slow = slow_measure(1.3)

    def measure(space, genes, harness, progress, desc):
        calls.append(desc)
        return slow(space, genes, harness, progress, desc)

    lines: list[str] = []
    report = onboard(FakeClient(), "cpu1", "nasbench201", samples=10, progress=False,
                     measure_fn=measure, log=lines.append)
    assert calls == ["references", "session check"]
    assert report.session_archs == 30  # 10 references + 20 retest archs (the default)
    assert report.session_retest_spearman == pytest.approx(1.0)
    assert report.session_scale == pytest.approx(1.3)
    assert any("1.30x the first pass" in w for w in report.warnings)
    assert not any("ranked the same" in w for w in report.warnings)
    assert any(line.startswith("session check on 30 archs") for line in lines)
    assert "session     30 archs measured again" in format_report(report)
    assert "session_measure_s" in report.timings_s


def test_session_check_warns_when_the_ranking_changes_between_passes() -> None:
    """A later pass that ranks the architectures in another order (the first gene's cost
    reversed) gives a low Spearman between the passes, a ceiling under 1 and a warning."""
    count = {"n": 0}

    def measure(space, genes, harness, progress, desc):
        count["n"] += 1
        ms = true_ms(space, genes)
        if count["n"] > 1:
            ms = space.flops(genes) / 1e7 + 0.5 * (4 - genes[:, 0]) + 0.3 * genes[:, 1]
        return InterleavedMeasurement(ms[:, None, None] * np.ones((1, 4, 3)))

    report = onboard(FakeClient(), "cpu1", "nasbench201", samples=10, validate=30,
                     progress=False, seed=5, measure_fn=measure, log=None)
    assert count["n"] == 2  # the session check rode along with the validation set
    assert report.session_archs == 30
    assert report.session_retest_spearman < 0.9
    assert report.session_ceiling == pytest.approx(
        np.sqrt(max(report.session_retest_spearman, 0.0)))
    assert any("ranked the same 30 architectures differently" in w for w in report.warnings)
    off = onboard(FakeClient(), "cpu2", "nasbench201", samples=10, validate=30,
                  progress=False, seed=5, session_check=False,
                  measure_fn=fake_measure, log=None)
    assert off.session_archs == 0 and np.isnan(off.session_retest_spearman)
    assert off.retest_archs == 30  # from the validation set; no retest archs measured
    assert "session " not in format_report(off)


def test_onboard_registers_the_retest_archs_and_counts_them_in_the_budget() -> None:
    """The 20 retest archs are measured in the references' set, so they are registered with
    them (same scale); the default adaptive budget is 4 x samples plus those 20."""
    class NeverSure(FakeClient):
        def _info(self, name, space, n):
            return FakeInfo(name, space, num_samples=n, expected_spearman=0.5)

    client = NeverSure()
    report = onboard(client, "cpu1", "nasbench201", samples=10, target_spearman=0.999,
                     round_size=5, progress=False, session_check=False,
                     measure_fn=fake_measure, log=None)
    genes, ms, _ = client.registered["cpu1"]
    sp = get_space("nasbench201")
    assert report.registered_retest == 20 and report.retest_archs == 20
    assert [p["samples"] for p in report.progress] == [30, 35, 40, 45, 50, 55, 60]
    assert len(genes) == 60 and len(np.unique(genes, axis=0)) == 60
    np.testing.assert_allclose(ms, true_ms(sp, genes), rtol=1e-9)
    assert ("registered  60 archs (10 references + 20 retest archs + 30 adaptive)"
            in format_report(report))
    # the first 10 registered are the suggested references, then the retest archs
    refs = sp.sample(10, rng=0)
    np.testing.assert_array_equal(genes[:10], sp.validate(refs))
    only = onboard(FakeClient(), "cpu2", "nasbench201", samples=10, progress=False,
                   register_retest=False, measure_fn=fake_measure, log=None)
    assert only.registered_retest == 0 and only.retest_archs == 20
    # the session check adds its pass of the 10 references only (the retest archs are not
    # registered): 20 measurements of 10 architectures
    assert only.session_added == 10 and only.num_samples == 20
    assert "registered  10 archs, latency" in format_report(only)


def test_the_report_carries_the_servers_quality_verdict_and_a_flops_warning() -> None:
    """A device the server flags LOW (e.g. not clearly better than FLOPs) says so in the
    report; a validation where the served ranking loses to FLOPs is a warning of its own."""

    class FlagsLow(FakeClient):
        def _info(self, name, space, n):
            return FakeInfo(name, space, num_samples=n, quality="low", advised_samples=60,
                            warnings=("not clearly better than ranking by FLOPs: ...",))

        def rank(self, space, archs, devices):  # a ranking that ignores FLOPs entirely
            return FakeRank({d: -get_space(space).flops(archs) for d in devices})

    report = onboard(FlagsLow(), "cpu3", "nasbench201", samples=10, validate=30,
                     progress=False, session_check=False, measure_fn=fake_measure, log=None)
    assert report.quality == "low" and report.advised_samples == 60
    assert report.quality_reasons == ["not clearly better than ranking by FLOPs: ..."]
    text = format_report(report)
    assert "quality     LOW, 60 measurements advised; not clearly better" in text
    assert report.validation_spearman < report.flops_spearman - 0.02
    flops_warnings = [w for w in report.warnings if "worse than ranking by FLOPs" in w]
    assert len(flops_warnings) == 1 and "did not flag" not in flops_warnings[0]
    good = onboard(FakeClient(), "cpu4", "nasbench201", samples=10, validate=30,
                   progress=False, session_check=False, measure_fn=fake_measure, log=None)
    assert good.quality == "good" and "quality     " not in format_report(good)
    assert not any("worse than ranking by FLOPs" in w for w in good.warnings)
