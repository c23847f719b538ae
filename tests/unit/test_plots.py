"""Pareto-plot helpers (zoom, knee, top-N worth measuring), the plots and the similarity map."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from client_sdk._progress import progress_enabled
from client_sdk.search import ParetoFront
from client_sdk.search.plots import (
    accuracy_limits,
    closest_to_front,
    cluster_order,
    knee_index,
    plot_front,
    plot_similarity,
)
from client_sdk.similarity import spearman_matrix
from client_sdk.spaces import get_space

NB201 = get_space("nasbench201")


def test_accuracy_limits_cut_a_degenerate_tail() -> None:
    acc = np.array([10.0, 86.5, 88.0, 90.0, 92.0, 93.0, 94.0, 94.3, 94.4, 94.5])
    lo, hi, below = accuracy_limits(acc)
    assert below == 1 and 85.0 < lo < 86.5 and 94.5 < hi < 95.5
    # no isolated tail: everything stays in view
    lo, hi, below = accuracy_limits(np.linspace(80, 94, 12))
    assert below == 0 and lo < 80 and hi > 94
    # a tail that is a large share of the points is information, not an outlier
    lo, _, below = accuracy_limits(np.array([10.0, 10.0, 11.0, 90.0, 91.0, 92.0]))
    assert below == 0 and lo < 10
    assert accuracy_limits(np.array([]))[2] == 0


def test_knee_is_the_point_farthest_above_the_chord() -> None:
    lat = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    acc = np.array([80.0, 90.0, 92.0, 93.0, 94.0])
    # normalised: y - x = 0.66 (index 1), 0.75 (index 2), 0.45 (index 3)
    assert knee_index(lat, acc) == 2
    assert knee_index(lat[:2], acc[:2]) is None
    assert knee_index(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) is None  # a line


def test_closest_to_front_ranks_by_latency_ratio() -> None:
    f_lat, f_acc = np.array([1.0, 2.0, 4.0]), np.array([80.0, 85.0, 90.0])
    lat = np.array([2.2, 8.0, 1.05, 4.1])
    acc = np.array([84.0, 89.0, 70.0, 90.0])
    order = closest_to_front(f_lat, f_acc, lat, acc, 4)
    # ratios to the front's best latency at that accuracy: 2.2/2, 8/4, 1.05/1, 4.1/4
    assert order.tolist() == [3, 2, 0, 1]
    assert closest_to_front(f_lat, f_acc, lat, acc, 2).tolist() == [3, 2]


def _front(devices=("pixel3", "raspi4")) -> ParetoFront:
    rows = np.arange(0, NB201.num_architectures, 7)
    genes = NB201.table.genes[rows]
    acc = NB201.table.accuracy["cifar10"][rows]
    lat = np.column_stack([NB201.table.device_column(d)[rows] for d in devices])
    from client_sdk.search import pareto_mask

    mask = pareto_mask(np.column_stack([-acc, lat]))
    front = ParetoFront.build(NB201, list(devices), genes[mask], acc[mask], lat[mask], "cifar10")
    near = ~mask & (acc > np.quantile(acc, 0.9))
    front.near_front = ParetoFront.build(NB201, list(devices), genes[near], acc[near],
                                         lat[near] * 0.9, "cifar10")
    return front


@pytest.mark.parametrize("devices", [("pixel3",), ("pixel3", "raspi4")])
def test_plot_front_png(tmp_path, devices) -> None:
    front = _front(devices)
    assert front.accuracy.min() < 20  # the degenerate cell is on the front
    path = plot_front(front, tmp_path / "f.png", log_latency=True,
                      max_latency_ms={"pixel3": 10.0}, top_worth=5)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    front.plot(tmp_path / "g.png", max_latency_ms=10.0)
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_spearman_matrix_matches_scipy_and_cluster_order() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=500)
    cols = np.column_stack([base, base + 0.1 * rng.normal(size=500), -base,
                            rng.normal(size=500), np.round(base)])  # last: ties
    rho = spearman_matrix(cols)
    for i in range(cols.shape[1]):
        for j in range(cols.shape[1]):
            assert rho[i, j] == pytest.approx(spearmanr(cols[:, i], cols[:, j])[0], abs=1e-12)
    order = cluster_order(rho).tolist()
    assert sorted(order) == list(range(5))
    # the two near-identical columns (0, 1) and the tied copy (4) end up adjacent
    pos = {c: order.index(c) for c in order}
    assert abs(pos[0] - pos[1]) == 1 or abs(pos[0] - pos[4]) == 1


def test_plot_similarity(tmp_path) -> None:
    rho = spearman_matrix(np.random.default_rng(1).normal(size=(100, 4)).cumsum(axis=1))
    path, labels = plot_similarity(["a", "b", "c", "d"], rho, tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and sorted(labels) == ["a", "b", "c", "d"]


def test_progress_only_on_a_terminal(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_enabled(None) is True
    assert progress_enabled(False) is False
