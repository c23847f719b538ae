"""onboard() against a fake oracle client, with a fast fake measurement."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from client_sdk.measure.harness import Harness, TimingStats
from client_sdk.measure.onboard import OnboardReport, format_report, onboard
from oracle_server.spaces import SearchSpace, get_space


@dataclass
class FakeInfo:
    name: str
    space: str
    head_kind: str = "affine"
    num_samples: int = 0
    expected_spearman: float = 0.9
    monotonicity: float = 0.95


@dataclass
class FakeRank:
    latency_ms: dict[str, np.ndarray]


@dataclass
class FakeClient:
    registered: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def suggest_references(self, space: str, n: int, seed: int = 0) -> np.ndarray:
        self.calls.append(("suggest", space, n, seed))
        return get_space(space).sample(n, rng=seed)

    def register_device(self, name, space, measurements, contract=None):
        genes, ms = measurements
        self.calls.append(("register", name, space))
        self.registered[name] = (genes, ms, contract)
        return FakeInfo(name, space, num_samples=len(ms))

    def rank(self, space: str, archs: np.ndarray, devices: list[str]) -> FakeRank:
        self.calls.append(("rank", space, len(archs), tuple(devices)))
        # a predictor that is right up to noise: FLOPs + a gene-dependent wiggle
        pred = get_space(space).flops(archs) / 1e6 + archs[:, 0]
        return FakeRank({d: pred for d in devices})


def fake_measure(
    space: SearchSpace, genes: np.ndarray, harness: Harness, progress: bool, desc: str
) -> list[TimingStats]:
    """Latency = MFLOPs / 10 + 0.5 * (first gene), deterministic and instantaneous."""
    ms = space.flops(genes) / 1e7 + 0.5 * genes[:, 0]
    return [TimingStats((m, m * 1.01, m * 0.99), attempts=1 + (i == 0)) for i, m in enumerate(ms)]


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
    assert genes.shape == (5, 6) and genes.dtype == np.int16
    np.testing.assert_allclose(ms, report.reference_latency_ms)
    assert contract["unit"] == "ms/inference"
    assert contract["batch_size"] == 1 and contract["threads"] == 1
    assert contract["input_resolution"] == 32
    assert contract["runtime"] == "torch" and contract["precision"] == "fp32"
    assert contract["runtime_version"] and contract["notes"]
    assert client.calls[0] == ("suggest", "nasbench201", 5, 3)
    assert ("rank", "nasbench201", 20, ("cpu1",)) in client.calls
    assert report.num_samples == 5 and report.expected_spearman == 0.9
    assert report.remeasured == 1
    assert report.validation_latency_ms is not None and len(report.validation_latency_ms) == 20
    assert -1.0 <= report.validation_spearman <= 1.0
    assert -1.0 <= report.flops_spearman <= 1.0
    assert report.validation_spearman > 0.5
    assert {"suggest_s", "measure_s", "register_s", "validate_measure_s", "total_s"} <= set(
        report.timings_s
    )
    assert any("expected Spearman 0.900" in line for line in lines)
    text = format_report(report)
    assert "cpu1" in text and "validation" in text and "FLOPs baseline" in text
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
        warmup=1,
        progress=False,
        log=None,
    )
    assert np.all(report.reference_latency_ms > 0)
    assert report.reference_cv.shape == (2,)


def test_onboard_bad_args() -> None:
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", samples=1, measure_fn=fake_measure, log=None)
    with pytest.raises(ValueError):
        onboard(FakeClient(), "x", "nasbench201", validate=-1, measure_fn=fake_measure, log=None)
