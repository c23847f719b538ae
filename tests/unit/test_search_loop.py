"""Closed-loop search: acquisition, measuring rounds, refit, resolution-aware fronts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from client_sdk.search import search
from client_sdk.search.loop import (
    acquisition,
    front_membership,
    infer_device_resolution,
    infer_levels,
    infer_resolution,
    measured_matrix,
    resolution_grid,
    select_batch,
    snap_latency,
)
from client_sdk.spaces import get_space

NB201 = get_space("nasbench201")


class LoopClient:
    """A fake oracle whose head is the true table latency times a per-architecture error
    that shrinks with every measurement added (a stand-in for the server's refit)."""

    def __init__(self, device: str = "pixel2", noise: float = 0.25, interval: bool = True):
        rng = np.random.default_rng(0)
        self.device = device
        self.err = rng.normal(0.0, noise, NB201.num_architectures)
        self.noise = noise
        self.interval = interval
        self.added: list[np.ndarray] = []
        self.rank_calls = 0

    @property
    def scale(self) -> float:
        return 1.0 / (1.0 + sum(len(a) for a in self.added) / 10.0)

    def rank(self, space, archs, devices, max_latency_ms=None, return_uncertainty=False):
        self.rank_calls += 1
        rows = NB201.table_rows(np.asarray(archs))
        true = NB201.table.device_column(self.device)[rows]
        lat = true * np.exp(self.err[rows] * self.scale)
        out = SimpleNamespace(latency_ms={d: lat for d in devices})
        if return_uncertainty and self.interval:
            w = np.exp(1.2816 * self.noise * self.scale)
            out.lower_ms = {d: lat / w for d in devices}
            out.upper_ms = {d: lat * w for d in devices}
        return out

    def add_measurements(self, name, measurements, space=""):
        genes, lat = measurements
        assert len(genes) == len(lat)
        self.added.append(np.asarray(genes).copy())
        return SimpleNamespace(name=name)


def table_measure(device: str, calls: list):
    def measure(genes: np.ndarray) -> np.ndarray:
        calls.append(genes.copy())
        return NB201.table.device_column(device)[NB201.table_rows(genes)]

    return measure


KW = {"evaluations": 600, "population": 40, "progress": False, "seed": 0}


# ------------------------------------------------------------------------ resolution
def test_infer_resolution_finds_integer_and_offset_grids():
    assert infer_resolution(np.array([5.0, 9, 10, 10, 13, 16, 27, 40])) == (1.0, 0.0)
    step, off = infer_resolution(1.67954 + 0.24576 * np.array([6, 7, 8, 9, 12, 13, 19, 25]))
    assert step == pytest.approx(0.24576) and off == pytest.approx(1.67954 % 0.24576)
    rng = np.random.default_rng(1)
    assert infer_resolution(rng.uniform(2, 20, 30)) is None  # continuous
    assert infer_resolution(np.array([1.0, 2.0, 3.0])) is None  # too few to tell
    # on the bundled tables: integer-ms phones yes, GPUs no (first 30 rows)
    assert infer_resolution(NB201.table.device_column("pixel2")[:30]) == (1.0, 0.0)
    assert infer_resolution(NB201.table.device_column("gold_6226")[:30]) is None


def test_infer_levels_needs_repeats():
    levels = np.array([1.95216, 2.05776, 2.05776, 2.36176, 2.39056, 2.80016, 3.42096])
    r = infer_levels(levels)
    assert r == pytest.approx(np.median(np.diff(np.log(np.unique(levels)))))
    assert infer_levels(np.unique(levels)) is None  # no repeat: may be continuous
    assert infer_resolution(levels) is not None  # a 0.0032-ms grid: too fine to matter
    assert infer_device_resolution(levels) == {"relative": r}
    assert infer_device_resolution(np.array([5.0, 9, 10, 10, 13, 16])) == (1.0, 0.0)


def test_snap_and_resolution_grid():
    lat = np.array([[1.4, 3.33], [1.6, 3.2]])
    steps, offsets, rel = resolution_grid(["a", "b"], {"a": 1.0})
    np.testing.assert_allclose(snap_latency(lat, steps, offsets, rel), [[1.0, 3.33], [2.0, 3.2]])
    steps, offsets, rel = resolution_grid(["a"], (0.5, 0.2))
    np.testing.assert_allclose(snap_latency(np.array([[1.1]]), steps, offsets), [[1.2]])
    steps, offsets, rel = resolution_grid(["a"], {"relative": 0.1})
    got = snap_latency(np.array([[1.0], [1.04], [1.06]]), steps, offsets, rel)
    assert got[0, 0] == got[1, 0] != got[2, 0]
    with pytest.raises(ValueError, match="not searched"):
        resolution_grid(["a"], {"zz": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        resolution_grid(["a"], -1.0)


# ----------------------------------------------------------------------- acquisition
def test_front_membership_probabilities():
    acc = np.array([90.0, 80.0, 70.0, 60.0])
    lat = np.array([10.0, 5.0, 5.1, 20.0])
    p = front_membership(acc, lat, np.zeros(4))
    np.testing.assert_array_equal(p, [1.0, 1.0, 0.0, 0.0])  # exact when measured
    p = front_membership(acc, lat, np.full(4, 0.05))
    assert p[0] == 1.0 and p[1] > 0.99 and 0.2 < p[2] < 0.5 and p[3] < 1e-6
    # equal accuracies do not dominate each other
    p = front_membership(np.array([50.0, 50.0]), np.array([1.0, 2.0]), np.zeros(2))
    np.testing.assert_array_equal(p, [1.0, 1.0])


def test_acquisition_prefers_uncertain_near_front_and_batch_spreads():
    acc = np.array([90.0, 80.0, 70.0, 60.0, 59.0])
    lat = np.array([[10.0], [5.0], [5.1], [20.0], [4.0]])
    sigma = np.full((5, 1), 0.05)
    eligible = np.array([True, True, True, True, False])
    score = acquisition(acc, lat, sigma, eligible)
    # row 2 vs its blocker row 1: a coin flip whose worth they share (equal sigmas)
    assert score[1] == pytest.approx(score[2], rel=1e-2) and score[2] > 0.1
    assert score[4] == 0.0 and score[3] < 1e-6 and score[0] < 1e-6
    # a front member blocking several uncertain candidates collects their worth
    acc = np.array([90.0, 80.0, 79.0, 78.0])
    lat = np.array([[10.0], [5.0], [5.1], [5.2]])
    score = acquisition(acc, lat, np.full((4, 1), 0.05), np.ones(4, dtype=bool))
    assert np.argmax(score) == 1
    # a measured blocker (sigma 0) passes its share on to the uncertain candidate
    sigma = np.array([[0.05], [0.0], [0.05], [0.05]])
    score = acquisition(acc, lat, sigma, np.array([True, False, True, True]))
    assert score[1] == 0.0 and score[2] > 0.2
    score = np.array([0.1, 0.2, 0.25, 0.24, 0.23, 0.0])
    lat1 = np.array([1.0, 2.0, 3.0, 3.1, 3.2, 9.0])
    picks = select_batch(score, lat1, 2)
    assert len(picks) == 2 and len(set(picks)) == 2 and 5 not in picks
    assert select_batch(np.zeros(3), lat1[:3], 2).size == 0


def test_measured_matrix_validates():
    np.testing.assert_array_equal(measured_matrix([1.0, 2.0], ["a"], 2), [[1.0], [2.0]])
    got = measured_matrix({"b": [3.0], "a": [1.0]}, ["a", "b"], 1)
    np.testing.assert_array_equal(got, [[1.0, 3.0]])
    with pytest.raises(ValueError, match="shape"):
        measured_matrix([1.0], ["a"], 2)
    with pytest.raises(ValueError, match="no latencies"):
        measured_matrix({"a": [1.0]}, ["a", "b"], 1)
    with pytest.raises(ValueError, match="non-positive"):
        measured_matrix([0.0], ["a"], 1)


# ---------------------------------------------------------------------- closed loop
def test_closed_loop_measures_in_rounds_and_pins_measurements():
    client, calls = LoopClient(), []
    res = search(client, "nasbench201", ["pixel2"], objective="cifar10",
                 measure=table_measure("pixel2", calls), measure_budget=10, rounds=3, **KW)
    assert [len(c) for c in calls] == [4, 3, 3]
    assert [len(a) for a in client.added] == [4, 3, 3]
    measured = np.concatenate(calls)
    assert len(np.unique(measured, axis=0)) == 10  # never the same architecture twice
    # archive: measured rows carry their measurement, the rest the refit prediction
    m = res.archive["measured_ms"]["pixel2"]
    assert np.isfinite(m).sum() == 10
    rows = NB201.table_rows(res.archive["genes"])
    true = NB201.table.device_column("pixel2")[rows]
    np.testing.assert_allclose(res.archive["latency_ms"]["pixel2"][np.isfinite(m)],
                               true[np.isfinite(m)])
    assert client.scale == pytest.approx(0.5)
    final = true * np.exp(client.err[rows] * client.scale)
    free = ~np.isfinite(m)
    np.testing.assert_allclose(res.archive["latency_ms"]["pixel2"][free], final[free])
    assert [h.get("measured") for h in res.history if "measured" in h] == [4, 3, 3]
    assert res.history[-1]["measured"] == 3  # the last round comes after the last generation
    assert res.num_evaluations == KW["evaluations"]


def test_closed_loop_beats_static_on_true_front_hypervolume():
    """More measurements near the front must not make the front worse (same seed)."""
    from pymoo.indicators.hv import HV

    acc = NB201.table.accuracy["cifar10"]
    col = NB201.table.device_column("pixel2")

    def hv(res):
        rows = NB201.table_rows(res.front.genes)
        return HV(ref_point=np.array([100.0, col.max() * 1.01]))(
            np.column_stack([100.0 - acc[rows], col[rows]]))

    static = search(LoopClient(noise=0.3), "nasbench201", ["pixel2"], **KW)
    loop = search(LoopClient(noise=0.3), "nasbench201", ["pixel2"], measure_budget=30,
                  rounds=3, measure=table_measure("pixel2", []), **KW)
    assert hv(loop) >= hv(static)


def test_closed_loop_argument_checks():
    with pytest.raises(ValueError, match="needs a measure"):
        search(LoopClient(), "nasbench201", ["pixel2"], measure_budget=5, **KW)
    with pytest.raises(ValueError, match="rounds"):
        search(LoopClient(), "nasbench201", ["pixel2"], measure=lambda g: g, measure_budget=5,
               rounds=0, **KW)
    with pytest.raises(ValueError, match="shape"):
        search(LoopClient(), "nasbench201", ["pixel2"], measure=lambda g: np.ones(len(g) + 1),
            measure_budget=3, **KW)


# ----------------------------------------------------------- objectives / resolution
def test_upper_and_prob_objectives():
    res = search(LoopClient(), "nasbench201", ["pixel2"], latency_objective="upper", **KW)
    assert len(res.front) > 0
    res_p = search(LoopClient(), "nasbench201", ["pixel2"], latency_objective="prob",
                   max_latency_ms=15.0, **KW)
    assert len(res_p.front) > 0
    with pytest.raises(ValueError, match="needs max_latency_ms"):
        search(LoopClient(), "nasbench201", ["pixel2"], latency_objective="prob", **KW)
    with pytest.raises(ValueError, match="uncertainty"):
        search(LoopClient(), "nasbench201", ["pixel2"], latency_objective="upper",
               uncertainty=False, **KW)


def test_upper_objective_optimises_the_upper_bound():
    """With intervals whose width varies, the 'upper' front is non-dominated in upper_ms."""
    from client_sdk.search import pareto_mask

    res = search(LoopClient(), "nasbench201", ["pixel2"], latency_objective="upper",
                 tie_tolerance=0.0, **KW)
    up = res.front.upper_ms["pixel2"]
    F = np.column_stack([-res.front.accuracy, up])
    assert pareto_mask(F).all()


def test_resolution_ties_shrink_the_front():
    base = search(LoopClient(), "nasbench201", ["pixel2"], **KW)
    snapped = search(LoopClient(), "nasbench201", ["pixel2"], latency_resolution_ms=1.0, **KW)
    assert len(snapped.front) <= len(base.front)
    lat = np.round(snapped.front.latency_ms["pixel2"])
    assert len(np.unique(lat)) == len(lat)  # one architecture per 1-ms level
    auto = search(LoopClient(), "nasbench201", ["pixel2"], latency_resolution_ms="auto",
                  measure=table_measure("pixel2", []), measure_budget=12, rounds=2, **KW)
    lat = np.round(auto.front.latency_ms["pixel2"])
    assert len(np.unique(lat)) == len(lat)  # inferred 1 ms from the integer measurements


def test_auto_resolution_uses_known_latencies_without_measuring():
    known = {"pixel2": NB201.table.device_column("pixel2")[:20]}
    res = search(LoopClient(), "nasbench201", ["pixel2"], latency_resolution_ms="auto",
                 known_latencies_ms=known, **KW)
    lat = np.round(res.front.latency_ms["pixel2"])
    assert len(np.unique(lat)) == len(lat)
    plain = search(LoopClient(), "nasbench201", ["pixel2"], latency_resolution_ms="auto", **KW)
    assert len(plain.front) >= len(res.front)  # nothing measured, nothing known: no ties


def test_closed_loop_resumes_from_checkpoint(tmp_path):
    ref = search(LoopClient(), "nasbench201", ["pixel2"], measure=table_measure("pixel2", []),
                 measure_budget=10, rounds=3, **KW)
    ckpt = tmp_path / "loop.npz"
    client = LoopClient()  # the server keeps the measurements across the interruption
    first = search(client, "nasbench201", ["pixel2"], measure=table_measure("pixel2", []),
                   measure_budget=10, rounds=3, checkpoint=ckpt,
                   callback=lambda info: "measured" not in info, **KW)
    assert first.stopped_by == "callback"
    assert np.isfinite(first.archive["measured_ms"]["pixel2"]).sum() == 4
    calls: list = []
    resumed = search(client, "nasbench201", ["pixel2"], measure=table_measure("pixel2", calls),
                     measure_budget=10, rounds=3, checkpoint=ckpt, resume=True, **KW)
    assert [len(c) for c in calls] == [3, 3]  # only the remaining rounds
    np.testing.assert_array_equal(resumed.front.genes, ref.front.genes)
    np.testing.assert_array_equal(resumed.archive["measured_ms"]["pixel2"],
                                  ref.archive["measured_ms"]["pixel2"])
