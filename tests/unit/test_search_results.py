"""ParetoFront: non-dominated filter, JSON/CSV/PNG/text exports, near-front candidates."""

from __future__ import annotations

import csv
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.search import ParetoFront, pareto_mask, search, true_front_rows
from client_sdk.search.results import dominated_by
from client_sdk.spaces import get_space
from tests.unit.test_search_problem import FakeClient

NB201 = get_space("nasbench201")


def _brute(F, tol=0.0):
    n = len(F)
    out = np.ones(n, dtype=bool)
    for a in range(n):
        for b in range(n):
            le = F[b, 0] <= F[a, 0] and np.all(F[b, 1:] <= F[a, 1:] * (1 + tol))
            if le and np.any(F[b] < F[a]):
                out[a] = False
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    k=st.integers(1, 3),
    tol=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 10_000),
)
def test_pareto_mask_matches_brute_force_with_ties(n, k, tol, seed):
    rng = np.random.default_rng(seed)
    F = rng.integers(1, 6, size=(n, k)).astype(float)  # many ties and duplicates
    F[:, 1:] *= rng.choice([1.0, 1.02], size=(n, k - 1))  # near-ties within tolerance
    expected = _brute(F, tol) if k > 1 else F[:, 0] == F[:, 0].min()
    np.testing.assert_array_equal(pareto_mask(F, tol), expected)
    np.testing.assert_array_equal(~dominated_by(F, F, tol), expected)


def test_tie_tolerance_keeps_the_most_accurate_of_equally_fast():
    F = np.array([[-90.0, 10.0], [-91.0, 10.005], [-80.0, 5.0]])
    np.testing.assert_array_equal(pareto_mask(F), [True, True, True])
    np.testing.assert_array_equal(pareto_mask(F, 1e-3), [False, True, True])


def _front(interval=0.1):
    return search(FakeClient(interval=interval), "nasbench201", ["pixel3", "raspi4"],
                  evaluations=256, population=32, progress=False).front


def test_front_is_nondominated_over_whole_archive():
    res = search(FakeClient(), "nasbench201", ["fpga"], evaluations=512, population=32,
                 progress=False)
    F = np.column_stack([-res.archive["accuracy"], res.archive["latency_ms"]["fpga"]])
    expected = NB201.format_many(res.archive["genes"][pareto_mask(F, 1e-3)])
    assert sorted(res.front.archs) == sorted(expected)
    assert len(set(res.front.archs)) == len(res.front)
    assert np.all(np.diff(res.front.latency_ms["fpga"]) >= 0)


def test_to_json_format(tmp_path):
    front = _front()
    data = json.loads(front.to_json(tmp_path / "f.json").read_text())
    assert len(data) == len(front) > 0
    for rec, arch in zip(data, front.archs, strict=True):
        assert set(rec) == {"arch", "accuracy", "latency_ms"}
        assert rec["arch"] == arch and isinstance(rec["accuracy"], float)
        assert set(rec["latency_ms"]) == {"pixel3", "raspi4"}
        row = NB201.table_rows(NB201.parse_many([arch]))[0]
        assert rec["accuracy"] == NB201.table.accuracy["cifar10"][row]
    full = json.loads(front.to_json(tmp_path / "g.json", include_near_front=True).read_text())
    assert len(full) == len(front) + len(front.near_front)
    assert all(r.get("worth_measuring") for r in full[len(front):])


def test_to_csv(tmp_path):
    front = _front()
    with front.to_csv(tmp_path / "f.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["arch", "accuracy", "latency_ms[pixel3]", "latency_ms[raspi4]",
                       "worth_measuring"]
    assert len(rows) == len(front) + 1
    assert [r[0] for r in rows[1:]] == front.archs
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], front.latency_ms["pixel3"],
                               rtol=1e-5)


def test_plot_png_and_true_front(tmp_path):
    front = _front()
    path = front.plot(tmp_path / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc, lat = front.true_front("nasbench201/pixel3")
    rows = true_front_rows(NB201, "pixel3", "cifar10")
    assert len(acc) == len(lat) == len(rows) > 0
    assert front.true_front("not_a_device") is None


def test_table_text():
    front = _front()
    text = front.table(max_rows=3)
    assert f"Pareto front: {len(front)} architectures" in text
    assert front.archs[0] in text and "pixel3" in text and "more" in text


def test_near_front_candidates_from_intervals():
    front = _front(interval=0.2)
    near = front.near_front
    assert near is not None and len(near) > 0
    assert not set(near.archs) & set(front.archs)
    # without intervals there is nothing to flag
    assert len(_front(interval=None).near_front) == 0
    F_front = np.column_stack([-front.accuracy, front.latency_ms["pixel3"],
                               front.latency_ms["raspi4"]])
    F_opt = np.column_stack([-near.accuracy, near.lower_ms["pixel3"], near.lower_ms["raspi4"]])
    assert not dominated_by(F_opt, F_front).any()


def test_empty_front_exports(tmp_path):
    empty = ParetoFront.build(NB201, ["pixel3"], NB201.table.genes[:0], np.empty(0),
                              np.empty((0, 1)), "cifar10")
    assert len(empty) == 0
    assert json.loads(empty.to_json(tmp_path / "e.json").read_text()) == []
    empty.to_csv(tmp_path / "e.csv")
    empty.plot(tmp_path / "e.png")
    assert "0 architectures" in empty.table()


def test_float_noise_accuracy_ties_collapse():
    class NoisyParams:
        __name__ = "noisy_params"

        def __call__(self, genes):  # equal op multisets: equal up to summation-order noise
            return np.log10(NB201.params(genes)) + 1e-15 * genes[:, 0]

    res = search(FakeClient(), "nasbench201", ["pixel3"], objective=NoisyParams(),
                 evaluations=256, population=32, progress=False)
    acc = np.round(res.front.accuracy, 9)
    assert len(np.unique(acc)) == len(acc)  # one (the fastest) per accuracy level
