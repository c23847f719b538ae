"""benchmarks.studies.harness_defaults: its reduction and report on synthetic raw timings
(no timing here; the passes' worker processes are replaced by a fake)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.studies import harness_defaults as hd
from client_sdk.measure.measurement import STATISTICS


def _raw(n: int = 50, rounds: int = 6, runs: int = 5, noise: float = 0.02, seed: int = 0):
    """Timings of ``n`` archs with distinct true latencies 1..10 ms and multiplicative noise."""
    rng = np.random.default_rng(seed)
    true = np.linspace(1.0, 10.0, n)
    return true[:, None, None] * (1.0 + noise * rng.standard_normal((n, rounds, runs)))


def test_identical_passes_retest_one() -> None:
    a = _raw()
    an = hd.compare_passes(a, a.copy())
    assert all(an["between"][s] == pytest.approx(1.0) for s in STATISTICS)
    assert an["between_raw_median"] == pytest.approx(1.0)
    assert set(an["first_rounds"]) == {"2", "3"}
    assert all(v[s] == pytest.approx(1.0) for v in an["first_rounds"].values() for s in STATISTICS)
    assert an["scale_b_over_a"] == pytest.approx(1.0)
    assert (an["archs"], an["rounds"], an["runs"]) == (50, 6, 5)


def test_shuffled_passes_retest_low() -> None:
    a = _raw()
    b = a[np.random.default_rng(1).permutation(len(a))]  # the same numbers, other archs
    an = hd.compare_passes(a, b)
    assert all(abs(an["between"][s]) < 0.4 for s in STATISTICS)
    # each pass on its own is still repeatable: the within-session figure cannot see it
    assert an["within"]["A"]["retest"] > 0.95 and an["within"]["B"]["retest"] > 0.95


def test_noise_lowers_the_retest_and_a_slower_session_is_a_scale() -> None:
    a = _raw(noise=0.3, seed=2)
    b = _raw(noise=0.3, seed=3) * 1.2  # another session, 20 % slower
    an = hd.compare_passes(a, b)
    assert 0.5 < an["between"]["median"] < 0.999
    assert an["scale_b_over_a"] == pytest.approx(1.2, rel=0.05)
    # the first two rounds alone are noisier than all six
    assert an["first_rounds"]["2"]["median"] < an["between"]["median"]
    with pytest.raises(ValueError, match="same shape"):
        hd.compare_passes(a, b[:, :3])


def test_round_drift_is_normalised_away() -> None:
    a = _raw(noise=0.01)
    b = _raw(noise=0.01, seed=5)
    b[:, 0] *= 3.0  # B's first round ran 3x slower for every arch
    b[::2, 1] *= 0.4  # and half the archs got lucky in the second round
    an = hd.compare_passes(a, b)
    assert an["within"]["B"]["drift"] > 1.0 and an["within"]["A"]["drift"] < 0.1
    assert an["between"]["median"] > 0.95


def test_rounds_subsets() -> None:
    assert hd.rounds_subsets(6) == [2, 3]
    assert hd.rounds_subsets(10) == [2, 3, 5]
    assert hd.rounds_subsets(3) == [2]
    assert hd.rounds_subsets(2) == []


def test_config_names_and_specs() -> None:
    names = hd.config_names()
    assert len(names) == 28 and names[0] == "torch-1" and "ort-2-r3x10" in names
    assert hd.config_spec("ort-2-ftz") == {
        "runtime": "onnxruntime", "threads": 2, "flush_denormal": True
    }  # fmt: skip
    assert hd.config_spec("torch-1-r10x3")["rounds"] * hd.config_spec("torch-1-r10x3")["runs"] == 30
    assert hd.base_of("torch-1-pin") == "torch-1" and hd.base_of("ort-2") == "ort-2"
    with pytest.raises(ValueError, match="unknown configuration"):
        hd.config_spec("tflite-1")
    assert hd.select_configs("torch-1,ort-1") == ["torch-1", "ort-1"]
    assert hd.select_configs("torch-1*") == [n for n in names if n.startswith("torch-1")]
    assert hd.select_configs(None) == names
    with pytest.raises(SystemExit, match="nothing matches"):
        hd.select_configs("torch-3")


def test_study_orchestration_with_fake_passes(monkeypatch, tmp_path: Path) -> None:
    """Two passes per cell, the same archs, the analysis, the summary, the JSON after each
    cell; a failing cell is recorded, not fatal."""
    calls: list[tuple[str, str, int]] = []

    def fake_pass(space, config, index, args, out):
        calls.append((space, config, index))
        if config == "ort-1":
            raise RuntimeError("pass worker exited 1: boom")
        noise = 0.3 if config == "torch-1-warm0" else 0.01
        raw = _raw(n=args.archs, noise=noise, seed=10 * len(calls))
        np.savez(out, samples_ms=raw, genes=np.arange(args.archs))
        return {"pass": "AB"[index], "wall_s": 2.0, "load_before": [0.5, 0.5, 0.5]}

    monkeypatch.setattr(hd, "run_pass", fake_pass)
    monkeypatch.setattr(hd.time, "sleep", lambda s: None)
    args = argparse.Namespace(archs=30, gap_s=0.0, seed=0, keep_raw=None,
                              json=tmp_path / "out.json")  # fmt: skip
    configs = ["torch-1", "torch-1-warm0", "ort-1"]
    result = hd.study(args, ["fbnet"], configs)
    assert calls == [("fbnet", c, k) for c in configs for k in (0, 1)][:-1]  # ort-1 fails at A
    cells = {c["config"]: c for c in result["cells"]}
    assert cells["torch-1"]["analysis"]["between"]["median"] > 0.99
    assert cells["torch-1-warm0"]["analysis"]["between"]["median"] < 0.99
    assert "boom" in cells["ort-1"]["error"] and "analysis" not in cells["ort-1"]
    summary = {r["config"]: r for r in result["summary"]}
    assert summary["torch-1"]["delta_vs_default"] is None
    assert summary["torch-1-warm0"]["delta_vs_default"] == pytest.approx(
        cells["torch-1-warm0"]["analysis"]["between"]["median"]
        - cells["torch-1"]["analysis"]["between"]["median"]
    )
    assert summary["torch-1"]["wall_s"] == 2.0
    written = json.loads((tmp_path / "out.json").read_text())
    assert [c["config"] for c in written["cells"]] == configs
    headers, rows = hd.table_rows(result["cells"])
    assert len(rows) == 3 and rows[2][2].startswith("error")
    assert len(rows[0]) == len(headers)
